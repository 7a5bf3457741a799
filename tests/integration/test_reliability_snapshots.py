"""Snapshots whose CRC is valid but whose contents are not (a bug, a hostile writer, another configuration).

They used to fail recovery with ``RecursionError`` (deeply nested meta), ``AttributeError`` (meta not an object),
``KeyError`` (a book whose symbol was removed from ``symbols``) or ``ValueError`` (band changed), and
``run_matcher`` retried forever.  Now bad contents are a ``DecodeError`` and recovery falls back to the previous
snapshot plus the journal (the result equals the state before the crash); a snapshot made for other books is a
``SnapshotConfigError`` and the durable matcher process exits 2 with one line instead of retrying.
"""

from __future__ import annotations

import asyncio
import json
import struct
import zlib

import numpy as np
import pytest
from _reliability_util import Recorder, durable

from lowlat import _core
from lowlat.errors import DecodeError
from lowlat.services import ServiceConfig
from lowlat.services.journal import DurableMatcher, FileJournal, SnapshotConfigError
from lowlat.services.snapshot import (
    _HEAD,
    MAGIC,
    SnapshotStore,
    decode_snapshot,
    dump_engine,
    encode_snapshot,
)
from lowlat.transport import Message

SYMS = ("AAPL", "MSFT")


def batches(n_batches: int, size: int = 40) -> list[list[Message]]:
    rng = np.random.default_rng(5)
    out, oid = [], 1
    for _ in range(n_batches):
        b = []
        for _ in range(size):
            sym = SYMS[int(rng.integers(0, 2))]
            price = round(100.0 + int(rng.integers(-4, 5)) * 0.01, 2)
            buf = _core.encode_order(oid, sym, price, int(rng.integers(1, 8)), int(rng.integers(0, 2)), 1,
                                     account=int(rng.integers(1, 4)))
            b.append(Message(f"orders.match.{sym}", buf, None, None, None))
            oid += 1
        out.append(b)
    return out


def with_meta(data: bytes, meta: bytes) -> bytes:
    """``data`` (an encoded snapshot) with its meta blob replaced and a valid CRC."""
    _, n_books, pos, meta_len = _HEAD.unpack_from(data, 0)
    body = _HEAD.pack(MAGIC, n_books, pos, len(meta)) + meta + data[_HEAD.size + meta_len:-4]
    return body + struct.pack("<I", zlib.crc32(body))


def duplicate_rows(data: bytes) -> bytes:
    """Every resting order of the first book replaced by a copy of its first one (same id, valid CRC)."""
    snap = decode_snapshot(data)
    rows = snap.books[0].orders.copy()
    rows[:] = rows[0]
    snap.books[0].orders = rows
    return encode_snapshot(snap)


def matcher(cfg: ServiceConfig, tmp_path) -> DurableMatcher:
    m = DurableMatcher(cfg, journal=FileJournal(tmp_path / "j.llj"), store=SnapshotStore(tmp_path / "s", keep=5),
                       snapshot_every=0)
    m.transport = Recorder()  # type: ignore[assignment]
    return m


@pytest.mark.parametrize("damage", ["nested_meta", "meta_list", "meta_types", "duplicate_orders"])
def test_bad_newest_snapshot_falls_back_to_previous_plus_journal(tmp_path, damage):
    cfg = ServiceConfig(symbols=SYMS, snapshot_interval_s=0)
    bs = batches(12)

    async def run() -> None:
        a = matcher(cfg, tmp_path)
        await a.recover()
        a.journal = a
        for b in bs[:6]:
            await a.handle(b[0].subject, b)
        a.save_snapshot()
        first = max(a.store._files())
        for b in bs[6:]:
            await a.handle(b[0].subject, b)
        a.save_snapshot()
        want = dump_engine(a.engine)
        newest = max(a.store._files())
        assert newest != first
        data = newest.read_bytes()
        bad = {"nested_meta": lambda: with_meta(data, b"[" * 200_000 + b"]" * 200_000),
               "meta_list": lambda: with_meta(data, b"[1, 2]"),
               "meta_types": lambda: with_meta(data, json.dumps({"md_seq": {"AAPL": "x"}, "cum": []}).encode()),
               "duplicate_orders": lambda: duplicate_rows(data)}[damage]()
        newest.write_bytes(bad)
        b_ = matcher(cfg, tmp_path)
        info = await b_.recover()
        assert info["snapshot_pos"] == decode_snapshot(first.read_bytes()).journal_pos, info
        assert info["replayed_commands"] == 6 * 40, info
        assert all(x.same_as(y) for x, y in zip(dump_engine(b_.engine).books, want.books))

    asyncio.run(run())


def test_snapshot_meta_decode_errors_are_decode_errors():
    from lowlat import _book
    from lowlat.services.snapshot import dump_engine as dump

    e = _book.Engine()
    e.add_book("AAPL", 9000, 2001, 16, 0.01)
    data = encode_snapshot(dump(e))
    for meta in (b"[" * 100_000 + b"]" * 100_000, b"[]", b'"x"'):
        with pytest.raises(DecodeError):
            decode_snapshot(with_meta(data, meta))


def test_snapshot_for_other_books_is_a_config_error(tmp_path):
    async def run() -> None:
        a = matcher(ServiceConfig(symbols=SYMS, snapshot_interval_s=0), tmp_path)
        await a.recover()
        a.journal = a
        for b in batches(2):
            await a.handle(b[0].subject, b)
        a.save_snapshot()
        with pytest.raises(SnapshotConfigError, match="MSFT"):  # MSFT removed from the symbols
            await matcher(ServiceConfig(symbols=("AAPL",), snapshot_interval_s=0), tmp_path).recover()
        with pytest.raises(SnapshotConfigError, match="band"):  # band changed
            await matcher(ServiceConfig(symbols=SYMS, band_bps=500, snapshot_interval_s=0), tmp_path).recover()

    asyncio.run(run())


@pytest.mark.integration
@pytest.mark.nats
@pytest.mark.timeout(90)
def test_durable_matcher_process_with_foreign_snapshot_exits_2_with_one_line(nats_server_own, tmp_path):
    from lowlat import _book

    # a server of its own: the durable streams capture orders.in, and on the shared server they would answer
    # every later test's request there with a JetStream ack
    url = nats_server_own.url
    s = durable("streams", "--transport", url)
    assert s.wait(60) == 0, s.output[-2000:]
    e = _book.Engine()
    e.add_book("ZZZZ", 9000, 2001, 100_000, 0.01)  # a book this matcher is not configured for
    store = SnapshotStore(tmp_path / "snapshots-rel")
    store.save(dump_engine(e, 1))
    p = durable("matcher", "--transport", url, "--symbols", "AAPL", "--workdir", str(tmp_path), "--shard", "rel")
    rc = p.wait(60)
    assert rc == 2, p.output[-3000:]
    assert "Traceback" not in p.output, p.output[-3000:]
    errors = [x for x in p.output.splitlines() if '"ERROR"' in x]
    assert len(errors) == 1 and "ZZZZ" in errors[0] and "retrying" not in p.output, p.output[-3000:]
