"""Book snapshots (lowlat.services.snapshot): compact format round trip, damage detection, and restore +
continue == uninterrupted run (same resting orders in the same priority order, same events afterwards)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lowlat import COMMAND_DTYPE, EVENT_DTYPE, DecodeError, Engine
from lowlat.services.snapshot import (
    SnapshotStore,
    decode_snapshot,
    dump_engine,
    encode_snapshot,
    restore_engine,
)

LO, N, CAP = 1000, 64, 4096


def make_engine() -> Engine:
    e = Engine()
    e.add_book("AAPL", LO, N, CAP, 0.01)
    e.add_book("MSFT", LO, N, CAP, 0.01, default_stp=1)
    return e


def random_commands(rng: np.random.Generator, n: int, first_oid: int = 1, trades: bool = True) -> np.ndarray:
    c = np.zeros(n, COMMAND_DTYPE)
    c["oid"] = np.arange(first_oid, first_oid + n)
    c["book"] = rng.integers(0, 2, n)
    c["side"] = rng.integers(0, 2, n)
    c["qty"] = rng.integers(1, 20, n)
    c["account"] = rng.integers(1, 5, n)
    c["stp"] = -1
    if trades:
        c["price"] = LO + N // 2 + rng.integers(-6, 7, n)
    else:  # bids below asks: nothing crosses
        c["price"] = np.where(c["side"] == 0, LO + rng.integers(0, N // 2, n), LO + N // 2 + rng.integers(0, N // 2, n))
    op = rng.random(n)
    cancel = op < 0.2
    c["op"][cancel] = 1
    c["oid"][cancel] = rng.integers(max(1, first_oid - 200), first_oid + n, cancel.sum())
    modify = (op >= 0.2) & (op < 0.3) & trades  # a modify may move an order across the spread
    c["op"][modify] = 2
    c["oid"][modify] = rng.integers(max(1, first_oid - 200), first_oid + n, modify.sum())
    ioc = (op >= 0.3) & (op < 0.35)
    c["tif"][ioc] = 1
    post = (op >= 0.35) & (op < 0.4)
    c["post_only"][post] = 1
    stp = (op >= 0.4) & (op < 0.45)
    c["stp"][stp] = 2
    return c


def apply_all(e: Engine, cmds: np.ndarray) -> np.ndarray:
    ev = np.zeros(1 << 16, EVENT_DTYPE)
    out, done = [], 0
    while done < len(cmds):
        k, n_ev = e.apply_batch(cmds[done:], ev)
        out.append(ev[:n_ev].copy())
        done += k
    return np.concatenate(out) if out else np.zeros(0, EVENT_DTYPE)


@pytest.mark.parametrize("trades", [False, True])
def test_restore_then_continue_equals_uninterrupted_run(trades):
    rng = np.random.default_rng(7)
    head, tail = random_commands(rng, 3000, 1, trades), random_commands(rng, 3000, 3001, trades)
    ref = make_engine()
    apply_all(ref, head)
    snap = decode_snapshot(encode_snapshot(dump_engine(ref, journal_pos=42, meta={"md_seq": {"AAPL": 5}})))
    assert snap.journal_pos == 42 and snap.meta == {"md_seq": {"AAPL": 5}}
    got = restore_engine(snap)
    for a, b in zip(dump_engine(ref).books, dump_engine(got).books):
        assert a.same_as(b)
    assert sum(len(b.orders) for b in snap.books) > 100
    ev_ref, ev_got = apply_all(ref, tail), apply_all(got, tail)
    assert len(ev_ref) > 1000
    assert np.array_equal(ev_ref, ev_got)  # every event field, seq and trade ids included
    for a, b in zip(dump_engine(ref).books, dump_engine(got).books):
        assert a.same_as(b)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 400))
def test_snapshot_bytes_round_trip(seed, n):
    rng = np.random.default_rng(seed)
    e = make_engine()
    apply_all(e, random_commands(rng, n, 1, trades=True))
    s = dump_engine(e, journal_pos=n)
    data = encode_snapshot(s)
    back = decode_snapshot(data)
    assert back.journal_pos == n
    assert all(a.same_as(b) for a, b in zip(s.books, back.books))
    assert encode_snapshot(back) == data


def test_damaged_snapshot_raises_decode_error():
    rng = np.random.default_rng(1)
    e = make_engine()
    apply_all(e, random_commands(rng, 500, 1, trades=False))
    data = encode_snapshot(dump_engine(e))
    for cut in (0, 5, 20, len(data) // 2, len(data) - 1):
        with pytest.raises(DecodeError):
            decode_snapshot(data[:cut])
    for pos in range(0, len(data), max(1, len(data) // 97)):
        bad = bytearray(data)
        bad[pos] ^= 0x5A
        with pytest.raises(DecodeError):
            decode_snapshot(bytes(bad))
    with pytest.raises(DecodeError, match="magic"):
        import struct
        import zlib

        body = b"NOTSNAP!" + data[8:-4]
        decode_snapshot(body + struct.pack("<I", zlib.crc32(body)))


def test_restore_rejects_mismatched_or_used_book():
    e = make_engine()
    apply_all(e, random_commands(np.random.default_rng(3), 200, 1, trades=False))
    snap = dump_engine(e)
    other = Engine()
    other.add_book("AAPL", LO, N + 1, CAP)
    other.add_book("MSFT", LO, N, CAP)
    with pytest.raises(ValueError, match="band"):
        restore_engine(snap, other)
    used = make_engine()
    used["AAPL"].submit(1, 0, LO, 1)
    with pytest.raises(ValueError, match="empty"):
        restore_engine(snap, used)


def test_store_keeps_newest_and_skips_damaged(tmp_path):
    store = SnapshotStore(tmp_path, keep=2)
    assert store.latest() is None
    e = make_engine()
    rng = np.random.default_rng(5)
    for pos in (10, 20, 30):
        apply_all(e, random_commands(rng, 100, pos * 100, trades=False))
        store.save(dump_engine(e, journal_pos=pos))
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 2 and files[-1].endswith("30.llsnap")
    assert store.latest().journal_pos == 30
    newest = tmp_path / files[-1]
    newest.write_bytes(newest.read_bytes()[:-10])  # torn write
    assert store.latest().journal_pos == 20


def test_book_restore_rejects_bad_rows_and_stays_empty():
    from lowlat._book import RESTING_DTYPE, Book

    src = make_engine()
    apply_all(src, random_commands(np.random.default_rng(9), 400, 1, trades=False))
    rows = src["AAPL"].resting_orders()
    assert rows.dtype == RESTING_DTYPE and len(rows) > 10
    cases = {"side": ("side", 2), "price": ("price", LO + N), "qty": ("qty", 0), "stp": ("stp", 9),
             "dup": ("oid", int(rows["oid"][0]))}
    for name, (field, value) in cases.items():
        bad = rows.copy()
        bad[len(bad) // 2][field] = value
        b = Book(LO, N, CAP)
        with pytest.raises(ValueError):
            b.restore(bad.view(np.uint8), 5, 5)
        assert (b.n_orders, b.seq, b.trade_id, b.best_bid(), b.best_ask()) == (0, 0, 0, None, None), name
        b.restore(rows.view(np.uint8), 7, 3)  # still usable after the failed attempt
        assert np.array_equal(b.resting_orders(), rows) and (b.seq, b.trade_id) == (7, 3)
    crossed = rows.copy()
    crossed["price"][crossed["side"] == 1] = LO  # asks at the bottom of the band: below the bids
    with pytest.raises(ValueError, match="cross"):
        Book(LO, N, CAP).restore(crossed.view(np.uint8), 0, 0)
    used = Book(LO, N, CAP)
    used.submit(1, 0, LO, 1)
    with pytest.raises(ValueError, match="empty"):
        used.restore(rows.view(np.uint8), 0, 0)
    with pytest.raises(ValueError, match="whole number"):
        Book(LO, N, CAP).restore(rows.view(np.uint8)[:-1], 0, 0)
    with pytest.raises(ValueError, match="fit"):
        Book(LO, N, 2).restore(rows.view(np.uint8), 0, 0)
