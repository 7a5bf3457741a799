"""Book snapshots in lowlat's own compact format: dump an ``Engine``'s books, write/read them, restore them.

A snapshot is what a matching service needs to come back after a crash without replaying its whole history:
every book's parameters, its event sequence and trade-id counters, and its resting orders in priority order
(per side best price first, FIFO inside a level), plus the journal position the state corresponds to and a
small JSON ``meta`` blob for service-level state (e.g. market-data sequence numbers).

File layout (all little-endian, ``SNAP_ORDER_DTYPE`` rows are raw numpy bytes, 40 bytes per order)::

    b"LLSNAP01"  u32 n_books  u64 journal_pos  u32 meta_len  meta (UTF-8 JSON)
    per book:   u16 sym_len  symbol  i64 lo  i64 n_ticks  i64 max_orders  f64 tick_size  i8 default_stp
                u64 seq  u64 trade_id  u64 n_orders  rows[n_orders]
    u32 crc32 of everything before

Restoring 1 M resting orders costs one ``Book.restore`` call (a nogil loop, ~50 ns/order).  Any inconsistency in a
snapshot (bad magic, truncation, CRC mismatch, impossible sizes) raises ``lowlat.DecodeError``: a damaged
snapshot is never half-loaded.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import _book
from ..enums import StpMode
from ..errors import DecodeError

__all__ = [
    "SNAP_ORDER_DTYPE",
    "BookState",
    "Snapshot",
    "SnapshotStore",
    "decode_snapshot",
    "dump_book",
    "dump_engine",
    "encode_snapshot",
    "restore_book",
    "restore_engine",
]

MAGIC = b"LLSNAP01"
#: one resting order; ``stp`` -1 = the book's default mode
SNAP_ORDER_DTYPE = np.dtype([("oid", "<u8"), ("account", "<u8"), ("price", "<i8"), ("qty", "<i8"),
                             ("side", "i1"), ("stp", "i1"), ("post_only", "u1"), ("_pad", "u1"), ("_pad2", "<u4")])
_HEAD = struct.Struct("<8sIQI")
_BOOK = struct.Struct("<qqqdbQQQ")
_MAX_META = 16 << 20


@dataclass
class BookState:
    """One book: construction parameters, counters and resting orders (``SNAP_ORDER_DTYPE``, priority order)."""

    symbol: str
    lo: int
    n_ticks: int
    max_orders: int
    tick_size: float
    default_stp: int
    seq: int
    trade_id: int
    orders: np.ndarray

    def same_as(self, other: BookState) -> bool:
        """Equal parameters, counters and resting orders (order by order, priority order included)."""
        a = (self.symbol, self.lo, self.n_ticks, self.max_orders, self.tick_size, self.default_stp, self.seq,
             self.trade_id)
        b = (other.symbol, other.lo, other.n_ticks, other.max_orders, other.tick_size, other.default_stp, other.seq,
             other.trade_id)
        return a == b and np.array_equal(self.orders, other.orders)


@dataclass
class Snapshot:
    """Books + the journal position they correspond to (last applied record) + service ``meta``."""

    books: list[BookState]
    journal_pos: int = 0
    meta: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------- dump
def dump_book(book: Any) -> BookState:
    """Snapshot one ``Book`` (a copy; the book may change afterwards).  Cost: O(resting orders + levels)."""
    orders = np.asarray(book.resting_orders()).view(SNAP_ORDER_DTYPE)
    return BookState(book.symbol or "", book.lo, book.n_ticks, book.max_orders, book.tick_size, book.default_stp,
                     book.seq, book.trade_id, orders)


def dump_engine(engine: Any, journal_pos: int = 0, meta: dict[str, Any] | None = None) -> Snapshot:
    """Snapshot every book of an ``Engine`` (in book-index order)."""
    return Snapshot([dump_book(b) for b in engine.books], journal_pos, dict(meta or {}))


# ------------------------------------------------------------------------------------------ restore
def restore_book(book: Any, st: BookState) -> None:
    """Load ``st`` into an empty ``book`` built with the same parameters (raise ``ValueError`` otherwise)."""
    if book.n_orders or book.seq:
        raise ValueError("restore_book needs an empty, unused book")
    if (book.lo, book.n_ticks, book.max_orders) != (st.lo, st.n_ticks, st.max_orders):
        raise ValueError(f"book {st.symbol!r}: band/capacity differ from the snapshot")
    book.restore(st.orders.view(np.uint8), st.seq, st.trade_id)


def restore_engine(snap: Snapshot, engine: Any = None, *, default_stp: int = 0, event_capacity: int = -1) -> Any:
    """Rebuild an ``Engine`` from ``snap`` (or fill the empty books of ``engine``, matched by symbol).

    ``event_capacity`` is passed to new books (default: the book's own default, 3 rows per order slot, which
    costs 240 B per slot to allocate; callers that only use ``apply_batch`` can pass e.g. 65536).
    """
    if engine is None:
        engine = _book.Engine(StpMode(default_stp))
        for st in snap.books:
            engine.add_book(st.symbol, st.lo, st.n_ticks, st.max_orders, st.tick_size, st.default_stp,
                            event_capacity)
    for st in snap.books:
        restore_book(engine[st.symbol], st)
    return engine


# ------------------------------------------------------------------------------------------- format
def encode_snapshot(snap: Snapshot) -> bytes:
    """The compact binary form (see the module docstring).  Cost: one copy of the order rows."""
    meta = json.dumps(snap.meta, separators=(",", ":")).encode()
    parts = [_HEAD.pack(MAGIC, len(snap.books), snap.journal_pos, len(meta)), meta]
    for st in snap.books:
        sym = st.symbol.encode()
        orders = np.ascontiguousarray(st.orders, SNAP_ORDER_DTYPE)
        parts += [struct.pack("<H", len(sym)), sym,
                  _BOOK.pack(st.lo, st.n_ticks, st.max_orders, st.tick_size, st.default_stp, st.seq, st.trade_id,
                             len(orders)),
                  orders.tobytes()]
    body = b"".join(parts)
    return body + struct.pack("<I", zlib.crc32(body))


def decode_snapshot(data: bytes | bytearray | memoryview) -> Snapshot:
    """Parse ``encode_snapshot`` output; raise ``DecodeError`` on any damage.  Order rows are zero-copy views."""
    mv = memoryview(data).cast("B")
    n = len(mv)
    if n < _HEAD.size + 4:
        raise DecodeError("snapshot: truncated header")
    if zlib.crc32(mv[:n - 4]) != struct.unpack_from("<I", mv, n - 4)[0]:
        raise DecodeError("snapshot: CRC mismatch (damaged or truncated)")
    magic, n_books, pos, meta_len = _HEAD.unpack_from(mv, 0)
    if magic != MAGIC:
        raise DecodeError("snapshot: bad magic (not a lowlat snapshot)")
    off = _HEAD.size
    end = n - 4
    if meta_len > min(_MAX_META, end - off):
        raise DecodeError("snapshot: meta length out of range")
    try:
        meta = json.loads(bytes(mv[off:off + meta_len]) or b"{}")
    except (ValueError, RecursionError) as e:  # RecursionError: hostile nesting ("[[[[...")
        raise DecodeError(f"snapshot: bad meta: {type(e).__name__}") from None
    if not isinstance(meta, dict):
        raise DecodeError("snapshot: meta is not a JSON object")
    off += meta_len
    books = []
    for _ in range(n_books):
        if off + 2 > end:
            raise DecodeError("snapshot: truncated book header")
        (sl,) = struct.unpack_from("<H", mv, off)
        off += 2
        if off + sl + _BOOK.size > end:
            raise DecodeError("snapshot: truncated book header")
        try:
            sym = bytes(mv[off:off + sl]).decode()
        except UnicodeDecodeError:
            raise DecodeError("snapshot: symbol is not UTF-8") from None
        off += sl
        lo, n_ticks, max_orders, tick, stp, seq, tid, n_orders = _BOOK.unpack_from(mv, off)
        off += _BOOK.size
        size = n_orders * SNAP_ORDER_DTYPE.itemsize
        if n_orders > max_orders or size > end - off or n_ticks <= 0 or max_orders <= 0:
            raise DecodeError(f"snapshot: book {sym!r} has impossible sizes")
        orders = np.frombuffer(mv[off:off + size], SNAP_ORDER_DTYPE)
        off += size
        if n_orders and ((orders["price"] < lo).any() or (orders["price"] >= lo + n_ticks).any()
                         or ((orders["side"] != 0) & (orders["side"] != 1)).any() or (orders["qty"] <= 0).any()):
            raise DecodeError(f"snapshot: book {sym!r} has orders outside its band")
        books.append(BookState(sym, lo, n_ticks, max_orders, tick, stp, seq, tid, orders))
    if off != end:
        raise DecodeError("snapshot: trailing bytes")
    return Snapshot(books, pos, meta)


class SnapshotStore:
    """Snapshots as files ``snap-<journal_pos>.llsnap`` in a directory (a volume that survives restarts).

    ``save`` writes a temp file, fsyncs and renames (a crash leaves the previous snapshot intact); ``latest``
    returns the newest one that decodes, skipping damaged files.  ``keep`` newest files are kept.
    """

    def __init__(self, directory: str | os.PathLike[str], keep: int = 3) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.keep = max(1, keep)

    def _files(self) -> list[Path]:
        def pos(p: Path) -> int:
            try:
                return int(p.stem.split("-", 1)[1])
            except (IndexError, ValueError):
                return -1

        return sorted((p for p in self.dir.glob("snap-*.llsnap") if pos(p) >= 0), key=pos)

    def save(self, snap: Snapshot) -> Path:
        data = encode_snapshot(snap)
        path = self.dir / f"snap-{snap.journal_pos:020d}.llsnap"
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        for old in self._files()[:-self.keep]:
            old.unlink(missing_ok=True)
        return path

    def latest(self) -> Snapshot | None:
        return next(self.candidates(), None)

    def candidates(self) -> Any:
        """Every snapshot that decodes, newest first (damaged files are skipped): a caller that finds the newest
        unusable (e.g. contents inconsistent with the journal) falls back to the previous one."""
        for p in reversed(self._files()):
            try:
                yield decode_snapshot(p.read_bytes())
            except DecodeError:
                continue
