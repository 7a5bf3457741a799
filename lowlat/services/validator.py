"""Order validator service: a stateless worker in a queue group that validates FlatBuffer orders in batches.

Per batch (everything pending, up to ``batch_max``, as one ``MessageBatch``): one compiled call
(``lowlat._vstage.ValidateStage.run``) validates every order and writes every resulting message into a
preallocated output batch, which one ``Transport.publish_batch_to`` sends; Python runs once per batch.  Per
order a ``ValidationResult`` is

- sent as the reply when the order came as a request (``msg.reply``);
- published to ``validated_subject`` / ``rejected_subject`` when ``publish_results`` is on, and always for an
  order that came without a reply subject (pipelined use);
- accepted orders are forwarded unchanged to ``<match_prefix>.<SYMBOL>`` when ``forward`` is on (the matching
  service's intake).

Run N of them (same ``queue``) to scale out: the transport gives each order to one member.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from .._batch import MessageBatch
from .._vstage import ValidateStage
from ..errors import TransportClosedError
from ..transport import Message
from ._stage_loop import ReusableOut, stage_outputs, sync_rejects
from .config import ServiceConfig
from .metrics import Metrics, otel_span
from .runtime import BatchService, log

__all__ = ["ValidatorService"]


class ValidatorService(BatchService):
    """Validate orders from ``cfg.orders_subject`` (queue group ``cfg.queue``) with ``lowlat``'s Validator.

    ``validator`` defaults to one built from the config's instrument rules for ``cfg.symbols``.
    Counters: ``in``, ``accepted``, ``rejected``, ``replies``, ``reply_errors`` (replies the transport refused, e.g. an
    invalid reply subject; the rest of the batch is still answered), ``forwarded``; stages: ``receive`` (oldest order's
    timestamp → dequeued), ``validate`` and ``reply`` (per order, amortised over the batch).
    """

    name = "validator"

    def __init__(self, cfg: ServiceConfig, *, validator: Any = None, metrics: Metrics | None = None) -> None:
        from . import _wire

        super().__init__(cfg, metrics=metrics)
        self._wire = _wire
        self.validator = validator if validator is not None else _wire.make_validator(cfg)
        self._behind_logged = 0  # ns, last "falling behind" warning (at most one per 10 s)
        self._codes = np.zeros(max(1, cfg.batch_max), dtype=np.uint8)
        self.stage = ValidateStage(self.validator, validated_subject=cfg.validated_subject,
                                   rejected_subject=cfg.rejected_subject, match_prefix=cfg.match_prefix,
                                   publish_results=cfg.publish_results, forward=cfg.forward)
        self._out_cap: tuple[int, int] | None = None  # tests: a fixed (capacity, arena) for the output batches
        self._in: MessageBatch | None = None   # for handle(list[Message]) callers (durable paths)
        # the output batches for publishers that copy them (the loop's and the stage thread's: never shared)
        self._out = ReusableOut((3072, 1 << 20))
        self._out_sync = ReusableOut((3072, 1 << 20))
        self._seen_reasons = np.zeros(256, dtype=np.int64)

    def _reply_refused(self, reply: str, e: BaseException) -> None:
        """Count a reply the transport refused; log the first and then one line per 1000 (rate-limited)."""
        n = self._refused = getattr(self, "_refused", 0) + 1
        if n == 1 or n % 1000 == 0:
            log.error("reply refused by the transport", extra={"service": self.name, "reply": reply[:200],
                                                                "error": str(e)[:200], "refused_total": n})

    def sync_stage_handler(self) -> Callable[[MessageBatch, Any], None] | None:
        return self._stage_sync

    def _stage_sync(self, batch: MessageBatch, t: Any) -> None:
        # the stage thread's handler: the same stage, published without an event loop
        for out in self.run_stage(batch, t, new_out=self._out_sync):
            t.publish_batch_sync(out)
        self.processed += batch.n

    def subjects(self) -> list[tuple[str, str | None]]:
        return [(self.cfg.orders_subject, self.cfg.queue or None)]

    async def handle_batch(self, subject: str, batch: MessageBatch) -> None:
        """Validate one received batch and publish everything it produces (Python once per output batch)."""
        t = self.transport
        assert t is not None
        for out in self.run_stage(batch, t, new_out=self._out.for_transport(t)):
            await t.publish_batch_to(out)

    def run_stage(self, batch: MessageBatch, t: Any, *,
                  new_out: ReusableOut | None = None) -> Iterator[MessageBatch]:
        """The stage over one received batch, as a generator of the output batches to publish (on ``t``, whose
        refused publishes are accounted): the caller publishes each one before asking for the next, so the
        ``reply`` stage measures its publishing.  Metrics and counters are recorded when it is exhausted.
        ``new_out``: where the publisher copies each output batch before returning (``publish_batch_sync``, a
        ``Capability.COPIES_BATCH`` adapter), the one output batch to reuse instead of a fresh one per run."""
        n = batch.n
        if n == 0:
            return
        st = self.stage
        now_wall = time.time_ns()
        before = (st.accepted, st.rejected, st.replies, st.forwarded, st.dropped)
        errs0 = getattr(t, "publish_errors", 0)
        yield from stage_outputs(st, batch, self.metrics, cap=self._out_cap or st.out_size(batch), now_ns=now_wall,
                                 span="lowlat.validate", timers=("validate", "reply"),
                                 new_out=new_out)
        ts0 = st.first_timestamp  # the batch's first (oldest) order, 0 when unreadable
        if ts0 > 0:
            self._intake_age(now_wall - ts0, now_wall, n)
        self._account(before)
        refused = getattr(t, "publish_errors", 0) - errs0
        if refused:  # the transport counted and logged each refused message; the rest of the batch went out
            c = self.metrics.counts
            c["reply_errors"] += refused
            c["replies"] -= refused

    def _account(self, before: tuple[int, ...]) -> None:
        st = self.stage
        c = self.metrics.counts
        c["accepted"] += st.accepted - before[0]
        c["rejected"] += st.rejected - before[1]
        c["replies"] += st.replies - before[2]
        fw = st.forwarded - before[3]
        if fw:
            c["forwarded"] += fw
        dr = st.dropped - before[4]
        if dr:
            c["dropped_oversized"] += dr
        if st.rejected != before[1]:
            self._seen_reasons = sync_rejects(st, self._seen_reasons, self.metrics)

    async def handle(self, subject: str, batch: list[Message]) -> None:
        """The same as ``handle_batch`` for a list of ``Message`` (journal/durable callers): copied into a
        ``MessageBatch`` first."""
        b = self._in
        need = sum(len(msg.data) + 64 + len(msg.reply or "") for msg in batch)
        if b is None or b.capacity < len(batch) or b.arena_bytes < need:
            b = self._in = MessageBatch(max(len(batch), 1), max(need, 1 << 16))
        b.clear()
        for msg in batch:
            b.append(msg.data, msg.subject, msg.reply)
        await self.handle_batch(subject, b)

    def _intake_age(self, age: int, now_wall: int, n: int) -> None:
        m = self.metrics
        m.record("receive", age)
        m.intake_age_ns = age
        # a backlog held by the broker never fills our own queue: its only sign is the age of what we take in
        if age > 1_000_000_000 and now_wall - self._behind_logged > 10_000_000_000:
            self._behind_logged = now_wall
            log.warning("falling behind: the oldest order taken in was sent %.1f s ago", age / 1e9,
                        extra={"service": self.name, "age_s": round(age / 1e9, 3), "batch": n})

    async def handle_python(self, subject: str, batch: list[Message]) -> None:
        """The previous pure-Python path (per-order encode + per-message publish), kept as the same-run peer of
        the compiled stage in benchmarks/bench_services.py and as its reference in tests."""
        w = self._wire
        cfg = self.cfg
        m = self.metrics
        t = self.transport
        assert t is not None
        n = len(batch)
        now_wall = time.time_ns()
        pc = time.perf_counter_ns
        bufs = [msg.data for msg in batch]
        with otel_span("lowlat.validate", n):
            t0 = pc()
            if n == 1:  # idle path: one order, no array round trip
                code_list = [self.validator.validate(bufs[0])]
            else:
                # a transport may hand over more than batch_max (nats-py's fetch drains orphaned pulls too):
                # such a batch gets its own array, the preallocated one is not grown
                codes = self._codes[:n] if n <= len(self._codes) else np.zeros(n, dtype=np.uint8)
                self.validator.validate_many(bufs, codes)  # one nogil loop over the batch
                code_list = codes.tolist()
            t1 = pc()
        # receive stage: how long the oldest order of the batch waited (its timestamp is the sender's clock)
        ts0 = w.order_timestamp(bufs[0])
        if ts0:
            self._intake_age(now_wall - ts0, now_wall, n)
        m.record("validate", (t1 - t0) // n, n)
        results = w.encode_results(bufs, code_list, now_wall)
        by_subject: dict[str, list[Any]] | None = None
        pub_all = cfg.publish_results
        fwd: dict[str, list[Any]] | None = None
        replies = refused = 0
        publish = t.publish
        for msg, res, code, buf in zip(batch, results, code_list, bufs):
            if msg.reply:
                try:
                    await publish(msg.reply, res)
                    replies += 1
                except TransportClosedError:
                    raise
                except Exception as e:  # noqa: BLE001 - one bad reply address must not lose the batch's answers
                    refused += 1
                    self._reply_refused(msg.reply, e)
            if pub_all or not msg.reply:
                if by_subject is None:
                    by_subject = defaultdict(list)
                by_subject[cfg.rejected_subject if code else cfg.validated_subject].append(res)
            if cfg.forward and not code:
                if fwd is None:
                    fwd = defaultdict(list)
                # copy views: some adapters reuse receive memory after the batch
                fwd[f"{cfg.match_prefix}.{w.order_symbol(buf)}"].append(
                    bytes(buf) if isinstance(buf, memoryview) else buf)
        if by_subject:
            for subj, payloads in by_subject.items():
                await t.publish_batch(subj, payloads)
        if fwd:
            for subj, payloads in fwd.items():
                await t.publish_batch(subj, payloads)
        t2 = pc()
        m.record("reply", (t2 - t1) // n, n)
        rejected = n - code_list.count(0)
        if rejected:
            m.count_rejects(np.array(code_list, dtype=np.uint8))
        c = m.counts
        c["in"] += n
        c["batches"] += 1
        c["accepted"] += n - rejected
        c["rejected"] += rejected
        c["replies"] += replies
        if refused:
            c["reply_errors"] += refused
        if fwd:
            c["forwarded"] += sum(len(v) for v in fwd.values())
