"""Market-data consumer helper: a local L2 book from snapshot + deltas, with gap detection and resync.

The matching service publishes, per symbol ``S`` (prefix ``md`` by default):

- ``md.S.l2``    ``L2Update`` deltas: the new total at one price level, ``sequence`` 1, 2, 3, ... per symbol;
- ``md.S.trade`` ``Trade`` prints;
- ``md.S.snap``  a periodic ``BookSnapshot`` whose ``sequence`` is the last delta it includes;

and answers ``query.book.S`` requests with a ``BookSnapshot`` from its read side.

``LocalBook`` is the pure state machine (no I/O, easy to test); ``MarketDataConsumer`` wires it to a transport:
it subscribes to the deltas first, then asks for a snapshot, buffers deltas until the snapshot arrives, drops
deltas the snapshot already contains, and on a gap (``sequence != last + 1``) resyncs the same way.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ..transport import Transport

__all__ = ["GapError", "LocalBook", "MarketDataConsumer", "md_subjects"]

log = logging.getLogger("lowlat.services.marketdata")

BUY, SELL = 0, 1


def md_subjects(prefix: str, symbol: str, query_prefix: str = "query") -> dict[str, str]:
    """Subject names of one symbol's market data: ``l2``, ``trade``, ``snap`` and the ``book`` query."""
    return {"l2": f"{prefix}.{symbol}.l2", "trade": f"{prefix}.{symbol}.trade",
            "snap": f"{prefix}.{symbol}.snap", "book": f"{query_prefix}.book.{symbol}"}


class GapError(Exception):
    """A delta's sequence is not last + 1: the local book missed updates and must resync."""

    def __init__(self, expected: int, got: int) -> None:
        super().__init__(f"sequence gap: expected {expected}, got {got}")
        self.expected = expected
        self.got = got


@dataclass
class LocalBook:
    """Price level -> (quantity, order_count) per side, at sequence ``seq`` (0 = no snapshot yet).

    Prices are kept as they are on the wire (so equal prices compare equal); quantities are lots.
    """

    symbol: str = ""
    seq: int = 0
    synced: bool = False
    bids: dict[float, tuple[int, int]] = field(default_factory=dict)
    asks: dict[float, tuple[int, int]] = field(default_factory=dict)
    gaps: int = 0
    resyncs: int = 0

    def apply_snapshot(self, seq: int, bids: Iterable[tuple[float, int, int]],
                       asks: Iterable[tuple[float, int, int]]) -> None:
        """Replace the book with a snapshot taken at ``seq`` (levels are (price, qty, order_count))."""
        self.bids = {p: (q, c) for p, q, c in bids if q > 0}
        self.asks = {p: (q, c) for p, q, c in asks if q > 0}
        self.seq = seq
        self.synced = True

    def apply_update(self, seq: int, side: int, price: float, qty: int, count: int) -> bool:
        """Apply one delta.  Returns False for a stale delta (``seq <= self.seq``, already in the book).

        Raises ``GapError`` (and marks the book unsynced) when ``seq > self.seq + 1``.
        """
        if not self.synced:
            raise GapError(self.seq + 1, seq)
        if seq <= self.seq:
            return False
        if seq != self.seq + 1:
            self.synced = False
            self.gaps += 1
            raise GapError(self.seq + 1, seq)
        levels = self.bids if side == BUY else self.asks
        if qty > 0:
            levels[price] = (qty, count)
        else:
            levels.pop(price, None)
        self.seq = seq
        return True

    def best_bid(self) -> tuple[float, int] | None:
        if not self.bids:
            return None
        p = max(self.bids)
        return p, self.bids[p][0]

    def best_ask(self) -> tuple[float, int] | None:
        if not self.asks:
            return None
        p = min(self.asks)
        return p, self.asks[p][0]

    def depth(self, side: int, n: int = 5) -> list[tuple[float, int]]:
        """Top ``n`` levels as (price, qty), best first."""
        levels = self.bids if side == BUY else self.asks
        ps = sorted(levels, reverse=(side == BUY))[:n]
        return [(p, levels[p][0]) for p in ps]


Decoder = Callable[[Any], Any]


class MarketDataConsumer:
    """Keep a ``LocalBook`` of one symbol in sync over a transport; resync from a snapshot on every gap.

    Parameters
    ----------
    transport : a connected ``Transport``.
    symbol : the instrument.
    prefix, query_prefix : subject prefixes (see ``md_subjects``).
    on_update : optional ``callback(book)`` after each applied delta or snapshot (keep it cheap).
    snapshot_timeout : seconds to wait for a snapshot reply before retrying.
    """

    def __init__(self, transport: Transport, symbol: str, *, prefix: str = "md", query_prefix: str = "query",
                 on_update: Callable[[LocalBook], None] | None = None, snapshot_timeout: float = 1.0) -> None:
        from . import _wire  # decoders from lowlat._core

        self._wire = _wire
        self.t = transport
        self.symbol = symbol
        self.subjects = md_subjects(prefix, symbol, query_prefix)
        self.book = LocalBook(symbol)
        self.on_update = on_update
        self.snapshot_timeout = snapshot_timeout
        self.updates = 0
        self.trades = 0
        self._sub: Any = None
        self._buffer: list[tuple[int, int, float, int, int]] = []

    async def start(self) -> None:
        """Subscribe to deltas and trades, then load the first snapshot."""
        self._sub = await self.t.subscribe(self.subjects["l2"])
        self._tsub = await self.t.subscribe(self.subjects["trade"])
        await self.resync()

    async def resync(self) -> None:
        """Fetch a snapshot by request/reply and replay buffered deltas newer than it."""
        w = self._wire
        while True:
            try:
                reply = await self.t.request(self.subjects["book"], b"", timeout=self.snapshot_timeout)
            except TimeoutError:
                log.error("snapshot request timed out; retrying", extra={"symbol": self.symbol})
                continue
            snap = w.decode_snapshot(reply.data)
            self.book.apply_snapshot(snap["sequence"], snap["bids"], snap["asks"])
            break
        self.book.resyncs += 1
        # deltas that arrived while waiting: apply those after the snapshot; a hole means resync again
        self._drain_pending_into_buffer()
        buffered, self._buffer = self._buffer, []
        for d in buffered:
            try:
                self.book.apply_update(*d)
            except GapError:
                log.info("gap while replaying after snapshot; resyncing", extra={"symbol": self.symbol})
                return await self.resync()
        if self.on_update:
            self.on_update(self.book)

    def _drain_pending_into_buffer(self) -> None:
        get = getattr(self._sub, "get_nowait", None)
        if get is None:
            return
        while (m := get()) is not None:
            self._buffer.append(self._wire.decode_l2(m.data))

    async def run(self, *, count: int | None = None, seconds: float | None = None) -> None:
        """Apply deltas until ``count`` deltas were applied or ``seconds`` passed (both None: forever)."""
        deadline = time.monotonic() + seconds if seconds else None
        get_nowait = getattr(self._sub, "get_nowait", None)
        while count is None or self.updates < count:
            timeout = None if deadline is None else deadline - time.monotonic()
            if timeout is not None and timeout <= 0:
                return
            try:
                msg = await asyncio.wait_for(self._sub.__anext__(), timeout)
            except (TimeoutError, StopAsyncIteration):
                return
            await self._on_delta(msg.data)
            if get_nowait is not None:  # the rest of what is pending, without a wait per message
                while (count is None or self.updates < count) and (m := get_nowait()) is not None:
                    await self._on_delta(m.data)
            while (getattr(self._tsub, "get_nowait", lambda: None)()) is not None:
                self.trades += 1

    async def _on_delta(self, data: Any) -> None:
        d = self._wire.decode_l2(data)
        try:
            if self.book.apply_update(*d):
                self.updates += 1
                if self.on_update:
                    self.on_update(self.book)
        except GapError as e:
            log.info("gap detected; resyncing", extra={"symbol": self.symbol, "expected": e.expected, "got": e.got})
            self._buffer.append(d)
            await self.resync()

    async def close(self) -> None:
        for s in (self._sub, getattr(self, "_tsub", None)):
            if s is not None:
                await s.unsubscribe()
