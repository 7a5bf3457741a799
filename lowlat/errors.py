"""lowlat's exception hierarchy.  Compiled modules import these; they never define their own."""

from __future__ import annotations

__all__ = [
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
