"""The synchronous shm fast path: ``request_sync``/``serve_sync`` poll the member's ring in the caller's thread
(no event loop between the ring and the handler).  Same records (``_codec``) and registry as the async transport,
so sync and async members interoperate on one bus.  ``ShmTransport`` exposes these as methods."""

from __future__ import annotations

import contextlib
import logging
import struct
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from ...errors import NoRespondersError, TransportError, TransportTimeoutError
from .._serve import ServeSink
from ..base import Buffer, Headers, Message, encode_meta, validate_subject
from ._codec import HEADER, SID_ALL, SID_INBOX, split_meta, unpack_header
from ._registry import member_pid, pid_alive

if TYPE_CHECKING:
    from ._transport import ShmTransport

__all__ = ["request_sync", "serve_sync", "sync_idle"]

log = logging.getLogger("lowlat.transport.shm")
_SYNC_IDLE: Any = None
_MALFORMED = (ValueError, UnicodeDecodeError, struct.error)


def sync_idle() -> Any:
    """The default idle strategy of ``request_sync``/``serve_sync``: ``BackoffIdle(max_spins=4000,
    max_yields=0, min_park_ns=50_000, max_park_ns=1_000_000)``.

    Poll ≈200 µs (4000 polls of ≈50 ns) after the last message, then sleep 50 µs doubling to 1 ms.  While a
    request/reply exchange is active each side polls only between its own messages (a few µs), and nothing
    polls for more than ≈200 µs after the traffic stops, so an idle worker costs little CPU and wakes within
    ≈1 ms.  There is no ``sched_yield`` phase on purpose: on a loaded machine a yield hands the core to another
    process for a whole time slice (ms), which measured far worse than a bounded spin.  The price: when the
    scheduler puts client and server on ONE core (``taskset``), the waiting side holds the core for up to its
    spin window; pass ``idle=BackoffIdle()`` there.  On a dedicated core ``BusySpinIdle()`` on ONE side is
    the lowest-latency choice."""
    global _SYNC_IDLE
    if _SYNC_IDLE is None:
        from ..._idle import BackoffIdle

        _SYNC_IDLE = BackoffIdle(max_spins=4000, max_yields=0, min_park_ns=50_000, max_park_ns=1_000_000)
    return _SYNC_IDLE


def _enter_consumer(t: ShmTransport) -> None:
    # The inbound ring has ONE consumer.  In async mode that is the event loop's thread (its doorbell reader
    # drains the ring whenever the loop runs), so sync calls must come from that thread (they block the loop
    # while they poll).  After connect_sync() any thread may consume, one at a time.
    t._check_open()
    if t._owner and t._owner != threading.get_ident():
        raise TransportError("ShmTransport: sync calls must run on the thread that connected it (the inbound "
                             "ring has a single consumer)")
    if not t._consume_lock.acquire(blocking=False):
        raise TransportError("ShmTransport: another thread is already consuming this transport's ring")


def _retry(t: ShmTransport, member: str, attempt: Callable[[], bool]) -> bool | None:
    # a target ring was full: reap a dead owner at once (None), else call attempt() every 0.2 ms until it
    # succeeds (True) or publish_timeout passes (False)
    if not pid_alive(member_pid(member)):
        t._reap_member(member)
        return None
    deadline = time.monotonic() + t.publish_timeout
    while member in t._targets and time.monotonic() < deadline:
        time.sleep(0.0002)
        if attempt():
            return True
    return False


def _full_dropped(t: ShmTransport, n: int, subject: str) -> None:
    t.full_drops += n
    log.warning("shm bus %r: subscriber ring full for %.3fs, %d message(s) on %r dropped (total %d)",
                t.name, t.publish_timeout, n, subject, t.full_drops)


def _push_retry(t: ShmTransport, member: str, sid: int, subj: bytes, meta: bytes, payload: Buffer) -> None:
    if _retry(t, member, lambda: t._push(member, sid, subj, meta, payload)) is False:
        _full_dropped(t, 1, subj.decode())


def request_sync(t: ShmTransport, subject: str, payload: Buffer, timeout: float, headers: Headers | None,
                 idle: Any) -> Message:
    """See ``ShmTransport.request_sync``."""
    _enter_consumer(t)
    if idle is None:
        idle = sync_idle()
    try:
        inbox = t._inbox or t._make_inbox(None)
        plan = t._plan(subject)
        if not plan:
            validate_subject(subject)
            raise NoRespondersError(f"no responders on {subject!r}")
        reply = inbox.subject[:-1] + str(next(t._req_ids))
        expect = reply.encode()
        subj = subject.encode()
        meta = encode_meta(reply, headers)
        for m, sid in plan:
            if not t._push(m, sid, subj, meta, payload):
                _push_retry(t, m, sid, subj, meta, payload)
        # Wait for the reply in our ring; match it here instead of through the inbox's future table (saves
        # ≈1 µs); anything else that arrives meanwhile is dispatched as the doorbell reader would.
        ring = t._ring
        o = HEADER
        got: Message | None = None
        deadline = time.monotonic() + timeout
        while True:
            if ring.wait_readable(max(0.0, deadline - time.monotonic()), idle):
                for rec in ring.pop_batch(64):
                    try:
                        sid, ls, lm = unpack_header(rec, 0)
                        if got is None and sid <= SID_INBOX and rec[o:o + ls] == expect:  # sid 0 if routed by subject
                            hdrs = split_meta(rec[o + ls:o + ls + lm])[1] if lm else None
                            got = Message(reply, memoryview(rec)[o + ls + lm:], hdrs, None, t)
                        else:
                            t._dispatch(rec)
                    except _MALFORMED as e:
                        log.warning("shm bus %r: dropped malformed record: %s", t.name, e)
                if got is not None:
                    return got
            elif time.monotonic() >= deadline:
                raise TransportTimeoutError(f"request on {subject!r} timed out after {timeout}s")
    finally:
        t._consume_lock.release()


def _stopper(stop: Callable[[], bool] | threading.Event | None) -> Callable[[], bool]:
    if stop is None:
        return lambda: False
    if isinstance(stop, threading.Event):
        return stop.is_set
    return stop


@contextlib.contextmanager
def _serving(t: ShmTransport, subject: str, idle: Any,
             stop: Callable[[], bool] | threading.Event | None) -> Iterator[tuple[Any, Callable[[], bool]]]:
    # a serve loop's frame: the ring's single consumer, a valid subject; yields (idle strategy, stopped())
    _enter_consumer(t)
    try:
        validate_subject(subject, wildcards=True)
        yield (sync_idle() if idle is None else idle), _stopper(stop)
    finally:
        t._consume_lock.release()


def serve_sync(t: ShmTransport, subject: str, handler: Callable[[Message], Buffer | None], queue: str | None,
               idle: Any, stop: Callable[[], bool] | threading.Event | None, check_interval: float,
               ready: Callable[[], Any] | None) -> int:
    """See ``ShmTransport.serve_sync``."""
    with _serving(t, subject, idle, stop) as (wait, stopped):
        sink = ServeSink(t, subject, queue, handler, reply_now=t._reply_now, sync=True)
        sink.sid = next(t._sids)  # type: ignore[attr-defined]
        t._register(sink)
        try:
            if ready is not None:
                ready()
            _serve_loop(t, sink, stopped, wait, check_interval)
        finally:
            t._forget(sink)
        return sink.handled


def _serve_loop(t: ShmTransport, sink: ServeSink, stopped: Callable[[], bool], idle: Any,
                check_interval: float) -> None:
    # serve_sync's hot loop, specialised for "request for our sink with a reply subject and no headers": the
    # reply subject stays bytes (no decode/encode round trip) and its member is cached per inbox.  Anything
    # else goes through the generic dispatch.
    ring = t._ring
    o = HEADER
    my_sid = sink.sid  # type: ignore[attr-defined]
    call = sink.call
    inbox_member: dict[bytes, str] = {}
    targets = t._targets
    plain_route = t._local_plain.route
    while not t._closed and not stopped():
        recs = ring.pop_batch(64)
        if not recs:
            ring.wait_readable(check_interval, idle)
            continue
        for rec in recs:
            try:
                sid, ls, lm = unpack_header(rec, 0)
                meta = rec[o + ls:o + ls + lm]
                subject = rec[o:o + ls].decode()
                # SID_ALL = "every plain subscription of yours that matches": ours alone in the common case
                if sid == my_sid or (sid == SID_ALL and plain_route(subject)[0] == [sink]):
                    if not meta.startswith(b"_INBOX.") or b"\n" in meta:
                        t._dispatch(rec)
                        continue
                else:
                    t._dispatch(rec)
                    continue
                msg = Message(subject, memoryview(rec)[o + ls + lm:], None, meta.decode(), t)
            except _MALFORMED as e:
                log.warning("shm bus %r: dropped malformed record: %s", t.name, e)
                continue
            out = call(msg)  # the handler, its failures logged; None: no answer
            if out is None:
                continue
            prefix = meta[:meta.rfind(b".")]
            member = inbox_member.get(prefix)
            if member is None or member not in targets:
                member = meta[7:].partition(b".")[0].decode().replace("_", "-")
                if member not in targets:
                    t._plan(msg.reply)  # type: ignore[arg-type]  # a new requester: re-read the registry
                    targets = t._targets
                    if member not in targets:
                        continue  # requester gone
                if len(inbox_member) > 4096:
                    inbox_member.clear()
                inbox_member[prefix] = member
            if not t._push(member, SID_INBOX, meta, b"", out):
                _push_retry(t, member, SID_INBOX, meta, b"", out)
