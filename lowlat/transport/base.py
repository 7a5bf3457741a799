"""The one async transport interface every adapter implements.

Adapters move bytes and never decode them: ``Message.data`` is a buffer (``memoryview`` where the client
allows it) that goes straight into ``lowlat``'s zero-copy readers.  The conformance suite in
``tests/integration/test_transport_conformance.py`` runs the same tests against every adapter.

Subjects follow NATS rules on every adapter: dot-separated tokens, ``*`` matches exactly one token and ``>``
matches one or more trailing tokens (only in subscriptions).  ``subject_matches`` is the reference.

Pure helpers any adapter may use (defined in ``_subjects``, importable from here): ``subject_matches`` /
``validate_subject``, ``new_inbox`` and ``encode_meta``/``decode_meta`` (reply subject + headers in one small
frame, for transports without native headers).  Routing for embedded and hub-side adapters is ``_routes``.
``QueueSubscription`` is the bounded receive queue most adapters feed (``max_pending`` / ``max_pending_bytes``,
drops counted and reported); ``_serve.ServeSink`` is the one request/reply worker every adapter's ``serve()`` uses.
``Transport.capabilities`` says what an adapter supports; callers read it instead of catching errors.  The
durable-log protocol (``Capability.DURABLE``: ``DurableLog``, ``log_replay``) is in ``durable``.

Tasks: asyncio holds tasks weakly, so an adapter keeps every task it creates with ``Transport._keep`` (a dropped
``serve()`` task was once garbage-collected and its worker silently unregistered) and ``close`` cancels them.
"""

from __future__ import annotations

import abc
import asyncio
import enum
import logging
import operator
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Never, Self, overload

from .._batch import FanoutPlan, MessageBatch
from ..errors import TransportClosedError, TransportNotConnectedError, TransportTimeoutError
from ._queue import RunQueue
from ._serve import ServeSink
from ._subjects import decode_meta, encode_meta, new_inbox, subject_matches, validate_subject

Buffer = bytes | bytearray | memoryview
Headers = Mapping[str, str]
Handler = Callable[["Message"], "Awaitable[Buffer | None] | Buffer | None"]

__all__ = [
    "Buffer",
    "Capability",
    "Handler",
    "Headers",
    "Message",
    "MessageBatch",
    "QueueSubscription",
    "SlowConsumerCallback",
    "Subscription",
    "Transport",
    "decode_meta",
    "encode_meta",
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
    DURABLE = enum.auto()         # the adapter implements the durable-log protocol (durable.DurableLog)
    NATIVE_BATCH = enum.auto()    # take_batch/publish_batch_to avoid a Python object per message
    COPIES_BATCH = enum.auto()    # publish_batch_to has copied every message when it returns: reuse the batch


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


class _NoFlow:
    pending = pending_bytes = delivered = dropped = 0


class _FlowCount(property):
    """A read-only ``int`` attribute of a subscription, read from its ``_flow`` counters (same name).  A
    ``property`` over ``operator.attrgetter``: the read runs in C (~60 ns, as fast as a hand-written property)."""

    def __init__(self, name: str, doc: str) -> None:
        super().__init__(operator.attrgetter("_flow." + name))
        self.__doc__ = doc

    if TYPE_CHECKING:  # what type checkers see: an int on instances, and no assignment
        @overload
        def __get__(self, obj: None, owner: type | None = None) -> _FlowCount: ...
        @overload
        def __get__(self, obj: object, owner: type | None = None) -> int: ...
        def __get__(self, obj: object, owner: type | None = None) -> int | _FlowCount: ...
        def __set__(self, obj: object, value: Never) -> None: ...


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

    # Where the flow-control counters live: the adapter's queue or sink, anything with ``pending``,
    # ``pending_bytes``, ``delivered`` and ``dropped``.  The default is an adapter that counts nothing.
    _flow: Any = _NoFlow
    pending = _FlowCount("pending", "Messages received but not yet iterated.")
    pending_bytes = _FlowCount("pending_bytes", "Payload bytes received but not yet iterated (0 where the adapter "
                                                "cannot tell).")
    dropped = _FlowCount("dropped", "Messages dropped because this subscription was a slow consumer (its pending "
                                    "limit was hit).")
    delivered = _FlowCount("delivered", "Messages accepted for this subscription so far (0 where the adapter "
                                        "cannot tell).")

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
    memory without bound.  The limits apply per message also to batch deliveries (``_deliver_plan``): of a
    batch that only partly fits, the messages that fit are queued and the rest counted as dropped.

    The queue (``_queue.RunQueue``) holds single messages and runs of a batch publication copied into chunks the
    subscription owns, in arrival order: ``take_batch`` hands a whole chunk over without a copy (or copies in
    C), ``__anext__``/``get_nowait`` make one ``Message`` at a time from a run.  Cost per delivery: one deque
    append (a batch: one C loop) plus a future wake-up when the reader waits.
    """

    _transport: Any = None   # what materialised messages answer through (Message.respond)

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
        self._q = self._flow = RunQueue()
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
        q = self._q
        if q.pending >= self.max_pending or q.pending_bytes + n > self.max_pending_bytes:
            self._drop()
            return False
        q.push(msg, n)
        q.delivered += 1
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)
        return True

    def _drop(self, *, logged: bool = False) -> None:
        """Count one message this subscription could not take, log it (first, then every 1000th: unless the
        adapter has, ``logged``) and tell ``on_slow_consumer``."""
        q = self._q
        q.dropped += 1
        if not logged and (q.dropped == 1 or q.dropped % 1000 == 0):
            log.warning("slow consumer on %r: %d message(s) dropped (pending %d msgs / %d bytes)",
                        self.subject, q.dropped, q.pending, q.pending_bytes)
        if self.on_slow_consumer is not None:
            self.on_slow_consumer(self)

    def _deliver_plan(self, plan: FanoutPlan, row: int) -> int:
        """Queue row ``row`` of a batch publication (copied into this subscription's memory, so the publisher
        may reuse its batch at once); returns how many were queued.  Call on the owning loop."""
        if self._closed:
            return 0
        accepted, dropped = self._q.push_plan(plan, row, self.max_pending, self.max_pending_bytes)
        self._q.delivered += accepted
        for _ in range(dropped):
            if self._closed:   # the callback closed us: like per-message delivery, later drops are not counted
                break
            self._drop()
        if accepted:
            w = self._waiter
            if w is not None and not w.done():
                w.set_result(None)
        return accepted

    def _deliver_threadsafe(self, msg: Message) -> None:
        """Queue ``msg`` from another thread or event loop."""
        self._loop.call_soon_threadsafe(self._deliver, msg)

    def _deliver_plan_threadsafe(self, plan: FanoutPlan, row: int) -> None:
        """``_deliver_plan`` from another thread or event loop: the row is copied here (the publisher may reuse
        its batch), and handed over in one ``call_soon_threadsafe``."""
        copy = plan.copy_row(row)
        if copy.n:
            self._loop.call_soon_threadsafe(self._deliver_copy, copy)

    def _deliver_copy(self, copy: MessageBatch) -> None:
        plan = FanoutPlan(copy, own_subjects=True)
        plan.select(plan.add_row(), 0)
        self._deliver_plan(plan, 0)

    # --- reader side ---
    async def _wait_pending(self) -> None:
        """Until something is pending; ``StopAsyncIteration`` once closed with nothing left."""
        while not self._q.pending or self._discard:
            if self._closed:
                raise StopAsyncIteration
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    async def __anext__(self) -> Message:
        if not self._q.pending or self._discard:
            await self._wait_pending()
        return self._q.pop(Message, self._transport)  # type: ignore[no-any-return]

    def get_nowait(self) -> Message | None:
        """The next pending message or None (no waiting); for pollers and benchmarks."""
        if self._discard:
            return None
        return self._q.pop(Message, self._transport)  # type: ignore[no-any-return]

    def take_batch(self, max_msgs: int = 1024) -> MessageBatch:
        """Everything pending (at most ``max_msgs``) as one ``MessageBatch`` without waiting, valid until the
        next ``take_batch``/``next_batch`` call: a batch publication's chunk is handed over as it is (no copy),
        anything else is copied in (one memcpy per field)."""
        if max_msgs <= 0:
            raise ValueError(f"max_msgs must be > 0, got {max_msgs}")
        if self._discard:
            self._q.clear()
        return self._q.take(max_msgs)

    async def next_batch(self, max_msgs: int = 1024, timeout: float | None = None) -> MessageBatch:
        """Wait for at least one message (up to ``timeout`` s; an empty batch after it), then ``take_batch``;
        ``TransportClosedError`` once the subscription has ended and nothing is left."""
        if not self._q.pending or self._discard:
            try:
                if timeout is None:
                    await self._wait_pending()
                else:
                    async with asyncio.timeout(timeout):
                        await self._wait_pending()
            except TimeoutError:
                return self.take_batch(max_msgs)
            except StopAsyncIteration:
                raise TransportClosedError(f"subscription {self.subject!r} is closed") from None
        return self.take_batch(max_msgs)

    def _finish(self, discard: bool) -> None:
        self._closed = True
        if discard:
            self._discard = True
            self._q.clear()
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

    @staticmethod
    async def _stop_task(task: asyncio.Task[Any] | None) -> None:
        """Cancel ``task`` (an adapter's poller or reader loop; None: nothing) and wait until it has finished."""
        if task is None:
            return
        task.cancel()
        try:
            await task
        except (asyncio.CancelledError, Exception):  # noqa: BLE001, S110 - stopping: its outcome is moot
            pass

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
