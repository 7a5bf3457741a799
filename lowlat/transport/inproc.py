"""Embedded transports, no broker: ``inproc://name`` (one process) and ``shm://name`` (processes on one host).

``inproc://name``: every transport connected to the same name in this process shares one bus.  Delivery hands
the *same* payload object to each subscriber (no copy at all: a ``bytes`` you publish is the ``Message.data``
the subscriber gets), so publishers must not mutate a buffer after publishing it.  Subscribers may live on other
event loops/threads (delivery then goes through ``call_soon_threadsafe``).  No ring is needed for that: a ring
would add a copy; the cross-process ``shm://`` transport (``lowlat.transport.shm``) is the one built on
``lowlat._ring``.

Semantics shared with NATS: subjects with ``*``/``>`` wildcards, queue groups (round-robin across the group's
members), request/reply through inbox subjects (``request`` with no subscriber fails at once with
``TransportTimeoutError("no responders")``), headers (any mapping, passed by reference), per-subscription
``max_pending``/``max_pending_bytes`` with counted drops (see ``QueueSubscription``).  Ordering: per publisher,
messages reach each subscriber in publish order.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Sequence
from typing import Any

from ..errors import TransportClosedError, TransportTimeoutError
from .base import (Buffer, Headers, Message, QueueSubscription, Subscription, Transport, new_inbox,
                   subject_matches, validate_subject)

__all__ = ["InprocTransport", "RouteTable"]


class RouteTable:
    """Subject -> subscribers, with a per-subject cache invalidated on every (un)subscribe.

    ``route(subject)`` returns ``(plain, groups)``: the list of non-queue subscribers and a list of queue-group
    member lists; the publisher delivers to every plain one and to one member per group (round robin).  Entries
    are any objects with ``subject`` and ``queue`` attributes.  Cost: a dict hit per publish once warm.
    """

    def __init__(self) -> None:
        self._subs: list[Any] = []
        self._cache: dict[str, tuple[list[Any], list[list[Any]]]] = {}
        self._rr = itertools.count()
        self.lock = threading.Lock()

    def add(self, sub: Any) -> None:
        with self.lock:
            self._subs.append(sub)
            self._cache = {}

    def remove(self, sub: Any) -> None:
        with self.lock:
            try:
                self._subs.remove(sub)
            except ValueError:
                return
            self._cache = {}

    def __len__(self) -> int:
        return len(self._subs)

    def route(self, subject: str) -> tuple[list[Any], list[list[Any]]]:
        hit = self._cache.get(subject)
        if hit is not None:
            return hit
        with self.lock:
            plain: list[Any] = []
            groups: dict[str, list[Any]] = {}
            for s in self._subs:
                if subject_matches(s.subject, subject):
                    if s.queue:
                        groups.setdefault(s.queue, []).append(s)
                    else:
                        plain.append(s)
            out = (plain, list(groups.values()))
            if len(self._cache) > 4096:  # bound the cache under subject churn
                self._cache = {}
            self._cache[subject] = out
            return out

    def pick(self, members: list[Any]) -> Any:
        """One member of a queue group (round robin over the process-wide counter)."""
        return members[next(self._rr) % len(members)]


class _Bus:
    def __init__(self, name: str) -> None:
        self.name = name
        self.routes = RouteTable()
        self.users = 0


_BUSES: dict[str, _Bus] = {}
_BUSES_LOCK = threading.Lock()


class _InboxSink:
    """Receives replies for one transport's requests: resolves the waiting future (no queue)."""

    queue = None

    def __init__(self, prefix: str, loop: asyncio.AbstractEventLoop) -> None:
        self.subject = prefix + ".*"
        self.prefix_len = len(prefix) + 1
        self._loop = loop
        self.waiting: dict[str, asyncio.Future[Message]] = {}

    def _deliver(self, msg: Message) -> bool:
        fut = self.waiting.pop(msg.subject[self.prefix_len:], None)
        if fut is not None and not fut.done():
            fut.set_result(msg)
            return True
        return False

    def _deliver_threadsafe(self, msg: Message) -> None:
        self._loop.call_soon_threadsafe(self._deliver, msg)


class _InprocSub(QueueSubscription):
    _transport: "InprocTransport"


class InprocTransport(Transport):
    """In-process bus ``inproc://name`` (see the module docstring).

    Options: ``max_pending`` (default 65536 msgs) and ``max_pending_bytes`` (64 MiB) per subscription,
    ``on_slow_consumer(sub)`` callback; each can be overridden per ``subscribe``.
    """

    schemes = ("inproc",)

    def __init__(self, url: str, **options: Any) -> None:
        super().__init__(url, **options)
        name = url.partition("://")[2]
        if not name:
            raise ValueError(f"inproc URL needs a bus name: {url!r} (e.g. 'inproc://md')")
        self.name = name
        self._bus: _Bus | None = None
        self._subs: set[Any] = set()
        self._inbox: _InboxSink | None = None
        self._req_ids = itertools.count(1)
        self._closed = True  # until connect()

    async def connect(self) -> None:
        if self._bus is not None:
            return
        with _BUSES_LOCK:
            bus = _BUSES.get(self.name)
            if bus is None:
                bus = _BUSES[self.name] = _Bus(self.name)
            bus.users += 1
        self._bus = bus
        self._closed = False

    # --- publishing ---
    def _fanout(self, subject: str, payload: Buffer, headers: Headers | None, reply: str | None) -> int:
        routes = self._bus.routes  # type: ignore[union-attr]
        plain, groups = routes.route(subject)
        if not plain and not groups:
            validate_subject(subject)  # only checked on a route miss: a hit means it was valid before
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
            raise TransportClosedError(f"{type(self).__name__} is closed")
        self._fanout(subject, payload, headers, reply)

    async def publish_batch(self, subject: str, payloads: Sequence[Buffer]) -> None:
        if self._closed:
            raise TransportClosedError(f"{type(self).__name__} is closed")
        for p in payloads:
            self._fanout(subject, p, None, None)

    # --- subscribing ---
    async def subscribe(self, subject: str, *, queue: str | None = None, **options: Any) -> Subscription:
        self._check_open()
        validate_subject(subject, wildcards=True)
        opts = {k: self.options[k] for k in ("max_pending", "max_pending_bytes", "on_slow_consumer")
                if k in self.options}
        opts.update(options)
        sub = _InprocSub(subject, queue, on_unsubscribe=self._forget, **opts)
        sub._transport = self
        self._subs.add(sub)
        self._bus.routes.add(sub)  # type: ignore[union-attr]
        return sub

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
            self._inbox = _InboxSink(new_inbox("_INBOX"), loop)
            self._inbox._transport = self  # type: ignore[attr-defined]
            self._bus.routes.add(self._inbox)  # type: ignore[union-attr]
        token = str(next(self._req_ids))
        fut: asyncio.Future[Message] = loop.create_future()
        self._inbox.waiting[token] = fut
        try:
            if self._fanout(subject, payload, headers, self._inbox.subject[:-1] + token) == 0:
                raise TransportTimeoutError(f"no responders on {subject!r}")
            return await asyncio.wait_for(fut, timeout)
        except (TimeoutError, asyncio.TimeoutError):
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
        if self._bus is None:
            self._closed = True
            return
        self._closed = True
        bus, self._bus = self._bus, None
        for s in list(self._subs):
            bus.routes.remove(s)
            s.close_nowait()
        self._subs.clear()
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

