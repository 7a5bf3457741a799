"""Kafka adapter over confluent-kafka (librdkafka): ``kafka://host:port[,host:port]``.

Semantics, where Kafka differs from the NATS-like interface:

- **subject → topic**: the subject is the topic name verbatim (Kafka allows ``[A-Za-z0-9._-]``, ≤ 249 chars, so
  dotted subjects work); wildcards and other characters raise ``ValueError``.  A missing topic is created on first
  use through the AdminClient with ``num_partitions`` partitions (default 1); ``create_topic()`` makes others.
- **publish** returns once librdkafka has queued the message (like nats-py), ``linger.ms=0`` so nothing waits for
  a batch; ``wait=True`` awaits the broker's ack (one round trip) and raises ``TransportError`` on failure;
  ``flush()`` waits for every outstanding ack and raises the first asynchronous delivery error.  ``acks`` defaults
  to ``"all"`` (``acks=1`` / ``0`` for less latency on replicated clusters); ``idempotent=True`` turns on the
  idempotent producer (no duplicates or reordering on retries) for at-least-once paths.  Payloads that are not
  ``bytes`` are copied once (confluent-kafka accepts only ``bytes``; librdkafka copies into its buffer anyway).
- **keys and order**: partitioner ``murmur2`` (the Java client's, so a symbol lands in the same partition as from
  Java producers; messages without a key all go to one partition and stay in publish order).  ``key=b"AAPL"`` or
  the option ``key_header="symbol"`` (that header's value becomes the key) keeps one instrument in one partition.
- **subscribe(subject)** (fan-out): every subscriber sees every message published after ``subscribe()`` returns.
  Done with ``assign()`` on all partitions at their current end offsets (resolved before returning, so nothing
  published afterwards is missed): no consumer-group join, starts in milliseconds, leaves no groups behind.
  ``partitions=[0, 2]`` and ``offset="end" | "beginning" | "stored" | int`` choose explicitly.  Partitions added
  later are not picked up.  ``msg.ack()`` is a no-op here unless ``group=`` names a group to commit to.
- **subscribe(subject, queue="g")**: a Kafka consumer group (``subscribe()``).  Each partition belongs to one
  member, so load spreads only across partitions (use keys and more partitions).  Returns after the first
  assignment (group join: about session.timeout/2 on Tansu).  A new group starts at ``offset="beginning"`` so no
  work is lost.  ``await msg.ack()`` records the offset (µs); the consumer thread commits it within one poll
  interval (≤ 50 ms, async) and synchronously on unsubscribe/close or partition revoke.  Acking a message also
  acks the earlier ones of its partition (Kafka commits positions); unacked messages are redelivered after a
  restart or rebalance (at-least-once).  ``publish_batch`` is one tight ``produce()`` loop (no await per message).
- **request/reply**: a per-transport inbox topic ``_lowlat.inbox.<hex>`` (made on the first request, deleted on
  close); a request carries header ``lowlat-reply: <inbox>#<correlation id>``, which is ``msg.reply``; publishing to
  it produces to the inbox with header ``lowlat-cid``.  Slow: two broker round trips plus two fetch waits.
  Anyone who can write to a topic can set ``lowlat-reply``, so a received one is honoured only when its topic
  starts with the option ``reply_prefix`` (default ``_lowlat.inbox.``, the inboxes ``request`` makes) and is a
  legal topic name; others are dropped (the message arrives without ``reply``), counted in ``replies_refused``
  and logged (first, then every 1000).  Replies never create topics (an inbox exists while its requester waits).
- **headers**: ``str → str`` (UTF-8) in, a dict out; every ``lowlat-*`` header is internal and stripped.
- **flow control**: the base ``QueueSubscription`` limits (``max_pending``, ``max_pending_bytes``): past them a
  message is dropped and counted (the broker still has it: re-read with ``offset=``).  No subject wildcards, no
  "no responders" (a request nobody serves times out).
- **Tansu quirk** (the test broker): it reports a partition's end as the base offset of its last record batch + 1,
  so ``offset="end"`` may start inside a multi-record batch written just before; Apache Kafka does not.
- **threads**: ``produce()`` runs on the event loop (non-blocking; a full queue waits and retries).  Delivery
  reports are served on the loop too: librdkafka writes an eventfd in the loop's selector when its report queue
  goes non-empty (``lowlat.transport._rdkafka_wake``; one wake-up per report, as for a caller blocked in
  ``poll()``).  Where that cannot be set up (``loop_wake=False``, no eventfd, an unknown confluent-kafka layout) a
  thread per transport serves them and hands ``wait=True`` results over with ``call_soon_threadsafe``.  One thread
  per subscription blocks in ``poll()`` and hands batches to the loop with ``call_soon_threadsafe`` (no spinning;
  costs one cross-thread wake-up, small next to a fetch round trip).
- **options**: ``acks``, ``idempotent``, ``num_partitions``, ``replication_factor``, ``key_header``,
  ``fetch_wait_max_ms`` (default 1: Tansu answers a fetch only after this wait; Apache Kafka answers as soon as
  data arrives, so raise it there to cut idle fetch requests), ``session_timeout_ms`` (default 6000, Kafka's
  minimum), ``heartbeat_interval_ms`` (500), ``join_timeout`` (30 s), ``timeout`` (connect check, 5 s),
  ``close_timeout`` (final flush, 5 s), ``create_topics`` (True), ``loop_wake`` (True: serve delivery reports on the
  loop through an eventfd; False: on a thread), ``config`` / ``producer_config`` /
  ``consumer_config`` (raw librdkafka settings, win over the above).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import threading
import uuid
from collections.abc import Sequence
from functools import partial
from typing import Any

from ..errors import MissingExtraError, TransportClosedError, TransportError, TransportTimeoutError
from ._rdkafka_wake import QueueWake, attach
from ._subjects import new_inbox, validate_subject
from .base import Buffer, Capability, Headers, Message, QueueSubscription, Transport
from .durable import LogAck, LogReader, LogRecord

try:
    from confluent_kafka import (
        OFFSET_BEGINNING,
        OFFSET_STORED,
        Consumer,
        KafkaError,
        KafkaException,
        Producer,
        TopicPartition,
    )
    from confluent_kafka.admin import AdminClient, NewTopic
except ImportError:
    raise MissingExtraError("lowlat.transport.kafka needs confluent-kafka: pip install 'lowlat[kafka]'") from None

__all__ = ["KafkaSubscription", "KafkaTransport"]

log = logging.getLogger("lowlat.transport.kafka")

_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}\Z")  # Kafka's legal topic names
_REPLY, _CID = "lowlat-reply", "lowlat-cid"
_OFFSETS: dict[Any, int] = {"beginning": OFFSET_BEGINNING, "stored": OFFSET_STORED}


def _topic(subject: str) -> str:
    if not _TOPIC.match(validate_subject(subject)):
        raise ValueError(f"Kafka topics allow [A-Za-z0-9._-] (1-249 chars), no wildcards: {subject!r}")
    return subject


# librdkafka writes its own log lines to stderr unless it is given a logger
_rdkafka_log = logging.getLogger("lowlat.transport.kafka.librdkafka")


class KafkaSubscription(QueueSubscription):
    """Messages of one consumer.  A thread owns the consumer (confluent-kafka serialises calls on one handle, so
    calls from other threads would wait for poll()): it polls, hands batches to the loop, and commits acks.
    Flow control is the base ``QueueSubscription``'s (``max_pending`` / ``max_pending_bytes``, drops counted)."""

    def __init__(self, t: KafkaTransport, subject: str, queue: str | None, consumer: Any, commit: bool,
                 sink: Any = None, **limits: Any) -> None:
        super().__init__(subject, queue, on_unsubscribe=self._halt, **limits)
        self._t, self._c, self._commit, self._sink = t, consumer, commit, sink
        self._stop, self.assigned = threading.Event(), threading.Event()
        #: partitions this consumer owns now; a group member's set changes with every rebalance
        self.partitions: frozenset[int] = frozenset()
        self._acks: dict[tuple[str, int], int] = {}  # (topic, partition) -> next offset to commit
        self._lock = threading.Lock()
        self.commit_error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"lowlat-kafka:{subject}", daemon=True)

    def _run(self) -> None:  # consumer thread: the only thread that touches self._c after start
        c, call = self._c, self._loop.call_soon_threadsafe
        try:
            while not self._stop.is_set():
                m = c.poll(0.05)
                if m is not None:
                    call(self._push, [m, *c.consume(255, 0)])
                if self._acks:
                    self._commit_acks(asynchronous=True)
            self._commit_acks(asynchronous=False)
        except BaseException as e:  # noqa: BLE001 - logged; iteration ends
            log.error("kafka consumer on %r stopped: %s", self.subject, e)
            with contextlib.suppress(RuntimeError):  # the event loop may be closed already
                call(self.close_nowait)
        finally:
            c.close()

    def _on_assign(self, _c: Any, ps: list[Any]) -> None:  # consumer thread (group rebalance)
        self.partitions = self.partitions | {tp.partition for tp in ps}  # eager: the full set; cooperative: added
        self.assigned.set()

    def _on_revoke(self, _c: Any, ps: list[Any]) -> None:  # consumer thread (group rebalance)
        self._commit_acks()
        self.partitions = self.partitions - {tp.partition for tp in ps}

    def _commit_acks(self, *_: Any, asynchronous: bool = False) -> None:  # consumer thread (also on revoke)
        with self._lock:
            acks, self._acks = self._acks, {}
        if acks:
            try:
                self._c.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in acks.items()],
                               asynchronous=asynchronous)
            except KafkaException as e:  # e.g. partitions lost in a rebalance: they are redelivered
                self.commit_error = e  # read by the next ack() on the loop

    def _push(self, batch: list[Any]) -> None:  # event loop: raw confluent-kafka messages -> Message
        if self._sink is not None:
            return self._sink(batch)
        allowed = self._t._reply_prefix
        for m in batch:
            e = m.error()
            if e is not None:
                if e.fatal() or e.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                    log.error("kafka consumer on %r: %s", self.subject, e.str())
                continue
            h, reply = m.headers(), None
            if h is not None:
                h = {k: (v or b"").decode("utf-8", "replace") for k, v in h}
                reply = h.pop(_REPLY, None)
                if any(k.startswith("lowlat-") for k in h):
                    h = {k: v for k, v in h.items() if not k.startswith("lowlat-")}
                if reply is not None and not (reply.startswith(allowed)
                                              and _TOPIC.match(reply.partition("#")[0])):
                    self._t._refuse_reply(m.topic(), reply)
                    reply = None
            self._deliver(Message(m.topic(), memoryview(m.value() or b""), h or None, reply, self._t,
                                  partial(self._ack, m) if self._commit else None))

    async def _ack(self, m: Any) -> None:
        """Mark ``m`` (and earlier messages of its partition) processed; µs.  The consumer thread commits within
        one poll interval (≤ 50 ms, asynchronously) and synchronously on unsubscribe/close or partition revoke."""
        if self.commit_error is not None:
            err, self.commit_error = self.commit_error, None
            raise TransportError(f"kafka commit failed: {err}")
        with self._lock:
            self._acks[(m.topic(), m.partition())] = m.offset() + 1

    async def _halt(self, _: Any = None) -> None:
        self._stop.set()
        self._t._subs.discard(self)
        if self._thread.is_alive():
            await self._loop.run_in_executor(None, self._thread.join)
        elif self._thread.ident is None:  # never started
            self._c.close()


class KafkaTransport(Transport):
    """Kafka over confluent-kafka (see the module docstring for options and semantics)."""

    # queue groups are consumer groups: load spreads by partition (keys), not per message
    capabilities = Capability.QUEUE_GROUPS | Capability.HEADERS | Capability.REQUEST_REPLY | Capability.DURABLE

    def __init__(self, url: str, **options: Any) -> None:
        super().__init__(url, **options)
        self._servers = url.partition("://")[2].strip("/")
        if not self._servers:
            raise ValueError(f"expected kafka://host:port[,host:port], got {url!r}")
        self._producer: Any = None
        self._admin: Any = None
        self._known: set[str] = set()
        self._subs: set[KafkaSubscription] = set()
        self._waiters: dict[str, asyncio.Future[Message]] = {}
        self._inbox: str | None = None
        self._error: BaseException | None = None
        self._wake: QueueWake | None = None
        self._poller: threading.Thread | None = None
        self._key_header: str | None = options.get("key_header")
        self._reply_prefix: str = options.get("reply_prefix", "_lowlat.inbox.")
        self.replies_refused = 0

    def _refuse_reply(self, topic: str, reply: str) -> None:
        self.replies_refused += 1
        n = self.replies_refused
        if n == 1 or n % 1000 == 0:
            log.warning("kafka: lowlat-reply %r on %r is outside the allowed reply prefix %r: dropped (%d so far)",
                        reply[:200], topic, self._reply_prefix, n)

    def _conf(self, kind: str, **defaults: Any) -> dict[str, Any]:
        o = self.options
        return {"bootstrap.servers": self._servers, "socket.nagle.disable": True, "logger": _rdkafka_log, **defaults,
                **o.get("config", {}), **o.get(f"{kind}_config", {})}

    async def connect(self) -> None:
        if self._producer is not None:
            return
        if self._opened:
            raise TransportClosedError("KafkaTransport is closed (connect a new one)")
        o, self._loop = self.options, asyncio.get_running_loop()
        self._admin = AdminClient(self._conf("admin"))
        try:  # fail fast on a wrong address instead of at the first publish
            await self._loop.run_in_executor(None, partial(self._admin.list_topics, timeout=o.get("timeout", 5.0)))
        except KafkaException as e:
            self._admin = None  # stop its reconnect attempts now
            raise TransportError(f"cannot reach Kafka at {self._servers}: {e}") from e
        idem = bool(o.get("idempotent", False))
        conf = self._conf("producer", **{
            "linger.ms": 0, "acks": str(o.get("acks", "all")), "enable.idempotence": idem, "partitioner": "murmur2",
            "on_delivery": self._on_delivery, "client.id": f"lowlat-{uuid.uuid4().hex[:12]}"})
        self._producer = Producer(conf)
        self._loop_thread = threading.get_ident()
        self._stop = threading.Event()
        if o.get("loop_wake", True):
            self._wake = attach(self._producer, conf["client.id"])
        if self._wake is not None:  # librdkafka wakes the loop itself: reports are served on the loop thread
            self._loop.add_reader(self._wake.fd, self._serve_reports_now)
        else:
            self._poller = threading.Thread(target=self._serve_reports, name="lowlat-kafka-dr", daemon=True)
            self._poller.start()
        self._mark_open()

    def _serve_reports(self) -> None:  # portable path: delivery reports run on this thread, never on the loop
        while not self._stop.is_set():
            self._producer.poll(0.05)

    def _serve_reports_now(self) -> None:  # event loop: librdkafka signalled the eventfd (reports are queued)
        if self._wake is not None:  # None once close() removed the reader
            try:  # read (clear) before poll(0), so a report queued during it writes the fd again
                os.eventfd_read(self._wake.fd)
            except BlockingIOError:
                pass
            self._producer.poll(0)

    def _on_loop(self, fn: Any, *args: Any) -> None:
        # reports are served on the loop (eventfd), by the report thread, or by flush() in an executor thread
        if threading.get_ident() == self._loop_thread:
            fn(*args)
        else:
            self._loop.call_soon_threadsafe(fn, *args)

    def _on_delivery(self, err: Any, msg: Any) -> None:
        if err is not None and self._error is None:
            self._error = TransportError(f"kafka delivery to {msg.topic()} failed: {err.str()}")

    async def create_topic(self, subject: str, partitions: int | None = None) -> None:
        """Create ``subject``'s topic (no-op if it exists, whatever its partition count).  One admin round trip."""
        self._check_open()
        topic, o = _topic(subject), self.options
        nt = NewTopic(topic, partitions or o.get("num_partitions", 1), o.get("replication_factor", -1))
        try:
            await asyncio.wrap_future(self._admin.create_topics([nt])[topic])
        except KafkaException as e:
            if e.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise TransportError(f"cannot create Kafka topic {topic!r}: {e}") from e
        self._known.add(topic)

    async def publish(self, subject: str, payload: Buffer, *, reply: str | None = None,
                      headers: Headers | None = None, key: str | bytes | None = None, partition: int = -1,
                      wait: bool = False) -> None:
        """Queue one message (µs); ``wait=True`` also awaits the broker's ack (one round trip).  ``reply``
        travels as the ``lowlat-reply`` header (``Message.reply`` on the receiving side)."""
        self._check_open()
        topic, _, cid = subject.partition("#")  # "#" only appears in reply subjects (inbox#correlation-id)
        if cid:  # a reply: the requester made its inbox; never create (or remember) a topic a header named
            _topic(topic)
        elif topic not in self._known:
            await self._prepare(topic)
        h: list[tuple[str, str]] | None = list(headers.items()) if headers else None
        if cid:
            h = [*(h or ()), (_CID, cid)]
        if reply:
            h = [*(h or ()), (_REPLY, reply)]
        if key is None and headers and self._key_header:
            key = headers.get(self._key_header)
        report = None
        if wait:
            fut = self._loop.create_future()
            report = partial(self._report, fut)
        value = payload if type(payload) is bytes else bytes(payload)
        while True:
            try:
                self._producer.produce(topic, value, key, partition, on_delivery=report, headers=h)
                break
            except BufferError:  # librdkafka queue full: back-pressure until reports drain it
                await asyncio.sleep(0.001)
            except KafkaException as e:  # e.g. message larger than message.max.bytes
                raise TransportError(f"kafka produce to {topic!r} failed: {e.args[0].str()}") from e
        if wait:
            await fut

    def _report(self, fut: asyncio.Future[None], err: Any, _msg: Any) -> None:  # a wait=True delivery report
        if threading.get_ident() == self._loop_thread:
            self._settle(fut, err)
        else:
            self._loop.call_soon_threadsafe(self._settle, fut, err)

    @staticmethod
    def _settle(fut: asyncio.Future[None], err: Any) -> None:
        if not fut.done():
            fut.set_exception(TransportError(f"kafka delivery failed: {err.str()}")) if err else fut.set_result(None)

    async def _prepare(self, topic: str) -> None:
        if self.options.get("create_topics", True):
            await self.create_topic(topic)  # validates the name
        else:
            self._known.add(_topic(topic))

    async def publish_batch(self, subject: str, payloads: Sequence[Buffer], *, key: str | bytes | None = None
                            ) -> None:
        """Like a loop of ``publish`` (same order and key) but one tight ``produce()`` loop, no await per message."""
        self._check_open()
        if subject not in self._known:
            await self._prepare(subject)
        produce = self._producer.produce
        for p in payloads:
            v = p if type(p) is bytes else bytes(p)
            while True:
                try:
                    produce(subject, v, key)
                    break
                except BufferError:  # queue full: let delivery reports drain it
                    await asyncio.sleep(0.001)

    async def flush(self, timeout: float | None = None) -> None:
        self._check_open()
        left = await self._loop.run_in_executor(None, self._producer.flush, 30.0 if timeout is None else timeout)
        err, self._error = self._error, None
        if err is not None:
            raise err
        if left:
            raise TransportTimeoutError(f"{left} Kafka messages still unacknowledged after flush")

    async def subscribe(self, subject: str, *, queue: str | None = None, partitions: list[int] | None = None,
                        offset: str | int | None = None, group: str | None = None, _sink: Any = None,
                        **limits: Any) -> KafkaSubscription:
        """Fan-out via assign() (no queue) or a consumer group (``queue=``); see the module docstring.
        ``limits``: ``max_pending``, ``max_pending_bytes``, ``on_slow_consumer`` (``QueueSubscription``)."""
        self._check_open()
        topic, o, run = _topic(subject), self.options, self._loop.run_in_executor
        if topic not in self._known:
            await self.create_topic(topic)
        grouped = queue is not None and partitions is None
        offset = offset if offset is not None else ("beginning" if grouped else "end")
        c = Consumer(self._conf("consumer", **{
            "group.id": queue or group or f"lowlat-{uuid.uuid4().hex}", "enable.auto.commit": False,
            "fetch.wait.max.ms": o.get("fetch_wait_max_ms", 1), "session.timeout.ms": o.get("session_timeout_ms", 6000),
            "heartbeat.interval.ms": o.get("heartbeat_interval_ms", 500),
            "auto.offset.reset": "earliest" if offset == "beginning" else "latest"}))
        sub = KafkaSubscription(self, subject, queue, c, (queue or group) is not None, _sink, **limits)
        try:
            if grouped:
                c.subscribe([topic], on_assign=sub._on_assign, on_revoke=sub._on_revoke)
            else:
                if partitions is None:
                    md = await run(None, partial(c.list_topics, topic, timeout=5.0))
                    partitions = sorted(md.topics[topic].partitions)
                tps = [TopicPartition(topic, p) for p in partitions]
                for tp in tps:  # resolve "end" now so nothing published after subscribe() returns is missed
                    tp.offset = (await run(None, partial(c.get_watermark_offsets, tp, 5.0)))[1] if offset == "end" \
                        else _OFFSETS.get(offset) or int(offset)
                c.assign(tps)
                sub.partitions = frozenset(partitions)
                sub.assigned.set()
        except BaseException:
            c.close()
            raise
        sub._thread.start()
        self._subs.add(sub)
        if not await run(None, sub.assigned.wait, o.get("join_timeout", 30.0)):
            await sub.unsubscribe()
            raise TransportTimeoutError(f"Kafka group {queue!r} got no assignment for {topic!r}")
        return sub

    async def request(self, subject: str, payload: Buffer, *, timeout: float = 1.0,
                      headers: Headers | None = None) -> Message:
        self._check_open()
        if self._inbox is None:
            inbox = new_inbox("_lowlat.inbox")
            await self.create_topic(inbox, 1)
            await self.subscribe(inbox, partitions=[0], offset="beginning", _sink=self._on_replies)
            self._inbox = inbox
        cid = uuid.uuid4().hex
        fut = self._waiters[cid] = self._loop.create_future()
        try:
            await self.publish(subject, payload, headers={**(headers or {}), _REPLY: f"{self._inbox}#{cid}"})
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise TransportTimeoutError(f"no reply on {subject!r} within {timeout}s") from None
        finally:
            self._waiters.pop(cid, None)

    def _on_replies(self, batch: list[Any]) -> None:
        for m in batch:
            h = dict(m.headers() or ())
            fut = self._waiters.get((h.pop(_CID, None) or b"").decode())
            if fut is not None and not fut.done():
                hs = {k: (v or b"").decode("utf-8", "replace") for k, v in h.items()}
                fut.set_result(Message(m.topic(), memoryview(m.value() or b""), hs or None, None, self))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._cancel_background()
        for sub in list(self._subs):
            await sub.drain()  # iteration ends after what is already pending
        for fut in self._waiters.values():
            if not fut.done():
                fut.set_exception(TransportClosedError("KafkaTransport closed while waiting for a reply"))
        if self._producer is not None:
            await self._loop.run_in_executor(None, self._producer.flush, self.options.get("close_timeout", 5.0))
            self._stop.set()
            if self._wake is not None:
                self._loop.remove_reader(self._wake.fd)
                self._wake.close()  # librdkafka stops writing to the fd before it is closed
                self._wake = None
            elif self._poller is not None:
                await self._loop.run_in_executor(None, self._poller.join)
            self._producer = None  # drop the handle now (its threads/sockets), not at garbage collection
            if self._inbox is not None:  # best effort: inbox topics are per process
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.wrap_future(self._admin.delete_topics([self._inbox])[self._inbox]), 2)
        self._admin = None

    # --- the durable-log protocol (base.DurableLog): partition 0 of topic ``name``, positions = offset + 1 ---
    async def log_ensure(self, name: str, subjects: Sequence[str] = (), *, replicas: int = 1,
                         duplicate_window: float = 600.0) -> None:
        """Topic ``name`` with one partition (``subjects``/``duplicate_window`` do not apply to Kafka;
        replication is the ``replication_factor`` option)."""
        await self.create_topic(name, 1)

    async def log_append(self, name: str, subject: str, payload: Buffer, *, msg_id: str | None = None,
                         timeout: float = 5.0) -> LogAck:
        """Produce to partition 0 and await the broker's ack.  Kafka cannot deduplicate by ``msg_id`` here: a
        retried append may be stored twice (readers skip it by content, see services/journal.py)."""
        self._check_open()
        if name not in self._known:
            await self._prepare(name)
        fut: asyncio.Future[int] = self._loop.create_future()

        def done(err: Any, msg: Any) -> None:
            self._on_loop(self._settle_pos, fut, err, None if err else msg.offset())

        value = payload if type(payload) is bytes else bytes(payload)
        while True:
            try:
                self._producer.produce(name, value, partition=0, on_delivery=done)
                break
            except BufferError:
                await asyncio.sleep(0.001)
            except KafkaException as e:
                raise TransportError(f"kafka produce to {name!r} failed: {e.args[0].str()}") from e
        try:
            return LogAck(await asyncio.wait_for(fut, timeout) + 1)
        except TimeoutError:
            raise TransportTimeoutError(f"log_append to {name!r}: no ack within {timeout}s") from None

    @staticmethod
    def _settle_pos(fut: asyncio.Future[int], err: Any, offset: int | None) -> None:
        if fut.done():
            return
        if err:
            fut.set_exception(TransportError(f"kafka delivery failed: {err.str()}"))
        else:
            fut.set_result(offset)  # type: ignore[arg-type]  # set when err is None

    async def log_end(self, name: str) -> int:
        self._check_open()
        c = Consumer(self._conf("consumer", **{"group.id": f"lowlat-log-{uuid.uuid4().hex}"}))
        try:
            wm = await self._loop.run_in_executor(None, c.get_watermark_offsets, TopicPartition(_topic(name), 0), 5.0)
        except KafkaException as e:
            raise TransportError(f"log_end {name!r}: {e}") from e
        finally:
            c.close()
        if wm is None:
            raise TransportTimeoutError(f"log_end {name!r}: no watermarks from the broker")
        return int(wm[1])

    async def log_get(self, name: str, pos: int) -> Message:
        reader = await self.log_reader(name, pos - 1)
        try:
            recs = await reader.fetch(1, 10.0)
        finally:
            await reader.close()
        if not recs or recs[0].pos != pos:
            raise TransportError(f"log_get {name!r}: no record at position {pos}")
        return recs[0].msg

    async def log_reader(self, name: str, after: int = 0, *,
                         subjects: Sequence[str] | None = None) -> LogReader:
        """Reads partition 0 from offset ``after`` (``subjects``: Kafka logs are one topic, no filter)."""
        reader = _KafkaLogReader(self)
        reader._sub = await self.subscribe(name, partitions=[0], offset=after, _sink=reader._push)
        return reader


class _KafkaLogReader:
    """``LogReader`` over an assign()-ed consumer of partition 0 (raw messages keep their offsets)."""

    def __init__(self, t: KafkaTransport) -> None:
        self._t = t
        self._sub: Any = None
        self._q: list[Any] = []
        self._wake: asyncio.Event = asyncio.Event()

    def _push(self, batch: list[Any]) -> None:  # event loop (the consumer thread hands batches over)
        for m in batch:
            e = m.error()
            if e is not None:
                if e.fatal() or e.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                    log.error("kafka log reader: %s", e.str())
                continue
            self._q.append(m)
        self._wake.set()

    async def fetch(self, max_msgs: int = 256, timeout: float = 1.0) -> list[LogRecord]:
        self._t._check_open()
        if not self._q:
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                return []
        take, self._q = self._q[:max_msgs], self._q[max_msgs:]
        return [LogRecord(m.offset() + 1, Message(m.topic(), memoryview(m.value() or b""), None, None, self._t))
                for m in take]

    async def close(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()
