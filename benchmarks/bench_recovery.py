"""Recovery and replay: how fast a crashed matching service is back.

- **replay**: the 1,000,000-command ``touch`` workload of bench_book.py written to a local ``FileJournal``
  (records of 4096 ``COMMAND_DTYPE`` rows) and replayed into a fresh book (record decode + CRC + one
  ``apply_batch`` per record).  Peer, same run, same commands: the SortedDict + deque pure-Python engine of
  bench_book.py replaying the log call by call (what a Python team's rebuild-from-log does today).
- **restore**: a snapshot of a book holding 1,000,000 resting orders (compact format, ~40 MB) read from disk,
  decoded (CRC) and restored into a new book.  Peer: ``pickle.loads`` of the pure-Python engine holding the same
  orders (its natural snapshot format).
- **snapshot write**: dump + encode + fsync'd atomic write of that book.

Goals: replay >= 1 M commands/s; restore of 1 M resting orders <= 1 s.

Run:  python benchmarks/bench_recovery.py                      (prints the table recorded in BENCHMARKS.md)
      python -m pytest benchmarks/bench_recovery.py --benchmark-only   (groups recovery.replay, recovery.restore)
"""

from __future__ import annotations

import asyncio
import gc
import os
import pickle
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [_HERE, os.path.join(_HERE, "..")]

import bench_book as bb

from lowlat._book import COMMAND_DTYPE, Book, Engine
from lowlat.services.journal import FileJournal, replay_into
from lowlat.services.snapshot import (
    SnapshotStore,
    decode_snapshot,
    dump_engine,
    restore_engine,
)

N_RESTING = int(os.environ.get("LOWLAT_BENCH_RESTING", "1000000"))
RECORD = 4096
PEER_PREFIX = 200_000  # the pure-Python engine on a prefix (rate per command is what is compared)


def write_journal(path: Path, cmds: np.ndarray) -> FileJournal:
    j = FileJournal(path)
    for s in range(0, len(cmds), RECORD):
        j.append_sync(cmds[s:s + RECORD])
    return j


def replay_lowlat(j: FileJournal) -> tuple[float, int, Engine]:
    e = Engine()
    e.add_book("X", bb.LO, bb.N_TICKS, bb.MAX_ORDERS, event_capacity=1 << 16)
    ev = bb._events_out()
    t0 = time.perf_counter()
    _, _, n = asyncio.run(replay_into(e, j, 0, events=ev))
    return time.perf_counter() - t0, n, e


def replay_peer(cmds: np.ndarray) -> float:
    calls = bb.python_calls(bb.SortedDictBook(), cmds)
    t0 = time.perf_counter()
    for f, a in calls:
        f(*a)
    return time.perf_counter() - t0


def resting_engine(n: int) -> Engine:
    """One book with ``n`` resting orders on 2 x 30,000 levels (nothing crosses)."""
    e = Engine()
    b = e.add_book("X", bb.LO, bb.N_TICKS, max(n, 1), event_capacity=1 << 16)
    c = np.zeros(n, COMMAND_DTYPE)
    k = np.arange(n)
    c["oid"] = k + 1
    c["side"] = k % 2
    c["price"] = np.where(c["side"] == 0, bb.MID - 1 - (k // 2) % 30_000, bb.MID + 1 + (k // 2) % 30_000)
    c["qty"] = 1 + k % 50
    c["account"] = k % 97
    c["stp"] = -1
    ev = bb._events_out()
    done = 0
    while done < n:
        d, _ = b.apply_batch(c[done:], ev)
        done += d
    return e


def restore_lowlat(path: Path) -> tuple[float, Engine]:
    t0 = time.perf_counter()
    snap = decode_snapshot(path.read_bytes())
    e = restore_engine(snap, event_capacity=1 << 16)
    return time.perf_counter() - t0, e


def peer_book(n: int) -> bb.SortedDictBook:
    p = bb.SortedDictBook()
    for i in range(n):
        side = i % 2
        price = bb.MID - 1 - (i // 2) % 30_000 if side == 0 else bb.MID + 1 + (i // 2) % 30_000
        p.submit(i + 1, side, price, 1 + i % 50, i % 97)
    return p


def report() -> None:
    gc.disable()
    cmds = bb.workload("touch")
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        j = write_journal(d / "journal.llj", cmds)
        size = (d / "journal.llj").stat().st_size
        best = min(replay_lowlat(j)[0] for _ in range(5))
        _, n, e_rep = replay_lowlat(j)
        _, _, ref_book = bb.run_batch(cmds)  # uninterrupted run: the replay must land on the same book
        same = np.array_equal(dump_engine(e_rep).books[0].orders, dump_engine_book(ref_book))
        peer = min(replay_peer(cmds[:PEER_PREFIX]) for _ in range(2))
        print(f"replay: {n:,} commands, journal {size / 1e6:.1f} MB, best {best * 1e3:.1f} ms = "
              f"{n / best / 1e6:.2f} M commands/s (same book as the uninterrupted run: {same}); "
              f"pure-Python peer {PEER_PREFIX / peer / 1e6:.3f} M/s -> ratio {(n / best) / (PEER_PREFIX / peer):.0f}x")

        e = resting_engine(N_RESTING)
        store = SnapshotStore(d / "snaps")
        t0 = time.perf_counter()
        path = store.save(dump_engine(e, journal_pos=1))
        w = time.perf_counter() - t0
        ssize = path.stat().st_size
        r_best = min(restore_lowlat(path)[0] for _ in range(5))
        _, e2 = restore_lowlat(path)
        same = dump_engine(e2).books[0].same_as(dump_engine(e).books[0])
        del e2
        pb = peer_book(N_RESTING)
        blob = pickle.dumps(pb, protocol=pickle.HIGHEST_PROTOCOL)
        (d / "peer.pkl").write_bytes(blob)
        p_best = 1e9
        for _ in range(2):
            t0 = time.perf_counter()
            pickle.loads((d / "peer.pkl").read_bytes())
            p_best = min(p_best, time.perf_counter() - t0)
        print(f"restore: {N_RESTING:,} resting orders, snapshot {ssize / 1e6:.1f} MB written in {w:.3f} s; "
              f"read+decode+restore best {r_best:.3f} s (identical book: {same}); pickle peer ({len(blob) / 1e6:.1f} "
              f"MB) best {p_best:.3f} s -> ratio {p_best / r_best:.1f}x; restore path: "
              f"{'Book.restore (compiled)' if hasattr(Book, 'restore') else 'apply_batch (public API)'}")


def dump_engine_book(book: Book) -> np.ndarray:
    e_like = type("E", (), {"books": [book]})()
    return dump_engine(e_like).books[0].orders


# ------------------------------------------------------------------------------ pytest-benchmark
try:
    import pytest
except ImportError:  # pragma: no cover
    pytest = None

if pytest is not None:

    @pytest.fixture(scope="module")
    def journal(tmp_path_factory):
        return write_journal(tmp_path_factory.mktemp("j") / "journal.llj", bb.workload("touch"))

    @pytest.mark.benchmark(group="recovery.replay", disable_gc=True)
    def test_replay_lowlat_file_journal(benchmark, journal):
        benchmark.extra_info["commands"] = len(bb.workload("touch"))
        benchmark.pedantic(lambda: replay_lowlat(journal), rounds=3, warmup_rounds=1)

    @pytest.mark.benchmark(group="recovery.replay", disable_gc=True)
    def test_replay_python_peer_prefix(benchmark):
        benchmark.extra_info["commands"] = PEER_PREFIX
        benchmark.pedantic(lambda: replay_peer(bb.workload("touch")[:PEER_PREFIX]), rounds=1)

    @pytest.fixture(scope="module")
    def snap_path(tmp_path_factory):
        return SnapshotStore(tmp_path_factory.mktemp("s")).save(dump_engine(resting_engine(N_RESTING), 1))

    @pytest.mark.benchmark(group="recovery.restore", disable_gc=True)
    def test_restore_lowlat_snapshot(benchmark, snap_path):
        benchmark.extra_info["orders"] = N_RESTING
        benchmark.pedantic(lambda: restore_lowlat(snap_path), rounds=3, warmup_rounds=1)

    @pytest.mark.benchmark(group="recovery.restore", disable_gc=True)
    def test_restore_pickle_peer(benchmark, tmp_path):
        p = tmp_path / "peer.pkl"
        p.write_bytes(pickle.dumps(peer_book(N_RESTING), protocol=pickle.HIGHEST_PROTOCOL))
        benchmark.extra_info["orders"] = N_RESTING
        benchmark.pedantic(lambda: pickle.loads(p.read_bytes()), rounds=2)


if __name__ == "__main__":
    report()
