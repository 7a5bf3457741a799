"""lowlat's exception hierarchy.  Compiled modules import these; they never define their own."""

from __future__ import annotations

__all__ = [
    "AffinityError",
    "CircuitOpenError",
    "DecodeError",
    "LappedError",
    "LowlatError",
    "MaxPayloadError",
    "MissingExtraError",
    "NoRespondersError",
    "RingError",
    "RingFullError",
    "TransportClosedError",
    "TransportError",
    "TransportNotConnectedError",
    "TransportTimeoutError",
]


class LowlatError(Exception):
    """Base class of every error lowlat raises on purpose."""


class DecodeError(LowlatError, ValueError):
    """A buffer is not a valid message of the expected type (truncated, hostile or wrong schema)."""


class RingError(LowlatError):
    """A ring buffer cannot be created, attached or used as asked (bad name, magic/version mismatch, size)."""


class RingFullError(RingError, TimeoutError):
    """A blocking push timed out because the consumer did not make room."""


class LappedError(RingError):
    """A broadcast consumer fell more than one ring behind the producer and lost records."""


class TransportError(LowlatError):
    """A transport adapter failed (connection, protocol, broker error)."""


class TransportClosedError(TransportError):
    """The transport was closed or drained."""


class TransportNotConnectedError(TransportClosedError):
    """The transport is used before ``connect()`` (every adapter raises this, for every operation)."""


class TransportTimeoutError(TransportError, TimeoutError):
    """A request, flush, subscribe handshake or back-pressured publish did not complete in time.

    Every lowlat timeout is a ``TimeoutError``: this one for transports, ``RingFullError`` for rings."""


class NoRespondersError(TransportTimeoutError):
    """A request reached no subscriber: fails at once instead of after the timeout, on every adapter that can
    know (NATS status 503, inproc, shm; the others time out).  A ``TransportTimeoutError`` so callers that only
    handle timeouts keep working."""


class MaxPayloadError(TransportError, ValueError):
    """A message is larger than the server's ``max_payload``; refused before anything is sent."""


class MissingExtraError(LowlatError, ImportError):
    """An optional client library is not installed; the message names the extra to install."""


class AffinityError(LowlatError, OSError):
    """CPU pinning or a real-time scheduling class cannot be applied as asked: a CPU outside the allowed set, a
    malformed CPU list, a platform without ``sched_setaffinity``, or no permission for ``SCHED_FIFO``."""


class CircuitOpenError(TransportError):
    """A call was refused at once because the circuit breaker of its target is open (the target failed or was too
    slow recently); ``target`` names it and ``retry_in`` is how long (s) until the breaker lets one trial call
    through."""

    def __init__(self, message: str, target: str = "", retry_in: float = 0.0) -> None:
        super().__init__(message)
        self.target = target
        self.retry_in = retry_in
