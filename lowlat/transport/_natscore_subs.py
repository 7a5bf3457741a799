"""The receive side of ``NatsCoreTransport``: what the compiled parser's per-subscription ``MsgSink`` wakes.

Three kinds share the sink protocol (``sink.owner._wake()`` when messages arrive): ``_CoreSub`` (an ordinary
subscription whose pending messages stay in the sink's batch arena until iterated or taken as a batch),
``_ServeSub`` (``serve()``: the handler runs inline in the receive path) and ``_Inbox`` (the one wildcard inbox
behind ``request``: reply token -> future).  They belong to the transport in ``natscore.py`` and use its
connection (``_loop``, ``_unsub``, ``_parser``, ``flush``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from .._batch import MessageBatch
from .._nats_proto import MsgSink
from ..errors import NoRespondersError, TransportClosedError, TransportError
from ._nats_headers import decode_headers
from ._serve import ServeSink
from .base import Message, Subscription

if TYPE_CHECKING:
    from .natscore import NatsCoreTransport

__all__: list[str] = []


class _CoreSub(Subscription):
    """A subscription whose pending messages live in its compiled ``MsgSink`` (batch arena)."""

    def __init__(self, t: NatsCoreTransport, subject: str, queue: str | None, sid: int, sink: MsgSink,
                 on_slow_consumer: Callable[[Subscription], None] | None) -> None:
        self.subject = subject
        self.queue = queue
        self.sid = sid
        self._t = t
        self._sink = self._flow = sink
        self._waiter: asyncio.Future[None] | None = None
        self.on_slow_consumer = on_slow_consumer
        self._done = False   # iteration ends once pending is empty
        sink.owner = self

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    def _message(self, m: tuple[str, bytes, str | None, bytes | None]) -> Message:
        subject, data, reply, hdr = m
        headers = decode_headers(hdr)[0] if hdr is not None else None
        return Message(subject, data, headers, reply, self._t)

    async def __anext__(self) -> Message:
        sink = self._sink
        while True:
            m = sink.pop()
            if m is not None:
                return self._message(m)
            if self._done:
                raise StopAsyncIteration
            self._waiter = self._t._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    def get_nowait(self) -> Message | None:
        m = self._sink.pop()
        return None if m is None else self._message(m)

    def take_batch(self, max_msgs: int = 1024) -> MessageBatch:
        """Pending messages as one batch straight from the sink's arena (no per-message objects); header blocks
        of HMSG slots via ``batch_headers(i)``."""
        return self._sink.take_batch(max_msgs)

    def batch_headers(self, i: int) -> dict[str, str] | None:
        """Headers of message ``i`` of the last ``take_batch`` (None if it had none)."""
        hdr = self._sink.batch_header(i)
        return None if hdr is None else decode_headers(hdr)[0]

    async def next_batch(self, max_msgs: int = 1024, timeout: float | None = None) -> MessageBatch:
        if self._sink.pending == 0:
            if self._done:
                raise TransportClosedError(f"subscription {self.subject!r} is closed")
            self._waiter = self._t._loop.create_future()
            try:
                await asyncio.wait_for(self._waiter, timeout)
            except TimeoutError:
                pass
            finally:
                self._waiter = None
        return self._sink.take_batch(max_msgs)

    def _end(self, discard: bool) -> None:
        self._sink.closed = True
        if discard:
            self._sink.clear()
        self._done = True
        self._wake()

    async def unsubscribe(self) -> None:
        """Stop delivery now and discard what is pending."""
        self._end(discard=True)
        self._t._unsub(self.sid)

    async def drain(self) -> None:
        """Unsubscribe, wait (one PING/PONG) for what the server already sent, then iteration ends after it."""
        self._t._unsub(self.sid, keep_sink=True)
        try:
            await self._t.flush(timeout=5)
        except TransportError:
            pass
        self._t._parser.remove_sink(self.sid)
        self._end(discard=False)

    def close_nowait(self) -> None:
        self._end(discard=False)


class _ServeSub:
    """``serve()`` registered in the receive path: the handler runs inline, replies go out synchronously."""

    def __init__(self, t: NatsCoreTransport, sink: MsgSink, serve: ServeSink) -> None:
        self._t = t
        self._sink = self._flow = sink
        self.serve = serve
        self.subject = serve.subject
        self.queue = serve.queue
        self.on_slow_consumer = None
        sink.owner = self

    def _wake(self) -> None:
        t, pop, deliver = self._t, self._sink.pop, self.serve._deliver
        while (m := pop()) is not None:
            subject, data, reply, hdr = m
            deliver(Message(subject, data, decode_headers(hdr)[0] if hdr is not None else None, reply, t))

    def close_nowait(self) -> None:
        self._sink.closed = True
        self.serve.close_nowait()

    @property
    def dropped(self) -> int:
        return self._sink.dropped


class _Inbox:
    """The one wildcard inbox subscription behind ``request``: reply token -> future."""

    def __init__(self, t: NatsCoreTransport, prefix: str, sink: MsgSink) -> None:
        self._t = t
        self.prefix = prefix
        self._plen = len(prefix)
        self._sink = self._flow = sink
        self.futures: dict[str, tuple[asyncio.Future[Message], str]] = {}
        self.subject = prefix + "*"
        self.queue = None
        self.on_slow_consumer = None
        sink.owner = self

    def _wake(self) -> None:
        pop, futures, n = self._sink.pop, self.futures, self._plen
        while (m := pop()) is not None:
            subject, data, _reply, hdr = m
            entry = futures.pop(subject[n:], None)
            if entry is None or entry[0].done():
                continue
            fut = entry[0]
            if hdr is not None:
                headers, status = decode_headers(hdr)
                if status == 503:
                    fut.set_exception(NoRespondersError(f"no responders on {entry[1]!r}"))
                    continue
            else:
                headers = None
            fut.set_result(Message(subject, data, headers, None, self._t))

    def close_nowait(self) -> None:
        for f, _ in self.futures.values():
            if not f.done():
                f.set_exception(TransportClosedError("connection closed before the reply arrived"))
        self.futures.clear()

    @property
    def dropped(self) -> int:
        return self._sink.dropped
