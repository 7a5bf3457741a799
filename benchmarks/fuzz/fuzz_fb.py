"""Coverage-guided fuzzing of lowlat's FlatBuffer verifier/readers and frame parser with atheris (libFuzzer).

Not part of the test run (tests/property/test_fuzz_fb.py is the bounded CI version).  Usage::

    pip install atheris
    python benchmarks/fuzz/fuzz_fb.py -max_total_time=600 -rss_limit_mb=2048 benchmarks/fuzz/corpus
    # on the debug build: build a LOWLAT_DEBUG=1 copy (see tests/run.sh) and run this script from it

The corpus directory is seeded with valid messages of every schema on first use.  Any uncaught exception other
than lowlat.DecodeError, any crash (SIGSEGV/abort) or a sanitizer report stops the run with a reproducer file.
Instrumentation covers the Python-level dispatch; the compiled module is exercised as a black box unless it was
built with -fsanitize=fuzzer-no-link (clang), see benchmarks/fuzz/README.md.
"""

from __future__ import annotations

import os
import sys

# A _core built with clang -fsanitize=fuzzer-no-link (coverage-guided mode, see README.md) needs libFuzzer's
# coverage callbacks: atheris.Setup() loads its libFuzzer core, with RTLD_GLOBAL so that lowlat, imported only
# AFTER Setup (in main), resolves them.
sys.setdlopenflags(sys.getdlopenflags() | os.RTLD_GLOBAL)
import atheris
import numpy as np

# run from a checkout without installing: the repository root is two levels up
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

lowlat = VALIDATOR = DECODERS = None
OUT = np.zeros(1 << 16, np.uint8)


def _load() -> None:
    global lowlat, VALIDATOR, DECODERS
    with atheris.instrument_imports(include=["lowlat"]):
        import lowlat as _lowlat
    lowlat = _lowlat
    VALIDATOR = lowlat.Validator([lowlat.InstrumentRules("AAPL", tick_size=0.01),
                                  lowlat.InstrumentRules("BTC-USD")])
    DECODERS = (lowlat.read_order, lowlat.decode_order, lowlat.decode_cancel, lowlat.decode_modify,
                lowlat.decode_mass_cancel, lowlat.decode_command, lowlat.command_type,
                lowlat.decode_execution_report, lowlat.decode_trade, lowlat.decode_l2_update,
                lowlat.decode_book_snapshot, lowlat.decode_validation_result, lowlat.decode_order_msg,
                lowlat.count_frames)


def seeds() -> list[bytes]:
    return [
        lowlat.encode_order(1, "AAPL", 10.5, 3, 0, 1, client_order_id="abc", account=3),
        lowlat.encode_command(lowlat.Cancel(5, "AAPL", 1, 2), sequence=9),
        lowlat.encode_command(lowlat.OrderMsg(5, "AAPL", 1.0, 1)),
        lowlat.encode_command(lowlat.Modify(5, "AAPL", 2.0, 3)),
        lowlat.encode_book_snapshot("AAPL", 3, [lowlat.Level(1.0, 2, 3)], [lowlat.Level(2.0, 5, 1)], 7),
        lowlat.encode_execution_report(1, "AAPL", 2, 1, 2, 0, 9, 1, 2, True, 1.5, 3, 0, 3, 99, "c"),
        lowlat.encode_trade(1, "AAPL", 1.5, 3, 1, 2, 3, 4, 5),
        lowlat.encode_l2_update("AAPL", 4, 1, 1.5, 300, 2, 6),
        lowlat.frame([lowlat.encode_order(2, "BTC-USD", 1.0, 1, 1, 0)] * 3),
    ]


def test_one_input(data: bytes) -> None:
    mv = memoryview(data)
    for fn in DECODERS:
        try:
            r = fn(mv)
            if isinstance(r, lowlat.OrderView):
                r.to_dict()
        except lowlat.DecodeError:
            pass
    VALIDATOR.validate(data)
    try:
        VALIDATOR.validate_frames(data, OUT)
    except (lowlat.DecodeError, ValueError) as e:   # ValueError: more frames than OUT holds
        if not isinstance(e, lowlat.DecodeError) and "out_codes" not in str(e):
            raise
    try:
        for f in lowlat.iter_frames(data):
            VALIDATOR.validate(f)
    except lowlat.DecodeError:
        pass


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    _load()
    corpus = [a for a in sys.argv[1:] if not a.startswith("-")]
    for d in corpus:
        os.makedirs(d, exist_ok=True)
        if not os.listdir(d):
            for i, s in enumerate(seeds()):
                with open(os.path.join(d, f"seed-{i}"), "wb") as f:
                    f.write(s)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
