"""``ServeSink``: the one request/reply worker behind every adapter's ``serve()`` (``Transport.serve`` in ``base``).

Private to the adapters: users call ``Transport.serve``/``serve_sync``; an adapter either awaits
``ServeSink.handle`` per message or registers the sink in its own receive path like a subscription.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ..errors import TransportClosedError

if TYPE_CHECKING:
    from .base import Buffer, Handler, Message, Transport

__all__ = ["ServeSink"]

log = logging.getLogger("lowlat.transport")   # the transport contract's logger (base.log)


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
