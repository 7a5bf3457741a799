"""``inproc://name``: an embedded bus for the event loops and threads of one process (no broker).

Every transport connected to the same name in this process shares one bus.  Delivery hands the *same* payload
object to each subscriber (no copy at all: a ``bytes`` you publish is the ``Message.data`` the subscriber gets),
so publishers must not mutate a buffer after publishing it.  The batch path is the exception:
``publish_batch_to`` copies each subscriber's messages into that subscription's own memory in one C loop (a run
per subscriber, no ``Message`` per message), so the publisher may reuse its ``MessageBatch`` at once, and
``take_batch`` hands that memory over without another copy.  Subscribers may live on other event loops/threads
(delivery then goes through ``call_soon_threadsafe``).  No ring is needed for that: a ring would add a copy; the
cross-process bus ``shm://`` (``lowlat.transport.shm``) is the one built on ``lowlat._ring``.

Semantics shared with NATS: subjects with ``*``/``>`` wildcards, queue groups (round-robin across the group's
members), request/reply through inbox subjects (``request`` with no subscriber fails at once with
``NoRespondersError``), headers (any mapping, passed by reference), per-subscription
``max_pending``/``max_pending_bytes`` with counted drops (see ``QueueSubscription``).  Ordering: per publisher,
messages reach each subscriber in publish order.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Callable, Sequence
from typing import Any

from .._batch import FanoutPlan, MessageBatch
from ..errors import NoRespondersError, TransportClosedError, TransportTimeoutError
from ._inbox import InboxSink
from ._inline import InlineSink
from ._routes import RouteTable
from ._subjects import new_inbox, validate_subject
from .base import Buffer, Capability, Headers, Message, QueueSubscription, Subscription, Transport

__all__ = ["InprocTransport"]


class _Bus:
    def __init__(self, name: str) -> None:
        self.name = name
        self.routes = RouteTable()
        self.users = 0


_BUSES: dict[str, _Bus] = {}
_BUSES_LOCK = threading.Lock()


class _InprocSub(QueueSubscription):
    _transport: InprocTransport


class InprocTransport(Transport):
    """In-process bus ``inproc://name`` (see the module docstring).

    Options: ``max_pending`` (default 65536 msgs) and ``max_pending_bytes`` (64 MiB) per subscription,
    ``on_slow_consumer(sub)`` callback; each can be overridden per ``subscribe``.
    """

    capabilities = (Capability.QUEUE_GROUPS | Capability.HEADERS | Capability.REQUEST_REPLY | Capability.WILDCARDS
                    | Capability.COPIES_BATCH)

    def __init__(self, url: str, **options: Any) -> None:
        super().__init__(url, **options)
        name = url.partition("://")[2]
        if not name:
            raise ValueError(f"inproc URL needs a bus name: {url!r} (e.g. 'inproc://md')")
        self.name = name
        self._bus: _Bus | None = None
        self._subs: set[Any] = set()
        self._inline: set[InlineSink] = set()
        self._inbox: InboxSink | None = None
        self._req_ids = itertools.count(1)

    async def connect(self) -> None:
        if self._bus is not None:
            return
        with _BUSES_LOCK:
            bus = _BUSES.get(self.name)
            if bus is None:
                bus = _BUSES[self.name] = _Bus(self.name)
            bus.users += 1
        self._bus = bus
        self._mark_open()

    # --- publishing ---
    def _fanout(self, subject: str, payload: Buffer, headers: Headers | None, reply: str | None) -> int:
        routes = self._bus.routes  # type: ignore[union-attr]
        plain, groups = routes.route_valid(subject)
        if not plain and not groups:
            return 0
        loop = asyncio.get_running_loop()
        n = 0
        for s in plain:
            msg = Message(subject, payload, headers, reply, s._transport if hasattr(s, "_transport") else self)
            if s._loop is loop:
                s._deliver(msg)
            else:
                s._deliver_threadsafe(msg)
            n += 1
        for members in groups:
            s = routes.pick(members)
            msg = Message(subject, payload, headers, reply, getattr(s, "_transport", self))
            if s._loop is loop:
                s._deliver(msg)
            else:
                s._deliver_threadsafe(msg)
            n += 1
        return n

    async def publish(self, subject: str, payload: Buffer, *, headers: Headers | None = None,
                      reply: str | None = None) -> None:
        """Deliver ``payload`` (by reference) to every matching subscriber; O(subscribers)."""
        if self._closed:
            raise self._closed_error()
        self._fanout(subject, payload, headers, reply)

    async def publish_batch(self, subject: str, payloads: Sequence[Buffer]) -> None:
        """Deliver each payload to ``subject``.  From 8 payloads on they go the ``publish_batch_to`` way (copied
        once into a batch, then one run per subscriber: no ``Message`` per message, so subscribers see views,
        not the published objects); fewer go one by one, by reference like ``publish``."""
        if self._closed:
            raise self._closed_error()
        n = len(payloads)
        if n < 8:
            for p in payloads:
                self._fanout(subject, p, None, None)
            return
        plain, groups = self._bus.routes.route_valid(subject)  # type: ignore[union-attr]
        if not plain and not groups:
            return
        size = sum(p.nbytes if type(p) is memoryview else len(p) for p in payloads)
        b = MessageBatch(n, size + len(subject.encode()) + 1)
        b.append_payloads(payloads, subject)
        await self.publish_batch_to(b, subject)

    async def publish_batch_to(self, batch: MessageBatch, subject: str | None = None) -> int:
        """``publish_batch_sync`` (nothing here waits)."""
        return self.publish_batch_sync(batch, subject)

    def publish_batch_sync(self, batch: MessageBatch, subject: str | None = None) -> int:
        """Deliver every message of ``batch`` (to ``subject``, else each to its reply subject) in one call, from
        the event loop's thread (inline handlers publish this way, without a coroutine).

        Each distinct destination is routed once; each subscriber gets its messages as one run copied into its
        own memory (one C loop, one memcpy per payload, the subject stored once per run), so **the publisher may
        reuse or clear the batch as soon as this returns**.  A queue group gets every message once, round robin
        per message across its members.  Returns how many messages were published (a refused destination is
        counted in ``publish_errors`` per message).  Cost: O(n) C work per subscriber plus Python per
        destination and per subscriber, not per message."""
        if self._closed:
            raise self._closed_error()
        if not batch.n or subject == "":
            return 0
        plan = FanoutPlan(batch, subject)
        routes = self._bus.routes  # type: ignore[union-attr]
        rows: dict[Any, int] = {}
        counts = plan.counts
        sent = 0
        for d, to in enumerate(plan.subjects):
            k = counts[d]
            try:
                plain, groups = routes.route_valid(to)
            except Exception as e:  # noqa: BLE001 - one bad subject must not lose the rest of the batch
                for _ in range(k):
                    self._refused(to, e)
                continue
            sent += k
            for s in plain:
                row = rows.get(s)
                if row is None:
                    row = rows[s] = plan.add_row()
                plan.select(row, d)
            for members in groups:
                m = len(members)
                first = routes.advance(k)
                for j in range(min(k, m)):   # only members that get at least one message
                    r = (first + j) % m
                    s = members[r]
                    row = rows.get(s)
                    if row is None:
                        row = rows[s] = plan.add_row()
                    plan.select(row, d, m, r, first)
        if rows:
            self._deliver_rows(plan, batch, rows)
        return sent

    def _deliver_rows(self, plan: FanoutPlan, batch: MessageBatch, rows: dict[Any, int]) -> None:
        loop = asyncio.get_running_loop()
        for s, row in rows.items():
            try:
                if isinstance(s, (QueueSubscription, InlineSink)):
                    if s._loop is loop:
                        s._deliver_plan(plan, row)
                    else:
                        s._deliver_plan_threadsafe(plan, row)
                    continue
                # a receiver without a queue (the request inbox): one Message each, payload copied since the
                # publisher may reuse the batch
                deliver = s._deliver if s._loop is loop else s._deliver_threadsafe
                t = getattr(s, "_transport", self)
                for i in plan.indices(row):
                    deliver(Message(plan.subject_of(i) or "", bytes(batch.payload(i)), None, None, t))
            except Exception as e:  # noqa: BLE001 - a failing receiver (its callback) must not starve the others
                self._refused(getattr(s, "subject", "?"), e)

    # --- subscribing ---
    async def subscribe(self, subject: str, *, queue: str | None = None, **options: Any) -> Subscription:
        self._check_open()
        validate_subject(subject, wildcards=True)
        opts: dict[str, Any] = {k: self.options[k] for k in ("max_pending", "max_pending_bytes", "on_slow_consumer")
                if k in self.options}
        opts.update(options)
        sub = _InprocSub(subject, queue, on_unsubscribe=self._forget, **opts)
        sub._transport = self
        self._subs.add(sub)
        self._bus.routes.add(sub)  # type: ignore[union-attr]
        return sub

    def subscribe_inline(self, subject: str, handler: Callable[[MessageBatch], Any], *,
                         queue: str | None = None) -> InlineSink:
        """Subscribe ``handler(batch)`` to run **inside the publisher's call** for everything delivered to it (a
        ``MessageBatch`` valid during the call; see ``lowlat.transport._inline.InlineSink``): no queue, no task
        wake-up.  In this process only, from the event loop that subscribes; ``close()`` (or ``await
        unsubscribe()``) stops it.  A queue group may mix inline and queued members."""
        self._check_open()
        validate_subject(subject, wildcards=True)
        sink = InlineSink(self, subject, queue, handler, on_close=self._forget_inline)
        self._inline.add(sink)
        self._bus.routes.add(sink)  # type: ignore[union-attr]
        return sink

    def _forget_inline(self, sink: InlineSink) -> None:
        self._inline.discard(sink)
        if self._bus is not None:
            self._bus.routes.remove(sink)

    def _forget(self, sub: Any) -> None:
        self._subs.discard(sub)
        if self._bus is not None:
            self._bus.routes.remove(sub)

    # --- request/reply ---
    async def request(self, subject: str, payload: Buffer, *, timeout: float = 1.0,
                      headers: Headers | None = None) -> Message:
        self._check_open()
        loop = asyncio.get_running_loop()
        if self._inbox is None:
            self._inbox = InboxSink(new_inbox("_INBOX"), loop)
            self._inbox._transport = self  # type: ignore[attr-defined]
            self._bus.routes.add(self._inbox)  # type: ignore[union-attr]
        token = str(next(self._req_ids))
        fut: asyncio.Future[Message] = loop.create_future()
        self._inbox.waiting[token] = fut
        try:
            if self._fanout(subject, payload, headers, self._inbox.subject[:-1] + token) == 0:
                raise NoRespondersError(f"no responders on {subject!r}")
            async with asyncio.timeout(timeout):
                return await fut
        except NoRespondersError:
            raise
        except TimeoutError:
            raise TransportTimeoutError(f"request on {subject!r} timed out after {timeout}s") from None
        finally:
            self._inbox.waiting.pop(token, None)

    # --- lifecycle ---
    async def drain(self) -> None:
        """Stop new deliveries; subscribers still iterate what is pending; then close."""
        for s in list(self._subs):
            s._finish(discard=False)
        await self.close()

    async def close(self) -> None:
        self._cancel_background()
        if self._bus is None:
            self._closed = True
            return
        self._closed = True
        bus, self._bus = self._bus, None
        for s in list(self._subs):
            bus.routes.remove(s)
            s.close_nowait()
        self._subs.clear()
        for sink in list(self._inline):
            bus.routes.remove(sink)
            sink.close()
        self._inline.clear()
        if self._inbox is not None:
            bus.routes.remove(self._inbox)
            for fut in self._inbox.waiting.values():
                if not fut.done():
                    fut.set_exception(TransportClosedError("transport closed while waiting for a reply"))
            self._inbox = None
        with _BUSES_LOCK:
            bus.users -= 1
            if bus.users <= 0 and not len(bus.routes):
                _BUSES.pop(bus.name, None)


_MOVED = {"ShmTransport", "shm_available", "shm_root", "sync_idle"}


def __getattr__(name: str) -> object:
    # The shm bus lived here before it became the lowlat.transport.shm package; old imports keep working
    # without importing shared memory for inproc users.
    if name in _MOVED:
        from . import shm

        return getattr(shm, name)
    if name == "RouteTable":
        return RouteTable
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
