"""Sub-commands of the ``lowlat`` CLI that run services: ``demo``, ``serve``, ``loadgen``, ``bench``.

``lowlat/cli.py`` builds the top-level parser and calls ``add_commands(subparsers)``.  Every flag can also come
from ``LOWLAT_<FIELD>`` or a TOML file (``--config``); flags win.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from .config import DEFAULT_TRANSPORT, ServiceConfig, load_config

__all__ = ["SERVE_TRANSPORT", "add_commands"]

#: default of ``serve`` and ``loadgen``: the embedded transport that spans processes (no broker)
SERVE_TRANSPORT = "shm://lowlat"


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--transport", "--url", dest="transport", metavar="URL",
                   help=f"transport URL (demo: {DEFAULT_TRANSPORT}; serve/loadgen: shm://lowlat; e.g. "
                        "nats://127.0.0.1:4222, zmq+tcp://127.0.0.1:5555)")
    p.add_argument("--config", metavar="FILE", help="TOML config file (also $LOWLAT_CONFIG)")
    p.add_argument("--bind", action="store_true", default=None,
                   help="ZeroMQ: be the hub (bind the URL); other processes connect")
    p.add_argument("--symbols", help="comma-separated symbols (default AAPL,MSFT,GOOG,AMZN)")
    p.add_argument("--log-level", dest="log_level", help="INFO (default) or ERROR, DEBUG")
    g = p.add_argument_group("NATS credentials and TLS (files keep secrets out of the URL and of ps)")
    g.add_argument("--token-file", dest="token_file", metavar="FILE", help="file holding the auth token")
    g.add_argument("--creds", dest="creds_file", metavar="FILE", help="NATS .creds file (JWT + nkey seed)")
    g.add_argument("--nkey-file", dest="nkey_file", metavar="FILE", help="nkey seed file")
    g.add_argument("--tls-ca", dest="tls_ca", metavar="FILE", help="PEM CA bundle (turns TLS on)")
    g.add_argument("--tls-cert", dest="tls_cert", metavar="FILE", help="PEM client certificate (mutual TLS)")
    g.add_argument("--tls-key", dest="tls_key", metavar="FILE", help="PEM client key")
    g.add_argument("--reconnect-attempts", dest="reconnect_attempts", type=int,
                   help="reconnect attempts per server after an outage (default -1: keep trying)")


def _service_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--queue", help="queue group of validator instances (default 'validators')")
    p.add_argument("--batch-max", dest="batch_max", type=int, help="largest batch per nogil call (default 1024)")
    p.add_argument("--max-pending", dest="max_pending", type=int,
                   help="bound on pending messages per subscription (default 65536)")
    p.add_argument("--rate-limit", dest="rate_limit", type=float, help="max messages/s taken in (0 = off)")
    p.add_argument("--metrics-port", dest="metrics_port", type=int,
                   help="serve Prometheus /metrics on 127.0.0.1:PORT (0 = off)")
    p.add_argument("--publish-results", dest="publish_results", action="store_true", default=None,
                   help="validator: also publish results to orders.validated / orders.rejected")
    p.add_argument("--forward", action="store_true", default=None,
                   help="validator: forward accepted orders to orders.match.<SYMBOL>")
    p.add_argument("--snapshot-interval", dest="snapshot_interval_s", type=float,
                   help="matcher: seconds between published book snapshots (default 1)")
    p.add_argument("--otel", action="store_true", default=None, help="OpenTelemetry spans per batch (lowlat[otel])")


def _load_flags(p: argparse.ArgumentParser, *, rate: float | None = None, seconds: float | None = None) -> None:
    p.add_argument("--rate", type=float, help=f"target orders/s, constant (default {rate or 10000:g})")
    p.add_argument("--count", type=int, help="orders to send (overrides --duration)")
    p.add_argument("--duration", "--seconds", dest="duration_s", type=float,
                   help=f"seconds to send for (default {seconds or 3:g})")
    p.add_argument("--payload", type=int, help="pad each order to at least this many bytes")
    p.add_argument("--reject-ratio", dest="reject_ratio", type=float,
                   help="fraction of deliberately invalid orders (default 0.05)")


def _cfg(args: argparse.Namespace, service: str, **defaults: Any) -> ServiceConfig:
    """Flags > LOWLAT_* env > config file > ``defaults`` (per command) > ServiceConfig defaults."""
    keys = [f for f in ServiceConfig.__dataclass_fields__ if hasattr(args, f)]
    overrides = {k: getattr(args, k) for k in keys}
    return load_config(service, path=getattr(args, "config", None), overrides=overrides, defaults=defaults)


def _setup_logging(cfg: ServiceConfig) -> None:
    from .runtime import setup_logging

    setup_logging(cfg.log_level, cfg.log_json)


# ---------------------------------------------------------------- demo
def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    cfg = _cfg(args, "demo", log_level="ERROR", rate=5000.0, duration_s=3.0)
    _setup_logging(cfg)
    plot = None if args.no_plot else args.plot
    out = asyncio.run(run_demo(cfg, plot=plot, progress=not args.no_progress))
    if args.json:
        print(json.dumps(out["result"].as_dict(), indent=1))
    res = out["result"]
    return 0 if res.answered == res.sent and res.duplicates == 0 else 1


# ---------------------------------------------------------------- serve
def _serve(args: argparse.Namespace) -> int:
    from .runtime import run_services

    # separate processes need a transport that spans processes: the embedded default here is shm://
    cfg = _cfg(args, args.service, transport=SERVE_TRANSPORT)
    _setup_logging(cfg)
    try:
        cfg.connect_options()  # unreadable credential files: a config error before anything starts
    except ValueError as e:
        print(f"lowlat serve: {e}", file=sys.stderr)
        return 2
    if args.service == "validator":
        from .validator import ValidatorService

        svcs: list[Any] = [ValidatorService(cfg) for _ in range(1)]
    elif args.service == "matcher":
        from .matcher import MatcherService

        svcs = [MatcherService(cfg)]
    else:  # both, in one process (handy on the embedded transport)
        from .matcher import MatcherService
        from .validator import ValidatorService

        svcs = [ValidatorService(cfg.replace(forward=True)), MatcherService(cfg)]
    return _run_or_exit(run_services(cfg, svcs))


def _run_or_exit(main: Any) -> int:
    """Run a service coroutine; a lost or refused transport is one ERROR line and a non-zero status, not a
    traceback (3: closed for good while serving, 1: could not connect or bad credentials config)."""
    import logging

    from .._redact import redact
    from ..errors import TransportError
    from .runtime import TransportLostError

    log = logging.getLogger("lowlat.services")
    try:
        asyncio.run(main)
    except TransportLostError as e:
        log.error("exiting: %s", redact(str(e)))
        return 3
    except TransportError as e:
        log.error("cannot start: %s", redact(str(e)))
        return 1
    return 0


# ---------------------------------------------------------------- loadgen
async def _loadgen_run(cfg: ServiceConfig, progress: bool) -> Any:
    from ..transport import connect
    from .loadgen import LoadGenerator, print_progress

    async with connect(cfg.transport, **cfg.connect_options()) as t:
        lg = LoadGenerator(t, cfg, progress=print_progress(sys.stderr) if progress else None)
        res = await lg.run()
    if progress and sys.stderr.isatty():
        sys.stderr.write("\n")
    return res


def _loadgen(args: argparse.Namespace) -> int:
    from .demo import format_report, plot_latency

    cfg = _cfg(args, "loadgen", transport=SERVE_TRANSPORT)
    _setup_logging(cfg)
    res = asyncio.run(_loadgen_run(cfg, not args.no_progress))
    if args.json:
        print(json.dumps(res.as_dict()))
    else:
        print(format_report(res, title=f"lowlat loadgen ({cfg.mode}) on {cfg.transport}"))
    if args.plot:
        plot_latency({"order → validation result": res.latency}, args.plot, f"lowlat loadgen on {cfg.transport}")
        print(f"== latency plot: {args.plot}")
    return 0 if res.unanswered == 0 and res.duplicates == 0 else 1


# ---------------------------------------------------------------- bench
def _bench(args: argparse.Namespace) -> int:
    from .bench import run_bench

    cfg = _cfg(args, "bench", log_level="ERROR", rate=5000.0, duration_s=2.0)
    _setup_logging(cfg)
    transports = [t.strip() for t in args.transports.split(",")] if args.transports else None
    asyncio.run(run_bench(cfg, transports=transports, plot=args.plot, json_out=args.json,
                          n_rt=args.round_trips, count=cfg.count or 50_000))
    return 0


def add_commands(sub: Any) -> None:
    """Add ``demo``, ``serve``, ``loadgen`` and ``bench`` to an argparse sub-parser collection."""
    p = sub.add_parser("demo", help="validator + matcher + load generator on the embedded transport (no broker)",
                       description="Run the validator and matching services and a load generator for a few "
                                   "seconds; print a latency report and write a PNG latency plot.")
    _common(p)
    _load_flags(p, rate=5000, seconds=3)
    p.add_argument("--plot", default="lowlat-demo-latency.png", help="PNG path (default %(default)s)")
    p.add_argument("--no-plot", action="store_true", help="do not write the PNG")
    p.add_argument("--no-progress", action="store_true", help="no progress display")
    p.add_argument("--json", action="store_true", help="also print the result as JSON")
    p.set_defaults(func=_demo)

    p = sub.add_parser("serve", help="run a service until SIGTERM/SIGINT (graceful drain)")
    p.add_argument("service", choices=["validator", "matcher", "all"])
    _common(p)
    _service_flags(p)
    p.set_defaults(func=_serve)

    p = sub.add_parser("loadgen", help="constant-rate load generator (latency from the intended send time)")
    _common(p)
    _load_flags(p)
    p.add_argument("--mode", choices=["request", "pipeline"], help="request/reply (default) or pipelined publish")
    p.add_argument("--plot", help="write a PNG latency plot here")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--json", action="store_true", help="print the result as one JSON line")
    p.set_defaults(func=_loadgen)

    p = sub.add_parser("bench", help="cross-transport comparison available on this machine: table + plot")
    _common(p)
    _load_flags(p, rate=5000, seconds=2)
    p.add_argument("--transports", help="comma-separated URLs (default: every transport available here)")
    p.add_argument("--round-trips", dest="round_trips", type=int, default=2000,
                   help="sequential round trips per path (default %(default)s)")
    p.add_argument("--plot", default="lowlat-bench.png", help="PNG path (default %(default)s)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_bench)
