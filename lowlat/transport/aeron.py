"""Aeron adapter: ``aeron:ipc`` and ``aeron:udp?endpoint=127.0.0.1:P`` over ``lowlat._aeron`` (Aeron 1.11.3 C++ client).

Needs a running media driver (``aeronmd``) and the optional compiled binding, built when ``AERON_HOME`` points at
an Aeron install (``tests/setup/30-aeron.sh`` builds one)::

    async with lowlat.transport.connect("aeron:ipc", aeron_dir="/dev/shm/aeron-me") as t: ...

Semantics (Aeron has channels and integer stream ids, no subjects, queue groups or headers):

- The URL is the Aeron channel.  Each transport publishes and subscribes on one *bus stream* of it
  (``stream_id``, default 1001).  Every message carries a small in-band frame ``u16 subject_len, u16 meta_len,
  subject, meta`` gathered in front of the payload (no copy of the payload); ``meta`` is ``base.encode_meta``
  (reply subject + headers).  Subscribers filter by subject locally, so NATS wildcards (``*``, ``>``) work.
- Request/reply uses a second stream (``reply_stream_id``, default ``stream_id + 1``): a request carries a reply
  subject ``_INBOX.<transport id>.<correlation id>``; answers to an ``_INBOX.`` subject go to the reply stream,
  where the requesting transport matches the correlation id.  A request nobody serves times out (no
  "no responders" signal: Aeron cannot tell who consumes a subject).
- No queue groups (Aeron delivers every message to every subscription); ``queue=`` raises ``TransportError``.
- At-most-once like NATS core: ordered per publisher; a message offered while no subscriber is connected is
  dropped.  Back-pressure (``BACK_PRESSURED``/``ADMIN_ACTION``) is retried for ``publish_timeout`` s while the
  event loop keeps running, then ``TransportTimeoutError``.  A subscription over its ``max_pending`` limit drops
  and counts (``Subscription.dropped``).
- ``Message.data`` is a ``bytes`` copied once from Aeron's log buffer (it must outlive the poll that saw it) and
  shared by every matching subscription; ``lowlat._aeron.Subscription.poll`` is the zero-copy path.
- A poller task per transport polls both streams in compiled code (``lowlat._aeron.poll_streams``: the in-band
  frame is decoded in C, Python runs once per message) and idles per ``poll_idle``, a ``lowlat.IdleStrategy`` or
  its kind name (default ``BackoffIdle()``: a few pauses, a few ``sched_yield``, then parks doubling up to 1 ms);
  ``"busy_spin"`` never sleeps (lowest latency, one busy core); ``"yield"`` calls ``sched_yield`` between polls
  (for processes pinned to one shared core).  Spins, yields and parks up to ``poll_park_us`` (50) happen inside
  that call (GIL released while yielding or parking) for up to ``poll_block_us`` (100) before the event loop gets
  one iteration; longer parks are awaited on the loop.  So other tasks on the loop wait at most about
  ``poll_block_us`` for their turn.
- ``request`` offers, then waits for its reply inline (compiled poll of the reply stream) for up to
  ``request_spin_us`` (200; 0 = never): a reply within that returns without the coroutine suspending.  The loop is
  blocked meanwhile; a request answered by this same transport's ``serve`` always takes the slow path.
"""

from __future__ import annotations

import asyncio
import enum
import inspect
import itertools
import logging
import os
import struct
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .._idle import IdleStrategy, idle_strategy
from ..errors import (
    DecodeError,
    MissingExtraError,
    TransportClosedError,
    TransportError,
    TransportTimeoutError,
)
from ._serve import ServeSink
from ._subjects import decode_meta, encode_meta, subject_matches, validate_subject
from .base import Buffer, Capability, Handler, Headers, Message, QueueSubscription, Subscription, Transport

if TYPE_CHECKING:
    from .._idle import _IdleKind

try:
    from .. import _aeron
except ImportError as _e:  # pragma: no cover - depends on the build
    raise MissingExtraError(
        "lowlat.transport.aeron needs the optional lowlat._aeron extension, which was not built: point AERON_HOME "
        "at an Aeron install (include/ + lib/ with libaeron_client; tests/setup/30-aeron.sh builds one) and "
        f"rebuild: AERON_HOME=... pip install -e . ({_e})") from None

__all__ = ["AeronTransport", "OfferResult", "decode_frame", "default_aeron_dir", "encode_frame"]

log = logging.getLogger("lowlat.transport.aeron")


class OfferResult(enum.IntEnum):
    """Negative results of ``lowlat._aeron.Publication.offer`` (a result >= 0 is the new stream position)."""

    NOT_CONNECTED = _aeron.NOT_CONNECTED                  # no subscriber connected: retry later or drop
    BACK_PRESSURED = _aeron.BACK_PRESSURED                # subscribers behind by a term window: retry later
    ADMIN_ACTION = _aeron.ADMIN_ACTION                    # the log rotated terms: retry at once
    PUBLICATION_CLOSED = _aeron.PUBLICATION_CLOSED        # closed: give up
    MAX_POSITION_EXCEEDED = _aeron.MAX_POSITION_EXCEEDED  # stream exhausted: open a new publication
    MESSAGE_TOO_LONG = _aeron.MESSAGE_TOO_LONG            # longer than max_message_length: never fits
    OFFER_ERROR = _aeron.OFFER_ERROR                      # the client threw (see Client.last_error())

    @property
    def retryable(self) -> bool:
        return self in (OfferResult.NOT_CONNECTED, OfferResult.BACK_PRESSURED, OfferResult.ADMIN_ACTION)

_HDR = struct.Struct("<HH")
_INBOX = "_INBOX."


def default_aeron_dir() -> str:
    """``$AERON_DIR``, else Aeron's default ``/dev/shm/aeron-<user>``."""
    d = os.environ.get("AERON_DIR")
    if d:
        return d
    user = os.environ.get("USER") or os.environ.get("LOGNAME") or "default"
    base = "/dev/shm" if os.path.isdir("/dev/shm") else "/tmp"
    return f"{base}/aeron-{user}"


def encode_frame(subject: str, meta: bytes = b"") -> bytes:
    """The in-band frame put in front of a payload: ``u16 len(subject), u16 len(meta), subject, meta`` (LE)."""
    s = subject.encode()
    if len(s) > 0xFFFF or len(meta) > 0xFFFF:
        raise ValueError("subject and meta must each be shorter than 65536 bytes")
    return _HDR.pack(len(s), len(meta)) + s + meta


def decode_frame(buf: Buffer) -> tuple[str, bytes, int]:
    """``(subject, meta, payload_offset)`` of a framed message; ``DecodeError`` if truncated or not UTF-8."""
    mv = memoryview(buf)
    if mv.nbytes < 4:
        raise DecodeError(f"aeron frame: {mv.nbytes} bytes, need at least 4")
    slen, mlen = _HDR.unpack_from(mv, 0)
    end = 4 + slen + mlen
    if end > mv.nbytes or slen == 0:
        raise DecodeError(f"aeron frame: subject {slen} + meta {mlen} bytes exceed the {mv.nbytes}-byte message")
    try:
        subject = bytes(mv[4:4 + slen]).decode()
    except UnicodeDecodeError:
        raise DecodeError("aeron frame: subject is not UTF-8") from None
    return subject, bytes(mv[4 + slen:end]), end


class AeronTransport(Transport):
    """Transport over an Aeron channel; see the module docstring for the semantics.

    Options: ``aeron_dir`` (driver directory, default ``default_aeron_dir()``), ``stream_id`` (1001),
    ``reply_stream_id`` (``stream_id + 1``), ``connect_timeout`` (5 s), ``driver_timeout`` (10 s: the driver
    counts as dead after this long without a heartbeat), ``publish_timeout`` (5 s back-pressure
    budget), ``poll_idle`` (an ``IdleStrategy`` or ``"backoff"`` | ``"busy_spin"`` | ``"yield"`` | ``"sleep"``; default
    ``BackoffIdle()``), ``fragment_limit`` (64 per poll), ``poll_block_us`` / ``poll_park_us`` / ``request_spin_us``
    (see the module docstring), and ``max_pending`` / ``max_pending_bytes`` / ``on_slow_consumer`` defaults
    for subscriptions.
    """

    capabilities = Capability.HEADERS | Capability.REQUEST_REPLY | Capability.WILDCARDS

    def __init__(self, url: str, *, aeron_dir: str | None = None, stream_id: int = 1001,
                 reply_stream_id: int | None = None, connect_timeout: float = 5.0, publish_timeout: float = 5.0,
                 poll_idle: IdleStrategy | _IdleKind = "backoff",
                 fragment_limit: int = 64, driver_timeout: float = 10.0, poll_block_us: float = 100.0,
                 poll_park_us: float = 50.0, request_spin_us: float = 200.0, **options: Any) -> None:
        super().__init__(url, **options)
        if not url.startswith(("aeron:ipc", "aeron:udp")):
            raise ValueError(f"not an Aeron channel (aeron:ipc or aeron:udp?endpoint=host:port): {url!r}")
        self._idle = idle_strategy(poll_idle)   # ValueError for an unknown kind name
        if min(poll_block_us, poll_park_us, request_spin_us) < 0:
            raise ValueError("poll_block_us, poll_park_us and request_spin_us must be >= 0")
        self._block_ns = int(poll_block_us * 1000)
        self._park_ns = int(poll_park_us * 1000)
        self._spin_ns = int(request_spin_us * 1000)
        self.channel = url
        self.aeron_dir = aeron_dir or default_aeron_dir()
        self.stream_id = stream_id
        self.reply_stream_id = stream_id + 1 if reply_stream_id is None else reply_stream_id
        self.connect_timeout = connect_timeout
        self.driver_timeout = driver_timeout
        self.publish_timeout = publish_timeout
        self.poll_idle = poll_idle
        self.fragment_limit = fragment_limit
        self._client: Any = None
        self._bus_pub: Any = None
        self._bus_sub: Any = None
        self._rep_pub: Any = None
        self._rep_sub: Any = None
        self._subs: list[Any] = []     # QueueSubscription and ServeSink
        self._inline: set[Any] = set()  # serve sinks with sync handlers: they wake nothing on the loop
        self._woke = False              # the poll in progress resolved a future or fed a consumer
        self._since: dict[Any, int] = {}   # sub -> our bus position when it subscribed
        self._waiting: dict[str, asyncio.Future[Message]] = {}
        self._inbox = f"{_INBOX}{os.urandom(8).hex()}."
        self._inbox_b = self._inbox.encode()
        self._ids = itertools.count(1)
        self._poller: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._checked: dict[str, bytes] = {}
        self._meta_errors = 0    # frames whose header lines were malformed (dropped, counted)
        self._bus_session = 0

    # --- lifecycle ---
    async def connect(self) -> None:
        if self._client is not None:
            return
        if self._opened:
            raise TransportClosedError("AeronTransport is closed (connect a new one)")

        def _open() -> None:
            # wait (bounded) for the driver's CnC file; the client's own driver timeout also bounds driver
            # liveness for the life of the connection, so it stays generous (driver_timeout, default 10 s)
            cnc = os.path.join(self.aeron_dir, "cnc.dat")
            deadline = time.monotonic() + self.connect_timeout
            while not os.path.exists(cnc):
                if time.monotonic() > deadline:
                    raise TransportError(f"no Aeron media driver in {self.aeron_dir!r} (no cnc.dat after "
                                         f"{self.connect_timeout} s): start aeronmd with AERON_DIR={self.aeron_dir}")
                time.sleep(0.01)
            c = _aeron.Client(self.aeron_dir, driver_timeout=self.driver_timeout)
            try:
                # subscriptions first, so our own publications connect to them
                self._bus_sub = c.add_subscription(self.channel, self.stream_id, timeout=self.connect_timeout)
                self._rep_sub = c.add_subscription(self.channel, self.reply_stream_id, timeout=self.connect_timeout)
                self._bus_pub = c.add_publication(self.channel, self.stream_id, timeout=self.connect_timeout)
                self._rep_pub = c.add_publication(self.channel, self.reply_stream_id, timeout=self.connect_timeout)
                for p in (self._bus_pub, self._rep_pub):
                    p.wait_connected(self.connect_timeout)
            except BaseException:
                c.close()
                raise
            self._client = c
            self._bus_session = self._bus_pub.session_id

        await asyncio.to_thread(_open)
        self._wake = asyncio.Event()
        self._poller = asyncio.get_running_loop().create_task(self._poll_loop(), name=f"lowlat-aeron:{self.url}")
        self._mark_open()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._stop(discard=False)

    async def drain(self) -> None:
        """Deliver what already reached the bus stream, end every subscription after its pending messages, close."""
        if self._closed:
            return
        if self._client is not None:
            quiet = 0
            while quiet < 3:   # until the streams were empty three polls in a row, 1 ms apart
                quiet = quiet + 1 if self._poll_once() == 0 else 0
                await asyncio.sleep(0.001)
        await self.close()

    async def _stop(self, discard: bool) -> None:
        await self._stop_task(self._poller)
        self._poller = None
        for sub in self._subs:
            sub.close_nowait()
        self._subs.clear()
        for fut in self._waiting.values():
            if not fut.done():
                fut.set_exception(TransportClosedError("AeronTransport closed while waiting for a reply"))
        if self._client is not None:
            self._client.close()
            self._client = None

    async def flush(self, timeout: float | None = None) -> None:
        """Offers are already in the shared log buffer (IPC) or the driver's (UDP): only let the poller run."""
        self._check_open()
        await asyncio.sleep(0)

    # --- receiving ---
    @property
    def decode_errors(self) -> int:
        """Hostile/foreign messages seen on the streams (dropped, counted): malformed frames (counted by the
        binding's frame decoder) and malformed header lines."""
        n = self._meta_errors
        for sub in (self._bus_sub, self._rep_sub):
            if sub is not None:
                n += sub.frame_errors
        return n

    def _headers(self, raw: bytes | None) -> tuple[bool, Headers | None]:
        if raw is None:
            return True, None
        try:
            return True, decode_meta(b"\n" + raw)[1]
        except ValueError:   # DecodeError is a ValueError: foreign or hostile bytes, dropped and counted
            self._meta_errors += 1
            return False, None

    def _on_bus(self, subject: str, reply: str | None, raw: bytes | None, data: bytes, session_id: int,
                position: int) -> None:
        # called by the binding's frame decoder (poll_frames): subject/reply decoded in C, payload copied once
        if raw is None:
            headers = None
        else:
            ok, headers = self._headers(raw)
            if not ok:
                return
        own = session_id == self._bus_session
        for sub in self._subs:
            if own and position <= self._since.get(sub, -1):
                continue   # published before this subscription existed
            if sub.subject == subject or subject_matches(sub.subject, subject):
                msg = Message(subject, data, headers, reply, self)
                try:
                    if reply is not None and sub in self._inline:
                        out = sub.call(msg)   # counted, failures logged; a buffer, None or an awaitable
                        tp = type(out)
                        if tp is bytes or tp is memoryview or tp is bytearray:   # the request path: answer now
                            self._reply_now(reply, out)
                        elif out is not None:
                            sub._deliver_result(msg, out)
                            self._woke = True
                    else:
                        self._woke = True   # a consumer (or an async handler's task) waits for the loop
                        sub._deliver(msg)
                except Exception:  # a user callback or a reply failed: never stall the poller
                    log.exception("aeron: delivering %r to %r failed", subject, sub.subject)

    def _on_reply(self, subject: str, reply: str | None, raw: bytes | None, data: bytes, session_id: int,
                  position: int) -> None:
        fut = self._waiting.get(subject)
        if fut is not None and not fut.done():
            ok, headers = self._headers(raw)
            if ok:
                self._woke = True
                fut.set_result(Message(subject, data, headers, None, transport=self))

    def _poll_once(self) -> int:
        n = self._bus_sub.poll_frames(self._on_bus, self.fragment_limit)
        return n + self._rep_sub.poll_frames(self._on_reply if self._waiting else None, self.fragment_limit)

    async def _poll_loop(self) -> None:
        # The duty cycle runs in compiled code (_aeron.poll_streams): poll both streams, and between empty polls
        # spin/yield/park briefly per the idle strategy, GIL released while yielding or parking, until work
        # arrives or poll_block_us passes; then one event-loop iteration so other tasks and I/O run.  A park
        # longer than poll_park_us is awaited on the loop instead of blocking it.
        # Work that only answered requests inline (sync serve handlers) woke nothing on the loop: keep polling
        # without an iteration (the next request usually comes within µs), for at most poll_block_us in a row.
        idle, poll, now = self._idle, _aeron.poll_streams, time.perf_counter_ns
        bus, rep, limit = self._bus_sub, self._rep_sub, self.fragment_limit
        on_bus, on_reply = self._on_bus, self._on_reply
        block, park = self._block_ns, self._park_ns
        idle.reset()
        while True:
            end = now() + block
            self._woke = False
            while True:
                r = poll(bus, on_bus, rep, on_reply if self._waiting else None, limit, idle, block, park)
                if r <= 0 or self._woke or now() >= end:
                    break
            await asyncio.sleep(r * -1e-9 if r < 0 else 0)

    # --- API ---
    def _check_subject(self, subject: str) -> None:
        self._subject_bytes(subject)

    def _subject_bytes(self, subject: str) -> bytes:
        # validate_subject is O(len) Python: remember subjects already checked, with their encoding (bounded)
        b = self._checked.get(subject)
        if b is None:
            validate_subject(subject)
            if len(self._checked) > 4096:
                self._checked.clear()
            b = self._checked[subject] = subject.encode()
        return b

    def _reply_now(self, reply: str, payload: Buffer) -> None:
        """Answer from inside the poller (serve sinks): offer now, fall back to a retrying task if back-pressured."""
        rb = reply.encode()
        frame = _HDR.pack(len(rb), 0) + rb if len(rb) <= 0xFFFF else encode_frame(reply)
        rc = self._rep_pub.offer(payload, frame)
        if rc in (_aeron.BACK_PRESSURED, _aeron.ADMIN_ACTION):
            self._keep(asyncio.get_running_loop().create_task(self._offer_reply(reply, frame, payload)))
        elif rc < 0 and rc != _aeron.NOT_CONNECTED:
            log.warning("aeron: reply to %r failed: %s", reply, _aeron.offer_result_name(rc))

    async def _offer_reply(self, reply: str, frame: bytes, payload: Buffer) -> None:
        try:
            await self._offer(self._rep_pub, frame, payload)
        except TransportClosedError:
            pass
        except Exception as e:  # noqa: BLE001 - a reply that cannot go out is logged; the requester times out
            log.warning("aeron: reply to %r failed: %s", reply, e)

    async def _offer(self, pub: Any, frame: bytes, payload: Buffer) -> None:
        rc = pub.offer(payload, frame)
        if rc >= 0:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.publish_timeout
        while rc < 0:
            if rc == _aeron.NOT_CONNECTED:
                return   # nobody subscribed: at-most-once, dropped (as NATS core does)
            if rc == _aeron.PUBLICATION_CLOSED:
                raise TransportClosedError("AeronTransport is closed")
            if rc == _aeron.MESSAGE_TOO_LONG:
                raise ValueError(f"message of {memoryview(payload).nbytes + len(frame)} bytes exceeds Aeron's "
                                 f"max_message_length {pub.max_message_length} (term length / 8)")
            if rc not in (_aeron.BACK_PRESSURED, _aeron.ADMIN_ACTION):
                raise TransportError(f"Aeron offer failed: {_aeron.offer_result_name(rc)}")
            if loop.time() > deadline:
                raise TransportTimeoutError(f"Aeron publication still {_aeron.offer_result_name(rc)} after "
                                            f"{self.publish_timeout} s (subscribers too slow)")
            await asyncio.sleep(0)   # let our own poller (and others on this loop) consume
            rc = pub.offer(payload, frame)

    async def publish(self, subject: str, payload: Buffer, *, headers: Headers | None = None,
                      reply: str | None = None) -> None:
        self._check_open()
        self._check_subject(subject)
        frame = encode_frame(subject, encode_meta(reply, headers) if (reply or headers) else b"")
        pub = self._rep_pub if subject.startswith(_INBOX) else self._bus_pub
        await self._offer(pub, frame, payload)

    async def publish_batch(self, subject: str, payloads: Sequence[Buffer]) -> None:
        self._check_open()
        validate_subject(subject)
        frame = encode_frame(subject)
        pub = self._rep_pub if subject.startswith(_INBOX) else self._bus_pub
        for p in payloads:
            await self._offer(pub, frame, p)

    def _check_receiver(self, subject: str, queue: str | None) -> None:
        # shared precondition of subscribe/serve
        self._check_open()
        validate_subject(subject, wildcards=True)
        if queue:
            raise TransportError("Aeron has no queue groups: every subscription gets every message")

    async def subscribe(self, subject: str, *, queue: str | None = None, **options: Any) -> Subscription:
        self._check_receiver(subject, queue)
        sub = QueueSubscription(subject, None, on_unsubscribe=self._unsub, **self._sub_options(options))
        self._since[sub] = self._bus_pub.position
        self._subs.append(sub)
        return sub

    async def serve(self, subject: str, handler: Handler, *, queue: str | None = None,
                    **options: Any) -> asyncio.Task[None]:
        """Request/reply worker run inline in the poller (no queue hop): a sync ``handler`` answers before the next
        message is polled (keep it short); an async one runs as a task.  Cancel the task to stop."""
        self._check_receiver(subject, queue)
        sink = ServeSink(self, subject, None, handler, reply_now=self._reply_now)
        self._since[sink] = self._bus_pub.position
        self._subs.append(sink)
        if not inspect.iscoroutinefunction(handler):
            self._inline.add(sink)   # answers inside the poll (a sync handler returning an awaitable waits ≤ 1 block)
        return self._serve_task(sink, lambda: self._unsub(sink))

    def _unsub(self, sub: Any) -> None:
        self._inline.discard(sub)
        if sub in self._subs:
            self._subs.remove(sub)
        self._since.pop(sub, None)

    async def request(self, subject: str, payload: Buffer, *, timeout: float = 1.0,
                      headers: Headers | None = None) -> Message:
        """Offer the request, then wait for the reply *inline* (compiled poll of the reply stream, the idle
        strategy between polls) for up to ``request_spin_us``: a reply within that budget returns without the
        coroutine suspending (no future hand-off, no event-loop iteration).  Later replies arrive through the
        poller like any other.  The event loop is blocked while the inline wait lasts."""
        if self._closed:
            self._check_open()   # raises
        ib = b"%s%d" % (self._inbox_b, next(self._ids))   # the correlation id is the inbox's last token
        inbox = ib.decode()
        sb = self._checked.get(subject) or self._subject_bytes(subject)
        frame = (_HDR.pack(len(sb), len(ib)) + sb + ib if headers is None and len(sb) <= 0xFFFF
                 else encode_frame(subject, encode_meta(inbox, headers)))
        pub = self._rep_pub if subject.startswith(_INBOX) else self._bus_pub
        offered = False
        if self._spin_ns and pub.offer(payload, frame) >= 0:
            # our reply cannot be consumed by anyone else meanwhile: poll_reply_until takes it, or it stays in the
            # log until the poller sees it (after the future below is registered)
            offered = True
            idle = self._idle   # shared with the poller: both run on the loop thread, one at a time
            idle.reset()
            hit = self._rep_sub.poll_reply_until(ib, self._on_reply, self.fragment_limit, idle, self._spin_ns)
            if hit is not None:
                if hit[1] is None:
                    return Message(inbox, hit[0], None, None, self)
                ok, hs = self._headers(hit[1])
                if ok:
                    return Message(inbox, hit[0], hs, None, transport=self)
        fut: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._waiting[inbox] = fut
        try:
            async with asyncio.timeout(timeout):
                if not offered:
                    await self._offer(pub, frame, payload)
                return await fut
        except TimeoutError:
            raise TransportTimeoutError(f"request on {subject!r} timed out after {timeout}s") from None
        finally:
            self._waiting.pop(inbox, None)
