"""``lowlat.transport.connect(url)``: pick an adapter by URL scheme.

Schemes: ``inproc://name`` and ``shm://name`` (embedded, no broker), ``zmq+tcp://``, ``zmq+ipc://``,
``zmq+inproc://`` (pyzmq), ``nats://`` / ``tls://`` (nats-py), ``kafka://`` (confluent-kafka),
``aeron:ipc`` / ``aeron:udp?endpoint=…`` (lowlat._aeron).
"""

from __future__ import annotations

import importlib
from typing import Any

from ..errors import MissingExtraError
from .base import Buffer, Handler, Headers, Message, Subscription, Transport

__all__ = ["Buffer", "Handler", "Headers", "Message", "Subscription", "Transport", "connect", "scheme_of"]

# scheme -> (module, class, extra that provides the client or None)
_ADAPTERS: dict[str, tuple[str, str, str | None]] = {
    "inproc": ("lowlat.transport.inproc", "InprocTransport", None),
    "shm": ("lowlat.transport.inproc", "ShmTransport", None),
    "zmq+tcp": ("lowlat.transport.zmq", "ZmqTransport", "zmq"),
    "zmq+ipc": ("lowlat.transport.zmq", "ZmqTransport", "zmq"),
    "zmq+inproc": ("lowlat.transport.zmq", "ZmqTransport", "zmq"),
    "nats": ("lowlat.transport.nats", "NatsTransport", "nats"),
    "tls": ("lowlat.transport.nats", "NatsTransport", "nats"),
    "kafka": ("lowlat.transport.kafka", "KafkaTransport", "kafka"),
    "aeron": ("lowlat.transport.aeron", "AeronTransport", None),
}


def scheme_of(url: str) -> str:
    if url.startswith("aeron:"):
        return "aeron"
    head, sep, _ = url.partition("://")
    if not sep:
        raise ValueError(f"not a transport URL (expected scheme://...): {url!r}")
    return head.lower()


def connect(url: str, **options: Any) -> Transport:
    """Return an unconnected ``Transport`` for ``url``; use ``async with connect(url) as t`` (or ``await t.connect()``).

    Raises ``ValueError`` for an unknown scheme and ``MissingExtraError`` (an ``ImportError``) naming the extra to
    install when the scheme's client library is absent.
    """
    scheme = scheme_of(url)
    try:
        mod_name, cls_name, extra = _ADAPTERS[scheme]
    except KeyError:
        known = ", ".join(sorted(_ADAPTERS))
        raise ValueError(f"unknown transport scheme {scheme!r} in {url!r}; known: {known}") from None
    try:
        mod = importlib.import_module(mod_name)
    except MissingExtraError:
        raise
    except ImportError as e:
        if e.name == mod_name:
            raise MissingExtraError(f"transport {scheme!r}: adapter module {mod_name} is not in this build") from e
        hint = f"pip install 'lowlat[{extra}]'" if extra else "see the adapter's docstring"
        raise MissingExtraError(f"transport {scheme!r} is not available ({e}); {hint}") from e
    return getattr(mod, cls_name)(url, **options)
