"""``ShmTransport``: the ``shm://name`` bus between processes on one host, over ``lowlat._ring``.

publish(subject): if the registry's generation moved, re-read it (``_registry``); route the subject over every
member's subscriptions; push ONE record (``_codec``) per member that has plain matches (``SID_ALL``: "deliver to
all your matching plain subs") and one record per queue group to a member picked round-robin (sid = that
subscription).  Receiving: the event loop drains the ring and dispatches.  Wake-up: every member owns a doorbell
FIFO (``_bell``) that publishers write a byte to after pushing; the owner's event loop watches it with
``add_reader()``: no polling thread, one epoll wake-up per burst.  ``wait="spin"`` instead polls the ring from the
event loop (lowest latency, burns a core), and ``spin_us=N`` makes ``request()`` poll its reply ring for up to
N µs before sleeping (a bounded spin that saves the wake-up when the server answers fast).  The synchronous
fast path (``connect_sync``/``request_sync``/``serve_sync``, no event loop) is in ``_sync``.

Dead members: a member killed with ``kill -9`` leaves its entry and ring behind and never bumps the generation.
Publishers check the pids of the members they route to at most every ``liveness_interval`` s (default 0.1;
one ``kill(pid, 0)`` each) and drop a dead one from routing at once (queue groups fail over to the live members);
the records left unread in its ring are lost and counted in ``dead_member_drops`` (logged at ERROR).  What a
member had already popped but not answered when it died is not visible to anyone: the requester times out.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import re
import struct
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Self

from ..._batch import MessageBatch
from ...errors import (
    NoRespondersError,
    RingError,
    TransportClosedError,
    TransportError,
    TransportTimeoutError,
)
from .._inbox import InboxSink
from .._routes import RouteTable
from .._serve import ServeSink
from .._subjects import encode_meta, validate_subject
from ..base import Buffer, Capability, Handler, Headers, Message, QueueSubscription, Subscription, Transport
from . import _batchsync, _sync
from ._bell import Doorbells
from ._codec import SID_ALL, SID_INBOX, SMALL_RECORD, decode, encode_small, record_size, write_record
from ._registry import Registry, member_pid, pid_alive, shm_available

__all__ = ["ShmTransport"]

log = logging.getLogger("lowlat.transport.shm")
_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")


class _Remote:
    """One subscription of some member, as seen by publishers."""

    __slots__ = ("member", "queue", "sid", "subject")

    def __init__(self, subject: str, queue: str | None, member: str, sid: int) -> None:
        self.subject, self.queue, self.member, self.sid = subject, queue, member, sid


class _ShmSub(QueueSubscription):
    sid: int = 0


def _route_entries(sink: Any) -> Sequence[Any]:
    # what a local subscription is routed by (objects with .subject/.queue/._deliver): itself, or one entry per
    # subject for a multi-subject batch sink (one sid, several subjects)
    entries: Sequence[Any] | None = getattr(sink, "route_entries", None)
    return entries if entries is not None else (sink,)


def inbox_member(subject: str) -> str:
    """The member an ``_INBOX.<member>.<token>`` reply subject belongs to (``-`` is spelled ``_`` in subjects)."""
    return subject[7:].partition(".")[0].replace("_", "-")


class ShmTransport(Transport):
    """Shared-memory bus ``shm://name`` between processes on one host (see the module docstring).

    Options: ``ring_capacity`` (bytes, power of two, default 4 MiB: largest payload is half of it),
    ``wait`` ("bell" default: FIFO doorbell watched by the event loop, or "spin": poll the ring from the loop,
    one core busy), ``spin_us`` (µs request() polls for its reply before sleeping; default 0),
    ``publish_timeout`` (s a publish waits for room in a full subscriber ring before dropping the message and
    counting it in ``full_drops``; default 1.0), ``max_pending``/``max_pending_bytes``/``on_slow_consumer`` per
    subscription.
    """

    capabilities = (Capability.QUEUE_GROUPS | Capability.HEADERS | Capability.REQUEST_REPLY | Capability.WILDCARDS
                    | Capability.COPIES_BATCH)

    def __init__(self, url: str, *, ring_capacity: int = 4 << 20, wait: str = "bell", spin_us: float = 0.0,
                 publish_timeout: float = 1.0, liveness_interval: float = 0.1, **options: Any) -> None:
        super().__init__(url, **options)
        name = url.partition("://")[2]
        if not _NAME_RE.match(name):
            raise ValueError(f"shm URL needs a bus name of [A-Za-z0-9_.-]{{1,64}}: {url!r}")
        if wait not in ("bell", "spin"):
            raise ValueError("wait must be 'bell' or 'spin'")
        self.name = name
        self.ring_capacity = ring_capacity
        self.wait = wait
        self.spin_ns = int(spin_us * 1000)
        self.publish_timeout = publish_timeout
        self.member = f"{os.getpid()}-{os.urandom(4).hex()}"
        self._reg = Registry(name, self.member)
        self.dir = self._reg.dir
        self.full_drops = 0
        self.dead_member_drops = 0           # records left unread in the rings of members found dead
        self.liveness_interval = liveness_interval
        self._live_checked = 0.0             # monotonic time of the last liveness check
        self._ring: Any = None
        self._gen_seen = -1
        self._routes = RouteTable()          # every member's subscriptions (_Remote)
        self._targets: dict[str, Any] = {}   # member -> attached MpscRing
        self._bell = Doorbells(self._reg, self.member)
        self._local: dict[int, Any] = {}     # sid -> local subscription / serve sink / inbox
        self._local_plain = RouteTable()     # local non-queue subs, for SID_ALL records
        self._sids = itertools.count(2)
        self._inbox: InboxSink | None = None
        self._req_ids = itertools.count(1)
        self._reader: asyncio.Task[None] | None = None
        self._poll = False                   # this member polls its ring (spin / sync): publishers skip its bell
        self._sync = False                   # joined by connect_sync(): no event loop drains the ring
        self._owner = 0                      # thread id of the ring's consumer (async mode: the loop thread)
        self._consume_lock = threading.Lock()

    # --- registry ---
    def _bump_and_write(self) -> None:
        self._reg.publish({"pid": os.getpid(), "ring": self._ring.name, "poll": self._poll,
                           "subs": [[sid, r.subject, s.queue] for sid, s in self._local.items()
                                    for r in _route_entries(s)]})

    def _reload(self, gen: int) -> None:
        from ..._ring import MpscRing

        routes = RouteTable()
        seen: set[str] = set()
        polling: set[str] = set()
        for member, entry in self._reg.entries():
            if member not in self._targets:
                try:
                    self._targets[member] = MpscRing.attach(entry["ring"])
                except (RingError, OSError, KeyError):
                    continue
            seen.add(member)
            if entry.get("poll"):
                polling.add(member)
            for sid, subject, queue in entry.get("subs", ()):
                routes.add(_Remote(subject, queue, member, sid))
        for member in list(self._targets):
            if member not in seen:
                self._targets.pop(member).close()
                self._bell.forget(member)
        self._routes = routes
        self._bell.polling = frozenset(polling)
        self._gen_seen = gen

    def _reap_member(self, member: str) -> None:
        entry = self._reg.entry(member)
        ring = self._targets.pop(member, None)
        if ring is not None:
            try:
                lost = len(ring)  # pushed, never consumed: the dead member will not answer them
            except (RingError, SystemError, ValueError):
                lost = 0
            if lost:
                self.dead_member_drops += lost
                log.error("shm bus %r: member %s (pid %s) died with %d unread message(s); dropped from routing "
                          "(%d lost to dead members so far)", self.name, member, member_pid(member), lost,
                          self.dead_member_drops)
            ring.close()
        self._bell.forget(member)
        self._reg.reap(member, entry)
        self._reg.bump()

    # --- lifecycle ---
    async def connect(self) -> None:
        if not self._closed:
            return
        loop = asyncio.get_running_loop()
        self._open(poll=self.wait == "spin")
        self._sync = False
        if self.wait == "spin":
            self._reader = loop.create_task(self._spin_loop(), name=f"lowlat-shm:{self.name}")
        else:
            loop.add_reader(self._bell.fd, self._on_bell)

    def _open(self, poll: bool) -> None:
        ok, why = shm_available()
        if not ok:
            raise TransportError(f"shm transport unavailable: {why}")
        from ..._ring import MpscRing

        self._reg.open()
        try:
            self._ring = MpscRing(self.ring_capacity, name=self._reg.ring_name(self.member), create=True)
        except (RingError, ValueError, OSError) as e:
            raise TransportError(f"cannot create the inbound ring for {self.url}: {e}") from e
        self._bell.open()
        self._poll = poll
        self._owner = threading.get_ident()
        self._mark_open()
        self._bump_and_write()

    async def close(self) -> None:
        self._cancel_background()
        if self._closed and self._ring is None:
            return
        self._closed = True
        await self._stop_task(self._reader)
        self._reader = None
        if self._bell.fd >= 0 and not self._poll:
            try:
                asyncio.get_running_loop().remove_reader(self._bell.fd)
            except RuntimeError:
                pass
        self.close_sync()

    def close_sync(self) -> None:
        """Leave the bus now (what ``close()`` does, without an event loop; for ``connect_sync`` users)."""
        if self._closed and self._ring is None:
            return
        self._closed = True
        for s in list(self._local.values()):
            if isinstance(s, (QueueSubscription, ServeSink)):
                s.close_nowait()
        self._local.clear()
        if self._inbox is not None:
            for fut in self._inbox.waiting.values():
                if not fut.done():
                    fut.set_exception(TransportClosedError("transport closed while waiting for a reply"))
            self._inbox = None
        self._bell.close()
        self._reg.leave()
        for r in self._targets.values():
            r.close()
        self._targets.clear()
        if self._ring is not None:
            self._ring.unlink()
            self._ring.close()
            self._ring = None

    async def drain(self) -> None:
        if self._closed:
            return
        self._drain_ring()  # what already arrived goes to the subscriptions
        for s in list(self._local.values()):
            if isinstance(s, QueueSubscription):
                s._finish(discard=False)
        await self.close()

    # --- sending ---
    def _push(self, member: str, sid: int, subj: bytes, meta: bytes, payload: Buffer) -> bool:
        ring = self._targets.get(member)
        if ring is None:
            return False
        n = payload.nbytes if type(payload) is memoryview else memoryview(payload).nbytes
        size = record_size(subj, meta, n)
        if size <= SMALL_RECORD:
            if not ring.try_push(encode_small(sid, subj, meta, payload)):
                return False
            self._bell.ring(member)
            return True
        if size > ring.max_record_size:
            raise ValueError(f"message of {size} bytes exceeds the shm ring's max record ({ring.max_record_size})")
        buf = ring.claim(size)
        if buf is None:
            return False
        try:
            write_record(buf, sid, subj, meta, payload, n)
        except BaseException:
            ring.abort()
            raise
        ring.publish()
        self._bell.ring(member)
        return True

    def _check_liveness(self) -> None:
        """Reap the members we route to whose process is gone (at most every ``liveness_interval`` s)."""
        now = time.monotonic()
        if now - self._live_checked < self.liveness_interval:
            return
        self._live_checked = now
        for member in [m for m in self._targets if m != self.member and not pid_alive(member_pid(m))]:
            self._reap_member(member)

    def _plan(self, subject: str) -> list[tuple[str, int]]:
        self._check_liveness()
        g = self._reg.generation
        if g != self._gen_seen:
            self._reload(g)
        plain, groups = self._routes.route(subject)
        out: list[tuple[str, int]] = []
        seen: set[str] = set()
        for r in plain:
            if r.member not in seen:
                seen.add(r.member)
                out.append((r.member, SID_ALL))
        for members in groups:
            r = self._routes.pick(members)
            out.append((r.member, r.sid))
        return out

    def _send(self, subject: str, payload: Buffer, headers: Headers | None, reply: str | None) -> list[Any]:
        """Push to every target now; returns the (member, sid, subject, meta) of the rings that were full."""
        if subject.startswith("_INBOX.") and not headers and not reply:
            # reply fast path: the inbox names its member; skip routing (each reply subject is unique, so the
            # route cache would only miss)
            member = inbox_member(subject)
            if member in self._targets:
                subj = subject.encode()
                if self._push(member, SID_INBOX, subj, b"", payload):
                    return []
                return [(member, SID_INBOX, subj, b"")]
        plan = self._plan(subject)
        if not plan:
            validate_subject(subject)
            return plan
        subj = subject.encode()
        meta = encode_meta(reply, headers) if (reply or headers) else b""
        return [(m, sid, subj, meta) for m, sid in plan if not self._push(m, sid, subj, meta, payload)]

    async def _send_async(self, subject: str, payload: Buffer, headers: Headers | None,
                          reply: str | None) -> None:
        full = self._send(subject, payload, headers, reply)
        if full:
            await self._wait_full(full, payload, subject)

    async def _wait_full(self, full: list[Any], payload: Buffer, subject: str) -> bool:
        """Retry the (member, sid, subject, meta) pushes whose rings were full until ``publish_timeout``; False when
        some were dropped (counted in ``full_drops``)."""
        # a full ring whose owner died is reaped at once instead of stalling every publish
        for f in full:
            if not pid_alive(member_pid(f[0])):
                self._reap_member(f[0])
        full = [f for f in full if f[0] in self._targets]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.publish_timeout
        while full:
            # Try before sleeping: for the rest of a batch whose ring filled up, the sleep for the first record
            # has usually let the consumer drain the ring, and one sleep per record would cap the rate at a few
            # thousand messages/s (one event-loop timer each).
            full = [f for f in full if not self._push(f[0], f[1], f[2], f[3], payload)]
            if not full or loop.time() >= deadline:
                break
            await asyncio.sleep(0.0002)
        if full:
            self.full_drops += len(full)
            log.warning("shm bus %r: %d subscriber ring(s) full for %.3fs, message on %r dropped (total %d)",
                        self.name, len(full), self.publish_timeout, subject, self.full_drops)
        return not full

    async def publish_batch_to(self, batch: MessageBatch, subject: str | None = None) -> int:
        """``Transport.publish_batch_to`` over the compiled batch push (``publish_batch_sync``'s routing: one
        compiled call per destination ring, no Python object per message); the records of a ring that is full
        take the per-message path, which waits for room without blocking the event loop."""
        if self._closed:
            raise self._closed_error()
        full: list[tuple[str, int, list[int]]] = []
        sent = _batchsync.push_batch(self, batch, subject, full)
        for member, sid, idx in full:
            for i in idx:
                to = subject or batch.reply(i)
                assert to is not None  # push_batch routes only messages with a destination
                sent += await self._wait_full([(member, sid, to.encode(), b"")], batch.payload(i), to)
        return sent

    async def publish(self, subject: str, payload: Buffer, *, reply: str | None = None,
                      headers: Headers | None = None) -> None:
        """Copy ``payload`` once into each target process's ring.  Waits up to ``publish_timeout`` for room."""
        if self._closed:
            raise self._closed_error()
        await self._send_async(subject, payload, headers, reply)

    # --- receiving ---
    def _dispatch(self, rec: bytes) -> None:
        sid, subject, reply, headers, data = decode(rec)
        if sid == SID_ALL:
            for s in self._local_plain.route(subject)[0]:
                s._deliver(Message(subject, data, headers, reply, self))
        else:
            s = self._local.get(sid)
            if s is not None:
                s._deliver(Message(subject, data, headers, reply, self))

    def _dispatch_safe(self, rec: bytes) -> None:
        try:
            self._dispatch(rec)
        except (ValueError, UnicodeDecodeError, struct.error) as e:
            log.warning("shm bus %r: dropped malformed record: %s", self.name, e)

    def _drain_ring(self) -> int:
        ring = self._ring
        n = 0
        while ring is not None:
            recs = ring.pop_batch(64)
            if not recs:
                break
            for rec in recs:
                self._dispatch_safe(rec)
            n += len(recs)
        return n

    def _on_bell(self) -> None:
        if self._bell.clear():
            self._drain_ring()

    async def _spin_loop(self) -> None:
        while True:
            self._drain_ring()
            await asyncio.sleep(0)

    # --- subscribing ---
    def _register(self, sink: Any) -> None:
        self._local[sink.sid] = sink
        if not sink.queue:
            for r in _route_entries(sink):
                self._local_plain.add(r)
        self._bump_and_write()

    def _forget(self, sink: Any) -> None:
        if self._local.pop(sink.sid, None) is not None:
            for r in _route_entries(sink):
                self._local_plain.remove(r)
            if not self._closed:
                self._bump_and_write()

    def _check_async(self) -> None:
        self._check_open()
        if self._sync:
            raise TransportError("this ShmTransport was opened with connect_sync(): nothing drains its ring in the "
                                 "event loop; use request_sync()/serve_sync(), or connect() for the async API")

    async def subscribe(self, subject: str, *, queue: str | None = None, **options: Any) -> Subscription:
        self._check_async()
        validate_subject(subject, wildcards=True)
        sub = _ShmSub(subject, queue, on_unsubscribe=self._forget, **self._sub_options(options))
        sub.sid = next(self._sids)
        self._register(sub)
        return sub

    async def serve(self, subject: str, handler: Handler, *, queue: str | None = None,
                    **options: Any) -> asyncio.Task[None]:
        """Handler runs inline in the ring reader (no queue hop); cancel the task to stop."""
        self._check_async()
        validate_subject(subject, wildcards=True)
        sink = ServeSink(self, subject, queue, handler, reply_now=self._reply_now)
        sink.sid = next(self._sids)  # type: ignore[attr-defined]
        self._register(sink)
        return self._serve_task(sink, lambda: self._forget(sink))

    def _reply_now(self, reply: str, payload: Buffer) -> None:
        self._send(reply, payload, None, None)

    async def request(self, subject: str, payload: Buffer, *, timeout: float = 1.0,
                      headers: Headers | None = None) -> Message:
        self._check_async()
        loop = asyncio.get_running_loop()
        inbox = self._inbox or self._make_inbox(loop)
        if not self._plan(subject):
            validate_subject(subject)
            raise NoRespondersError(f"no responders on {subject!r}")
        token = str(next(self._req_ids))
        fut: asyncio.Future[Message] = loop.create_future()
        inbox.waiting[token] = fut
        try:
            await self._send_async(subject, payload, headers, inbox.subject[:-1] + token)
            if self.spin_ns and not fut.done():
                end = time.perf_counter_ns() + self.spin_ns
                while not fut.done() and time.perf_counter_ns() < end:
                    self._drain_ring()
                if fut.done():
                    return fut.result()
            async with asyncio.timeout(timeout):
                return await fut
        except TimeoutError:
            raise TransportTimeoutError(f"request on {subject!r} timed out after {timeout}s") from None
        finally:
            if self._inbox is not None:
                self._inbox.waiting.pop(token, None)

    def _make_inbox(self, loop: asyncio.AbstractEventLoop | None) -> InboxSink:
        inbox = InboxSink(f"_INBOX.{self.member.replace('-', '_')}", loop)
        inbox.sid = SID_INBOX  # type: ignore[attr-defined]
        self._inbox = inbox
        self._register(inbox)
        return inbox

    # --- synchronous fast path (lowlat.transport.shm._sync: no event loop between the ring and the caller) ---
    def connect_sync(self, *, doorbell: bool = False) -> Self:
        """Join the bus without an event loop, for ``request_sync``/``serve_sync`` (a latency-critical
        process or thread that polls its ring).  Publishers skip this member's doorbell; what arrives waits in
        the ring until the next ``request_sync``/``serve_sync`` call.  ``subscribe``/``serve``/``request``
        (async) are not available on such a transport.  Also ``with ShmTransport(url) as t:``.  Cost: a few
        syscalls and one ring allocation (``ring_capacity`` bytes, prefaulted).

        ``doorbell=True``: publishers ring this member's doorbell (one FIFO write per push, once per batch from
        ``publish_batch_sync``) and ``serve_batch_sync`` blocks on it after a short poll, so an idle stage
        thread costs no CPU and wakes within the scheduler's wake-up latency, instead of polling and then
        sleeping 50 µs-1 ms (``sync_idle()``), which a loaded machine turns into hundreds of µs per message."""
        if not self._closed:
            return self
        self._open(poll=not doorbell)
        self._sync = True
        self._owner = 0  # any one thread at a time (guarded by _consume_lock)
        return self

    def __enter__(self) -> Self:
        return self.connect_sync()

    def __exit__(self, *exc: object) -> None:
        self.close_sync()

    def request_sync(self, subject: str, payload: Buffer, *, timeout: float = 1.0, headers: Headers | None = None,
                     idle: Any = None) -> Message:
        """Send a request and wait for its reply **synchronously**, polling this member's ring (no event loop).

        The latency path of the shm transport: with the server in ``serve_sync`` the round trip is two ring
        pushes and two polls (see BENCHMARKS.md for p50 on a 2-vCPU VM).  ``idle`` is the ``lowlat._ring``
        idle strategy while waiting (default ``sync_idle()``: poll ≈200 µs, then sleep 50 µs..1 ms;
        ``BusySpinIdle()`` burns a core for up to ``timeout``: let at most one side spin).  Records for other
        local consumers that arrive meanwhile are dispatched as usual.  Works on a ``connect_sync()`` transport
        (any one thread) or, from the event loop's thread, on an async one (the loop is blocked meanwhile).
        Interoperates with async ``serve()``/``request()`` members of the bus.

        Returns the reply ``Message`` (``data`` a memoryview of the popped record).  Raises
        ``NoRespondersError`` at once when nobody serves ``subject``, ``TransportTimeoutError`` when no reply
        comes within ``timeout`` s.
        """
        return _sync.request_sync(self, subject, payload, timeout, headers, idle)

    def serve_sync(self, subject: str, handler: Callable[[Message], Buffer | None], *, queue: str | None = None,
                   idle: Any = None, stop: Callable[[], bool] | threading.Event | None = None,
                   check_interval: float = 0.05, ready: Callable[[], Any] | None = None) -> int:
        """Run a request/reply worker **in this thread** until ``stop`` is set (or KeyboardInterrupt).

        Polls this member's inbound ring with ``idle`` (a ``lowlat._ring`` idle strategy; default
        ``sync_idle()``: poll ≈200 µs after the last request, then sleep 50 µs doubling to 1 ms, so a busy
        worker answers from the poll and an idle one costs little CPU and wakes within ≈1 ms;
        ``BusySpinIdle()`` never sleeps but burns a core) and calls the synchronous
        ``handler(msg) -> reply payload | None`` inline, then pushes the reply straight into the requester's
        ring: no event loop, no doorbell.  Any ``request``/``request_sync`` on the bus reaches it.  ``stop`` is a
        ``threading.Event`` or a callable, checked at least every ``check_interval`` s.  Returns the number of
        requests handled.  Registration is removed on return.  ``ready()`` (if given) is called once the worker
        is registered in the bus, i.e. once requests reach it (a readiness signal for whoever starts it).
        """
        return _sync.serve_sync(self, subject, handler, queue, idle, stop, check_interval, ready)

    def serve_batch_sync(self, subject: str | Sequence[str], handle_batch: Callable[[MessageBatch], Any], *,
                         queue: str | None = None, idle: Any = None,
                         stop: Callable[[], bool] | threading.Event | None = None, max_batch: int = 1024,
                         ready: Callable[[], Any] | None = None, check_interval: float = 0.05) -> int:
        """Run a batch stage loop **in this thread** until ``stop`` is set: the ``serve_sync`` of compiled stages.

        Each turn takes everything pending for this subscription (up to ``max_batch`` records) from the member's
        ring in one compiled call (``lowlat._shmbus.ShmIntake``: records parsed in C, malformed ones counted and
        skipped, records for other local subscriptions dispatched as usual) and calls ``handle_batch(batch)``
        once.  ``subject`` may be a list: one subscription (one sid) for all of them, the batch mixing their
        messages in arrival order (``batch.subject(i)`` tells them apart; the matcher's one subject per symbol).
        ``batch`` is a ``MessageBatch`` whose payload/subject/reply spans point into the ring (zero-copy;
        no headers), valid until the handler returns: answer with ``publish_batch_sync``.  When nothing is
        pending it waits in ``wait_readable`` with the GIL released, using ``idle`` (default ``sync_idle()``).

        ``stop`` (a ``threading.Event`` or a callable) is checked at least every ``check_interval`` s.  On stop the
        subscription is removed from the bus first, then what is already in the ring for it is still handled
        (until the ring stays empty for 2 ms), so nothing taken by the bus is lost.  A handler that raises is
        logged and the loop goes on.  ``ready()`` is called once requests reach the loop.  Returns the number of
        messages handled.  Needs a ``connect_sync()`` transport (or the connecting thread of an async one).
        """
        return _batchsync.serve_batch_sync(self, subject, handle_batch, queue, idle, stop, max_batch, ready,
                                           check_interval)

    def publish_batch_sync(self, batch: MessageBatch, subject: str | None = None) -> int:
        """Publish every message of ``batch`` now, from any thread that owns this transport: to ``subject`` if
        given, else each to its own reply subject (``publish_batch_to``'s contract, without an event loop).

        Messages are grouped by destination in one compiled call (a reply subject ``_INBOX.<member>.<token>`` goes
        straight to that member's ring; any other subject is routed once per batch, so a queue group gets the
        batch's messages for one subject on one member), then each destination's records are copied into its
        ring in one compiled call, and its doorbell is rung once.  A full ring is retried for up to
        ``publish_timeout`` s, then the rest is dropped and counted in ``full_drops``; an invalid subject is
        counted in ``publish_errors``.  Returns the number of records pushed.  Cost: ~1-2 µs per batch plus
        ~50-100 ns per message.
        """
        return _batchsync.publish_batch_sync(self, batch, subject)
