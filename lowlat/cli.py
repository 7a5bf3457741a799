"""The ``lowlat`` command line (console script ``lowlat`` and ``python -m lowlat``).

Sub-commands:
  validate-demo   build a batch of random orders with the encoder, frame them and validate the batch in one
                  ``nogil`` call on the embedded default rules; print counts, rejects by reason and ns/order.
  demo, serve, loadgen, bench, durable
                  the services (lowlat.services; ``demo`` runs validator + matcher + load generator on the
                  embedded transport).  Without the services package, ``demo`` is ``validate-demo``.

Errors: a mistake (bad flag value, config file, unreachable broker...) is one line ``lowlat: error: ...`` on
stderr and a non-zero exit (2 for usage and configuration, 1 for the rest, 130 after Ctrl-C).  ``--debug`` or
``LOWLAT_DEBUG_TRACEBACK=1`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from collections import Counter
from typing import NoReturn

__all__ = ["Parser", "build_parser", "main", "validate_demo"]

DEFAULT_SYMBOLS = ("AAPL", "MSFT", "GOOG", "AMZN")


def default_rules(symbols=DEFAULT_SYMBOLS):
    """The embedded default instrument rules the demos use (tick 0.01, lot 1, collar +-10 % around 100)."""
    from lowlat import InstrumentRules

    return [InstrumentRules(s, tick_size=0.01, lot_size=1, min_qty=1, max_qty=100_000, ref_price=100.0,
                            band=0.10, max_notional=5_000_000.0) for s in symbols]


def _random_orders(n: int, reject_ratio: float, seed: int):
    """Yield encode_order argument tuples; about ``reject_ratio`` of them break one rule on purpose."""
    rnd = random.Random(seed)
    ts = time.time_ns()
    for i in range(n):
        sym = rnd.choice(DEFAULT_SYMBOLS)
        price = round(100.0 + rnd.randint(-900, 900) * 0.01, 2)
        qty = rnd.randint(1, 500)
        side = rnd.randint(0, 1)
        kw = {}
        if rnd.random() < reject_ratio:
            bad = rnd.randrange(6)
            if bad == 0:
                sym = "ZZZZ"                       # UNKNOWN_SYMBOL
            elif bad == 1:
                price += 0.005                     # OFF_TICK
            elif bad == 2:
                qty = 0                            # BAD_QUANTITY
            elif bad == 3:
                price = 150.0                      # PRICE_OUT_OF_BAND
            elif bad == 4:
                side = 2                           # BAD_SIDE
            else:
                kw["time_in_force"] = 7            # BAD_TIME_IN_FORCE
        yield (i + 1, sym, price, qty, side, ts + i), kw


def validate_demo(args: argparse.Namespace) -> int:
    """Build, frame and batch-validate random orders on the embedded default rules; print a report."""
    import numpy as np

    import lowlat
    from lowlat.enums import Reject

    n = args.count
    if n <= 0:
        print("--count must be > 0", file=sys.stderr)
        return 2
    v = lowlat.Validator(default_rules())
    orders = list(_random_orders(n, args.reject_ratio, args.seed))
    buf = bytearray(n * 112)                       # 92-108 bytes per framed order for these symbols
    pos = 0
    put = lowlat.frame_order_into
    t0 = time.perf_counter_ns()
    for (oid, sym, price, qty, side, ts), kw in orders:
        pos += put(buf, pos, oid, sym, price, qty, side, ts, **kw)
    framed = memoryview(buf)[:pos]
    t1 = time.perf_counter_ns()
    codes = np.zeros(n, np.uint8)
    best = None
    for _ in range(max(1, args.repeat)):           # best of N: the machine may be busy
        s = time.perf_counter_ns()
        count = v.validate_frames(framed, codes)
        e = time.perf_counter_ns() - s
        best = e if best is None else min(best, e)
    assert count == n
    by_code = Counter(int(c) for c in codes)
    accepted = by_code.pop(0, 0)
    print(f"lowlat {lowlat.__version__} validate-demo  ({'DEBUG' if lowlat.DEBUG else 'release'} build)")
    print(f"orders       {n}  ({pos} bytes framed, {pos / n:.1f} B/order)")
    print(f"build        {(t1 - t0) / n:8.1f} ns/order  (frame_order_into from a Python loop, into one bytearray)")
    print(f"validate     {best / n:8.2f} ns/order  (validate_frames, one nogil call, best of {args.repeat})")
    print(f"accepted     {accepted}")
    print(f"rejected     {n - accepted}")
    for code, k in sorted(by_code.items(), key=lambda kv: -kv[1]):
        r = Reject(code)
        print(f"  {r.name:<20} {k:>8}  {r.reason}")
    # the batch result is the scalar result, frame by frame (spot check)
    frames = list(lowlat.iter_frames(framed))
    for i in random.Random(args.seed).sample(range(n), min(n, 200)):
        assert v.validate(frames[i]) == codes[i]
    return 0


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``prog: error: message (see prog --help)``, exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _count(text: str) -> int:
    return _int_in(text, 1, 100_000_000)


def _repeat(text: str) -> int:
    return _int_in(text, 1, 10_000)


def _int_in(text: str, lo: int, hi: int) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if not lo <= v <= hi:
        raise argparse.ArgumentTypeError(f"{text!r} is out of range (valid: {lo} .. {hi})")
    return v


def _ratio(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} is out of range (valid: >= 0 and <= 1)")
    return v


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="lowlat", description="lowlat: low-latency trading building blocks (validator, matching "
                                          "engine, rings, transports, services).",
               epilog="`lowlat COMMAND --help` describes a command's flags. Errors are one line on stderr; "
                      "--debug (or LOWLAT_DEBUG_TRACEBACK=1) shows the traceback.")
    p.add_argument("--version", action="version", version=_version())
    p.add_argument("--debug", action="store_true", help="show the traceback of an error (also LOWLAT_DEBUG_TRACEBACK=1)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    d = sub.add_parser("validate-demo", help="build, frame and batch-validate random orders; print a report",
                       description="Build a batch of random orders with the encoder, frame them and validate the "
                                   "batch in one nogil call on the embedded default rules (AAPL, MSFT, GOOG, AMZN; "
                                   "tick 0.01, collar +-10 %% around 100); print counts, rejects by reason and "
                                   "ns/order.")
    _demo_flags(d)
    d.set_defaults(func=validate_demo)
    from lowlat.services._cli import add_commands

    add_commands(sub)
    for sp in sub.choices.values():
        _debug_flag(sp)
    return p


def _debug_flag(p: argparse.ArgumentParser) -> None:
    """``--debug`` after the command too (``lowlat demo --debug``), on every nested parser."""
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show the traceback of an error")
    for a in p._actions:
        if isinstance(a, argparse._SubParsersAction):
            for sp in a.choices.values():
                _debug_flag(sp)


def _demo_flags(d: argparse.ArgumentParser) -> None:
    d.add_argument("--count", type=_count, default=100_000, metavar="N",
                   help="orders in the batch, 1 .. 100000000 (default %(default)s)")
    d.add_argument("--reject-ratio", type=_ratio, default=0.05, metavar="F",
                   help="fraction of deliberately invalid orders, 0 .. 1 (default %(default)s)")
    d.add_argument("--repeat", type=_repeat, default=5, metavar="N",
                   help="validate the batch N times and report the best, 1 .. 10000 (default %(default)s)")
    d.add_argument("--seed", type=int, default=1, help="random seed of the orders (default %(default)s)")


def _version() -> str:
    import lowlat

    return f"lowlat {lowlat.__version__}"


def _debug_wanted(argv: list[str]) -> bool:
    return "--debug" in argv or os.environ.get("LOWLAT_DEBUG_TRACEBACK", "") not in ("", "0")


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= 400 else text[:397] + "..."


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit status (argparse's own exits, ``--help`` and usage errors, too)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = _debug_wanted(argv)
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        if debug:
            raise
        print("lowlat: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # every error becomes one line unless --debug
        if debug:
            raise
        return _report(e)


def _report(e: Exception) -> int:
    """Print ``lowlat: error: ...`` for ``e`` and return the exit status."""
    from .errors import LowlatError, MissingExtraError

    code = 1
    from .services._cli import CliError
    from .services.config import ConfigError

    if isinstance(e, CliError):
        msg, code = str(e), e.code
    elif isinstance(e, ConfigError):
        msg, code = _one_line(e), 2
    elif isinstance(e, (MissingExtraError, LowlatError)):
        msg = _one_line(e)
    elif isinstance(e, ValueError):
        msg, code = _one_line(e), 2
    elif isinstance(e, OSError):
        msg = f"{e.strerror or type(e).__name__}" + (f": {e.filename}" if e.filename else "")
    else:
        msg = f"{type(e).__name__}: {_one_line(e)}"
    if not isinstance(e, (LowlatError, ValueError)):  # not a mistake we know: say how to see where it happened
        msg += " (--debug shows the traceback)"
    from ._redact import redact

    print(f"lowlat: error: {redact(msg)}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
