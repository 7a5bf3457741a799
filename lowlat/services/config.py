"""Service configuration: defaults < config file < environment (``LOWLAT_*``) < CLI flags.

A config file is a small TOML file (``--config path`` or ``LOWLAT_CONFIG``)::

    transport = "nats://127.0.0.1:4222"
    metrics_port = 9464
    [validator]
    queue = "validators"
    batch_max = 512
    [matcher]
    symbols = ["AAPL", "MSFT"]

Top-level keys apply to every service; a ``[validator]`` / ``[matcher]`` / ``[loadgen]`` table overrides them for
that service.  A flag ``--batch-max`` is the key ``batch_max`` and the variable ``LOWLAT_BATCH_MAX``: one name in
the three places (``--duration`` / ``duration`` / ``LOWLAT_DURATION``; the field names with their unit suffix,
``duration_s``, are accepted too).  Every value is type- and range-checked when it is read, and a mistake raises
``ConfigError`` naming where the value came from (the flag, the variable, or the file and key) and the valid range.

``stage_thread = true`` (``LOWLAT_STAGE_THREAD=1``; ``[validator]``, ``[matcher]``): on ``shm://`` the service's
stage loop runs in a dedicated thread over its own bus member (compiled intake, the compiled stage, compiled batch
publish; the GIL is released while it waits in the ring's idle strategy, default
``lowlat.transport.shm.sync_idle()``), so orders never go through the event loop.  The matcher's one thread
subscription covers every symbol's subject; its queries and snapshots stay on the event loop and read the read
side between two stage runs.  Metrics are recorded per batch as before; a SIGTERM drain answers what the thread's
ring holds, then joins it (bounded by ``drain_timeout``).  On other transports the option is ignored with a
warning.  See ``lowlat.services._stage_thread``.

``inline = true`` (``LOWLAT_INLINE=1``): on ``inproc://`` the validator's and the matcher's stage runs inside the
publisher's call (``InprocTransport.subscribe_inline``), with no intake queue and no task wake-up per batch: a
request is answered before its publish returns (the validator's round trip then costs what a bare echo costs).
The publisher pays the stage's time (no back-pressure queue, nothing to drain), and a chain of inline services runs
end to end before anything queued sees a result (in the demo's pipeline the matcher then sits on the validation
result's path, so ``lowlat demo`` keeps queued services).  Ignored on other transports, and with ``rate_limit``
(a warning).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import LowlatError

__all__ = ["DEFAULT_SYMBOLS", "DEFAULT_TRANSPORT", "ConfigError", "ServiceConfig", "check_value", "config_key",
           "load_config"]

#: The embedded default: in-process rings, no broker.  Cross-process without a broker: ``shm://name``.
DEFAULT_TRANSPORT = "inproc://lowlat"
DEFAULT_SYMBOLS = ("AAPL", "MSFT", "GOOG", "AMZN")


class ConfigError(LowlatError, ValueError):
    """A configuration value (flag, ``LOWLAT_*`` variable or config file) is missing, malformed or out of range.

    The message is one line naming the origin and, for numbers, the valid range.
    """


@dataclass
class ServiceConfig:
    """Everything a service or the load generator reads from flags/env/file.  Units are in the field names."""

    transport: str = DEFAULT_TRANSPORT
    bind: bool = False                            # ZeroMQ: this process is the hub (binds the URL)
    # --- subjects ---
    orders_subject: str = "orders.in"             # validator intake (request/reply or plain publish)
    validated_subject: str = "orders.validated"   # ValidationResult of accepted orders (when publish_results)
    rejected_subject: str = "orders.rejected"     # ValidationResult of rejected orders (when publish_results)
    match_prefix: str = "orders.match"            # matcher intake: <match_prefix>.<SYMBOL>
    exec_prefix: str = "exec"                     # execution reports: <exec_prefix>.<SYMBOL>
    md_prefix: str = "md"                         # market data: <md_prefix>.<SYMBOL> (+ .snapshot queries)
    query_prefix: str = "query"                   # read side: <query_prefix>.book.<SYMBOL>, .order.<SYMBOL>
    queue: str = "validators"                     # queue group of validator instances ("" for none)
    # --- behaviour ---
    symbols: tuple[str, ...] = DEFAULT_SYMBOLS
    publish_results: bool = False                 # also publish results to validated/rejected subjects
    forward: bool = False                         # forward accepted orders to <match_prefix>.<SYMBOL>
    batch_max: int = 1024                         # most messages validated/matched in one nogil batch
    stage_thread: bool = False                    # shm:// validator/matcher: stage loop in its own thread
    inline: bool = False                          # inproc:// validator/matcher: stage inside the publisher's call
    max_pending: int = 65536                      # bounded pending per subscription (back-pressure)
    rate_limit: float = 0.0                       # messages/s a service takes in; 0 = unlimited
    snapshot_interval_s: float = 1.0              # matcher: periodic book snapshots on <md_prefix>.<SYMBOL>
    # --- instrument rules (the same for every symbol; prices on the wire are doubles) ---
    tick_size: float = 0.01                       # quote currency per tick
    lot: int = 1
    min_qty: int = 1
    max_qty: int = 1_000_000
    ref_price: int = 10_000                       # collar centre, ticks
    band_bps: int = 1000                          # collar half-width, basis points of ref_price
    max_notional: int = 10**15
    # --- load generator ---
    rate: float = 10_000.0                        # target orders/s (constant rate, open loop)
    count: int = 0                                # orders to send; 0 = until duration
    duration_s: float = 3.0
    payload: int = 0                              # pad orders to at least this many bytes (0 = natural size)
    reject_ratio: float = 0.05                    # fraction of deliberately invalid orders
    mode: str = "request"                         # "request" (request/reply) or "pipeline" (publish + results)
    spin: bool = False                            # generator waits for a due order by yielding, not its timerfd
    # --- ops ---
    metrics_port: int = 0                         # Prometheus /metrics on 127.0.0.1:<port>; 0 = off
    metrics_host: str = "127.0.0.1"
    log_level: str = "INFO"
    log_json: bool = True
    otel: bool = False                            # OpenTelemetry spans per batch (needs lowlat[otel])
    drain_timeout_s: float = 10.0
    event_loop: str = "auto"                      # serve: "auto" (uvloop when installed), "asyncio" or "uvloop"
    # --- CPU placement (Linux; see lowlat.services.affinity) ---
    cpus: str = ""                                # every thread of the service process on these CPUs ("2,3", "0-3")
    hot_cpus: str = ""                            # the event-loop (hot) thread on these; the others kept off them
    rt_priority: int = 0                          # SCHED_FIFO priority of the hot thread, 1..99; 0 = off
    # --- garbage collector (see lowlat.services.gcquiet) ---
    gc_quiet: bool = True                         # after start-up: collect, gc.freeze(), set gc_thresholds
    gc_thresholds: str = "10000,20,100"           # gen0,gen1,gen2 thresholds while gc_quiet
    # --- connection (NATS; ignored by transports without a broker connection) ---
    connect_attempts: int = 5                     # initial connect: attempts per server before failing
    reconnect_attempts: int = -1                  # after an outage: attempts per server; -1 = keep trying
    reconnect_wait_s: float = 1.0                 # pause between attempts on one server
    token_file: str = ""                          # file holding the auth token (keeps it out of ``ps``)
    creds_file: str = ""                          # NATS .creds file (JWT + nkey seed)
    nkey_file: str = ""                           # nkey seed file
    tls_ca: str = ""                              # PEM CA bundle; setting it turns TLS on
    tls_cert: str = ""                            # PEM client certificate (mutual TLS)
    tls_key: str = ""                             # PEM client key
    connect_timeout_s: float = 10.0               # CLI: how long to try reaching the broker/hub before giving up

    def replace(self, **changes: Any) -> ServiceConfig:
        return dataclasses.replace(self, **changes)

    def connect_options(self) -> dict[str, Any]:
        """Keyword options for ``lowlat.transport.connect(self.transport, ...)``: reconnect policy, credentials
        from files and TLS paths for NATS URLs; ``{}`` for other transports.  Raises ``ValueError`` naming the
        field when a credential file cannot be read."""
        if self.transport.split("://", 1)[0].lower() not in ("nats", "tls", "nats+py", "tls+py"):
            return {}
        # jetstream="lazy": a JetStream side connection only for services that use the durable log, at first use
        out: dict[str, Any] = {"max_reconnect_attempts": self.connect_attempts,
                               "reconnect_attempts": self.reconnect_attempts,
                               "reconnect_time_wait": self.reconnect_wait_s, "jetstream": "lazy"}
        if self.token_file:
            try:
                with open(self.token_file) as f:
                    out["token"] = f.read().strip()
            except OSError as e:
                raise ValueError(f"config field 'token_file': cannot read {self.token_file!r}: {e.strerror}") from None
        for field, opt in (("creds_file", "user_credentials"), ("nkey_file", "nkeys_seed"), ("tls_ca", "tls_ca"),
                           ("tls_cert", "tls_cert"), ("tls_key", "tls_key")):
            path = getattr(self, field)
            if path:
                if not os.access(path, os.R_OK):
                    raise ValueError(f"config field {field!r}: cannot read {path!r}")
                out[opt] = path
        return out

    def band(self) -> tuple[int, int]:
        """(lo, hi) price collar in ticks derived from ref_price and band_bps."""
        half = self.ref_price * self.band_bps // 10_000
        return self.ref_price - half, self.ref_price + half


_FIELDS = {f.name: f for f in dataclasses.fields(ServiceConfig)}

#: key (as a flag, a config-file key and LOWLAT_<KEY>) -> field, where the field carries a unit suffix
ALIASES = {"duration": "duration_s", "snapshot_interval": "snapshot_interval_s", "drain_timeout": "drain_timeout_s",
           "connect_timeout": "connect_timeout_s", "reconnect_wait": "reconnect_wait_s", "creds": "creds_file",
           "log_format": "log_json"}
_KEY_OF = {field: key for key, field in ALIASES.items()}

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("text", "json")
MODES = ("request", "pipeline")
# a symbol becomes one token of a subject (orders.match.<SYMBOL>): no dots, wildcards or spaces
_SYMBOL = re.compile(r"^[A-Za-z0-9_\-:/]{1,32}$")
_SUBJECT = re.compile(r"^[^\s*>]+$")


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else f"{x:g}"


@dataclass(frozen=True)
class _Range:
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False            # lo itself is not allowed (e.g. rate > 0)

    def text(self) -> str:
        lo = "" if self.lo is None else f"{'>' if self.lo_open else '>='} {_num(self.lo)}"
        hi = "" if self.hi is None else f"<= {_num(self.hi)}"
        return " and ".join(x for x in (lo, hi) if x)

    def ok(self, v: float) -> bool:
        if self.lo is not None and (v < self.lo or (self.lo_open and v == self.lo)):
            return False
        return self.hi is None or v <= self.hi


#: the valid range of every numeric field
RANGES: dict[str, _Range] = {
    "batch_max": _Range(1, 1 << 20),
    "max_pending": _Range(1, 1 << 30),
    "rate_limit": _Range(0, 1e9),
    "snapshot_interval_s": _Range(0, 86_400),
    "tick_size": _Range(0, 1e9, lo_open=True),
    "lot": _Range(1, 1 << 40),
    "min_qty": _Range(1, 1 << 40),
    "max_qty": _Range(1, 1 << 40),
    "ref_price": _Range(1, 1 << 62),
    "band_bps": _Range(0, 10_000),
    "max_notional": _Range(1, 1 << 62),
    "rate": _Range(0, 1e8, lo_open=True),
    "count": _Range(0, 1 << 31),
    "duration_s": _Range(0, 7 * 86_400, lo_open=True),
    "payload": _Range(0, 1 << 20),
    "reject_ratio": _Range(0, 1),
    "metrics_port": _Range(0, 65_535),
    "drain_timeout_s": _Range(0, 3600, lo_open=True),
    "connect_timeout_s": _Range(0, 3600, lo_open=True),
    "connect_attempts": _Range(0, 1_000_000),
    "reconnect_attempts": _Range(-1, 1_000_000),
    "reconnect_wait_s": _Range(0, 3600),
    "rt_priority": _Range(0, 99),
}
EVENT_LOOPS = ("auto", "asyncio", "uvloop")
CHOICES: dict[str, tuple[str, ...]] = {"mode": MODES, "log_level": LOG_LEVELS, "event_loop": EVENT_LOOPS}


def config_key(field: str) -> str:
    """The name a field has as a config key (and, with ``-``, as a flag): ``duration_s`` -> ``duration``."""
    return _KEY_OF.get(field, field)


def _known_keys() -> list[str]:
    return sorted({config_key(f) for f in _FIELDS} | set(_FIELDS))


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        v = value.strip().lower()
        if v in ("1", "true", "yes", "on"):
            return True
        if v in ("0", "false", "no", "off", ""):
            return False
    raise ValueError("expected true/false (also 1/0, yes/no, on/off)")


def check_value(name: str, value: Any) -> Any:
    """Convert ``value`` (a string from a flag/env var, or a TOML value) for field ``name`` and range-check it.

    Returns the typed value; raises ``ValueError`` with a short reason (no origin: callers add it).
    """
    if name == "log_json" and not isinstance(value, bool):   # spelled --log-format text|json (or a bool)
        fmt = str(value).strip().lower()
        if fmt in LOG_FORMATS:
            return fmt == "json"
        try:
            return _bool(fmt)
        except ValueError:
            raise ValueError(f"{value!r} is not one of {', '.join(LOG_FORMATS)}") from None
    if name in ("cpus", "hot_cpus"):
        return _check_cpus(value)
    if name == "gc_thresholds":
        from .gcquiet import parse_thresholds

        if isinstance(value, (list, tuple)):
            value = ",".join(str(v) for v in value)
        return ",".join(str(v) for v in parse_thresholds(value))
    default = _FIELDS[name].default
    if isinstance(default, bool):
        return _bool(value)
    if isinstance(default, tuple):             # symbols
        items = [s.strip() for s in value.split(",")] if isinstance(value, str) else [str(s) for s in value]
        items = [s for s in items if s]
        if not items:
            raise ValueError("needs at least one symbol, e.g. AAPL,MSFT")
        for s in items:
            if not _SYMBOL.match(s):
                raise ValueError(f"{s!r} is not a symbol (1-32 of A-Z a-z 0-9 _ - : /; no dots or spaces)")
        if len(set(items)) != len(items):
            raise ValueError(f"symbols repeat: {','.join(items)}")
        return tuple(items)
    if isinstance(default, (int, float)):
        if isinstance(value, bool):
            raise ValueError(f"expected a number, got {value!r}")  # noqa: TRY004 - reported as a config error
        if isinstance(default, int) and isinstance(value, float) and not value.is_integer():
            raise ValueError(f"expected an integer, got {value!r}")
        try:
            v: Any = int(value) if isinstance(default, int) else float(value)
        except (TypeError, ValueError, OverflowError):
            raise ValueError(f"expected {'an integer' if isinstance(default, int) else 'a number'}, "
                             f"got {value!r}") from None
        if isinstance(v, float) and math.isnan(v):
            raise ValueError("NaN is not a value")
        r = RANGES.get(name)
        if r is not None and not r.ok(v):
            raise ValueError(f"{value!r} is out of range (valid: {r.text()})")
        return v
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {value!r}")  # noqa: TRY004 - reported as a config error
    if name in CHOICES:
        up = value.strip().upper() if name == "log_level" else value.strip()
        if up not in CHOICES[name]:
            raise ValueError(f"{value!r} is not one of {', '.join(CHOICES[name])}")
        return up
    if name == "transport":
        return _check_url(value)
    if name == "queue" and value == "":
        return value  # no queue group: each instance gets every order
    if name.endswith(("_subject", "_prefix")) or name == "queue":
        if not value or not _SUBJECT.match(value):
            raise ValueError(f"{value!r} is not a subject (non-empty, no spaces or wildcards)")
    elif name == "metrics_host" and not value.strip():
        raise ValueError("empty host")
    return value


def _check_cpus(value: Any) -> str:
    """A CPU list (``"2,3"``, ``"0-3"``, or a TOML list of ints) -> normalised cpulist; ``""`` = not pinned.
    Checked against the CPUs this process may use, so a typo fails at start-up, not after connecting."""
    from .affinity import check_cpus, format_cpus

    if isinstance(value, str) and not value.strip():
        return ""
    if not isinstance(value, (str, list, tuple)):
        raise ValueError(f"expected a CPU list such as 2,3 or 0-3, got {value!r}")  # noqa: TRY004 - reported as a config error
    try:
        return format_cpus(check_cpus(value))
    except OSError as e:  # AffinityError: say it as a config mistake
        raise ValueError(str(e)) from None


def _check_url(url: str) -> str:
    from ..transport import known_schemes, scheme_of

    url = url.strip()
    scheme = scheme_of(url)                    # ValueError: no scheme
    if scheme not in known_schemes():
        close = difflib.get_close_matches(scheme, known_schemes(), n=1)
        hint = f"; did you mean {close[0]}://?" if close else ""
        raise ValueError(f"unknown transport scheme {scheme!r} in {url!r} (known: {', '.join(known_schemes())})"
                         f"{hint}")
    return url


def _unknown(key: str, origin: str) -> ConfigError:
    close = difflib.get_close_matches(key, _known_keys(), n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return ConfigError(f"{origin}: unknown config key {key!r}{hint}")


def _apply(cfg: dict[str, Any], values: Mapping[str, Any], origin: str, flags: bool = False) -> None:
    for k, v in values.items():
        key = k.replace("-", "_")
        field = ALIASES.get(key, key)
        if field not in _FIELDS:
            raise _unknown(key, origin)
        try:
            cfg[field] = check_value(field, v)
        except ValueError as e:
            where = f"--{config_key(field).replace('_', '-')}" if flags else f"{origin}: key {config_key(field)!r}"
            raise ConfigError(f"{where}: {e}") from None


def _read_file(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except IsADirectoryError:
        raise ConfigError(f"config file is a directory: {path}") from None
    except PermissionError:
        raise ConfigError(f"config file not readable (permission denied): {path}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: TOML syntax error: {e}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None


SECTIONS = ("validator", "matcher", "loadgen", "marketdata", "demo", "bench")


def load_config(service: str | None = None, *, path: str | None = None, env: Mapping[str, str] | None = None,
                overrides: Mapping[str, Any] | None = None,
                defaults: Mapping[str, Any] | None = None) -> ServiceConfig:
    """Build a ``ServiceConfig`` from defaults, a TOML file, ``LOWLAT_*`` env vars and explicit overrides.

    Parameters
    ----------
    service : "validator", "matcher", "loadgen" or None; selects the file's per-service table.
    path : config file; defaults to ``$LOWLAT_CONFIG`` when set.
    env : environment mapping (default ``os.environ``).
    overrides : CLI flag values; ``None`` values are ignored (flag not given).
    defaults : per-command defaults that replace the dataclass defaults (lowest precedence).

    Raises
    ------
    ConfigError (a ``ValueError``) for a missing or unparsable file, unknown keys (with the closest known key) and
    values of the wrong type or out of range; the message names the flag, variable or file and key.
    """
    env = os.environ if env is None else env
    cfg: dict[str, Any] = {}
    if defaults:
        _apply(cfg, defaults, "defaults")
    path = path or env.get("LOWLAT_CONFIG")
    if path:
        data = _read_file(path)
        _apply(cfg, {k: v for k, v in data.items() if k not in SECTIONS}, path)
        for sec in SECTIONS:
            if sec in data and not isinstance(data[sec], dict):
                raise ConfigError(f"{path}: [{sec}] must be a table")
        if service and isinstance(data.get(service), dict):
            _apply(cfg, data[service], f"{path} [{service}]")
    for name in _FIELDS:
        for key in dict.fromkeys((config_key(name), name)):
            var = "LOWLAT_" + key.upper()
            ev = env.get(var)
            if ev is not None:
                try:
                    cfg[name] = check_value(name, ev)
                except ValueError as e:
                    raise ConfigError(f"environment variable {var}={ev!r} ({name}): {e}") from None
    if overrides:
        _apply(cfg, {k: v for k, v in overrides.items() if v is not None}, "command line", flags=True)
    out = ServiceConfig(**cfg)
    if out.min_qty > out.max_qty:
        raise ConfigError(f"min_qty ({out.min_qty}) is above max_qty ({out.max_qty})")
    return out
