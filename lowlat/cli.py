"""The ``lowlat`` command line (also ``python -m lowlat``).

Commands:

- ``lowlat demo``     validator + matching service + load generator on the embedded transport (no broker):
                      progress, latency report (p50/p90/p99/p99.9/max), throughput, rejects by reason, PNG plot;
                      ``--transport nats://127.0.0.1:4222`` runs the same over a broker.
- ``lowlat serve validator|matcher|all``   run a service until SIGTERM/SIGINT (graceful drain).
- ``lowlat loadgen``  constant-rate load generator (latency from the intended send time).
- ``lowlat bench``    the cross-transport comparison available on this machine (table + plot).
- ``lowlat version``

Flags can also come from ``LOWLAT_<FIELD>`` environment variables or a TOML file (``--config``).
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    from .services._cli import add_commands

    parser = argparse.ArgumentParser(prog="lowlat", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"lowlat {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_commands(sub)
    p = sub.add_parser("version", help="print the version and the build (release/debug)")
    p.set_defaults(func=_version)
    return parser


def _version(args: argparse.Namespace) -> int:
    from . import __version__

    try:
        from . import _core

        build = "debug" if _core.DEBUG else "release"
    except ImportError as e:  # a source checkout without the compiled modules
        build = f"not built ({e})"
    print(f"lowlat {__version__} ({build} build, Python {sys.version.split()[0]})")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``lowlat`` console script; returns the process exit code."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
