"""The synchronous batch path of the shm bus: ``serve_batch_sync`` (a stage loop over whole ``MessageBatch``es taken
from the member's ring in one compiled call, ``lowlat._shmbus.ShmIntake``) and ``publish_batch_sync`` (an output
batch pushed into the destination rings, one compiled call per destination, ``lowlat._shmbus.BatchRoutes``).

Python runs per batch and per distinct destination, never per message on the normal path.  Same records and
registry as the rest of the transport, so batch members interoperate with async and ``serve_sync`` members.
"""

from __future__ import annotations

import functools
import select
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ..._batch import MessageBatch
from ..._shmbus import BatchRoutes, ShmIntake
from ..base import Message, validate_subject
from ._codec import SID_INBOX
from ._sync import _full_dropped, _retry, _serving, log

if TYPE_CHECKING:
    from ._transport import ShmTransport

__all__ = ["publish_batch_sync", "serve_batch_sync"]

BatchHandler = Callable[[MessageBatch], Any]


class _BatchSink:
    """``serve_batch_sync``'s registration (subjects, queue, one sid in the registry).  Records of ours that reach
    the generic dispatch (a ``SID_ALL`` record while other plain subscriptions of this member exist) are kept in
    ``held`` as ``Message``s (copied) and handled as a batch of their own."""

    def __init__(self, subjects: str | Sequence[str], queue: str | None, sid: int) -> None:
        subjects = _subject_list(subjects)
        self.subject, self.queue, self.sid = subjects[0], queue, sid
        # the transport routes by these (one per subject, all delivering here)
        self.route_entries = [_Route(s, queue, self) for s in subjects]
        self.held: list[Message] = []
        self.handled = 0
        self.malformed_seen = 0

    def _deliver(self, msg: Message) -> bool:
        self.held.append(Message(msg.subject, bytes(msg.data), None, msg.reply))
        return True


def _subject_list(subjects: str | Sequence[str]) -> list[str]:
    out = [subjects] if isinstance(subjects, str) else list(subjects)
    if not out:
        raise ValueError("serve_batch_sync: no subject")
    return out


class _Route:
    """One subject of a ``_BatchSink`` in the transport's local route table."""

    __slots__ = ("_deliver", "queue", "subject")

    def __init__(self, subject: str, queue: str | None, sink: _BatchSink) -> None:
        self.subject, self.queue, self._deliver = subject, queue, sink._deliver


def _call(sink: _BatchSink, handle: BatchHandler, batch: MessageBatch) -> None:
    sink.handled += batch.n
    try:
        handle(batch)
    except Exception:  # noqa: BLE001 - a failing handler must not kill the stage loop; its requesters time out
        log.exception("serve_batch_sync(%r): batch handler failed (%d messages)", sink.subject, batch.n)


def _step(t: ShmTransport, intake: ShmIntake, batch: MessageBatch, sink: _BatchSink, handle: BatchHandler,
          other: list[bytes]) -> int:
    # one intake: take what is pending, hand back what is not ours, run the handler once; returns records taken
    # a SID_ALL record is ours alone when every plain subscription of this member is one of our subjects
    k = intake.take(batch, sink.sid, not sink.queue and len(t._local_plain) == len(sink.route_entries), other)
    if not k:
        return 0
    if intake.malformed != sink.malformed_seen:
        log.warning("shm bus %r: dropped %d malformed record(s) (total %d)", t.name,
                    intake.malformed - sink.malformed_seen, intake.malformed)
        sink.malformed_seen = intake.malformed
    if other:
        for rec in other:
            t._dispatch_safe(rec)
        other.clear()
        if sink.held:
            held, sink.held = sink.held, []
            hb = MessageBatch(len(held), sum(len(m.data) + len(m.subject) + len(m.reply or "") for m in held) + 64)
            for m in held:
                hb.append(m.data, m.subject, m.reply)
            _call(sink, handle, hb)
    if batch.n:
        _call(sink, handle, batch)
    return k


def serve_batch_sync(t: ShmTransport, subject: str | Sequence[str], handle_batch: BatchHandler, queue: str | None,
                     idle: Any, stop: Callable[[], bool] | threading.Event | None, max_batch: int,
                     ready: Callable[[], Any] | None, check_interval: float) -> int:
    """See ``ShmTransport.serve_batch_sync``."""
    if not 1 <= max_batch <= 1 << 24:
        raise ValueError(f"max_batch must be in 1..{1 << 24}, got {max_batch}")
    subjects = _subject_list(subject)
    for subj in subjects[1:]:  # (_serving checks the first)
        validate_subject(subj, wildcards=True)
    with _serving(t, subjects[0], idle, stop) as (wait, stopped):
        ring = t._ring
        intake = ShmIntake(ring, max_batch)
        batch = MessageBatch(max_batch, 1)  # external mode only: the records stay in the ring
        other: list[bytes] = []
        sink = _BatchSink(subjects, queue, next(t._sids))
        t._register(sink)
        try:
            if ready is not None:
                ready()
            sleep = _sleeper(t, ring, wait, check_interval)
            while not t._closed and not stopped():
                if not _step(t, intake, batch, sink, handle_batch, other):
                    sleep()
        finally:
            t._forget(sink)  # publishers stop routing to us; what they pushed meanwhile is still answered
            try:
                while not t._closed and (_step(t, intake, batch, sink, handle_batch, other)
                                         or ring.wait_readable(0.002, wait)):
                    pass
            finally:
                if not t._closed:
                    intake.release()
        return sink.handled


# a doorbell member polls this long after its last batch before it blocks on the doorbell: back-to-back batches
# are taken without a syscall, and an idle stage thread costs no CPU
DOORBELL_POLL_S = 50e-6


def _sleeper(t: ShmTransport, ring: Any, idle: Any, check_interval: float) -> Callable[[], Any]:
    """How the stage loop waits for its ring: the idle strategy alone (a polling member, ``connect_sync()``), or
    for a doorbell member (``connect_sync(doorbell=True)``: publishers ring it) the idle strategy for
    ``DOORBELL_POLL_S``, then ``poll(2)`` on the doorbell FIFO with the GIL released, up to ``check_interval``.
    No lost wake-up: the FIFO is emptied *before* the ring is looked at again, and a publisher writes its byte
    after its record, so a push after that look leaves a byte and the poll returns at once."""
    if t._poll:
        return functools.partial(ring.wait_readable, check_interval, idle)
    fd = t._bell.fd
    bell = select.poll()
    bell.register(fd, select.POLLIN)
    ms = max(1, round(check_interval * 1000))

    def sleep() -> None:
        if ring.wait_readable(DOORBELL_POLL_S, idle):
            return
        if t._bell.clear() and not ring.wait_readable(0, idle):
            bell.poll(ms)

    return sleep


def _send_each(t: ShmTransport, batch: MessageBatch, idx: list[int],
               full: list[tuple[str, int, list[int]]] | None) -> int:
    # the per-message path (routing by subject) for replies that do not name a member; returns records pushed
    sent = 0
    for i in idx:
        to = batch.reply(i)
        assert to is not None  # scan keys only messages that have a destination
        payload = batch.payload(i)
        subj = to.encode()
        for member, sid in t._plan(to):
            if t._push(member, sid, subj, b"", payload):
                sent += 1
            elif full is not None:
                full.append((member, sid, [i]))
            else:
                ok = _retry(t, member, functools.partial(t._push, member, sid, subj, b"", payload))
                if ok:
                    sent += 1
                elif ok is False:  # None: its owner died and was reaped (counted there)
                    _full_dropped(t, 1, to)
    return sent


def _inbox_member(t: ShmTransport, key: bytes, cache: dict[bytes, str]) -> str | None:
    # the member an "_INBOX.<member>" key names, if it is on the bus (re-read the registry once for a new one)
    member = cache.get(key)
    if member is not None and member in t._targets:
        return member
    member = key[7:].decode("utf-8", "replace").replace("_", "-")
    if member not in t._targets:
        t._plan(key.decode("utf-8", "replace") + ".0")
        if member not in t._targets:
            return None
    if len(cache) > 4096:
        cache.clear()
    cache[key] = member
    return member


def publish_batch_sync(t: ShmTransport, batch: MessageBatch, subject: str | None) -> int:
    """See ``ShmTransport.publish_batch_sync``."""
    return push_batch(t, batch, subject, None)


def push_batch(t: ShmTransport, batch: MessageBatch, subject: str | None,
               full: list[tuple[str, int, list[int]]] | None) -> int:
    """Push ``batch`` (``publish_batch_sync``'s routing); returns the records pushed.  A full ring is retried here
    (blocking, up to ``publish_timeout``) when ``full`` is None, else left to the caller: ``(member, sid, message
    indices not pushed)`` are appended to ``full`` (the async path retries them without
    blocking its loop)."""
    t._check_open()
    routes: BatchRoutes | None = t.__dict__.get("_batch_routes")
    if routes is None:
        routes = t.__dict__["_batch_routes"] = BatchRoutes()
    cache: dict[bytes, str] = t.__dict__.setdefault("_inbox_members", {})
    keys = routes.scan(batch, None if subject is None else subject.encode())
    for _ in range(routes.too_long):
        t._refused("<a subject longer than 65535 bytes>", ValueError("subject too long"))
    sent = 0
    for k, key in enumerate(keys):
        n = routes.count(k)
        dests: list[tuple[str, int]]
        if subject is None and key.startswith(b"_INBOX."):
            member = _inbox_member(t, key, cache)
            if member is None:  # not a member's request inbox (e.g. new_inbox() + subscribe): route each reply
                sent += _send_each(t, batch, routes.indices(k), full)
                continue
            dests = [(member, SID_INBOX)]
        else:
            try:
                name = key.decode()
                dests = t._plan(name)
                if not dests:
                    validate_subject(name)
            except ValueError as e:  # an invalid subject (or not UTF-8): refused, the rest still goes out
                for _ in range(n):
                    t._refused(key.decode("utf-8", "replace"), e)
                continue
        for member, sid in dests:
            ring = t._targets.get(member)
            if ring is None:
                continue
            done = routes.push(ring, k, sid, 0)
            if done < n and full is not None:
                full.append((member, sid, routes.indices(k)[done:]))
            elif done < n:
                pushed = [done]

                def attempt(ring: Any = ring, sid: int = sid, k: int = k, n: int = n, pushed: list[int] = pushed) -> bool:
                    pushed[0] += routes.push(ring, k, sid, pushed[0])
                    return pushed[0] >= n

                if _retry(t, member, attempt) is False:
                    _full_dropped(t, n - pushed[0], key.decode("utf-8", "replace"))
                done = pushed[0]
            sent += done
            if done:
                t._bell.ring(member)
    return sent
