"""``RunQueue``: the ordered pending queue behind ``QueueSubscription``, holding single messages and *runs*.

A run is a slice ``[start, stop)`` of a *chunk*: a ``MessageBatch`` the queue owns, into which a batch
publication (``FanoutPlan.deliver``) copied this receiver's messages.  Single publications stay ``Message``
objects (headers and the publisher's payload object by reference).  Entries are kept in arrival order, so
per-message iteration and batch taking see the same sequence whatever mix of publish and publish_batch_to
produced it.

Memory: a run's bytes live in its chunk; a ``Message`` materialised from a run (``pop``) is a view into the chunk,
so such a chunk is never reused (the garbage collector frees it with its last view).  Only a chunk handed out
whole by ``take`` comes back for reuse, at the next ``take`` (the batch lifetime rule allows exactly that).
"""

from __future__ import annotations

import collections
from typing import Any

from .._batch import FanoutPlan, MessageBatch

__all__ = ["RunQueue"]

_CHUNK_SLOTS = 256          # smallest chunk: messages
_CHUNK_BYTES = 64 << 10     # smallest chunk arena: bytes
_CHUNK_MAX_BYTES = 4 << 20  # a chunk is sized for what is being delivered, up to this (one big message: its size)


class _Run:
    __slots__ = ("chunk", "start", "stop", "subject")

    def __init__(self, chunk: MessageBatch, start: int, stop: int, subject: str | None) -> None:
        self.chunk = chunk
        self.start = start
        self.stop = stop
        self.subject = subject   # every message's subject when the run has one (saves a decode per message)


class RunQueue:
    """Pending messages of one receiver: ``pending`` messages of ``pending_bytes`` payload bytes, with the
    receiver's ``delivered`` and ``dropped`` counts (the names ``Subscription`` reads).  Not thread-safe (one
    event loop owns it).  Cost: ``push`` a deque append; ``push_plan`` one C loop per chunk touched plus one run
    entry; ``pop`` one ``Message`` (from a run: a subject and a payload view); ``take`` lends a whole chunk
    (no copy) when the oldest entry is one, else one memcpy per field."""

    def __init__(self) -> None:
        self.entries: collections.deque[Any] = collections.deque()
        self.pending = 0
        self.pending_bytes = 0
        self.delivered = 0   # messages accepted so far
        self.dropped = 0     # messages refused by the receiver's limits (slow consumer)
        self._tail: MessageBatch | None = None   # the chunk new runs go into (never a lent one)
        self._lent: MessageBatch | None = None   # the chunk the last take() returned
        self._spare: MessageBatch | None = None  # a lent chunk back for reuse
        self._own: MessageBatch | None = None    # take()'s batch when no chunk can be lent

    # --- producer side ---
    def push(self, msg: Any, nbytes: int) -> None:
        self.entries.append(msg)
        self.pending += 1
        self.pending_bytes += nbytes

    def push_plan(self, plan: FanoutPlan, row: int, max_count: int, max_bytes: int) -> tuple[int, int]:
        """Copy ``plan`` row ``row``'s messages in, each checked against the limits; ``(accepted, dropped)``."""
        n = plan.n
        subject = plan.row_subject(row)
        i = accepted = dropped = 0
        while i < n:
            tail = self._tail
            if tail is None:
                tail = self._tail = self._chunk(plan, i)
            n0 = tail.n
            i, acc, drop, self.pending_bytes = plan.deliver(row, tail, i, self.pending, max_count, self.pending_bytes, max_bytes)
            accepted += acc
            dropped += drop
            if acc:
                self.pending += acc
                last = self.entries[-1] if self.entries else None
                if type(last) is _Run and last.chunk is tail and last.stop == n0 and last.subject == subject:
                    last.stop = tail.n
                else:
                    self.entries.append(_Run(tail, n0, tail.n, subject))
            if i < n:
                self._tail = None   # full: the next message goes into a fresh chunk
        return accepted, dropped

    def _chunk(self, plan: FanoutPlan, i: int) -> MessageBatch:
        need = plan.need(i)
        spare = self._spare
        if spare is not None:
            self._spare = None
            if need <= spare.arena_bytes:
                spare.clear()
                return spare
        return MessageBatch(max(_CHUNK_SLOTS, min(plan.n - i, 4096)),
                            max(_CHUNK_BYTES, min(plan.bytes_upper, _CHUNK_MAX_BYTES), need))

    # --- consumer side ---
    def pop(self, factory: Any, transport: Any) -> Any:
        """The oldest message (``factory(subject, data, None, None, transport)`` for one from a run) or None."""
        entries = self.entries
        if not entries:
            return None
        e = entries[0]
        if type(e) is not _Run:
            entries.popleft()
            self.pending -= 1
            self.pending_bytes -= memoryview(e.data).nbytes
            return e
        c = e.chunk
        i = e.start
        data = c.payload(i)
        msg = factory(c.subject(i) if e.subject is None else e.subject, data, None, None, transport)
        e.start = i + 1
        if e.start == e.stop:
            entries.popleft()
        self.pending -= 1
        self.pending_bytes -= len(data)
        return msg

    def take(self, max_msgs: int) -> MessageBatch:
        """Up to ``max_msgs`` oldest messages as one batch, valid until the next ``take`` (or ``clear``)."""
        if self._lent is not None:
            self._spare, self._lent = self._lent, None
        entries = self.entries
        b: MessageBatch | None = None
        if entries:
            e = entries[0]
            if type(e) is _Run and e.start == 0 and e.stop == e.chunk.n and e.stop <= max_msgs:
                b = e.chunk   # the oldest entry is a whole chunk: lend it, no copy
                entries.popleft()
                self.pending -= b.n
                self.pending_bytes -= b.payload_bytes()
                if b is self._tail:
                    self._tail = None
                self._lent = b
        if b is None:
            b = self._own
            if b is None or b.capacity < max_msgs:
                b = self._own = MessageBatch(max(max_msgs, 1))
            b.clear()
        while b.n < max_msgs and entries:
            e = entries[0]
            if type(e) is _Run:
                c = e.chunk
                s = e.start
                k = b.extend_from(c, s, min(e.stop, s + max_msgs - b.n))
                if k == 0:
                    if b.n:
                        break
                    b = self._own = MessageBatch(max(max_msgs, 1), c.payload_bytes(s, s + 1) + 4096 +
                                                 len(c.subject(s)))   # one message larger than the arena
                    continue
                self.pending -= k
                self.pending_bytes -= c.payload_bytes(s, s + k)
                e.start = s + k
                if e.start == e.stop:
                    entries.popleft()
                continue
            if not b.append(e.data, e.subject, e.reply):
                if b.n:
                    break
                b = self._own = MessageBatch(max(max_msgs, 1), memoryview(e.data).nbytes + 4096)
                continue
            entries.popleft()
            self.pending -= 1
            self.pending_bytes -= memoryview(e.data).nbytes
        return b

    def clear(self) -> None:
        self.entries.clear()
        self.pending = 0
        self.pending_bytes = 0
        self._tail = None
