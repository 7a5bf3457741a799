"""The durable-log protocol (``Capability.DURABLE``): named, ordered, persistent logs with positions, implemented
by the adapters whose broker keeps messages (JetStream in ``nats``, a Kafka topic in ``kafka``), and
``log_replay``, which reads one back from a position to its end.  ``lowlat.services.journal`` builds on it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import NamedTuple, Protocol, runtime_checkable

from ..errors import TransportTimeoutError
from .base import Buffer, Message

__all__ = ["DurableLog", "LogAck", "LogReader", "LogRecord", "log_replay"]


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
