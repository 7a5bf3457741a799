"""The one async transport interface every adapter implements.

Adapters move bytes and never decode them: ``Message.data`` is a buffer (``memoryview`` where the client
allows it) that goes straight into ``lowlat``'s zero-copy readers.  The conformance suite in
``tests/integration/test_transport_conformance.py`` runs the same tests against every adapter.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, Self

from ..errors import TransportClosedError

Buffer = bytes | bytearray | memoryview
Headers = Mapping[str, str]
Handler = Callable[["Message"], "Awaitable[Buffer | None] | Buffer | None"]

__all__ = ["Buffer", "Headers", "Handler", "Message", "Subscription", "Transport"]


class Message:
    """One received message.

    ``data`` is the payload (a buffer; do not keep it past the next ``__anext__`` unless you copy it, since
    some adapters reuse memory), ``headers`` a mapping or None, ``reply`` the subject to answer on (request
    messages), ``ack()`` acknowledges at-least-once deliveries (JetStream, Kafka commits); it is a no-op on
    at-most-once transports.
    """

    __slots__ = ("subject", "data", "headers", "reply", "_transport", "_ack")

    def __init__(self, subject: str, data: Buffer, headers: Headers | None = None, reply: str | None = None,
                 transport: "Transport | None" = None, ack: Callable[[], Awaitable[None]] | None = None) -> None:
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


class Transport(abc.ABC):
    """An async connection to one transport (a broker, a media driver, or the embedded rings).

    Use ``async with lowlat.transport.connect(url) as t:``.  Options are keyword-only and passed through to
    the client where they mean something there.
    """

    schemes: tuple[str, ...] = ()

    def __init__(self, url: str, **options: Any) -> None:
        self.url = url
        self.options = options
        self._closed = False

    # --- lifecycle ---
    @abc.abstractmethod
    async def connect(self) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    async def drain(self) -> None:
        """Stop receiving, deliver what is already pending, flush, then close (default: flush + close)."""
        await self.flush()
        await self.close()

    async def flush(self, timeout: float | None = None) -> None:
        """Wait until what was published has left this process (default: nothing buffered)."""
        return None

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise TransportClosedError(f"{type(self).__name__} is closed")

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- messaging ---
    @abc.abstractmethod
    async def publish(self, subject: str, payload: Buffer, *, headers: Headers | None = None) -> None: ...

    async def publish_batch(self, subject: str, payloads: Sequence[Buffer]) -> None:
        """Publish many payloads; adapters override this where the client batches natively."""
        for p in payloads:
            await self.publish(subject, p)

    @abc.abstractmethod
    async def subscribe(self, subject: str, *, queue: str | None = None, **options: Any) -> Subscription:
        """Subscribe; with ``queue`` each message goes to one member of the queue group."""

    @abc.abstractmethod
    async def request(self, subject: str, payload: Buffer, *, timeout: float = 1.0,
                      headers: Headers | None = None) -> Message:
        """Send a request and wait for one reply; raises ``TransportTimeoutError`` after ``timeout`` s."""

    async def serve(self, subject: str, handler: Handler, *, queue: str | None = None,
                    **options: Any) -> "asyncio.Task[None]":
        """Run a request/reply worker: ``handler(msg)`` returns the reply payload (or None for no reply).

        Returns the worker task; cancel it (or close the transport) to stop.
        """
        sub = await self.subscribe(subject, queue=queue, **options)

        async def _loop() -> None:
            try:
                async for msg in sub:
                    out = handler(msg)
                    if asyncio.iscoroutine(out) or isinstance(out, asyncio.Future):
                        out = await out
                    if out is not None and msg.reply:
                        await msg.respond(out)
            finally:
                try:
                    await sub.unsubscribe()
                except Exception:  # noqa: BLE001 - closing transport may already have dropped it
                    pass

        return asyncio.get_running_loop().create_task(_loop(), name=f"lowlat-serve:{subject}")
