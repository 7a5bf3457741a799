"""Market-data consumer: deltas/s applied to a ``LocalBook``, per message (the previous consumer path) vs per batch,
in one run.

The same 65,536 ``L2Update`` frames (one symbol, sequence 1, 2, 3, ..., 40 price levels a side, a level removed
in about one delta of six) are applied from an empty synced book by:

- **per message**: ``_wire.decode_l2`` (``decode_l2_update``, the spec-driven decoder) + ``LocalBook.apply_update``
  for every frame: what ``MarketDataConsumer`` did per delivered message;
- **batch**: per received ``MessageBatch`` of ``LOWLAT_BENCH_MD_N`` frames (default 1024), one
  ``lowlat._l2batch.read_l2_updates`` (compiled decode into columns) + one ``LocalBook.apply_updates``: what it does
  now.

Both are timed with this thread's CPU time over the whole stream, ``ROUNDS`` rounds; the table gives deltas/s
(best round) and the ratio.  Run::

    python -m pytest benchmarks/bench_marketdata.py --benchmark-only -s -p no:cacheprovider
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
from _stage import message_batch

from lowlat import _encode
from lowlat._l2batch import read_l2_updates
from lowlat.services import LocalBook, _wire

TOTAL = 65_536
N = int(os.environ.get("LOWLAT_BENCH_MD_N", "1024"))
ROUNDS = 5
RESULTS: dict[str, float] = {}


def _frames() -> list[bytes]:
    rng = np.random.default_rng(7)
    side = rng.integers(0, 2, TOTAL)
    lvl = rng.integers(0, 40, TOTAL)
    qty = np.where(rng.random(TOTAL) < 0.16, 0, rng.integers(1, 500, TOTAL))
    return [_encode.encode_l2_update("AAPL", i + 1, int(side[i]), round(100.0 + (lvl[i] + 1) * 0.01 * (1 if side[i]
                                     else -1), 2), int(qty[i]), int(qty[i] > 0) * 3, 1_700_000_000_000_000_000)
            for i in range(TOTAL)]


FRAMES = _frames()


def _book() -> LocalBook:
    b = LocalBook("AAPL")
    b.apply_snapshot(0, [], [])
    return b


def _bench(benchmark, name, run) -> LocalBook:
    best = [float("inf")]
    last = []

    def target(book):
        t0 = time.thread_time_ns()
        run(book)
        best[0] = min(best[0], time.thread_time_ns() - t0)
        last.append(book)

    benchmark.pedantic(target, setup=lambda: ((_book(),), {}), rounds=ROUNDS, iterations=1)
    assert last[-1].seq == TOTAL
    RESULTS[name] = TOTAL / (best[0] / 1e9)
    benchmark.extra_info["deltas_per_s"] = RESULTS[name]
    return last[-1]


def test_per_message(benchmark):
    decode = _wire.decode_l2

    def run(book):
        apply = book.apply_update
        for f in FRAMES:
            apply(*decode(f))

    _bench(benchmark, "per message: decode_l2 + apply_update", run)


def test_batch(benchmark):
    batches = [message_batch(FRAMES[i:i + N], "md.AAPL.l2") for i in range(0, TOTAL, N)]
    cols = (np.zeros(N, np.uint64), np.zeros(N, np.int8), np.zeros(N, np.float64), np.zeros(N, np.uint64),
            np.zeros(N, np.uint32))

    def run(book):
        for b in batches:
            k = read_l2_updates(b, *cols)
            book.apply_updates(*(c[:k] for c in cols))

    _bench(benchmark, f"batch of {N}: read_l2_updates + apply_updates", run)


@pytest.fixture(scope="module", autouse=True)
def _table():
    yield
    if not RESULTS:
        return
    print(f"\nmarket-data apply: {TOTAL} L2Update deltas, best of {ROUNDS} rounds (thread CPU time)")
    for name, r in RESULTS.items():
        print(f"{name:52} {r:12,.0f} deltas/s")
    a, b = list(RESULTS.values())[:2] if len(RESULTS) == 2 else (0, 0)
    if a and b:
        print(f"batch / per message: {b / a:.1f} x")
