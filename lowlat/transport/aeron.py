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
- A poller task per transport polls both streams and idles per ``poll_idle``, a ``lowlat.IdleStrategy`` or its
  kind name (default ``BackoffIdle()``: a few polls that only yield to the event loop, a few ``sched_yield``, then
  sleeps doubling up to 1 ms); ``"busy_spin"`` never sleeps (lowest latency, one busy core); ``"yield"`` calls
  ``sched_yield`` between polls (for processes pinned to one shared core).
"""

from __future__ import annotations

import asyncio
import enum
import itertools
import os
import struct
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .._idle import YIELD as IDLE_YIELD
from .._idle import IdleStrategy, idle_strategy
from ..errors import (
    DecodeError,
    MissingExtraError,
    TransportClosedError,
    TransportError,
    TransportTimeoutError,
)
from .base import (
    Buffer,
    Capability,
    Handler,
    Headers,
    Message,
    QueueSubscription,
    ServeSink,
    Subscription,
    Transport,
    decode_meta,
    encode_meta,
    log,
    subject_matches,
    validate_subject,
)

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
    ``BackoffIdle()``), ``fragment_limit`` (64 per poll), and ``max_pending`` / ``max_pending_bytes`` / ``on_slow_consumer`` defaults
    for subscriptions.
    """

    capabilities = Capability.HEADERS | Capability.REQUEST_REPLY | Capability.WILDCARDS

    def __init__(self, url: str, *, aeron_dir: str | None = None, stream_id: int = 1001,
                 reply_stream_id: int | None = None, connect_timeout: float = 5.0, publish_timeout: float = 5.0,
                 poll_idle: IdleStrategy | _IdleKind = "backoff",
                 fragment_limit: int = 64, driver_timeout: float = 10.0, **options: Any) -> None:
        super().__init__(url, **options)
        if not url.startswith(("aeron:ipc", "aeron:udp")):
            raise ValueError(f"not an Aeron channel (aeron:ipc or aeron:udp?endpoint=host:port): {url!r}")
        self._idle = idle_strategy(poll_idle)   # ValueError for an unknown kind name
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
        self._since: dict[Any, int] = {}   # sub -> our bus position when it subscribed
        self._waiting: dict[str, asyncio.Future[Message]] = {}
        self._inbox = f"{_INBOX}{os.urandom(8).hex()}."
        self._ids = itertools.count(1)
        self._poller: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._checked: set[str] = set()
        self.decode_errors = 0   # hostile/foreign frames seen on the streams (dropped, counted)

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
        if self._poller is not None:
            self._poller.cancel()
            try:
                await self._poller
            except (asyncio.CancelledError, Exception):  # noqa: BLE001, S110 - stopping: its outcome is moot
                pass
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
    def _on_bus(self, mv: memoryview, session_id: int, position: int) -> None:
        try:
            subject, meta, off = decode_frame(mv)
            reply, headers = decode_meta(meta) if meta else (None, None)
        except ValueError:   # DecodeError is a ValueError; foreign or hostile bytes: drop and count
            self.decode_errors += 1
            return
        data = None
        own = session_id == self._bus_pub.session_id
        for sub in self._subs:
            if own and position <= self._since.get(sub, -1):
                continue   # published before this subscription existed
            if subject_matches(sub.subject, subject):
                if data is None:
                    data = bytes(mv[off:])
                try:
                    sub._deliver(Message(subject, data, headers, reply, transport=self))
                except Exception:  # noqa: BLE001 - a user callback (on_slow_consumer) failed: never stall the poller
                    log.exception("aeron: delivering %r to %r failed", subject, sub.subject)

    def _on_reply(self, mv: memoryview) -> None:
        try:
            subject, meta, off = decode_frame(mv)
            _, headers = decode_meta(meta) if meta else (None, None)
        except ValueError:
            self.decode_errors += 1
            return
        fut = self._waiting.get(subject)
        if fut is not None and not fut.done():
            fut.set_result(Message(subject, bytes(mv[off:]), headers, None, transport=self))

    def _poll_once(self) -> int:
        n = self._bus_sub.poll_with_header(self._on_bus, self.fragment_limit)
        if self._waiting:
            n += self._rep_sub.poll(self._on_reply, self.fragment_limit)
        else:
            n += self._rep_sub.poll(_drop, self.fragment_limit)
        return n

    async def _poll_loop(self) -> None:
        # The event loop must keep running, so the strategy only says what to do (step) and we await it.
        idle = self._idle
        idle.reset()
        while True:
            action = idle.step(self._poll_once())
            if action > 0:
                await asyncio.sleep(action * 1e-9)
                continue
            if action == IDLE_YIELD:
                os.sched_yield()   # give the core to a process sharing it (pinned setups), then poll again
            await asyncio.sleep(0)

    # --- API ---
    def _check_subject(self, subject: str) -> None:
        # validate_subject is O(len) Python: remember subjects already checked (bounded)
        if subject not in self._checked:
            validate_subject(subject)
            if len(self._checked) > 4096:
                self._checked.clear()
            self._checked.add(subject)

    def _reply_now(self, reply: str, payload: Buffer) -> None:
        """Answer from inside the poller (serve sinks): offer now, fall back to a retrying task if back-pressured."""
        frame = encode_frame(reply)
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
        return self._serve_task(sink, lambda: self._unsub(sink))

    def _unsub(self, sub: Any) -> None:
        if sub in self._subs:
            self._subs.remove(sub)
        self._since.pop(sub, None)

    async def request(self, subject: str, payload: Buffer, *, timeout: float = 1.0,
                      headers: Headers | None = None) -> Message:
        self._check_open()
        inbox = f"{self._inbox}{next(self._ids)}"   # the correlation id is the inbox's last token
        fut: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._waiting[inbox] = fut
        try:
            async with asyncio.timeout(timeout):
                await self.publish(subject, payload, headers=headers, reply=inbox)
                return await fut
        except TimeoutError:
            raise TransportTimeoutError(f"request on {subject!r} timed out after {timeout}s") from None
        finally:
            self._waiting.pop(inbox, None)


def _drop(mv: memoryview) -> None:
    """Consume replies meant for other transports when we wait for none."""
