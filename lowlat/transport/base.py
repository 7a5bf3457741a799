"""The one async transport interface every adapter implements.

Adapters move bytes and never decode them: ``Message.data`` is a buffer (``memoryview`` where the client
allows it) that goes straight into ``lowlat``'s zero-copy readers.  The conformance suite in
``tests/integration/test_transport_conformance.py`` runs the same tests against every adapter.

Subjects follow NATS rules on every adapter: dot-separated tokens, ``*`` matches exactly one token and ``>``
matches one or more trailing tokens (only in subscriptions).  ``subject_matches`` is the reference.

Pure helpers any adapter may use (defined in ``_subjects``, importable from here): ``subject_matches`` /
``validate_subject``, ``new_inbox`` and ``encode_meta``/``decode_meta`` (reply subject + headers in one small
frame, for transports without native headers).  Routing for embedded and hub-side adapters is ``_routes``.  ``QueueSubscription`` is the bounded receive queue most adapters feed (``max_pending`` /
``max_pending_bytes``, drops counted and reported); ``ServeSink`` is the one request/reply worker every adapter's
``serve()`` uses.  ``Transport.capabilities`` says what an adapter supports; callers read it instead of
catching errors.

Tasks: asyncio holds tasks weakly, so an adapter keeps every task it creates with ``Transport._keep`` (a dropped
``serve()`` task was once garbage-collected and its worker silently unregistered) and ``close`` cancels them.
"""

from __future__ import annotations

import abc
import asyncio
import collections
import enum
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Mapping, Sequence
from typing import Any, NamedTuple, Protocol, Self, runtime_checkable

from .._batch import MessageBatch
from ..errors import TransportClosedError, TransportNotConnectedError, TransportTimeoutError
from ._subjects import decode_meta, encode_meta, new_inbox, subject_matches, validate_subject

Buffer = bytes | bytearray | memoryview
Headers = Mapping[str, str]
Handler = Callable[["Message"], "Awaitable[Buffer | None] | Buffer | None"]

__all__ = [
    "Buffer",
    "Capability",
    "DurableLog",
    "Handler",
    "Headers",
    "LogAck",
    "LogReader",
    "LogRecord",
    "Message",
    "MessageBatch",
    "QueueSubscription",
    "ServeSink",
    "SlowConsumerCallback",
    "Subscription",
    "Transport",
    "decode_meta",
    "encode_meta",
    "log_replay",
    "new_inbox",
    "subject_matches",
    "validate_subject",
]

log = logging.getLogger("lowlat.transport")

SlowConsumerCallback = Callable[["Subscription"], None]


class Capability(enum.Flag):
    """What an adapter supports, declared in ``Transport.capabilities``; callers read it instead of catching
    errors to find out."""

    NONE = 0
    QUEUE_GROUPS = enum.auto()    # subscribe(..., queue=...) load-balances
    HEADERS = enum.auto()         # publish(..., headers=...) arrives as Message.headers
    REQUEST_REPLY = enum.auto()   # request() / serve() / reply subjects
    WILDCARDS = enum.auto()       # '*' and '>' in subscriptions
    DURABLE = enum.auto()         # the adapter implements the durable-log protocol
    NATIVE_BATCH = enum.auto()    # take_batch/publish_batch_to avoid a Python object per message


class Message:
    """One received message.

    ``data`` is the payload (a buffer; do not keep it past the next ``__anext__`` unless you copy it, since
    some adapters reuse memory), ``headers`` a mapping or None, ``reply`` the subject to answer on (request
    messages), ``ack()`` acknowledges at-least-once deliveries (JetStream, Kafka commits); it is a no-op on
    at-most-once transports.
    """

    __slots__ = ("_ack", "_transport", "data", "headers", "reply", "subject")

    def __init__(self, subject: str, data: Buffer, headers: Headers | None = None, reply: str | None = None,
                 transport: Transport | None = None, ack: Callable[[], Awaitable[None]] | None = None) -> None:
        self.subject = subject
        self.data = data
        self.headers = headers
        self.reply = reply
        self._transport = transport
        self._ack = ack

    async def respond(self, payload: Buffer, *, headers: Headers | None = None) -> None:
        """Answer a request message (publishes to ``reply``)."""
        if not self.reply or self._transport is None:
            raise ValueError("message has no reply subject")
        await self._transport.publish(self.reply, payload, headers=headers)

    async def ack(self) -> None:
        if self._ack is not None:
            await self._ack()

    def __repr__(self) -> str:
        return f"Message(subject={self.subject!r}, len={len(self.data)}, reply={self.reply!r})"


class Subscription(abc.ABC):
    """An async iterator of ``Message``.  ``pending`` and ``dropped`` expose flow control (slow consumers)."""

    subject: str
    queue: str | None

    def __aiter__(self) -> AsyncIterator[Message]:
        return self

    @abc.abstractmethod
    async def __anext__(self) -> Message: ...

    @abc.abstractmethod
    async def unsubscribe(self) -> None: ...

    @property
    def pending(self) -> int:
        """Messages received but not yet iterated."""
        return 0

    @property
    def dropped(self) -> int:
        """Messages dropped because this subscription was a slow consumer (its pending limit was hit)."""
        return 0

    @property
    def pending_bytes(self) -> int:
        """Payload bytes received but not yet iterated (0 where the adapter cannot tell)."""
        return 0

    def close_nowait(self) -> None:
        """End iteration without talking to the broker (the transport is closing)."""
        return

    def get_nowait(self) -> Message | None:
        """The next pending message or None without waiting."""
        return None

    async def next_msg(self, timeout: float | None = 1.0) -> Message:
        """The next message; raises ``TransportTimeoutError`` after ``timeout`` s (None: wait forever) and
        ``TransportClosedError`` once the subscription has ended."""
        try:
            if timeout is None:
                return await self.__anext__()
            return await asyncio.wait_for(self.__anext__(), timeout)
        except StopAsyncIteration:
            raise TransportClosedError(f"subscription {self.subject!r} is closed") from None
        except TimeoutError:
            raise TransportTimeoutError(f"no message on {self.subject!r} within {timeout}s") from None

    async def drain(self) -> None:
        """Stop new deliveries; iteration ends after the pending messages (default: unsubscribe)."""
        await self.unsubscribe()

    # --- batch path (see lowlat/_batch.pyx for the lifetime rule) ---
    def take_batch(self, max_msgs: int = 1024) -> MessageBatch:
        """Everything pending (at most ``max_msgs``) as one ``MessageBatch``, without waiting; valid until the
        next ``take_batch``/``next_batch`` call.  This default copies from ``get_nowait``; adapters with their
        own receive buffers override it (``Capability.NATIVE_BATCH``)."""
        b = self.__dict__.get("_batch")
        if b is None or b.capacity < max_msgs:
            b = self.__dict__["_batch"] = MessageBatch(max(max_msgs, 1))
        b.clear()
        held = self.__dict__.pop("_held", None)
        while b.n < max_msgs:
            msg = held if held is not None else self.get_nowait()
            held = None
            if msg is None:
                break
            if not b.append(msg.data, msg.subject, msg.reply):
                if b.n == 0:   # one message larger than the arena: a batch of its own size
                    b = self.__dict__["_batch"] = MessageBatch(max(max_msgs, 1),
                                                               memoryview(msg.data).nbytes + 4096)
                    b.append(msg.data, msg.subject, msg.reply)
                    continue
                self.__dict__["_held"] = msg   # kept for the next batch: nothing is lost
                break
        return b

    async def next_batch(self, max_msgs: int = 1024, timeout: float | None = None) -> MessageBatch:
        """Wait for at least one message (up to ``timeout`` s; an empty batch after it), then ``take_batch``.
        At the end of the subscription returns an empty batch and ``closed``-style adapters raise
        ``TransportClosedError`` on the next call."""
        if self.__dict__.get("_held") is None and self.pending == 0:
            try:
                first = await (self.__anext__() if timeout is None
                               else asyncio.wait_for(self.__anext__(), timeout))
            except TimeoutError:
                b = self.take_batch(max_msgs)
                return b
            except StopAsyncIteration:
                raise TransportClosedError(f"subscription {self.subject!r} is closed") from None
            self.__dict__["_held"] = first
        return self.take_batch(max_msgs)


class QueueSubscription(Subscription):
    """A subscription fed by the adapter through a bounded in-memory queue (owned by one event loop).

    ``max_pending`` (messages) and ``max_pending_bytes`` bound what waits to be iterated; past either, new
    messages are *dropped and counted* (``dropped``), a warning is logged (first drop, then every 1000) and
    ``on_slow_consumer(sub)`` is called: a slow consumer is reported, never hidden and never allowed to grow
    memory without bound.  Cost per delivery: one deque append plus a future wake-up when the reader waits.
    """

    def __init__(self, subject: str, queue: str | None = None, *, max_pending: int = 65536,
                 max_pending_bytes: int = 64 * 1024 * 1024, on_slow_consumer: SlowConsumerCallback | None = None,
                 on_unsubscribe: Callable[[QueueSubscription], Awaitable[None] | None] | None = None) -> None:
        if max_pending <= 0 or max_pending_bytes <= 0:
            raise ValueError("max_pending and max_pending_bytes must be > 0")
        self.subject = subject
        self.queue = queue
        self.max_pending = max_pending
        self.max_pending_bytes = max_pending_bytes
        self.on_slow_consumer = on_slow_consumer
        self._on_unsubscribe = on_unsubscribe
        self._q: collections.deque[Message] = collections.deque()
        self._bytes = 0
        self._dropped = 0
        self._delivered = 0
        self._waiter: asyncio.Future[None] | None = None
        self._loop = asyncio.get_running_loop()
        self._closed = False    # no new deliveries
        self._discard = False   # also drop what is pending (unsubscribe, not drain)

    # --- adapter side ---
    def _deliver(self, msg: Message) -> bool:
        """Queue ``msg`` for the reader; False if closed or dropped (slow consumer).  Call on the owning loop."""
        if self._closed:
            return False
        n = memoryview(msg.data).nbytes
        if len(self._q) >= self.max_pending or self._bytes + n > self.max_pending_bytes:
            self._dropped += 1
            if self._dropped == 1 or self._dropped % 1000 == 0:
                log.warning("slow consumer on %r: %d message(s) dropped (pending %d msgs / %d bytes)",
                            self.subject, self._dropped, len(self._q), self._bytes)
            if self.on_slow_consumer is not None:
                self.on_slow_consumer(self)
            return False
        self._q.append(msg)
        self._bytes += n
        self._delivered += 1
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)
        return True

    def _deliver_threadsafe(self, msg: Message) -> None:
        """Queue ``msg`` from another thread or event loop."""
        self._loop.call_soon_threadsafe(self._deliver, msg)

    # --- reader side ---
    async def __anext__(self) -> Message:
        while not self._q or self._discard:
            if self._closed:
                raise StopAsyncIteration
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        msg = self._q.popleft()
        self._bytes -= memoryview(msg.data).nbytes
        return msg

    def get_nowait(self) -> Message | None:
        """The next pending message or None (no waiting); for pollers and benchmarks."""
        if not self._q or self._discard:
            return None
        msg = self._q.popleft()
        self._bytes -= memoryview(msg.data).nbytes
        return msg

    def _finish(self, discard: bool) -> None:
        self._closed = True
        if discard:
            self._discard = True
            self._q.clear()
            self._bytes = 0
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    async def unsubscribe(self) -> None:
        """Stop delivery now and discard what is pending (NATS semantics)."""
        if self._closed and self._discard:
            return
        self._finish(discard=True)
        if self._on_unsubscribe is not None:
            out = self._on_unsubscribe(self)
            if asyncio.iscoroutine(out):
                await out

    async def drain(self) -> None:
        """Stop delivery of new messages; iteration ends after the pending ones."""
        self._finish(discard=False)
        if self._on_unsubscribe is not None:
            out = self._on_unsubscribe(self)
            if asyncio.iscoroutine(out):
                await out

    def close_nowait(self) -> None:
        self._finish(discard=False)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def pending(self) -> int:
        return len(self._q)

    @property
    def pending_bytes(self) -> int:
        return self._bytes

    @property
    def dropped(self) -> int:
        return self._dropped

    @property
    def delivered(self) -> int:
        """Messages accepted into the queue so far."""
        return self._delivered


def _is_awaitable(out: object) -> bool:
    return asyncio.iscoroutine(out) or isinstance(out, asyncio.Future)


class ServeSink:
    """The request/reply worker behind every adapter's ``serve()``: runs ``handler(msg)`` and answers on
    ``msg.reply`` with what it returns (a buffer; None: no answer).

    Adapters use it one of two ways: registered like a subscription in their receive path (``subject``/``queue``
    attributes, ``_deliver(msg)`` runs the handler *inline*, no queue hop; an async handler continues as a task
    the transport keeps), or awaited per message (``await sink.handle(msg)`` from a subscription loop or a
    client callback: one request at a time).  Replies go through ``reply_now(subject, payload)`` when the adapter
    has a synchronous send, else through ``transport.publish``.  A handler that raises is logged and the worker
    keeps serving (the requester times out).  ``sync=True`` (workers without an event loop) refuses async
    handlers.  ``handled`` counts the requests seen; ``stopped`` resolves when ``close_nowait`` is called.
    """

    def __init__(self, transport: Transport, subject: str, queue: str | None, handler: Handler, *,
                 reply_now: Callable[[str, Buffer], None] | None = None, sync: bool = False) -> None:
        self.subject = subject
        self.queue = queue
        self.handler = handler
        self.handled = 0
        self._t = transport
        self._reply_now = reply_now
        self._sync = sync
        self._loop = None if sync else asyncio.get_running_loop()
        self.stopped: asyncio.Future[None] | None = None if sync else self._loop.create_future()  # type: ignore[union-attr]

    def call(self, msg: Message) -> Any:
        """``handler(msg)`` with its failures logged: a reply buffer, None, or (not ``sync``) an awaitable."""
        self.handled += 1
        try:
            out = self.handler(msg)
        except Exception:  # a failing handler must not kill the worker; the requester times out
            log.exception("serve(%r): handler failed", self.subject)
            return None
        tp = type(out)
        if out is None or tp is bytes or tp is memoryview or tp is bytearray:  # the common case first
            return out
        if _is_awaitable(out):
            if not self._sync:
                return out
            if asyncio.iscoroutine(out):
                out.close()
            log.error("serve_sync(%r): the handler returned an awaitable; it must return the reply payload (or "
                      "None) synchronously", self.subject)
            return None
        try:
            memoryview(out)  # type: ignore[arg-type]  # any buffer (numpy array, ...) is a reply
        except TypeError:
            log.error("serve(%r): the handler returned %s; it must return the reply payload (a buffer) or None",
                      self.subject, tp.__name__)
            return None
        return out

    def _deliver(self, msg: Message) -> bool:
        """Inline from the adapter's receive path (on the event loop, or the ``sync`` worker's thread)."""
        out = self.call(msg)
        if out is not None:
            self._deliver_result(msg, out)
        return True

    def _deliver_result(self, msg: Message, out: Any) -> None:
        """What ``_deliver`` does with ``call(msg)``'s non-None result (for adapters that call ``call`` inline)."""
        if self._loop is not None and _is_awaitable(out):
            self._t._keep(self._loop.create_task(self._finish(msg, out), name=f"lowlat-serve:{self.subject}"))
        elif msg.reply:
            self._answer(msg.reply, out)

    def _deliver_threadsafe(self, msg: Message) -> None:
        self._loop.call_soon_threadsafe(self._deliver, msg)  # type: ignore[union-attr]

    async def handle(self, msg: Message) -> None:
        """Awaited per message: the handler's awaitable (if any) is awaited before the reply goes out."""
        out = self.call(msg)
        if out is not None and _is_awaitable(out):
            await self._finish(msg, out)
        elif out is not None and msg.reply:
            await self._answer_async(msg.reply, out)

    async def _finish(self, msg: Message, aw: Awaitable[Any]) -> None:
        try:
            out = await aw
        except Exception:
            log.exception("serve(%r): handler failed", self.subject)
            return
        if out is not None and msg.reply and not self._t.closed:
            await self._answer_async(msg.reply, out)

    def _answer(self, reply: str, payload: Buffer) -> None:
        if self._reply_now is None:
            self._t._keep(self._loop.create_task(self._answer_async(reply, payload)))  # type: ignore[union-attr]
            return
        try:
            self._reply_now(reply, payload)
        except TransportClosedError:
            pass
        except Exception:  # one failed answer must not stop the worker
            log.exception("serve(%r): reply to %r failed", self.subject, reply)

    async def _answer_async(self, reply: str, payload: Buffer) -> None:
        if self._reply_now is not None:
            return self._answer(reply, payload)
        try:
            await self._t.publish(reply, payload)
        except TransportClosedError:
            pass
        except Exception:  # one failed answer must not stop the worker
            log.exception("serve(%r): reply to %r failed", self.subject, reply)

    def close_nowait(self) -> None:
        """Stop: the task ``Transport._serve_task`` made for this sink finishes (and unregisters it)."""
        if self.stopped is not None and not self.stopped.done():
            self.stopped.set_result(None)


class LogAck(NamedTuple):
    """Where ``DurableLog.log_append`` stored a record; ``duplicate``: an earlier append with the same
    ``msg_id`` inside the log's duplicate window is that record (nothing stored twice)."""

    pos: int
    duplicate: bool = False


class LogRecord(NamedTuple):
    """One record read back from a durable log: its position and the message (``data``, ``subject``)."""

    pos: int
    msg: Message


@runtime_checkable
class LogReader(Protocol):
    """Reads a durable log forward from a position (no acks: the reader keeps its position)."""

    async def fetch(self, max_msgs: int = 256, timeout: float = 1.0) -> list[LogRecord]:
        """Up to ``max_msgs`` records after the last one returned (``[]`` when none came within ``timeout`` s)."""
        ...

    async def close(self) -> None: ...


@runtime_checkable
class DurableLog(Protocol):
    """The durable-log protocol (``Capability.DURABLE``): named, ordered, persistent logs with positions
    ``1, 2, 3, ...`` (a JetStream stream's sequences; a Kafka topic's partition-0 offsets + 1).

    ``log_ensure`` creates the log if needed (idempotent; ``subjects`` are what it captures where the broker
    routes by subject, ``replicas`` and ``duplicate_window`` s where it has them); ``log_append`` stores one
    record and returns its ``LogAck`` once the broker acknowledged it (``msg_id`` deduplicates retries where
    the broker can); ``log_end`` is the last position (0: empty); ``log_get`` one record; ``log_reader``
    reads forward from ``after`` (optionally only ``subjects``).  Broker failures raise ``TransportError``.
    """

    async def log_ensure(self, name: str, subjects: Sequence[str], *, replicas: int = 1,
                         duplicate_window: float = 600.0) -> None: ...

    async def log_append(self, name: str, subject: str, payload: Buffer, *, msg_id: str | None = None,
                         timeout: float = 5.0) -> LogAck: ...

    async def log_end(self, name: str) -> int: ...

    async def log_get(self, name: str, pos: int) -> Message: ...

    async def log_reader(self, name: str, after: int = 0, *,
                         subjects: Sequence[str] | None = None) -> LogReader: ...


async def log_replay(log_: DurableLog, name: str, after: int = 0, *, batch: int = 256,
                     timeout: float = 5.0) -> AsyncIterator[LogRecord]:
    """Every record of ``name`` after ``after`` up to the end as of the call, in order.  Raises
    ``TransportTimeoutError`` if the log stops delivering for ``timeout`` s before the end."""
    end = await log_.log_end(name)
    if end <= after:
        return
    reader = await log_.log_reader(name, after)
    try:
        pos = after
        while pos < end:
            recs = await reader.fetch(min(batch, end - pos), timeout)
            if not recs:
                raise TransportTimeoutError(f"log {name!r}: nothing after position {pos} within {timeout}s "
                                            f"(end is {end})")
            for r in recs:
                if r.pos > pos:
                    pos = r.pos
                    yield r
    finally:
        await reader.close()


# Transport-wide options that are defaults for every QueueSubscription (see Transport._sub_options).
_SUB_OPTIONS = ("max_pending", "max_pending_bytes", "on_slow_consumer")


class Transport(abc.ABC):
    """An async connection to one transport (a broker, a media driver, or the embedded rings).

    Use ``async with lowlat.transport.connect(url) as t:``.  Options are keyword-only and passed through to
    the client where they mean something there.
    """

    capabilities: Capability = Capability.REQUEST_REPLY | Capability.WILDCARDS

    def __init__(self, url: str, **options: Any) -> None:
        self.url = url
        self.options = options
        self.publish_errors = 0
        self._closed = True     # until connect(): see _mark_open
        self._opened = False    # connect() succeeded once (tells "not connected yet" from "closed")
        self._background: set[asyncio.Task[Any]] = set()

    def _keep(self, task: asyncio.Task[Any]) -> asyncio.Task[Any]:
        """Hold a strong reference to a background task (asyncio only keeps weak ones: an unreferenced
        pending task is garbage-collected mid-flight) until it finishes."""
        bg = self.__dict__.setdefault("_background", set())
        bg.add(task)
        task.add_done_callback(bg.discard)
        return task

    def _cancel_background(self) -> None:
        """Cancel ``serve`` workers and other kept tasks (called by ``close``)."""
        for t in list(self.__dict__.get("_background", ())):
            if not t.done():
                t.cancel()

    # --- lifecycle ---
    @abc.abstractmethod
    async def connect(self) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    async def drain(self) -> None:
        """Stop receiving, deliver what is already pending, flush, then close (default: flush + close).
        A no-op on a transport that is not open."""
        if self._closed:
            return
        await self.flush()
        await self.close()

    async def flush(self, timeout: float | None = None) -> None:
        """Wait until what was published has left this process (default: nothing buffered)."""
        self._check_open()

    @property
    def closed(self) -> bool:
        return self._closed

    def _mark_open(self) -> None:
        """Called by ``connect()`` once the adapter is usable."""
        self._closed = False
        self._opened = True

    def _closed_error(self) -> TransportClosedError:
        """The error for using a transport that is not open: ``TransportNotConnectedError`` before
        ``connect()``, ``TransportClosedError`` after ``close()``/``drain()``."""
        name = type(self).__name__
        if not self._opened:
            return TransportNotConnectedError(f"{name} is not connected: await t.connect() (or use "
                                              f"'async with') first")
        return TransportClosedError(f"{name} is closed")

    def _check_open(self) -> None:
        if self._closed:
            raise self._closed_error()

    def _sub_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """Subscription options: the transport-wide queue limits given at connect (``max_pending``,
        ``max_pending_bytes``, ``on_slow_consumer``), overridden by the per-subscribe ``options``."""
        opts = {k: self.options[k] for k in _SUB_OPTIONS if k in self.options}
        opts.update(options)
        return opts

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    def __await__(self) -> Generator[Any, None, Self]:
        """``t = await connect(url)``: connect and return the transport (the nats-py form); close it yourself."""
        return self.__aenter__().__await__()

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self.close()
        finally:
            self._cancel_background()

    # --- messaging ---
    @abc.abstractmethod
    async def publish(self, subject: str, payload: Buffer, *, reply: str | None = None,
                      headers: Headers | None = None) -> None:
        """Send ``payload`` to ``subject``; ``reply`` is the subject receivers answer on (``Message.reply``),
        ``headers`` arrive as ``Message.headers`` where ``Capability.HEADERS`` is declared."""

    async def publish_batch(self, subject: str, payloads: Sequence[Buffer]) -> None:
        """Publish many payloads; adapters override this where the client batches natively."""
        for p in payloads:
            await self.publish(subject, p)

    async def publish_batch_to(self, batch: MessageBatch, subject: str | None = None) -> int:
        """Publish every message of ``batch``: to ``subject`` if given, else each to its own reply subject
        (messages with neither are skipped).  Returns how many were published; a message the transport
        refuses is counted in ``publish_errors`` and logged, and the rest of the batch still goes out.
        Adapters override this where they can write a batch without a Python object per message."""
        sent = 0
        for i in range(batch.n):
            to = subject if subject is not None else batch.reply(i)
            if not to:
                continue
            try:
                await self.publish(to, batch.payload(i))
            except TransportClosedError:
                raise
            except Exception as e:  # noqa: BLE001 - one bad subject must not lose the rest of the batch
                self._refused(to, e)
                continue
            sent += 1
        return sent

    def _refused(self, to: str, e: Exception) -> None:
        """Count and log (first, then every 1000th) a batch message the transport refused."""
        self.publish_errors += 1
        if self.publish_errors == 1 or self.publish_errors % 1000 == 0:
            log.error("publish_batch_to: message to %r refused (%s); %d refused so far", to, e, self.publish_errors)

    @abc.abstractmethod
    async def subscribe(self, subject: str, *, queue: str | None = None, **options: Any) -> Subscription:
        """Subscribe; with ``queue`` each message goes to one member of the queue group."""

    @abc.abstractmethod
    async def request(self, subject: str, payload: Buffer, *, timeout: float = 1.0,
                      headers: Headers | None = None) -> Message:
        """Send a request and wait for one reply; raises ``TransportTimeoutError`` after ``timeout`` s."""

    async def serve(self, subject: str, handler: Handler, *, queue: str | None = None,
                    **options: Any) -> asyncio.Task[None]:
        """Run a request/reply worker: ``handler(msg)`` returns the reply payload (or None for no reply).

        Returns the worker task; cancel it (or close the transport) to stop.  The transport keeps a reference to
        it, so dropping the returned task does not stop the worker.  This default subscribes and answers one
        request at a time (``ServeSink.handle``); adapters with a receive path of their own register a
        ``ServeSink`` there instead (no queue hop).
        """
        sub = await self.subscribe(subject, queue=queue, **options)
        sink = ServeSink(self, subject, queue, handler)

        async def _loop() -> None:
            try:
                async for msg in sub:
                    await sink.handle(msg)
            finally:
                try:
                    await sub.unsubscribe()
                except Exception:  # noqa: BLE001, S110 - closing transport may already have dropped it
                    pass

        return self._keep(asyncio.get_running_loop().create_task(_loop(), name=f"lowlat-serve:{subject}"))

    def _serve_task(self, sink: ServeSink, unregister: Callable[[], Awaitable[None] | None]) -> asyncio.Task[None]:
        """The task ``serve()`` returns for a ``ServeSink`` registered in the adapter's receive path: it runs
        until cancelled (or ``sink.close_nowait()``), then calls ``unregister()``.  Kept by the transport."""
        async def _wait() -> None:
            try:
                await asyncio.shield(sink.stopped)  # type: ignore[arg-type]  # async sinks have one
            finally:
                sink.close_nowait()
                try:
                    out = unregister()
                    if out is not None:
                        await out
                except Exception:  # noqa: BLE001, S110 - the transport may be closing already
                    pass

        return self._keep(asyncio.get_running_loop().create_task(_wait(), name=f"lowlat-serve:{sink.subject}"))
