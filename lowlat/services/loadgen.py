"""Open-loop load generator: constant target rate, latency measured from the *intended* send time.

Order ``i`` is due at ``t0 + i / rate``.  The generator sends everything that is due, then sleeps until the
next due time; if it (or the system under test) falls behind, late orders are sent immediately but their
latency still counts from when they *should* have been sent, so stalls show up in the tail instead of being
hidden (no coordinated omission, as in wrk2 / HdrHistogram's ``recordValueWithExpectedInterval``).  It waits
with ``_loop.Pacer`` (a timerfd the loop watches), which wakes it at the due time to within the scheduler's
wake-up latency: the loops' own timers round to whole milliseconds, which sent orders in bursts up to ~1 ms late.
``spin`` waits by yielding to the loop instead (lowest lag, one core busy).

Two modes:

- ``request``: each order is a request on ``orders_subject`` (published with a reply subject, the generator's
  own inbox); the reply is the ``ValidationResult``.  Many requests are in flight at once, with no task or
  future per request: replies are correlated by order id, like the pipelined mode.
- ``pipeline``: orders are published (batched per wake-up); the validator publishes results to
  ``validated_subject`` / ``rejected_subject`` (``publish_results``), which the generator correlates by order
  id.  This is the high-throughput mode.

Every order gets a unique id (``id_base + i``); the result counts duplicates and missing answers so a test can
check "every order answered exactly once".
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np

from .._batch import MessageBatch
from ..enums import Reject, Side
from ..transport import Transport
from ..transport.base import Capability
from ._loop import Pacer
from .config import ServiceConfig
from .metrics import LatencyHistogram

__all__ = ["LoadGenerator", "LoadResult", "OrderFactory"]

log = logging.getLogger("lowlat.services.loadgen")

_INBOX_SCHEMES = frozenset({"inproc", "shm", "nats", "tls", "zmq+tcp", "zmq+ipc", "zmq+inproc"})

# deliberately invalid orders (cycled through when reject_ratio > 0): what each breaks
_BAD_KINDS = ("qty_zero", "off_band", "unknown_symbol", "off_tick", "qty_above_max")


class OrderFactory:
    """Builds order FlatBuffers for the generator: a mix of crossing buy/sell limit orders around the
    reference price and, at ``reject_ratio``, invalid ones (zero quantity, outside the collar, unknown symbol,
    off-tick price, quantity above the maximum).  Deterministic for a given seed.
    """

    def __init__(self, cfg: ServiceConfig, *, seed: int = 1, id_base: int = 1) -> None:
        from . import _wire

        self._encode = _wire.encode_order
        self._encode_into = _wire.encode_order_into
        self.cfg = cfg
        self.id_base = id_base
        self.tick_size = cfg.tick_size
        self.symbols = list(cfg.symbols)
        rng = np.random.default_rng(seed)
        n = 4096  # a pattern table, cycled: keeps per-order work to table look-ups
        self._sym = rng.integers(0, len(self.symbols), n)
        self._side = rng.integers(0, 2, n)
        # buys a little above and sells a little below the reference cross often -> trades and book churn
        off = rng.integers(-5, 6, n)
        self._px_ticks = cfg.ref_price + np.where(self._side == 0, off + 1, off - 1)
        self._qty = rng.integers(1, 10, n) * cfg.lot
        self._bad = np.zeros(n, dtype=np.int64)
        if cfg.reject_ratio > 0:
            pick = rng.random(n) < cfg.reject_ratio
            self._bad[pick] = 1 + (np.arange(n)[pick] % len(_BAD_KINDS))
        self._n = n
        self.pad = max(0, cfg.payload)
        # the pattern as plain Python values, decided once: per order only a tuple look-up and one encoder call
        self._pattern = [self._pattern_entry(k) for k in range(n)]
        self._coid = "x" * self.pad if self.pad else None

    def _pattern_entry(self, k: int) -> tuple[str, float, int, Side]:
        cfg = self.cfg
        sym = self.symbols[self._sym[k]]
        px_ticks = int(self._px_ticks[k])
        qty = int(self._qty[k])
        bad = self._bad[k]
        price = px_ticks * self.tick_size
        if bad:
            kind = _BAD_KINDS[bad - 1]
            if kind == "qty_zero":
                qty = 0
            elif kind == "off_band":
                _lo, hi = cfg.band()
                price = (2 * hi + 1) * self.tick_size
            elif kind == "unknown_symbol":
                sym = "NOPE"
            elif kind == "off_tick":
                price = (px_ticks + 0.5) * self.tick_size
            elif kind == "qty_above_max":
                qty = (cfg.max_qty + 1) * cfg.lot
        # a plain int where the API says Side: the encoder accepts both and converts an enum member per call
        return sym, price, qty, cast(Side, int(self._side[k]))

    def order_into(self, buf: Any, offset: int, i: int, ts_ns: int) -> int:
        """``order(i, ts_ns)`` encoded into ``buf`` at ``offset`` (no allocation); returns its length.  Raises
        ``ValueError`` where it does not fit (``max_frame`` bytes always do)."""
        sym, price, qty, side = self._pattern[i % self._n]
        return self._encode_into(buf, offset, self.id_base + i, sym, price, qty, side, ts_ns,
                                 client_order_id=self._coid)

    def max_frame(self) -> int:
        """The largest order this factory encodes, in bytes (its longest symbol, the padding, a full timestamp)."""
        longest = max(range(self._n), key=lambda k: len(self._pattern[k][0].encode()))
        return len(self.order(longest, 2**63 - 1)) + 8

    def order(self, i: int, ts_ns: int) -> bytes:
        """Order number ``i`` (id ``id_base + i``), timestamped ``ts_ns`` (wall clock, ns).  Cost: one
        ``encode_order`` (~0.1 µs) plus a tuple look-up."""
        sym, price, qty, side = self._pattern[i % self._n]
        if self._coid is None:
            return self._encode(self.id_base + i, sym, price, qty, side, ts_ns)
        return self._encode(self.id_base + i, sym, price, qty, side, ts_ns, client_order_id=self._coid)


class _Frames:
    """The pipelined sender's preallocated frames: a slice's orders are encoded straight into one buffer
    (``OrderFactory.order_into``) that a ``MessageBatch`` references in place (external mode, no copy), sent with
    one ``publish_batch_to``.  Reused slice after slice, so only for adapters that have copied the batch when
    the publish returns (``Capability.COPIES_BATCH``).  Cost per order: one ``encode_order_into`` and one
    ``add_ref``, no allocation."""

    def __init__(self, factory: OrderFactory, subject: str, cap: int = 1024) -> None:
        subj = subject.encode()
        self.factory, self.subject, self.cap = factory, subject, cap
        self._slen = len(subj)
        self.buf = bytearray(self._slen + cap * factory.max_frame())
        self.buf[:self._slen] = subj  # every order's subject span points here
        self.batch = MessageBatch(cap, 1)

    def fill(self, i: int, stop: int, t0: int, period: float, wall_offset: int, intended: np.ndarray) -> MessageBatch:
        """Orders ``i`` .. ``stop - 1`` (at most ``cap``), each stamped with its intended send time (recorded in
        ``intended``, ``perf_counter_ns`` clock; the order carries it on the wall clock)."""
        b, buf, slen, into = self.batch, self.buf, self._slen, self.factory.order_into
        b.clear()
        b.set_buffer(buf)
        off = slen
        for j in range(i, stop):
            due_ns = int(t0 + j * period)
            intended[j] = due_ns
            n = into(buf, off, j, due_ns + wall_offset)
            b.add_ref(off, n, 0, slen)
            off += n
        return b


@dataclass
class LoadResult:
    """What a run measured.  Latencies are ns from the intended send time to the answer."""

    target_rate: float
    sent: int = 0
    answered: int = 0
    duplicates: int = 0
    unanswered: int = 0
    errors: int = 0
    accepted: int = 0
    rejects: dict[str, int] = field(default_factory=dict)
    elapsed_s: float = 0.0
    latency: LatencyHistogram = field(default_factory=lambda: LatencyHistogram("latency"))
    service_time: LatencyHistogram = field(default_factory=lambda: LatencyHistogram("service_time"))
    max_send_lag_ns: int = 0          # how far the generator itself fell behind schedule
    cpu_s: float = 0.0                # CPU time of this whole process (all threads) during the run

    @property
    def cpu_per_order_ns(self) -> float:
        """Process CPU per order sent, ns: in ``lowlat demo`` that is generator, services and transport together."""
        return self.cpu_s * 1e9 / self.sent if self.sent else 0.0

    @property
    def throughput(self) -> float:
        """Answered orders per second over the run."""
        return self.answered / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"target_rate": self.target_rate, "sent": self.sent, "answered": self.answered,
                "duplicates": self.duplicates, "unanswered": self.unanswered, "errors": self.errors,
                "accepted": self.accepted, "rejects": self.rejects, "elapsed_s": round(self.elapsed_s, 3),
                "throughput": round(self.throughput, 1), "latency_ns": self.latency.summary(),
                "service_time_ns": self.service_time.summary(), "max_send_lag_ns": self.max_send_lag_ns,
                "cpu_s": round(self.cpu_s, 4), "cpu_per_order_ns": round(self.cpu_per_order_ns, 1)}


class LoadGenerator:
    """Send orders at ``cfg.rate``/s for ``cfg.count`` orders (or ``cfg.duration_s``) and measure answers.

    Parameters
    ----------
    transport : connected transport.
    cfg : rate, count/duration_s, payload, reject_ratio, mode, subjects.
    progress : optional ``callback(sent, answered, elapsed_s)`` called ~4 times per second.
    answer_timeout : seconds to wait for the last answers after the last send.
    """

    def __init__(self, transport: Transport, cfg: ServiceConfig, *, progress: Callable[[int, int, float], None]
                 | None = None, answer_timeout: float = 5.0, id_base: int = 1, seed: int = 1) -> None:
        from . import _wire

        if cfg.rate <= 0:
            raise ValueError("rate must be > 0 orders/s")
        if cfg.mode not in ("request", "pipeline"):
            raise ValueError(f"mode must be 'request' or 'pipeline', not {cfg.mode!r}")
        self._wire = _wire
        self.t = transport
        self.cfg = cfg
        self.progress = progress
        self.answer_timeout = answer_timeout
        self.factory = OrderFactory(cfg, seed=seed, id_base=id_base)
        self.id_base = id_base
        self.total = cfg.count if cfg.count > 0 else max(1, int(cfg.rate * cfg.duration_s))
        self.intended = np.zeros(self.total, dtype=np.int64)   # perf_counter ns each order was due
        self.sent_at = np.zeros(self.total, dtype=np.int64)    # perf_counter ns it was handed to the transport
        self.answered_at = np.zeros(self.total, dtype=np.int64)
        self.reason = np.full(self.total, 255, dtype=np.uint8)
        self._answered = 0
        self._dups = 0
        self._errors = 0
        self._done = asyncio.Event()
        self._stop = False

    # --- answers ---
    def _on_result(self, data: Any, now: int) -> None:
        try:
            oid, _accepted, reason = self._wire.result_fields(data)
        except ValueError:  # DecodeError: not a ValidationResult; counted, never fatal
            self._errors += 1
            return
        i = oid - self.id_base
        if not 0 <= i < self.total:
            self._errors += 1
            return
        if self.answered_at[i]:
            self._dups += 1
            return
        self.answered_at[i] = now
        self.reason[i] = reason
        self._answered += 1
        if self._answered == self.total:
            self._done.set()

    async def _collect(self, sub: Any) -> None:
        pc = time.perf_counter_ns
        get_nowait = getattr(sub, "get_nowait", None)
        async for msg in sub:
            now = pc()
            self._on_result(msg.data, now)
            if get_nowait is not None:  # take the rest of what is pending with one timestamp read each
                while (m := get_nowait()) is not None:
                    self._on_result(m.data, pc())

    async def _one_request(self, payload: bytes) -> None:
        try:
            reply = await self.t.request(self.cfg.orders_subject, payload, timeout=self.answer_timeout)
        except Exception:  # noqa: BLE001 - timeouts/no responders are counted (as unanswered), not raised mid-run
            return
        self._on_result(reply.data, time.perf_counter_ns())

    def stop(self) -> None:
        """End ``run`` early (e.g. on Ctrl-C): no more sends; ``run`` returns the result for what was sent."""
        self._stop = True

    # --- run ---
    async def run(self) -> LoadResult:
        cfg = self.cfg
        pipeline = cfg.mode == "pipeline"
        subs: list[Any] = []
        collectors: list[asyncio.Task[None]] = []
        from ..transport import scheme_of
        from ..transport.base import new_inbox

        # request mode without a task per request: publish with reply=<our inbox> where the adapter routes replies
        # as plain subjects; elsewhere (Kafka, Aeron: replies ride their own request machinery) use request()
        inbox_ok = scheme_of(self.t.url) in _INBOX_SCHEMES
        inbox = new_inbox("_INBOX.lowlat.loadgen")
        collect = (cfg.validated_subject, cfg.rejected_subject) if pipeline else (inbox,) if inbox_ok else ()
        inflight: set[asyncio.Task[None]] = set()
        for subj in collect:
            s = await self.t.subscribe(subj, max_pending=max(65536, min(self.total, 1 << 20)))
            subs.append(s)
            collectors.append(asyncio.get_running_loop().create_task(self._collect(s)))
        await self.t.flush()
        cpu0 = time.process_time()
        with Pacer() as pacer:
            t0, i, max_lag = await self._send(pacer, inbox if inbox_ok else None, inflight)
        total = self.total
        pc = time.perf_counter_ns
        await self.t.flush()
        if i < total:  # stopped early: the answers to what was sent, briefly
            total = i
            until = time.monotonic() + min(self.answer_timeout, 1.0)
            while self._answered < total and time.monotonic() < until:
                await asyncio.sleep(0.01)
        else:  # wait for the last answers
            try:
                await asyncio.wait_for(self._done.wait(), self.answer_timeout)
            except TimeoutError:
                pass
        end = pc()
        cpu = time.process_time() - cpu0
        if inflight:
            await asyncio.gather(*inflight, return_exceptions=True)
        for c in collectors:
            c.cancel()
        await asyncio.gather(*collectors, return_exceptions=True)
        for s in subs:
            try:
                await s.unsubscribe()
            except Exception:  # noqa: BLE001, S110 - the transport may already be closing; nothing to report
                pass
        if self.progress:
            self.progress(total, self._answered, (end - t0) / 1e9)
        res = self._result(total, end - t0, max_lag)
        res.cpu_s = cpu
        return res

    async def _send(self, pacer: Pacer, inbox: str | None, inflight: set[asyncio.Task[None]]) -> tuple[int, int, int]:
        """The open-loop send schedule: returns (t0 ns, orders sent, max send lag ns)."""
        cfg = self.cfg
        pipeline = cfg.mode == "pipeline"
        publish = self.t.publish
        period = 1e9 / cfg.rate
        pc = time.perf_counter_ns
        wall_offset = time.time_ns() - pc()
        total = self.total
        order = self.factory.order
        spin = cfg.spin
        sleep_until = pacer.sleep_until
        # pipelined on an adapter that copies published batches: orders encoded straight into one reused buffer
        frames = (_Frames(self.factory, cfg.orders_subject)
                  if pipeline and Capability.COPIES_BATCH in getattr(self.t, "capabilities", Capability.NONE)
                  else None)
        t0 = pc()
        last_progress = t0
        i = 0
        max_lag = 0
        while i < total and not self._stop:
            now = pc()
            due = min(total, int((now - t0) / period) + 1)
            if due <= i:
                wait_ns = t0 + i * period - now
                if not spin:
                    await sleep_until(int(t0 + i * period) + 1)
                elif wait_ns > 2_000_000:  # the timer for all but the last ms, which its rounding would overshoot
                    await asyncio.sleep((wait_ns - 1_000_000) / 1e9)
                else:
                    await asyncio.sleep(0)  # one loop iteration: the services run, then we look at the clock again
                continue
            max_lag = max(max_lag, now - int(t0 + i * period))
            if frames is not None and due - i >= 8:  # pipelined into the preallocated frames: no bytes per order
                # (from 8 orders on: below that the per-message publish path is cheaper than building a batch)
                for j in range(i, due, frames.cap):
                    k = min(due, j + frames.cap)
                    b = frames.fill(j, k, t0, period, wall_offset, self.intended)
                    self.sent_at[j:k] = pc()
                    await self.t.publish_batch_to(b, frames.subject)
                if due - i > 64:
                    await asyncio.sleep(0)
                i = due
                continue
            payloads = []
            for j in range(i, due):
                due_ns = int(t0 + j * period)
                self.intended[j] = due_ns
                payloads.append(order(j, due_ns + wall_offset))
            # handed to the transport now: taken before the publish, which may run in-process services inline
            self.sent_at[i:due] = pc()
            if pipeline:
                await self.t.publish_batch(cfg.orders_subject, payloads)
            elif inbox is not None:
                subj = cfg.orders_subject
                for p in payloads:
                    await publish(subj, p, reply=inbox)  # type: ignore[call-arg]
            else:
                for p in payloads:
                    task = asyncio.get_running_loop().create_task(self._one_request(p))
                    inflight.add(task)
                    task.add_done_callback(inflight.discard)
            if due - i > 64:
                await asyncio.sleep(0)  # a long slice: let replies in before building the next one
            i = due
            if self.progress and now - last_progress > 250_000_000:
                last_progress = now
                self.progress(i, self._answered, (now - t0) / 1e9)
        return t0, i, max_lag

    def _result(self, sent: int, elapsed_ns: int, max_lag: int) -> LoadResult:
        res = LoadResult(target_rate=self.cfg.rate, sent=sent, elapsed_s=elapsed_ns / 1e9)
        got = self.answered_at[:sent] > 0
        res.answered = int(got.sum())
        res.unanswered = sent - res.answered
        res.duplicates = self._dups
        res.errors = self._errors
        res.max_send_lag_ns = int(max_lag)
        res.latency.record_array(self.answered_at[:sent][got] - self.intended[:sent][got])
        res.service_time.record_array(self.answered_at[:sent][got] - self.sent_at[:sent][got])
        codes = self.reason[:sent][got]
        res.accepted = int((codes == 0).sum())
        vals, cnts = np.unique(codes[codes != 0], return_counts=True)
        for v, c in zip(vals.tolist(), cnts.tolist()):
            try:
                res.rejects[Reject(v).name] = c
            except ValueError:
                res.rejects[f"CODE_{v}"] = c
        return res


def print_progress(stream: Any = None) -> Callable[[int, int, float], None]:
    """A progress callback: a live ``\\r`` line on a terminal, one line per second otherwise."""
    out = stream or sys.stderr
    tty = hasattr(out, "isatty") and out.isatty()
    state = {"last": -1.0}

    def cb(sent: int, answered: int, elapsed: float) -> None:
        rate = answered / elapsed if elapsed > 0 else 0.0
        line = f"  t={elapsed:5.1f}s  sent {sent:>9,}  answered {answered:>9,}  {rate:>10,.0f} orders/s"
        if tty:
            out.write("\r" + line)
            out.flush()
        elif int(elapsed) != int(state["last"]):
            out.write(line + "\n")
            out.flush()
        state["last"] = elapsed

    return cb
