"""``python -m lowlat.services <demo|serve|loadgen|bench> ...``: the service commands of the ``lowlat`` CLI."""

from __future__ import annotations

import argparse
import sys

from ._cli import add_commands


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lowlat.services", description=__doc__)
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
