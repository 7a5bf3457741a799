"""Matching service: owns the books of a set of symbols, applies validated orders, publishes what happened.

Write side: per symbol ``S`` it subscribes to ``<match_prefix>.S`` (e.g. ``orders.match.AAPL``).  Each received
batch (a ``MessageBatch``) goes through one compiled call (``lowlat._mstage.MatchStage.run``) that applies every
order to the engine, encodes what happened into a preallocated output batch and updates the read side; one
``Transport.publish_batch_to`` sends it, so Python runs once per batch.  At-least-once intake (Kafka) and the
write-ahead journal (``DurableMatcher``) take the Python path (``handle``: rows of ``COMMAND_DTYPE``, one
``Engine.apply_batch`` call), which produces the same messages.  The engine's events are turned into

- ``ExecutionReport``s on ``<exec_prefix>.S`` (NEW, fills for taker and maker, CANCELED/EXPIRED, REJECTED);
- ``Trade`` prints on ``<md_prefix>.S.trade``;
- ``L2Update``s on ``<md_prefix>.S.l2`` with a gap-free market-data sequence per symbol (1, 2, 3, ...);
- a periodic ``BookSnapshot`` on ``<md_prefix>.S.snap`` (every ``snapshot_interval_s``, when the book changed).

Read side (CQRS): a ``ReadModel`` per symbol, built only from the published events (level totals and the last
state of recent orders).  Queries are served from it by request/reply and never touch the engine:

- ``<query_prefix>.book.S`` (empty payload) -> ``BookSnapshot``;
- ``<query_prefix>.order.S`` (payload: the order id as decimal ASCII or 8 bytes little-endian) ->
  ``ExecutionReport`` with the order's last known state (status REJECTED + ``UNKNOWN_ORDER`` if unknown).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from .._batch import MessageBatch
from .._mstage import MatchStage
from .._readside import OrderStates
from ..enums import ExecStatus, Reject
from ..transport import Message
from ._stage_loop import ReusableOut, stage_outputs, sync_rejects
from .config import ServiceConfig
from .marketdata import md_subjects
from .metrics import Metrics, otel_span
from .runtime import BatchService

__all__ = ["ExecStatus", "MatcherService", "ReadModel"]

log = logging.getLogger("lowlat.services.matcher")


class ReadModel:
    """The query side of one symbol: level totals and recent orders, updated from events after each batch.

    ``orders`` keeps the last state of at most ``max_orders`` orders (oldest terminal states are evicted first):
    oid -> [status, side, price_ticks, leaves, cum, account, reason], in C (``lowlat._readside.OrderStates``: no
    Python object per order for the garbage collector to traverse).  The compiled stage (``lowlat._mstage``)
    keeps references to ``levels`` and ``orders`` and reads ``md_seq``/``trades`` at each run: update those
    containers in place, never replace them.
    """

    def __init__(self, symbol: str, tick_size: float, max_orders: int = 100_000) -> None:
        self.symbol = symbol
        self.tick_size = tick_size
        self.levels: tuple[dict[int, tuple[int, int]], dict[int, tuple[int, int]]] = ({}, {})
        self.md_seq = 0        # last L2Update sequence published
        self.trades = 0
        self.orders = OrderStates(max_orders)
        self.max_orders = max_orders
        self._snap_cache: tuple[int, bytes] | None = None

    def level(self, side: int, price: int, qty: int, count: int) -> int:
        lv = self.levels[side]
        if qty > 0:
            lv[price] = (qty, count)
        else:
            lv.pop(price, None)
        self.md_seq += 1
        return self.md_seq

    def order(self, oid: int, state: list[int]) -> None:
        self.orders.put(oid, state)

    def snapshot(self, wire: Any, now_ns: int) -> bytes:
        """``BookSnapshot`` bytes at the current ``md_seq`` (cached until the next change)."""
        c = self._snap_cache
        if c is not None and c[0] == self.md_seq:
            return c[1]
        ts = self.tick_size
        bids = [(round(p * ts, 9), q, n) for p, (q, n) in sorted(self.levels[0].items(), reverse=True)]
        asks = [(round(p * ts, 9), q, n) for p, (q, n) in sorted(self.levels[1].items())]
        out = wire.encode_snapshot(self.symbol, self.md_seq, bids, asks, now_ns)
        self._snap_cache = (self.md_seq, out)
        return out


class MatcherService(BatchService):
    """Match validated orders for ``cfg.symbols``; see the module docstring for subjects.

    Parameters
    ----------
    cfg : symbols, band (ref_price/band_bps in ticks), tick_size, subjects, snapshot_interval_s.
    max_orders : resting-order capacity per book.
    read_max_orders : order states the read side keeps per symbol (the oldest are evicted beyond).
    """

    name = "matcher"

    def __init__(self, cfg: ServiceConfig, *, max_orders: int = 100_000, metrics: Metrics | None = None,
                 read_max_orders: int = 100_000) -> None:
        from .. import _book
        from . import _wire

        super().__init__(cfg, metrics=metrics)
        self._wire = _wire
        self._book = _book
        lo, hi = cfg.band()
        self.engine = _book.Engine()
        self.read: dict[str, ReadModel] = {}
        self._index: dict[str, int] = {}
        for sym in cfg.symbols:
            self.engine.add_book(sym, lo, hi - lo + 1, max_orders, cfg.tick_size)
            self._index[sym] = self.engine.index(sym)
            self.read[sym] = ReadModel(sym, cfg.tick_size, read_max_orders)
        self._by_index = {i: s for s, i in self._index.items()}
        self._cmds = np.zeros(max(1, cfg.batch_max), _book.COMMAND_DTYPE)
        # an order can touch every maker on the other side: room for any one command's bound (3 * max_orders + 16,
        # what a book's own event buffer holds), else apply_batch refuses it; apply_batch splits the batch
        self._events = np.zeros(max(4096, 8 * cfg.batch_max, 3 * max_orders + 16), _book.EVENT_DTYPE)
        self._extra_tasks: list[asyncio.Task[Any]] = []
        self._accts: dict[int, int] = {}
        # write-ahead journal hook (lowlat.services.journal.DurableMatcher sets it): an object with
        # ``async append(rows, input_pos) -> int``; ``input_pos`` is the intake position of the batch (0 = none)
        self.journal: Any = None
        self.input_pos = 0
        self.stage = MatchStage(self.engine, [self.read[s] for s in sorted(self._index, key=self._index.__getitem__)],
                                exec_prefix=cfg.exec_prefix, md_prefix=cfg.md_prefix)
        self._max_msg = self.stage.max_message_bytes()
        self._out_cap: tuple[int, int] | None = None  # tests: a fixed (capacity, arena) for the output batches
        self._seen_rejects = np.zeros(256, dtype=np.int64)  # the stage's reject counts already in metrics
        # the output batches for publishers that copy them (the loop's and the stage thread's: never shared)
        self._out = ReusableOut()
        self._out_sync = ReusableOut()

    def subjects(self) -> list[tuple[str, str | None]]:
        # no queue group: exactly one matcher owns a symbol's book
        return [(f"{self.cfg.match_prefix}.{s}", None) for s in self.cfg.symbols]

    async def on_start(self) -> None:
        t = self.transport
        assert t is not None
        cfg = self.cfg
        for sym in cfg.symbols:
            self._extra_tasks.append(await t.serve(f"{cfg.query_prefix}.book.{sym}", self._query_book(sym)))
            self._extra_tasks.append(await t.serve(f"{cfg.query_prefix}.order.{sym}", self._query_order(sym)))
        if cfg.snapshot_interval_s > 0:
            self._extra_tasks.append(asyncio.get_running_loop().create_task(self._snapshots()))

    async def on_stop(self) -> None:
        await self._publish_snapshots(force=True)
        for task in self._extra_tasks:
            task.cancel()
        await asyncio.gather(*self._extra_tasks, return_exceptions=True)

    # --- read side -------------------------------------------------------------------------------
    def _query_book(self, sym: str) -> Any:
        rm = self.read[sym]

        def handler(msg: Message) -> bytes:
            self.metrics.inc("queries")
            return rm.snapshot(self._wire, time.time_ns())

        return handler

    def _query_order(self, sym: str) -> Any:
        rm = self.read[sym]
        w = self._wire

        def handler(msg: Message) -> bytes:
            self.metrics.inc("queries")
            raw = bytes(msg.data)
            try:
                oid = int(raw) if raw.strip().isdigit() else int.from_bytes(raw[:8], "little")
            except ValueError:  # e.g. more digits than int() converts
                oid = 0
            if not 0 <= oid < 1 << 64:  # no such order id on the wire: UNKNOWN_ORDER, with id 0
                oid = 0
            st = rm.orders.get(oid)
            now = time.time_ns()
            if st is None:
                return w.encode_exec(order_id=oid, symbol=sym, status=ExecStatus.REJECTED,
                                     reason=int(Reject.UNKNOWN_ORDER), timestamp=now)
            status, side, px, leaves, cum, account, reason = st
            return w.encode_exec(order_id=oid, symbol=sym, account=account, side=side, status=status,
                                 reason=reason, last_price=round(px * rm.tick_size, 9), leaves_quantity=leaves,
                                 cum_quantity=cum, timestamp=now)

        return handler

    async def _snapshots(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.snapshot_interval_s)
            await self._publish_snapshots()

    async def _publish_snapshots(self, force: bool = False) -> None:
        t = self.transport
        if t is None or t.closed:
            return
        now = time.time_ns()
        for sym, rm in self.read.items():
            last = getattr(rm, "_last_snap_seq", -1)
            if force or rm.md_seq != last:
                rm._last_snap_seq = rm.md_seq  # type: ignore[attr-defined]
                try:
                    await t.publish(md_subjects(self.cfg.md_prefix, sym)["snap"], rm.snapshot(self._wire, now))
                except Exception:  # noqa: BLE001 - transport closing
                    return
                self.metrics.inc("snapshots")

    # --- write side ------------------------------------------------------------------------------
    def sync_stage_handler(self) -> Callable[[MessageBatch, Any], None] | None:
        # the write-ahead journal needs the Python path (handle); queries and snapshots stay on the loop
        return self._stage_sync if self.journal is None else None

    def _stage_sync(self, batch: MessageBatch, t: Any) -> None:
        # the stage thread's handler: the same stage, published without an event loop.  Queries on the loop
        # read the read side between two stage runs (a run holds the GIL), as they do on the loop path.
        for out in self.run_stage(batch, self._out_sync):
            t.publish_batch_sync(out)
        self.processed += batch.n

    async def handle_batch(self, subject: str, batch: MessageBatch) -> None:
        """Match one received batch and publish everything it produces (Python once per output batch).

        The write-ahead journal (``journal`` set) needs the decoded command rows before they change a book: that
        path, like at-least-once intake, goes through ``handle``."""
        if batch.n == 0:
            return
        if self.journal is not None:
            await self.handle(subject, [Message(batch.subject(i), batch.payload(i), None, batch.reply(i))
                                        for i in range(batch.n)])
            return
        t = self.transport
        assert t is not None
        for out in self.run_stage(batch, self._out.for_transport(t)):
            await t.publish_batch_to(out)

    def run_stage(self, batch: MessageBatch, new_out: ReusableOut | None = None) -> Iterator[MessageBatch]:
        """The stage over one received batch, as a generator of the output batches to publish: the caller
        publishes each one before asking for the next.  ``new_out``: the one output batch to reuse, where the
        publisher copies it before returning.  Counters are recorded when it is exhausted."""
        n = batch.n
        if n == 0:
            return
        st = self.stage
        before = (st.exec_reports, st.trades, st.l2_updates, st.rejects)
        # most orders give 1-4 messages, but a run stops before an order whose bound (every order on the levels it
        # can reach) does not fit: headroom keeps that to about one run per batch
        cap = self._out_cap or (6 * n + 256, (6 * n + 256) * self._max_msg)
        yield from stage_outputs(st, batch, self.metrics, cap=cap, now_ns=time.time_ns(), span="lowlat.match",
                                 timers=("match", "publish"), new_out=new_out)
        c = self.metrics.counts
        c["exec_reports"] += st.exec_reports - before[0]
        c["trades"] += st.trades - before[1]
        c["l2_updates"] += st.l2_updates - before[2]
        if st.rejects != before[3]:
            self._seen_rejects = sync_rejects(st, self._seen_rejects, self.metrics)

    async def handle(self, subject: str, batch: list[Message]) -> None:
        """The Python path (list of ``Message``): at-least-once intake and the write-ahead journal use it; also the
        same-run peer and the reference of the compiled stage (benchmarks/bench_mstage.py, tests)."""
        w = self._wire
        cfg = self.cfg
        m = self.metrics
        t = self.transport
        assert t is not None
        pc = time.perf_counter_ns
        now = time.time_ns()
        t0 = pc()
        n = len(batch)
        # more than batch_max (nats-py's fetch can return that): one array for this batch, so the journal still
        # gets one record per input batch
        cmds = self._cmds if n <= len(self._cmds) else np.zeros(n, self._book.COMMAND_DTYPE)
        early: list[tuple[int, str, int, int]] = []  # (oid, symbol, account, reason) rejected before the engine
        at: list[int] = []  # per early reject: how many commands came before it (reports stay in input order)
        k = 0
        for msg in batch:
            got = w.order_to_command(msg.data, cmds, k, self._index, cfg.tick_size, early)
            if not got:
                at.append(k)
            k += got
        t1 = pc()
        m.record("decode", (t1 - t0) // n, n)
        if self.journal is not None and k:  # write-ahead: commands are durable before they change a book
            await self.journal.append(cmds[:k], self.input_pos)
        reports: dict[str, list[bytes]] = {}
        l2: dict[str, list[bytes]] = {}
        trades: dict[str, list[bytes]] = {}
        done = j = 0
        with otel_span("lowlat.match", k):
            while True:
                while j < len(early) and at[j] <= done:
                    oid, sym, account, reason = early[j]
                    j += 1
                    if sym in self._index:  # malformed / unknown symbol: counted, nowhere to report
                        reports.setdefault(sym, []).append(
                            w.encode_exec(order_id=oid, symbol=sym, account=account, status=ExecStatus.REJECTED,
                                          reason=reason, timestamp=now))
                if done >= k:
                    break
                stop = at[j] if j < len(early) else k
                n_done, n_ev = self.engine.apply_batch(cmds[done:stop], self._events)
                self._events_to_messages(self._events[:n_ev], now, reports, l2, trades)
                done += n_done
        t2 = pc()
        if k:
            m.record("match", (t2 - t1) // k, k)
        p = cfg.md_prefix
        for sym, msgs in reports.items():
            await t.publish_batch(f"{cfg.exec_prefix}.{sym}", msgs)
        for sym, msgs in trades.items():
            await t.publish_batch(f"{p}.{sym}.trade", msgs)
        for sym, msgs in l2.items():
            await t.publish_batch(f"{p}.{sym}.l2", msgs)
        m.record("publish", (pc() - t2) // n, n)
        m.inc("in", n)
        m.inc("batches")
        m.inc("exec_reports", sum(len(v) for v in reports.values()))
        m.inc("l2_updates", sum(len(v) for v in l2.values()))
        m.inc("trades", sum(len(v) for v in trades.values()))
        if early:
            m.count_rejects(np.array([e[3] for e in early], dtype=np.uint8))

    def _events_to_messages(self, ev: np.ndarray, now: int, reports: dict[str, list[bytes]],
                            l2: dict[str, list[bytes]], trades: dict[str, list[bytes]]) -> None:
        """Turn engine events into ExecutionReport / Trade / L2Update bytes and update the read side.

        Cost: ~1-2 µs per event (one template stamp each); this loop, not matching, bounds the service's rate.
        """
        stamper = self._wire._stamper
        EK = self._book.EventKind
        ACC, REJ, FILL, CAN, EXP, L2 = (int(EK.ACCEPTED), int(EK.REJECTED), int(EK.FILL), int(EK.CANCELED),
                                        int(EK.EXPIRED), int(EK.L2))
        S = ExecStatus
        rejected_codes = []
        cur_book = -1
        for (_seq, oid, maker, trade_id, account, price, qty, leaves, aux, book, kind, side, reason,
             _pad) in ev.tolist():
            if book != cur_book:  # events of one batch come in runs per book: look these up once per run
                sym = self._by_index.get(book)
                if sym is None:
                    continue
                cur_book = book
                rm = self.read[sym]
                ts = rm.tick_size
                orders = rm.orders
                out = reports.setdefault(sym, [])
                l2_out = l2.setdefault(sym, [])
                tr_out = trades.setdefault(sym, [])
                # stamp(order_id, account, side, status, reason, trade_id, maker_order_id, taker_order_id,
                #       is_maker, last_price, last_quantity, leaves_quantity, cum_quantity, timestamp)
                ex = stamper("ExecutionReport", sym)
                l2s = stamper("L2Update", sym)
                trs = stamper("Trade", sym)
            if kind == L2:
                mseq = rm.level(side, price, qty, aux)
                l2_out.append(l2s(mseq, side, round(price * ts, 9), qty, aux, now))
            elif kind == ACC:
                rm.order(oid, [S.NEW, side, price, leaves, 0, account, 0])
                out.append(ex(oid, account, side, S.NEW, 0, 0, 0, 0, False, round(price * ts, 9), 0, leaves, 0, now))
            elif kind == FILL:
                rm.trades += 1
                px = round(price * ts, 9)
                tr_out.append(trs(trade_id, px, qty, side, maker, oid, now, rm.md_seq))
                st = orders.get(oid) or [S.NEW, side, price, leaves, 0, account, 0]  # taker
                st[4] += qty
                st[3] = leaves
                st[0] = S.FILLED if leaves == 0 else S.PARTIALLY_FILLED
                rm.order(oid, st)
                out.append(ex(oid, account, side, st[0], 0, trade_id, maker, oid, False, px, qty, leaves, st[4], now))
                ms = orders.get(maker) or [S.NEW, 1 - side, price, aux, 0, 0, 0]  # maker; aux = its leaves
                ms[4] += qty
                ms[3] = aux
                ms[0] = S.FILLED if aux == 0 else S.PARTIALLY_FILLED
                rm.order(maker, ms)
                out.append(ex(maker, ms[5], ms[1], ms[0], 0, trade_id, maker, oid, True, px, qty, aux, ms[4], now))
            elif kind == CAN or kind == EXP:
                status = S.CANCELED if kind == CAN else S.EXPIRED
                st = orders.get(oid) or [status, side, price, 0, 0, account, reason]
                st[0], st[3], st[6] = status, leaves, reason
                rm.order(oid, st)
                out.append(ex(oid, account, side, status, reason, 0, 0, 0, False, round(price * ts, 9), 0, leaves, st[4],
                              now))
            elif kind == REJ:
                rejected_codes.append(reason)
                # a rejected command about an id the read side knows (a duplicate NEW of a resting order, a
                # cancel of a filled one) does not change that order: the read side describes what the book holds
                if oid not in orders:
                    rm.order(oid, [S.REJECTED, side, price, 0, 0, account, reason])
                out.append(ex(oid, account, side, S.REJECTED, reason, 0, 0, 0, False, round(price * ts, 9), 0, 0, 0, now))
        if rejected_codes:
            self.metrics.count_rejects(np.array(rejected_codes, dtype=np.uint8))
