"""Matching-service input journal (write-ahead) + periodic snapshots, and restore + replay of the tail.

The matcher turns each intake batch into ``COMMAND_DTYPE`` rows; a :class:`DurableMatcher` appends those rows
to a journal *before* applying them (the ``MatcherService.journal`` hook), and every ``snapshot_every``
commands it writes a book snapshot (``lowlat.services.snapshot``) that records the journal position.  A
restarted instance loads the newest snapshot and replays the journal records after it: books, event sequence
numbers, trade ids and the market-data sequence come back exactly as in an uninterrupted run.

Journal record (lowlat's compact format, one per intake batch; rows are raw ``COMMAND_DTYPE`` bytes, 48 B each)::

    b"LLJ1"  u32 n_rows  u64 input_pos  u32 crc32(rows)  u32 0  rows

``input_pos`` is the intake position of the batch's last message (a JetStream stream sequence) or 0.

Backends, same async interface (``append(rows, input_pos) -> pos``, ``async for pos, input_pos, rows in
replay(after)``):

- :class:`FileJournal`: an append-only local file (``[u32 len][record]`` frames; a torn last frame is cut on
  open; ``fsync`` per append optional).  Replays at memory speed.
- :class:`LogJournal` on a transport's durable log (``Capability.DURABLE``): :class:`JetStreamJournal` (a
  file-backed stream; the message id makes a retried append idempotent) and :class:`KafkaJournal` (partition 0
  of a topic) are its names per broker.
"""

from __future__ import annotations

import asyncio
import logging
import os
import struct
import time
import zlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .. import _book
from ..enums import Side, StpMode
from ..errors import DecodeError, LowlatError, TransportError
from ..transport.base import Capability
from ..transport.durable import log_replay
from .config import ServiceConfig
from .matcher import ExecStatus, MatcherService
from .snapshot import Snapshot, SnapshotStore, dump_engine, restore_engine

__all__ = ["DurableMatcher", "FileJournal", "JetStreamJournal", "KafkaJournal", "LogJournal", "SnapshotConfigError", "decode_record", "encode_record",
           "replay_into"]

log = logging.getLogger("lowlat.services.journal")

MAGIC = b"LLJ1"
_REC = struct.Struct("<4sIQII")
_ROW = _book.COMMAND_DTYPE.itemsize


def encode_record(rows: np.ndarray, input_pos: int = 0) -> bytes:
    """One journal record for ``rows`` (``COMMAND_DTYPE``).  Cost: one copy of the rows (48 B each)."""
    data = np.ascontiguousarray(rows, _book.COMMAND_DTYPE).tobytes()
    return _REC.pack(MAGIC, len(rows), input_pos, zlib.crc32(data), 0) + data


def decode_record(buf: Any) -> tuple[int, np.ndarray]:
    """``(input_pos, rows)`` of a record; rows are a zero-copy view.  Raises ``DecodeError`` on damage."""
    mv = memoryview(buf).cast("B")
    if len(mv) < _REC.size:
        raise DecodeError("journal record: truncated header")
    magic, n, pos, crc, _ = _REC.unpack_from(mv, 0)
    if magic != MAGIC:
        raise DecodeError("journal record: bad magic")
    if len(mv) != _REC.size + n * _ROW:
        raise DecodeError("journal record: length does not match its row count")
    body = mv[_REC.size:]
    if zlib.crc32(body) != crc:
        raise DecodeError("journal record: CRC mismatch")
    return pos, np.frombuffer(body, _book.COMMAND_DTYPE)


class FileJournal:
    """Append-only local journal file.  Positions are record ordinals 1, 2, 3, ...

    Parameters
    ----------
    path : the file (created if absent).  On open, a torn trailing frame (crash mid-write) is truncated.
    fsync : fsync after every append (durable against power loss; ~ms per append on most disks).
    """

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = False) -> None:
        self.path = Path(path)
        self.fsync = fsync
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.touch(exist_ok=True)
        good, self.last_pos, self.last_input_pos = self._scan()
        if good != self.path.stat().st_size:
            log.warning("journal: cutting a torn tail", extra={"path": str(self.path), "at": good})
            os.truncate(self.path, good)
        self._f = open(self.path, "ab", buffering=0)  # noqa: SIM115 - held open for appends until close()

    def _frames(self, data: memoryview) -> Iterator[tuple[int, int, memoryview]]:
        off, pos = 0, 0
        while off + 4 <= len(data):
            (ln,) = struct.unpack_from("<I", data, off)
            if off + 4 + ln > len(data):
                return
            pos += 1
            yield pos, off + 4 + ln, data[off + 4:off + 4 + ln]
            off += 4 + ln

    def _scan(self) -> tuple[int, int, int]:
        data = memoryview(self.path.read_bytes())
        good, last, ipos = 0, 0, 0
        for pos, end, rec in self._frames(data):
            try:
                ipos = decode_record(rec)[0]
            except DecodeError:
                break
            good, last = end, pos
        return good, last, ipos

    async def append(self, rows: np.ndarray, input_pos: int = 0) -> int:
        return self.append_sync(rows, input_pos)

    def append_sync(self, rows: np.ndarray, input_pos: int = 0) -> int:
        rec = encode_record(rows, input_pos)
        self._f.write(struct.pack("<I", len(rec)) + rec)
        if self.fsync:
            os.fsync(self._f.fileno())
        self.last_pos += 1
        if input_pos:
            self.last_input_pos = input_pos
        return self.last_pos

    def replay_sync(self, after: int = 0) -> Iterator[tuple[int, int, np.ndarray]]:
        """Records with position > ``after``: ``(pos, input_pos, rows)``; stops at the first damaged one."""
        data = memoryview(self.path.read_bytes())
        for pos, _end, rec in self._frames(data):
            if pos <= after:
                continue
            try:
                ipos, rows = decode_record(rec)
            except DecodeError:
                return
            yield pos, ipos, rows

    async def replay(self, after: int = 0) -> AsyncIterator[tuple[int, int, np.ndarray]]:
        for item in self.replay_sync(after):
            yield item

    async def close(self) -> None:
        self._f.close()


class LogJournal:
    """Journal on a transport's durable log (``lowlat.transport.durable.DurableLog``: JetStream, Kafka).

    Positions are the log's (stream sequences; Kafka offsets + 1).  ``append`` retries through a broker outage
    with the same message id (``<name>:<input_pos>`` when the batch has an intake position), so where the broker
    deduplicates (JetStream) a retry is not stored twice; where it cannot (Kafka) ``replay_into`` skips a record
    whose intake position is not past the previous one's.
    """

    def __init__(self, transport: Any, name: str, *, replicas: int = 1, retry_s: float = 30.0,
                 duplicate_window: float = 600.0) -> None:
        if Capability.DURABLE not in getattr(transport, "capabilities", Capability.NONE):
            raise TypeError(f"{type(transport).__name__} has no durable log (Capability.DURABLE)")
        self.t = transport
        self.name = name
        self.subject = f"lowlat.journal.{name}"
        self.replicas = replicas
        self.retry_s = retry_s
        self.duplicate_window = duplicate_window
        self.last_pos = 0
        self.last_input_pos = 0
        self._n = 0

    async def ensure(self) -> None:
        """Create the log if needed and read its last position."""
        await self.t.log_ensure(self.name, [self.subject], replicas=self.replicas,
                                duplicate_window=self.duplicate_window)
        self.last_pos = await self.t.log_end(self.name)
        if self.last_pos:
            self.last_input_pos = decode_record((await self.t.log_get(self.name, self.last_pos)).data)[0]

    async def append(self, rows: np.ndarray, input_pos: int = 0) -> int:
        rec = encode_record(rows, input_pos)
        self._n += 1
        mid = f"{self.name}:{input_pos}" if input_pos else f"{self.name}:{os.getpid()}:{time.time_ns()}:{self._n}"
        deadline = time.monotonic() + self.retry_s
        while True:
            try:
                ack = await self.t.log_append(self.name, self.subject, rec, msg_id=mid, timeout=2.0)
                break
            except TransportError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)
        self.last_pos = ack.pos
        if input_pos:
            self.last_input_pos = input_pos
        return ack.pos

    async def replay(self, after: int = 0, batch: int = 256) -> AsyncIterator[tuple[int, int, np.ndarray]]:
        async for r in log_replay(self.t, self.name, after, batch=batch):
            ipos, rows = decode_record(r.msg.data)
            yield r.pos, ipos, rows

    async def close(self) -> None:
        pass


class JetStreamJournal(LogJournal):
    """``LogJournal`` on a NATS transport's JetStream (the name the durable matcher uses)."""


class KafkaJournal(LogJournal):
    """``LogJournal`` on partition 0 of Kafka topic ``topic``."""

    def __init__(self, transport: Any, topic: str, *, retry_s: float = 30.0) -> None:
        super().__init__(transport, topic, retry_s=retry_s)


async def replay_into(engine: Any, journal: Any, after: int = 0, *, on_events: Any = None,
                      events: np.ndarray | None = None) -> tuple[int, int, int]:
    """Apply every journal record after ``after`` to ``engine``; ``on_events(ev)`` sees each chunk of events.

    Returns ``(last_pos, last_input_pos, n_commands)``.  Cost: one ``apply_batch`` per record (nogil) plus the
    record decode (a CRC over the rows).
    """
    ev = events if events is not None else np.zeros(1 << 16, _book.EVENT_DTYPE)
    last, last_in, n = after, 0, 0
    async for pos, ipos, rows in journal.replay(after):
        last = pos
        if ipos and last_in and ipos <= last_in:
            continue  # the same intake batch journaled twice (a retried append): apply it once
        done = 0
        while done < len(rows):
            k, n_ev = engine.apply_batch(rows[done:], ev)
            if on_events is not None:
                on_events(ev[:n_ev])
            done += k
        n += len(rows)
        if ipos:
            last_in = ipos
    return last, last_in, n


class SnapshotConfigError(LowlatError, ValueError):
    """A snapshot does not fit the configured books (a symbol removed from ``symbols``, band, capacity or tick
    size changed): restoring it would corrupt state, and falling back does not help; fix the configuration or
    move the snapshot directory away."""


def _int_map(v: Any, what: str) -> dict[str, int]:
    if not isinstance(v, dict) or not all(isinstance(k, str) and type(x) is int and x >= 0 for k, x in v.items()):
        raise DecodeError(f"snapshot meta: {what} is not a map of non-negative integers")
    return v


def _check_meta(meta: dict[str, Any], symbols: Any) -> None:
    """Raise ``DecodeError`` unless ``meta`` has the types ``DurableMatcher.snapshot`` writes."""
    pos = meta.get("input_pos", 0)
    if type(pos) is not int or pos < 0:
        raise DecodeError("snapshot meta: input_pos is not a non-negative integer")
    _int_map(meta.get("md_seq", {}), "md_seq")
    _int_map(meta.get("trades", {}), "trades")
    cum = meta.get("cum", {})
    if not isinstance(cum, dict):
        raise DecodeError("snapshot meta: cum is not a map")
    for sym, m in cum.items():
        _int_map(m, f"cum[{sym!r}]")


class DurableMatcher(MatcherService):
    """A ``MatcherService`` with a write-ahead journal and periodic snapshots; restores itself on start.

    Parameters
    ----------
    journal : ``FileJournal`` or ``JetStreamJournal`` (``ensure()``-d by ``start``).
    store : ``SnapshotStore`` (or None: replay the whole journal on start).
    snapshot_every : take a snapshot after this many journaled commands (0 = only at stop).
    republish : on restart, publish the outputs of the replayed tail again (right when outputs go to a stream
        that drops duplicates by ``Nats-Msg-Id``; with core pub/sub they were sent before the crash).
    """

    name = "matcher"

    def __init__(self, cfg: ServiceConfig, *, journal: Any, store: SnapshotStore | None = None,
                 snapshot_every: int = 100_000, republish: bool = False, **kw: Any) -> None:
        super().__init__(cfg, **kw)
        self._jr = journal
        self.store = store
        self.snapshot_every = snapshot_every
        self.republish = republish
        self._since_snap = 0
        self.recovered: dict[str, Any] = {}

    # the MatcherService hook: called with the decoded rows before they are applied
    async def append(self, rows: np.ndarray, input_pos: int) -> int:
        pos = await self._jr.append(rows, input_pos)
        self._since_snap += len(rows)
        return pos

    def snapshot(self) -> Snapshot:
        # the read side's state of resting orders is in the book except what was filled so far (cum qty):
        # keep that for partially filled ones so maker reports after a restart carry the right cum
        cum: dict[str, dict[str, int]] = {}
        for s, rm in self.read.items():
            mine = cum[s] = {}
            for oid in self.engine[s].resting_orders()["oid"].tolist():
                st = rm.orders.get(oid)
                if st is not None and st[4]:
                    mine[str(oid)] = st[4]
        meta = {"md_seq": {s: rm.md_seq for s, rm in self.read.items()},
                "trades": {s: rm.trades for s, rm in self.read.items()},
                "cum": cum, "input_pos": self._jr.last_input_pos}
        return dump_engine(self.engine, self._jr.last_pos, meta)

    def save_snapshot(self) -> None:
        if self.store is not None:
            t0 = time.perf_counter()
            self.store.save(self.snapshot())
            self._since_snap = 0
            self.metrics.inc("book_snapshots")
            self.metrics.record("snapshot", int((time.perf_counter() - t0) * 1e9))

    async def recover(self) -> dict[str, Any]:
        """Load the newest snapshot and replay the journal tail into this (fresh) matcher."""
        t0 = time.perf_counter()
        ensure = getattr(self._jr, "ensure", None)
        if ensure is not None:
            await ensure()
        snap = self._usable_snapshot()
        after, restored = 0, 0
        if snap is not None:
            restore_engine(snap, self.engine)
            after = snap.journal_pos
            restored = sum(len(b.orders) for b in snap.books)
            self.input_pos = snap.meta.get("input_pos", 0)
            for sym, rm in self.read.items():
                book = self.engine[sym]
                for side in (Side.BUY, Side.SELL):
                    lv = book.levels(side)
                    idx = np.flatnonzero(lv["count"])
                    rm.levels[side].update({int(book.lo + i): (int(lv["qty"][i]), int(lv["count"][i]))
                                            for i in idx})
                rm.md_seq = snap.meta.get("md_seq", {}).get(sym, 0)
                rm.trades = snap.meta.get("trades", {}).get(sym, 0)
                cum = snap.meta.get("cum", {}).get(sym, {})
                for oid, acct, px, qty, side in zip(*(book.resting_orders()[f].tolist()
                                                      for f in ("oid", "account", "price", "qty", "side"))):
                    c = cum.get(str(oid), 0)
                    rm.order(oid, [ExecStatus.PARTIALLY_FILLED if c else ExecStatus.NEW, side, px, qty, c, acct, 0])
        t1 = time.perf_counter()
        now = time.time_ns()
        out: tuple[dict[str, list[bytes]], dict[str, list[bytes]], dict[str, list[bytes]]] = ({}, {}, {})

        def on_events(ev: np.ndarray) -> None:
            self._events_to_messages(ev, now, *out)

        last, last_in, n = await replay_into(self.engine, self._jr, after, on_events=on_events)
        if last_in:
            self.input_pos = last_in
        if self.republish and self.transport is not None:
            await self._publish_outputs(*out)
        self.recovered = {"snapshot_pos": after, "restored_orders": restored, "replayed_commands": n,
                          "journal_pos": last, "input_pos": self.input_pos,
                          "restore_s": round(t1 - t0, 6), "replay_s": round(time.perf_counter() - t1, 6)}
        log.info("matcher recovered", extra=self.recovered)
        return self.recovered

    def _usable_snapshot(self) -> Snapshot | None:
        """The newest snapshot that fits the configuration and restores cleanly (tried on scratch books first,
        so a bad one never half-loads the live engine); older ones are the fallback, then the whole journal.
        Raises ``SnapshotConfigError`` when a snapshot was made for other books."""
        if self.store is None:
            return None
        for snap in self.store.candidates():
            try:
                self._check_fits(snap)
                _check_meta(snap.meta, self._index)
                scratch = _book.Engine()
                for b in self.engine.books:
                    scratch.add_book(str(b.symbol), b.lo, b.n_ticks, b.max_orders, b.tick_size,  # engine books have one
                                     StpMode(b.default_stp), 4096)
                restore_engine(snap, scratch)
                return snap
            except SnapshotConfigError:
                raise
            except (LowlatError, ValueError, KeyError, TypeError, OverflowError, MemoryError) as e:
                log.warning("snapshot unusable, falling back to the previous one",
                            extra={"journal_pos": snap.journal_pos, "error": f"{type(e).__name__}: {e}"[:300]})
        return None

    def _check_fits(self, snap: Snapshot) -> None:
        for st in snap.books:
            if st.symbol not in self._index:
                raise SnapshotConfigError(
                    f"snapshot at journal position {snap.journal_pos} has book {st.symbol!r}, which is not in the "
                    f"configured symbols {sorted(self._index)}")
            b = self.engine[st.symbol]
            if (b.lo, b.n_ticks, b.max_orders, b.tick_size) != (st.lo, st.n_ticks, st.max_orders, st.tick_size):
                raise SnapshotConfigError(
                    f"snapshot at journal position {snap.journal_pos}: book {st.symbol!r} was band/capacity/tick "
                    f"({st.lo}, {st.n_ticks}, {st.max_orders}, {st.tick_size}), configured "
                    f"({b.lo}, {b.n_ticks}, {b.max_orders}, {b.tick_size})")

    async def _publish_outputs(self, reports: dict[str, list[bytes]], l2: dict[str, list[bytes]],
                               trades: dict[str, list[bytes]]) -> None:
        t = self.transport
        assert t is not None
        cfg = self.cfg
        for sym, msgs in reports.items():
            if sym != "_unknown" and msgs:
                await t.publish_batch(f"{cfg.exec_prefix}.{sym}", msgs)
        for sym, msgs in trades.items():
            if msgs:
                await t.publish_batch(f"{cfg.md_prefix}.{sym}.trade", msgs)
        for sym, msgs in l2.items():
            if msgs:
                await t.publish_batch(f"{cfg.md_prefix}.{sym}.l2", msgs)

    async def start(self, transport: Any) -> None:
        self.transport = transport
        await self.recover()
        self.journal = self  # enable the write-ahead hook only after the replay
        await super().start(transport)

    async def handle(self, subject: str, batch: list[Any]) -> None:
        await super().handle(subject, batch)
        if self.snapshot_every and self._since_snap >= self.snapshot_every and await self._outputs_flushed():
            self.save_snapshot()

    async def _outputs_flushed(self) -> bool:
        """True once the broker has every output published so far (``Transport.flush``).  A snapshot must not
        cover commands whose outputs are still in a client buffer: after a crash the replay starts after the
        snapshot, so those outputs would never be published again.  False (the snapshot waits for a later batch,
        the journal keeps everything) when the flush fails, e.g. while the broker is away."""
        flush = getattr(self.transport, "flush", None)
        if flush is None:  # no transport (or one that buffers nothing, e.g. a test recorder)
            return True
        try:
            await flush(timeout=5.0)
        except Exception as e:  # noqa: BLE001 - a disconnected transport defers the snapshot, it is not fatal
            self.metrics.inc("snapshots_deferred")
            log.warning("snapshot deferred: outputs not confirmed by the broker",
                        extra={"error": f"{type(e).__name__}: {e}"[:200], "since_snapshot": self._since_snap})
            return False
        return True

    async def on_stop(self) -> None:
        await super().on_stop()
        if await self._outputs_flushed():
            self.save_snapshot()
