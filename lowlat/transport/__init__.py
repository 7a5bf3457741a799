"""``lowlat.transport.connect(url)``: pick an adapter by URL scheme.

Schemes: ``inproc://name`` and ``shm://name`` (embedded, no broker), ``zmq+tcp://``, ``zmq+ipc://``,
``zmq+inproc://`` (pyzmq), ``nats://`` / ``tls://`` (lowlat's compiled core-NATS client; ``nats+py://`` /
``tls+py://`` or ``client="nats-py"`` for nats-py, ``client="lowlat"`` for ours), ``kafka://`` (confluent-kafka),
``aeron:ipc`` / ``aeron:udp?endpoint=…`` (lowlat._aeron).
"""

from __future__ import annotations

import importlib
from typing import Any

from ..errors import MissingExtraError
from .base import Buffer, Handler, Headers, Message, Subscription, Transport

__all__ = ["Buffer", "Handler", "Headers", "Message", "Subscription", "Transport", "connect", "known_schemes",
           "scheme_of"]

# scheme -> (module, class, extra that provides the client or None)
_ADAPTERS: dict[str, tuple[str, str, str | None]] = {
    "inproc": ("lowlat.transport.inproc", "InprocTransport", None),
    "shm": ("lowlat.transport.shm", "ShmTransport", None),
    "zmq+tcp": ("lowlat.transport.zmq", "ZmqTransport", "zmq"),
    "zmq+ipc": ("lowlat.transport.zmq", "ZmqTransport", "zmq"),
    "zmq+inproc": ("lowlat.transport.zmq", "ZmqTransport", "zmq"),
    "nats": ("lowlat.transport.natscore", "NatsCoreTransport", None),
    "tls": ("lowlat.transport.natscore", "NatsCoreTransport", None),
    "nats+py": ("lowlat.transport.nats", "NatsTransport", "nats"),
    "tls+py": ("lowlat.transport.nats", "NatsTransport", "nats"),
    "kafka": ("lowlat.transport.kafka", "KafkaTransport", "kafka"),
    "aeron": ("lowlat.transport.aeron", "AeronTransport", None),
}

# ``client=`` for nats:// and tls:// URLs
_NATS_CLIENTS: dict[str, tuple[str, str, str | None]] = {
    "lowlat": ("lowlat.transport.natscore", "NatsCoreTransport", None),
    "nats-py": ("lowlat.transport.nats", "NatsTransport", "nats"),
}


def known_schemes() -> list[str]:
    """The URL schemes ``connect`` knows (whether or not their client library is installed)."""
    return sorted(_ADAPTERS)


def scheme_of(url: str) -> str:
    if url.startswith("aeron:"):
        return "aeron"
    head, sep, _ = url.partition("://")
    if not sep:
        raise ValueError(f"not a transport URL (expected scheme://...): {url!r}")
    return head.lower()


def connect(url: str, **options: Any) -> Transport:
    """Return an unconnected ``Transport`` for ``url``: ``async with connect(url) as t``, or ``t = await connect(url)``
    (connected; ``await t.close()`` when done), or ``t = connect(url)`` then ``await t.connect()``.

    Raises ``ValueError`` for an unknown scheme and ``MissingExtraError`` (an ``ImportError``) naming the extra to
    install when the scheme's client library is absent.
    """
    scheme = scheme_of(url)
    if scheme in ("nats+py", "tls+py"):   # nats-py by scheme: it takes the plain nats:// / tls:// URLs
        url = url.replace("+py://", "://")
    client = options.pop("client", None) if scheme in ("nats", "tls") else None
    if client is not None and client not in _NATS_CLIENTS:
        raise ValueError(f"unknown NATS client {client!r}; known: {', '.join(sorted(_NATS_CLIENTS))}")
    try:
        mod_name, cls_name, extra = _NATS_CLIENTS[client] if client else _ADAPTERS[scheme]
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
