"""Sub-commands of the ``lowlat`` CLI that run services: ``demo``, ``serve``, ``loadgen``, ``bench``, ``durable``.

``lowlat/cli.py`` builds the top-level parser and calls ``add_commands(subparsers)``.  Every flag ``--foo-bar`` is
also the config-file key ``foo_bar`` and the variable ``LOWLAT_FOO_BAR`` (``--config`` / ``LOWLAT_CONFIG``); flags
win.  Flag values are converted and range-checked by ``config.check_value`` while the command line is parsed, so
a mistake is an argparse usage error naming the flag and the valid range.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import importlib.util
import json
import signal
import socket
import sys
from collections.abc import Callable
from typing import Any

from ..errors import LowlatError, TransportTimeoutError
from .config import (
    DEFAULT_TRANSPORT,
    LOG_FORMATS,
    LOG_LEVELS,
    MODES,
    RANGES,
    ConfigError,
    ServiceConfig,
    check_value,
    config_key,
    load_config,
)

__all__ = ["SERVE_TRANSPORT", "CliError", "add_commands"]

#: default of ``serve`` and ``loadgen``: the embedded transport that spans processes (no broker)
SERVE_TRANSPORT = "shm://lowlat"

#: the schemes that need nothing running elsewhere (nothing to wait for when connecting)
_EMBEDDED = ("inproc", "shm", "zmq+inproc")


class CliError(LowlatError):
    """A mistake the CLI reports as one line (``lowlat: error: ...``); ``code`` is the exit status."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def _typed(field: str) -> Callable[[str], Any]:
    """An argparse ``type=`` that converts and range-checks like the config file does."""

    def conv(text: str) -> Any:
        try:
            return check_value(field, text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    conv.__name__ = config_key(field)
    return conv


def _rng(field: str) -> str:
    r = RANGES.get(field)
    return f"; {r.text()}" if r is not None else ""


def _flag(p: argparse.ArgumentParser | argparse._ArgumentGroup, field: str, help: str, **kw: Any) -> None:
    """Add ``--<key>`` for config field ``field`` (flag name = config key with ``-``)."""
    name = "--" + config_key(field).replace("_", "-")
    if kw.get("action") in ("store_true", argparse.BooleanOptionalAction):
        p.add_argument(name, dest=field, default=None, help=help, **kw)
    else:
        p.add_argument(name, dest=field, type=_typed(field), help=help + _rng(field), **kw)


# Flag tables: (config field, help, metavar or one of the switch kinds below), added in this order by _flags.
# A flag that several commands take is one row here, so its help is written once.
_SWITCH: dict[str, Any] = {"action": "store_true"}
_ON_OFF: dict[str, Any] = {"action": argparse.BooleanOptionalAction}
_Flags = tuple[tuple[str, str, str | dict[str, Any]], ...]

_NATS_AUTH_FLAGS: _Flags = (
    ("token_file", "file holding the auth token", "FILE"),
    ("creds_file", "NATS .creds file (JWT + nkey seed)", "FILE"),
    ("nkey_file", "nkey seed file", "FILE"),
    ("tls_ca", "PEM CA bundle (turns TLS on)", "FILE"),
    ("tls_cert", "PEM client certificate (mutual TLS)", "FILE"),
    ("tls_key", "PEM client key", "FILE"),
    ("connect_attempts", "attempts per server at start-up (default 5)", "N"),
    ("reconnect_attempts", "reconnect attempts per server after an outage, -1 = keep trying (default -1)", "N"),
)

_BATCH_FLAGS: _Flags = (
    ("batch_max", "largest batch per nogil call (default 1024)", "N"),
    ("max_pending", "bound on pending messages per subscription (default 65536)", "N"),
)

_INTAKE_FLAGS: _Flags = _BATCH_FLAGS + (
    ("rate_limit", "max messages/s taken in, 0 = off (default 0)", "RATE"),
    ("metrics_port", "serve Prometheus /metrics on 127.0.0.1:PORT, 0 = off (default 0)", "PORT"),
    ("otel", "OpenTelemetry spans per batch (pip install 'lowlat[otel]')", _SWITCH),
    ("cpus", "pin every thread of the process to these CPUs, e.g. 2,3 or 0-3 (Linux; default: not pinned)",
     "LIST"),
    ("hot_cpus", ("pin the event-loop (hot) thread to these CPUs; with --cpus the other threads keep off "
                  "them (default: not pinned)"), "LIST"),
    ("gc_thresholds", "gen0,gen1,gen2 collector thresholds after start-up (default 10000,20,100)", "T0,T1,T2"),
    ("gc_quiet", ("after start-up collect once, gc.freeze() and set --gc-thresholds (default on); "
                  "--no-gc-quiet leaves the collector as Python sets it (also LOWLAT_GC_QUIET=0)"), _ON_OFF),
    ("rt_priority", ("SCHED_FIFO priority of the hot thread, 1..99, 0 = off (needs root or CAP_SYS_NICE; "
                     "default 0)"), "N"),
    ("event_loop", "auto (uvloop when installed), asyncio or uvloop (default auto; also LOWLAT_EVENT_LOOP)",
     "LOOP"),
)

_VALIDATOR_FLAGS: _Flags = (
    ("queue", "queue group of the validator instances (default validators; '' for none)", "NAME"),
    ("publish_results", "also publish results to orders.validated / orders.rejected", _SWITCH),
    ("forward", "forward accepted orders to orders.match.<SYMBOL> (for a matcher)", _SWITCH),
)

_MATCHER_FLAGS: _Flags = (
    ("snapshot_interval_s", "seconds between published book snapshots, 0 = off (default 1)", "S"),
)

# {rate} and {seconds}: the defaults of the command that adds them
_LOAD_FLAGS: _Flags = (
    ("rate", "target orders/s, constant (default {rate:g})", "RATE"),
    ("count", "orders to send, 0 = as many as --duration takes (default 0)", "N"),
    ("duration_s", "seconds to send for (default {seconds:g})", "S"),
    ("payload", "pad each order to at least this many bytes (default 0 = natural size)", "BYTES"),
    ("reject_ratio", "fraction of deliberately invalid orders (default 0.05)", "F"),
    ("spin", ("wait for each due order by yielding to the event loop instead of sleeping until it is due "
              "(a timerfd: tens of µs of wake-up latency, little CPU): lowest send lag, one core busy"), _SWITCH),
)


def _flags(g: argparse._ArgumentGroup, table: _Flags, **defaults: float) -> None:
    """Add every flag of ``table``; ``defaults`` fill the ``{name}`` fields of the help texts."""
    for field, help, how in table:
        kw = how if isinstance(how, dict) else {"metavar": how}
        _flag(g, field, help.format(**defaults) if defaults else help, **kw)


def _common(p: argparse.ArgumentParser, *, transport: str, log_level: str, log_format: str) -> None:
    g = p.add_argument_group("transport and process")
    g.add_argument("--transport", "--url", dest="transport", metavar="URL", type=_typed("transport"),
                   help=f"transport URL (default {transport}; e.g. nats://127.0.0.1:4222, "
                        "zmq+tcp://127.0.0.1:5555, shm://name, kafka://127.0.0.1:9092)")
    g.add_argument("--config", metavar="FILE", help="TOML config file (default $LOWLAT_CONFIG); keys = flag names")
    _flag(g, "bind", "ZeroMQ: this process is the hub (binds the URL); the others connect", action="store_true")
    _flag(g, "connect_timeout_s", "seconds to keep trying to reach the broker or hub (default 10)", metavar="S")
    _flag(g, "symbols", "comma-separated symbols (default AAPL,MSFT,GOOG,AMZN)", metavar="LIST")
    g.add_argument("--log-level", dest="log_level", type=_typed("log_level"), choices=LOG_LEVELS, metavar="LEVEL",
                   help=f"{', '.join(LOG_LEVELS)} (default {log_level})")
    g.add_argument("--log-format", dest="log_json", type=_typed("log_json"), metavar="FORMAT",
                   help=f"log lines on stderr: {' or '.join(LOG_FORMATS)} (default {log_format})")
    _flags(p.add_argument_group("NATS credentials and TLS (files keep secrets out of the URL and of ps)"),
           _NATS_AUTH_FLAGS)


def _load_flags(p: argparse.ArgumentParser, *, rate: float, seconds: float) -> None:
    _flags(p.add_argument_group("load"), _LOAD_FLAGS, rate=rate, seconds=seconds)


def _cfg(args: argparse.Namespace, service: str, **defaults: Any) -> ServiceConfig:
    """Flags > LOWLAT_* env > config file > ``defaults`` (per command) > ServiceConfig defaults."""
    keys = [f for f in ServiceConfig.__dataclass_fields__ if hasattr(args, f)]
    overrides = {k: getattr(args, k) for k in keys}
    return load_config(service, path=getattr(args, "config", None), overrides=overrides, defaults=defaults)


def _setup_logging(cfg: ServiceConfig) -> None:
    from .runtime import setup_logging

    setup_logging(cfg.log_level, cfg.log_json)


def _scheme(url: str) -> str:
    from ..transport import scheme_of

    return scheme_of(url)


def _connect_options(cfg: ServiceConfig) -> dict[str, Any]:
    """Adapter options: NATS credentials and reconnect policy (``cfg.connect_options()``), the ZeroMQ hub role
    (``--bind``) and how long to try (``--connect-timeout``)."""
    s = _scheme(cfg.transport)
    try:
        opts = cfg.connect_options()
    except ValueError as e:  # an unreadable credential file
        raise ConfigError(str(e)) from None
    if s.startswith("zmq"):
        opts.update(bind=cfg.bind, sync_timeout=cfg.connect_timeout_s)
    elif s == "kafka":
        opts["timeout"] = cfg.connect_timeout_s
    return opts


async def _probe(cfg: ServiceConfig) -> None:
    """Say where we connect and for how long we try; fail with one line if nothing answers in that time."""
    from .._redact import redact
    from ..transport import connect

    s = _scheme(cfg.transport)
    url = redact(cfg.transport)  # what we print: never a password or token from the URL
    if s in _EMBEDDED or (s.startswith("zmq") and cfg.bind):
        return
    wait = cfg.connect_timeout_s
    print(f"connecting to {url} (trying for {wait:g} s)", file=sys.stderr, flush=True)
    t = connect(cfg.transport, **_connect_options(cfg))
    try:
        async with asyncio.timeout(wait + 1.0):
            await t.connect()
            if s.startswith("zmq"):  # connecting never fails in ZeroMQ: a subscription needs the hub's answer
                sub = await t.subscribe("_lowlat.probe")
                await sub.unsubscribe()
    except TransportTimeoutError:
        if s.startswith("zmq"):
            raise CliError(f"no ZeroMQ hub answered at {url} within {wait:g} s (start the hub first, or run this "
                           "one with --bind)") from None
        raise
    except TimeoutError:
        raise CliError(f"cannot connect to {url}: nothing answered within {wait:g} s (is the broker running? "
                       "--connect-timeout sets how long to try)") from None
    finally:
        with contextlib.suppress(Exception):
            await t.close()


def _check_metrics_port(cfg: ServiceConfig) -> None:
    """Refuse a port in use before any service starts (instead of a traceback from the HTTP server thread)."""
    if not cfg.metrics_port:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((cfg.metrics_host, cfg.metrics_port))
        except OSError as e:
            why = "already in use" if e.errno == errno.EADDRINUSE else (e.strerror or str(e))
            raise CliError(f"--metrics-port {cfg.metrics_port}: {cfg.metrics_host}:{cfg.metrics_port} is {why}"
                           if e.errno == errno.EADDRINUSE else
                           f"--metrics-port {cfg.metrics_port}: cannot listen on {cfg.metrics_host}: {why}") from None


def _plot_path(requested: str | None) -> tuple[str | None, str | None]:
    """(path to draw, note to print): matplotlib is the ``plot`` extra; without it say how to get the PNG."""
    if not requested:
        return None, None
    if importlib.util.find_spec("matplotlib") is None:
        return None, "== latency plot: not drawn (matplotlib is not installed: pip install 'lowlat[plot]')"
    return requested, None


async def _until_interrupted(stop: asyncio.Event) -> Callable[[], None]:
    """First Ctrl-C sets ``stop`` (the run ends early and reports); a second one interrupts for real."""
    loop = asyncio.get_running_loop()

    def first() -> None:
        stop.set()
        sys.stderr.write("\ninterrupted: stopping (Ctrl-C again to abort)\n")
        loop.remove_signal_handler(signal.SIGINT)  # default handler again: the next Ctrl-C raises

    loop.add_signal_handler(signal.SIGINT, first)

    def restore() -> None:
        loop.remove_signal_handler(signal.SIGINT)

    return restore


# ---------------------------------------------------------------- demo
def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    cfg = _cfg(args, "demo", log_level="ERROR", log_json=False, rate=5000.0, duration_s=3.0)
    _setup_logging(cfg)
    plot, note = _plot_path(None if args.no_plot else args.plot)
    human = sys.stderr if args.json else sys.stdout

    async def run() -> tuple[dict[str, Any], bool]:
        await _probe(cfg)
        stop = asyncio.Event()
        restore = await _until_interrupted(stop)
        try:
            out = await run_demo(cfg, plot=plot, progress=not args.no_progress, out=human, stop=stop,
                                 connect_options=_connect_options(cfg))
        finally:
            restore()
        return out, stop.is_set()

    out, interrupted = asyncio.run(run())
    if note:
        print(note, file=human)
    res = out["result"]
    if args.json:
        print(json.dumps(res.as_dict()))
    if interrupted:
        return 130
    return 0 if res.answered == res.sent and res.duplicates == 0 else 1


# ---------------------------------------------------------------- serve
def _serve(args: argparse.Namespace) -> int:
    from .runtime import run_services

    # separate processes need a transport that spans processes: the embedded default here is shm://
    cfg = _cfg(args, args.service, transport=SERVE_TRANSPORT, log_level="INFO", log_json=True)
    _setup_logging(cfg)
    try:
        cfg.connect_options()  # unreadable credential files: a config error before anything starts
    except ValueError as e:
        raise ConfigError(str(e)) from None
    _check_metrics_port(cfg)
    if args.service == "validator":
        from .validator import ValidatorService

        svcs: list[Any] = [ValidatorService(cfg)]
    elif args.service == "matcher":
        from .matcher import MatcherService

        svcs = [MatcherService(cfg)]
    else:  # both, in one process (handy on the embedded transport)
        from .matcher import MatcherService
        from .validator import ValidatorService

        svcs = [ValidatorService(cfg.replace(forward=True)), MatcherService(cfg)]

    async def run() -> None:
        await _probe(cfg)
        await run_services(cfg, svcs)

    return _run_or_exit(run(), cfg.event_loop)


def _run_or_exit(main: Any, event_loop: str = "asyncio") -> int:
    """Run a service coroutine; a lost or refused transport is one ERROR line and a non-zero status, not a
    traceback (3: closed for good while serving, 1: could not connect or bad credentials config)."""
    import logging

    from .._redact import redact
    from ..errors import TransportError
    from . import _loop
    from .runtime import TransportLostError

    log = logging.getLogger("lowlat.services")
    try:
        _loop.run(main, event_loop)
    except TransportLostError as e:
        log.error("exiting: %s", redact(str(e)))
        return 3
    except TransportError as e:
        log.error("cannot start: %s", redact(str(e)))
        return 1
    return 0


# ---------------------------------------------------------------- loadgen
async def _loadgen_run(cfg: ServiceConfig, progress: bool) -> tuple[Any, bool]:
    from ..transport import connect
    from .loadgen import LoadGenerator, print_progress

    await _probe(cfg)
    stop = asyncio.Event()
    restore = await _until_interrupted(stop)
    try:
        async with connect(cfg.transport, **_connect_options(cfg)) as t:
            lg = LoadGenerator(t, cfg, progress=print_progress(sys.stderr) if progress else None)
            relay = asyncio.get_running_loop().create_task(_relay_stop(stop, lg))
            try:
                res = await lg.run()
            finally:
                relay.cancel()
    finally:
        restore()
    if progress and sys.stderr.isatty():
        sys.stderr.write("\n")
    return res, stop.is_set()


async def _relay_stop(stop: asyncio.Event, lg: Any) -> None:
    await stop.wait()
    lg.stop()


def _loadgen(args: argparse.Namespace) -> int:
    from .demo import format_report, plot_latency

    cfg = _cfg(args, "loadgen", transport=SERVE_TRANSPORT, log_level="WARNING", log_json=False)
    _setup_logging(cfg)
    plot, note = _plot_path(args.plot)
    res, interrupted = asyncio.run(_loadgen_run(cfg, not args.no_progress))
    human = sys.stderr if args.json else sys.stdout
    if args.json:
        print(json.dumps(res.as_dict()))
    else:
        print(format_report(res, title=f"lowlat loadgen ({cfg.mode}) on {cfg.transport}"))
    if plot:
        plot_latency({"order → validation result": res.latency}, plot, f"lowlat loadgen on {cfg.transport}")
        print(f"== latency plot: {plot}", file=human)
    elif note:
        print(note, file=human)
    if interrupted:
        return 130
    return 0 if res.unanswered == 0 and res.duplicates == 0 else 1


# ---------------------------------------------------------------- bench
def _bench(args: argparse.Namespace) -> int:
    from .bench import run_bench

    cfg = _cfg(args, "bench", log_level="ERROR", log_json=False, rate=5000.0, duration_s=2.0)
    _setup_logging(cfg)
    transports = [t.strip() for t in args.transports.split(",") if t.strip()] if args.transports else None
    for url in transports or ():
        try:
            check_value("transport", url)
        except ValueError as e:
            raise CliError(f"--transports: {e}", 2) from None
    plot, note = _plot_path(args.plot)
    human = sys.stderr if args.json else sys.stdout
    with contextlib.redirect_stdout(human):
        rows = asyncio.run(run_bench(cfg, transports=transports, plot=plot, json_out=False,
                                     n_rt=args.round_trips, count=cfg.count or 50_000))
        if note:
            print(note)
    if args.json:
        print(json.dumps([{k: v for k, v in r.items() if k != "hist"} for r in rows], default=str))
    return 0


# ---------------------------------------------------------------- doctor
def _doctor(args: argparse.Namespace) -> int:
    from .doctor import as_json, format_report, run_doctor

    checks = run_doctor()
    print(json.dumps(as_json(checks)) if args.json else format_report(checks))
    return 0


# ---------------------------------------------------------------- durable
def _durable(args: argparse.Namespace) -> int:
    from .durable import main

    return main([args.service, *args.rest])


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is out of range (valid: >= 1)")
    return v


def _command(sub: Any, name: str, func: Callable[[argparse.Namespace], int], **kw: str) -> argparse.ArgumentParser:
    """The sub-command ``name`` (``help``/``description`` in ``kw``), run by ``func(args)``."""
    p: argparse.ArgumentParser = sub.add_parser(name, **kw)
    p.set_defaults(func=func)
    return p


def _load_command(sub: Any, name: str, func: Callable[[argparse.Namespace], int], *, help: str, description: str,
                  transport: str, log_level: str, rate: float, seconds: float,
                  ) -> tuple[argparse.ArgumentParser, argparse._ArgumentGroup]:
    """A command that sends load (demo, loadgen, bench): its parser and its "output" argument group."""
    p = _command(sub, name, func, help=help, description=description)
    _common(p, transport=transport, log_level=log_level, log_format="text")
    _load_flags(p, rate=rate, seconds=seconds)
    return p, p.add_argument_group("output")


def add_commands(sub: Any) -> None:
    """Add ``demo``, ``serve``, ``loadgen``, ``bench``, ``doctor`` and ``durable`` to an argparse sub-parser collection."""
    p, g = _load_command(sub, "demo", _demo,
                         help="validator + matcher + load generator in one process (no broker by default)",
                         description="Run the validator and matching services and a load generator for a few "
                                     "seconds; print a latency report and write a PNG latency plot (with "
                                     "matplotlib: pip install 'lowlat[plot]'). Ctrl-C stops early and reports.",
                         transport=DEFAULT_TRANSPORT, log_level="ERROR", rate=5000, seconds=3)
    _flags(p.add_argument_group("services"), _BATCH_FLAGS)
    g.add_argument("--plot", default="lowlat-demo-latency.png", metavar="PNG", help="PNG path (default %(default)s)")
    g.add_argument("--no-plot", action="store_true", help="do not write the PNG")
    g.add_argument("--no-progress", action="store_true", help="no progress lines on stderr")
    g.add_argument("--json", action="store_true", help="print the result as one JSON object on stdout (the report "
                                                       "goes to stderr)")

    p = sub.add_parser("serve", help="run a service until SIGTERM/SIGINT (graceful drain)",
                       description="Run the validator, the matcher, or both in one process, until SIGTERM or "
                                   "Ctrl-C; then stop intake, answer what was taken in, and exit 0.")
    ss = p.add_subparsers(dest="service", required=True, metavar="{validator,matcher,all}")
    for name, help_, flags in (
            ("validator", "order validator (queue group, batched nogil validation, request/reply)",
             _VALIDATOR_FLAGS),
            ("matcher", "matching service (one book per symbol, execution reports, market data, queries)",
             _MATCHER_FLAGS),
            ("all", "validator (forwarding) + matcher in one process", _VALIDATOR_FLAGS + _MATCHER_FLAGS)):
        sp = ss.add_parser(name, help=help_, description=help_[0].upper() + help_[1:] + ".")
        _common(sp, transport=SERVE_TRANSPORT, log_level="INFO", log_format="json")
        _flags(sp.add_argument_group(f"{name} options"), _INTAKE_FLAGS + flags)
        sp.set_defaults(func=_serve, service=name)

    _, g = _load_command(sub, "loadgen", _loadgen,
                         help="constant-rate load generator (latency from the intended send time)",
                         description="Send orders at a constant rate to a running validator and report latency "
                                     "from each order's intended send time (no coordinated omission). Ctrl-C "
                                     "stops early and reports.",
                         transport=SERVE_TRANSPORT, log_level="WARNING", rate=10000, seconds=3)
    g.add_argument("--mode", dest="mode", type=_typed("mode"), choices=MODES,
                   help="request/reply (default) or pipelined publish with results on orders.validated/rejected")
    g.add_argument("--plot", metavar="PNG", help="write a PNG latency plot here")
    g.add_argument("--no-progress", action="store_true", help="no progress lines on stderr")
    g.add_argument("--json", action="store_true", help="print the result as one JSON object on stdout")

    _, g = _load_command(sub, "bench", _bench, help="cross-transport comparison on this machine: table + plot",
                         description="Echo vs validator round trips and the pipelined rate per transport "
                                     "available here (brokers must already run for nats:// and kafka://).",
                         transport=DEFAULT_TRANSPORT, log_level="ERROR", rate=5000, seconds=2)
    g.add_argument("--transports", metavar="URLS", help="comma-separated URLs (default: every transport found here)")
    g.add_argument("--round-trips", dest="round_trips", type=_positive_int, default=2000, metavar="N",
                   help="sequential round trips per path (default %(default)s)")
    g.add_argument("--plot", default="lowlat-bench.png", metavar="PNG", help="PNG path (default %(default)s)")
    g.add_argument("--json", action="store_true", help="print the rows as one JSON array on stdout")

    p = _command(sub, "doctor", _doctor,
                 help="what on this host affects latency (CPUs, isolation, governor, SMT, THP...)",
                 description="Report the CPU count and isolation (isolcpus/nohz_full), the frequency governor, "
                             "SMT siblings, this process's affinity, transparent huge pages, the clock source "
                             "and whether busy-spinning is sensible here, each with what to change.")
    p.add_argument("--json", action="store_true", help="print the checks as one JSON object on stdout")

    p = _command(sub, "durable", _durable,
                 help="the at-least-once JetStream services (validator, matcher, streams)",
                 description="The durable pipeline over NATS JetStream: 'lowlat durable streams' creates "
                             "the streams, 'validator' and 'matcher' run the services. The remaining "
                             "arguments are those of `python -m lowlat.services.durable SERVICE --help`.")
    p.add_argument("service", choices=["validator", "matcher", "streams"], help="which durable service")
    p.add_argument("rest", nargs=argparse.REMAINDER, help="--transport URL and the service's other options")
