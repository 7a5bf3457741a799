"""``InlineSink``: an ``inproc://`` subscription whose handler runs inside the publisher's call.

Why: on one event loop a queued subscription costs a task wake-up and a loop turn per delivery (tens of µs of
Python on the development VM), which at a few thousand messages per second is most of a service's CPU.  An inline
sink hands each delivery to its handler at once, in the publisher's call stack, the way an in-process message bus
(NautilusTrader's ``MessageBus``) calls its handlers: no queue, no task.  ``InprocTransport.subscribe_inline``
makes one; the services use it with ``inline = true`` (``lowlat.services.config``).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._batch import FanoutPlan, MessageBatch

if TYPE_CHECKING:
    from .base import Message

__all__ = ["InlineSink"]

log = logging.getLogger("lowlat.transport")

_NO_LIMIT = 1 << 62


class InlineSink:
    """Registered in a bus's route table like a subscription (``subject``, ``queue``, ``_loop``, ``_transport``).

    Every message or run delivered to it is handed to ``handler(batch)`` at once as a ``MessageBatch`` (payload,
    subject, reply), valid only during the call: copy what you keep.  The publisher pays the handler's time; there
    is no pending queue, so no back-pressure beyond that and nothing to drain.  A handler that publishes something
    that reaches this sink again is not re-entered: that delivery is copied and handed over when the running call
    returns (so a cycle of subjects cannot recurse without bound).  A handler that raises is logged and counted in
    ``errors``; the publisher never sees it.  Deliveries from another thread or event loop are copied and run on
    the sink's loop (``call_soon_threadsafe``).  Cost: one copy of each run into the sink's reused batch plus the
    handler; ~1-2 µs of Python per delivery.
    """

    def __init__(self, transport: Any, subject: str, queue: str | None, handler: Callable[[MessageBatch], Any],
                 *, on_close: Callable[[InlineSink], None] | None = None) -> None:
        self.subject, self.queue = subject, queue
        self._transport = transport
        self._loop = asyncio.get_running_loop()
        self._handler = handler
        self._on_close = on_close
        self._batch = MessageBatch(1024, 1 << 20)  # reused for every run (not while a call is running)
        self._running = False
        self._backlog: deque[MessageBatch] = deque()
        self.handled = 0   # messages handed to the handler
        self.errors = 0    # handler calls that raised
        self.closed = False

    # --- what the publisher calls ---
    def _deliver(self, msg: Message) -> bool:
        if self.closed:
            return False
        data = msg.data
        n = data.nbytes if type(data) is memoryview else len(data)  # type: ignore[arg-type]
        b = self._batch if not self._running else None
        if b is None or b.arena_bytes < n + len(msg.subject) * 4 + len(msg.reply or "") * 4 + 16:
            b = MessageBatch(1, n + len(msg.subject) * 4 + len(msg.reply or "") * 4 + 16)
        else:
            b.clear()
        b.append(data, msg.subject, msg.reply)
        self._run(b)
        return True

    def _deliver_threadsafe(self, msg: Message) -> None:
        self._loop.call_soon_threadsafe(self._deliver, msg)

    def _deliver_plan(self, plan: FanoutPlan, row: int) -> None:
        if self.closed:
            return
        if self._running:  # a delivery from inside our own handler: copied, handed over when it returns
            self._backlog.append(plan.copy_row(row))
            return
        i = 0
        while i < plan.n:
            b = self._batch
            b.clear()
            j = plan.deliver(row, b, i, 0, _NO_LIMIT, 0, _NO_LIMIT)[0]
            if b.n == 0:
                if j >= plan.n:  # nothing of this row from i on
                    return
                # one message larger than the batch's arena: a batch that holds it, kept for the next ones
                self._batch = MessageBatch(1024, 2 * plan.need(j) + (1 << 20))
                continue
            self._run(b)
            i = j

    def _deliver_plan_threadsafe(self, plan: FanoutPlan, row: int) -> None:
        copy = plan.copy_row(row)
        if copy.n:
            self._loop.call_soon_threadsafe(self._run, copy)

    # --- the handler ---
    def _run(self, batch: MessageBatch) -> None:
        if self.closed:
            return
        if self._running:  # (the reused batch is only handed in while not running: this one is a copy)
            self._backlog.append(batch)
            return
        self._running = True
        try:
            self._call(batch)
            while self._backlog and not self.closed:
                self._call(self._backlog.popleft())
        finally:
            self._running = False

    def _call(self, batch: MessageBatch) -> None:
        self.handled += batch.n
        try:
            self._handler(batch)
        except Exception:  # a failing handler must not reach the publisher
            self.errors += 1
            if self.errors == 1 or self.errors % 1000 == 0:
                log.exception("inline subscription %r: handler failed (%d messages; %d failures so far)",
                              self.subject, batch.n, self.errors)

    # --- lifecycle ---
    def close(self) -> None:
        """Stop deliveries (idempotent); what a running call has not reached yet is dropped with it."""
        if self.closed:
            return
        self.closed = True
        self._backlog.clear()
        if self._on_close is not None:
            self._on_close(self)

    async def unsubscribe(self) -> None:
        self.close()
