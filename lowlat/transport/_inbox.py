"""``InboxSink``: the reply side of ``request`` for adapters that route replies themselves (inproc, shm)."""

from __future__ import annotations

import asyncio

from .base import Message

__all__ = ["InboxSink"]


class InboxSink:
    """Receives replies for one transport's requests on ``<prefix>.*``: resolves the waiting future for the
    last token (no queue).  Registered in a ``RouteTable`` like a subscription."""

    queue = None

    def __init__(self, prefix: str, loop: asyncio.AbstractEventLoop | None) -> None:
        self.subject = prefix + ".*"
        self.prefix_len = len(prefix) + 1
        self._loop = loop
        self.waiting: dict[str, asyncio.Future[Message]] = {}

    def _deliver(self, msg: Message) -> bool:
        fut = self.waiting.pop(msg.subject[self.prefix_len:], None)
        if fut is not None and not fut.done():
            fut.set_result(msg)
            return True
        return False

    def _deliver_threadsafe(self, msg: Message) -> None:
        self._loop.call_soon_threadsafe(self._deliver, msg)  # type: ignore[union-attr]  # async transports only
