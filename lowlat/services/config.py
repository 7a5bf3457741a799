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
that service.  Environment variables are ``LOWLAT_<FIELD>`` in upper case (``LOWLAT_TRANSPORT``,
``LOWLAT_METRICS_PORT``, ``LOWLAT_SYMBOLS=AAPL,MSFT``).
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["DEFAULT_SYMBOLS", "DEFAULT_TRANSPORT", "ServiceConfig", "load_config"]

#: The embedded default: in-process rings, no broker.  Cross-process without a broker: ``shm://name``.
DEFAULT_TRANSPORT = "inproc://lowlat"
DEFAULT_SYMBOLS = ("AAPL", "MSFT", "GOOG", "AMZN")


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
    queue: str = "validators"                     # queue group of validator instances
    # --- behaviour ---
    symbols: tuple[str, ...] = DEFAULT_SYMBOLS
    publish_results: bool = False                 # also publish results to validated/rejected subjects
    forward: bool = False                         # forward accepted orders to <match_prefix>.<SYMBOL>
    batch_max: int = 1024                         # most messages validated/matched in one nogil batch
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
    # --- ops ---
    metrics_port: int = 0                         # Prometheus /metrics on 127.0.0.1:<port>; 0 = off
    metrics_host: str = "127.0.0.1"
    log_level: str = "INFO"
    log_json: bool = True
    otel: bool = False                            # OpenTelemetry spans per batch (needs lowlat[otel])
    drain_timeout_s: float = 10.0
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

    def replace(self, **changes: Any) -> ServiceConfig:
        return dataclasses.replace(self, **changes)

    def connect_options(self) -> dict[str, Any]:
        """Keyword options for ``lowlat.transport.connect(self.transport, ...)``: reconnect policy, credentials
        from files and TLS paths for NATS URLs; ``{}`` for other transports.  Raises ``ValueError`` naming the
        field when a credential file cannot be read."""
        if self.transport.split("://", 1)[0].lower() not in ("nats", "tls"):
            return {}
        out: dict[str, Any] = {"max_reconnect_attempts": self.connect_attempts,
                               "reconnect_attempts": self.reconnect_attempts,
                               "reconnect_time_wait": self.reconnect_wait_s}
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


def _coerce(name: str, value: Any) -> Any:
    """Convert a string (env var / flag) or TOML value to the field's type; raise ValueError naming the field."""
    default = _FIELDS[name].default
    try:
        if isinstance(default, bool):
            if isinstance(value, str):
                v = value.strip().lower()
                if v in ("1", "true", "yes", "on"):
                    return True
                if v in ("0", "false", "no", "off", ""):
                    return False
                raise ValueError(value)
            return bool(value)
        if isinstance(default, tuple):
            if isinstance(value, str):
                return tuple(s.strip() for s in value.split(",") if s.strip())
            return tuple(str(s) for s in value)
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise ValueError(f"config field {name!r}: cannot use {value!r} (expected {type(default).__name__})") from None


def _apply(cfg: dict[str, Any], values: Mapping[str, Any], origin: str) -> None:
    for k, v in values.items():
        key = k.replace("-", "_")
        if key not in _FIELDS:
            raise ValueError(f"{origin}: unknown config key {k!r}")
        cfg[key] = _coerce(key, v)


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
    ValueError for unknown keys or values of the wrong type; FileNotFoundError for a missing file.
    """
    env = os.environ if env is None else env
    cfg: dict[str, Any] = {}
    if defaults:
        _apply(cfg, defaults, "defaults")
    path = path or env.get("LOWLAT_CONFIG")
    if path:
        with open(path, "rb") as f:
            data = tomllib.load(f)
        sections = {"validator", "matcher", "loadgen", "marketdata", "demo", "bench"}
        _apply(cfg, {k: v for k, v in data.items() if k not in sections}, path)
        if service and isinstance(data.get(service), dict):
            _apply(cfg, data[service], f"{path} [{service}]")
    for name in _FIELDS:
        ev = env.get("LOWLAT_" + name.upper())
        if ev is not None:
            cfg[name] = _coerce(name, ev)
    if overrides:
        _apply(cfg, {k: v for k, v in overrides.items() if v is not None}, "command line")
    return ServiceConfig(**cfg)
