"""NATS adapter (nats-py): ``nats://host:port`` and ``tls://host:port``.

Core NATS: pub/sub with ``*``/``>`` wildcards, queue groups, request/reply (nats-py's shared response inbox),
headers.  JetStream (at-least-once): ``js_publish`` (waits for the PubAck; ``msg_id`` sets ``Nats-Msg-Id`` so the
server drops duplicates inside the stream's window), ``js_add_stream``, ``js_pull_subscribe`` returning a durable
pull consumer whose ``fetch`` yields ``Message``s to be acked explicitly with ``await msg.ack()``.

Options (keyword-only): everything ``nats.connect`` takes (``token``, ``user``/``password``, ``nkeys_seed``,
``user_credentials``, ``name``, ``connect_timeout``...) is passed through.  Ours: ``tls_ca``, ``tls_cert``,
``tls_key`` (PEM paths; ``tls://`` URLs or ``tls_ca`` turn TLS on), ``max_pending`` / ``max_pending_bytes`` per
subscription (default 65536 msgs / 64 MiB), ``on_slow_consumer(sub)``, and ``reconnect_attempts``: how many
reconnect attempts per server once the first connection succeeded (default: ``max_reconnect_attempts``; -1 =
forever), so a long-running service can retry an outage forever while its initial connect still fails fast.  A slow consumer is reported: its
``dropped`` counter grows, a warning is logged, the callback runs, and the transport's ``slow_consumers`` counts
events (ours and nats-py's own ``SlowConsumerError``).

Connection state: ``state`` is ``"connected"``, ``"reconnecting"`` or ``"closed"``; ``disconnects`` and
``reconnects`` count outages; every disconnect and reconnect is logged at WARNING.  ``lost`` (an
``asyncio.Event``) is set when nats-py gives up (reconnect attempts exhausted, or the server refused us for good,
e.g. an expired JWT); ``lost_reason`` says why.  URLs in logs and errors have their credentials redacted.

Semantics: ``subscribe`` returns after the server has registered the interest (one PING/PONG), so messages
published afterwards from any connection are delivered.  Payloads are passed to nats-py as given (bytes or a
byte-format memoryview); received ``Message.data`` is nats-py's ``bytes`` object, not copied again by us.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from .._redact import redact_url
from ..errors import (
    MaxPayloadError,
    MissingExtraError,
    NoRespondersError,
    TransportClosedError,
    TransportError,
    TransportTimeoutError,
)
from ._serve import ServeSink
from ._subjects import validate_subject
from .base import Buffer, Capability, Handler, Headers, Message, QueueSubscription, Subscription, Transport
from .durable import LogAck, LogReader, LogRecord

__all__ = ["JsPullSubscription", "NatsTransport"]

log = logging.getLogger("lowlat.transport.nats")


try:
    import nats
    import nats.errors
    import nats.js.api
    import nats.js.errors
except ImportError:
    raise MissingExtraError("lowlat.transport.nats needs nats-py: pip install 'lowlat[nats]'") from None

# ours, not nats.connect's; "jetstream" is the compiled client's side-connection mode (nats-py always has JetStream)
_OWN = {"max_pending", "max_pending_bytes", "on_slow_consumer", "tls_ca", "tls_cert", "tls_key", "reconnect_attempts",
        "jetstream"}


# a literal subject: non-empty tokens of printable non-space characters, no wildcard, no NUL/control bytes.
# One C-level match per publish (~0.2 µs), much cheaper than validate_subject's split.
_LITERAL = re.compile(r"[^.\s*>\x00-\x1f\x7f]+(?:\.[^.\s*>\x00-\x1f\x7f]+)*").fullmatch


def _as_bytes_like(p: Buffer) -> Buffer:
    # nats-py uses len(payload) as the byte count: make sure a memoryview is 1-D bytes (no copy).
    if type(p) is bytes:
        return p
    mv = memoryview(p)
    if mv.format != "B" or mv.ndim != 1:
        mv = mv.cast("B")
    return mv


async def _pull(psub: Any, n: int, timeout: float) -> list[Any]:
    """Up to ``n`` messages of a JetStream pull consumer within ``timeout`` s: none, not an error, when it has
    nothing that soon (its fetch raises a timeout)."""
    try:
        msgs: list[Any] = await psub.fetch(n, timeout=timeout)
    except (TimeoutError, nats.errors.TimeoutError):
        return []
    return msgs


def _map_error(e: BaseException, what: str) -> BaseException:
    if isinstance(e, (nats.errors.NoRespondersError, nats.js.errors.NoStreamResponseError)):
        return NoRespondersError(f"{what}: no responders")
    if isinstance(e, (nats.errors.TimeoutError, asyncio.TimeoutError, TimeoutError)):
        return TransportTimeoutError(f"{what}: timed out")
    if isinstance(e, (nats.errors.ConnectionClosedError, nats.errors.ConnectionDrainingError)):
        return TransportClosedError(f"{what}: connection closed")
    return TransportError(f"{what}: {e!r}")


class _NatsSub(QueueSubscription):
    _nsub: Any = None

    async def drain(self) -> None:
        """nats-py's drain first (UNSUB, flush, so the server has sent everything it will send us, then hand over
        what nats-py still holds), then iteration ends after the pending messages.  Without it those messages
        would be dropped unacknowledged."""
        nsub = self._nsub
        if nsub is not None and not self._closed:
            try:
                await nsub.drain()
            except nats.errors.Error as e:  # connection closing: what arrived is still pending here
                log.warning("nats drain of %r failed: %r", self.subject, e)
        await super().drain()


class JsPullSubscription:
    """A durable JetStream pull consumer.  ``fetch`` returns up to ``batch`` messages; ack each one."""

    def __init__(self, transport: NatsTransport, psub: Any, subject: str, durable: str) -> None:
        self._t = transport
        self._psub = psub
        self.subject = subject
        self.durable = durable

    async def fetch(self, batch: int = 1, timeout: float = 1.0) -> list[Message]:
        """Up to ``batch`` messages (fewer, or none, if the stream has fewer before ``timeout`` s)."""
        self._t._check_open()
        msgs = await _pull(self._psub, batch, timeout)
        return [Message(m.subject, m.data, m.headers, None, self._t, m.ack) for m in msgs]

    async def unsubscribe(self) -> None:
        await self._psub.unsubscribe()


class NatsTransport(Transport):
    """NATS over nats-py (see the module docstring for options and semantics)."""

    capabilities = (Capability.QUEUE_GROUPS | Capability.HEADERS | Capability.REQUEST_REPLY | Capability.WILDCARDS
                    | Capability.DURABLE)

    def __init__(self, url: str, **options: Any) -> None:
        super().__init__(url, **options)
        self._nc: Any = None
        self._js: Any = None
        self._subs: dict[int, _NatsSub] = {}
        self.slow_consumers = 0
        self.state = "closed"
        self.disconnects = 0
        self.reconnects = 0
        self.lost: asyncio.Event | None = None
        self.lost_reason: str | None = None

    # --- lifecycle ---
    def _ssl_context(self) -> ssl.SSLContext | None:
        o = self.options
        if not (self.url.startswith("tls://") or o.get("tls_ca") or o.get("tls")):
            return None
        if isinstance(o.get("tls"), ssl.SSLContext):
            return o["tls"]
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=o.get("tls_ca"))
        if o.get("tls_cert"):
            ctx.load_cert_chain(o["tls_cert"], o.get("tls_key"))
        return ctx

    async def connect(self) -> None:
        if self._nc is not None:
            return
        kw = {k: v for k, v in self.options.items() if k not in _OWN}
        ctx = self._ssl_context()
        # a cluster is a comma-separated URL list ("nats://127.0.0.1:4222,nats://127.0.0.1:4223"): nats-py
        # connects to one and fails over to the others (plus the servers the cluster gossips)
        servers = [u.strip() for u in self.url.split(",") if u.strip()]
        if ctx is not None:
            kw["tls"] = ctx
            kw.setdefault("tls_hostname", urlsplit(servers[0]).hostname)
            servers = ["tls://" + u.split("://", 1)[1] for u in servers]
        user_err = kw.pop("error_cb", None)
        self._last_error: Exception | None = None

        async def error_cb(e: Exception) -> None:
            # nats-py reports the real cause (auth, TLS) here and then raises NoServersError; a reset on the next
            # attempt must not hide an "Authorization Violation" from the one before
            if not (isinstance(e, OSError) and self._last_error is not None
                    and not isinstance(self._last_error, OSError)):
                self._last_error = e
            if isinstance(e, nats.errors.SlowConsumerError):
                self.slow_consumers += 1
                sub = self._subs.get(e.sid)
                n = self.slow_consumers
                if n == 1 or n % 1000 == 0:  # one line per message would slow the loop and cause more drops
                    log.warning("nats slow consumer on %r (sid %s): nats-py dropped a message (%d dropped so far)",
                                e.subject, e.sid, n)
                if sub is not None:
                    sub._drop(logged=True)
            if user_err is not None:
                await user_err(e)

        user_cbs = {k: kw.pop(k, None) for k in ("disconnected_cb", "reconnected_cb", "closed_cb")}
        self.lost = asyncio.Event()
        shown = redact_url(self.url)
        down_since = [0.0]

        async def disconnected_cb() -> None:
            if not self._closed and self.state == "connected":
                self.state = "reconnecting"
                self.disconnects += 1
                down_since[0] = asyncio.get_running_loop().time()
                log.warning("nats disconnected from %s (%r); reconnecting", shown, self._last_error,
                            extra={"transport": shown, "disconnects": self.disconnects})
            if user_cbs["disconnected_cb"] is not None:
                await user_cbs["disconnected_cb"]()

        async def reconnected_cb() -> None:
            self.state = "connected"
            self._last_error = None
            self.reconnects += 1
            down = asyncio.get_running_loop().time() - down_since[0]
            log.warning("nats reconnected to %s after %.1f s", shown, down,
                        extra={"transport": shown, "reconnects": self.reconnects, "down_s": round(down, 3)})
            if user_cbs["reconnected_cb"] is not None:
                await user_cbs["reconnected_cb"]()

        async def closed_cb() -> None:
            if not self._closed:  # nats-py gave up: not a close we asked for
                self._closed = True
                self.state = "closed"
                nc = self._nc
                why = getattr(nc, "last_error", None) or self._last_error
                self.lost_reason = f"{type(why).__name__}: {why}" if why is not None else "connection closed"
                log.warning("nats connection to %s closed for good: %s", shown, self.lost_reason,
                          extra={"transport": shown})
                assert self.lost is not None
                self.lost.set()
            if user_cbs["closed_cb"] is not None:
                await user_cbs["closed_cb"]()

        kw.setdefault("allow_reconnect", True)
        kw.setdefault("max_reconnect_attempts", 5)
        kw.setdefault("connect_timeout", 5)
        # nats-py can wait forever on a server that demands TLS from a client without a TLS context: bound the
        # whole initial connect by what the options allow (unbounded only for infinite attempts)
        tries = kw["max_reconnect_attempts"]
        budget = None if tries < 0 else (kw["connect_timeout"] + kw.get("reconnect_time_wait", 2)) * (tries + 1) + 1
        try:
            self._nc = await asyncio.wait_for(nats.connect(servers=servers, error_cb=error_cb,
                                                           disconnected_cb=disconnected_cb,
                                                           reconnected_cb=reconnected_cb, closed_cb=closed_cb, **kw),
                                              budget)
        except Exception as e:  # auth/TLS/refused all become TransportError with the cause
            last = self._last_error
            why = f" (last error: {last!r})" if last is not None and last is not e else ""
            raise TransportError(redact_url(f"cannot connect to {shown}: {e!r}{why}")) from e
        if ctx is not None and self._nc._transport._io_writer.get_extra_info("ssl_object") is None:
            # nats-py silently stays in plaintext when the server does not offer TLS: fail closed instead
            await self._nc.close()
            self._nc = None
            raise TransportError(f"cannot connect to {shown}: TLS was requested but the server does not offer "
                                 "it (refusing plaintext)")
        if "reconnect_attempts" in self.options:  # from now on: the outage budget, not the initial-connect one
            self._nc.options["max_reconnect_attempts"] = int(self.options["reconnect_attempts"])
        self._mark_open()
        self.state = "connected"

    async def close(self) -> None:
        self._closed = True
        self.state = "closed"
        self._cancel_background()
        nc, self._nc = self._nc, None
        for s in list(self._subs.values()):
            s.close_nowait()
        self._subs.clear()
        if nc is not None and not nc.is_closed:
            await nc.close()

    async def drain(self) -> None:
        """Unsubscribe everything, hand already-received messages to the iterators, flush, close."""
        if self._nc is None:
            self._closed = True
            return
        self._closed = True
        self.state = "closed"
        self._cancel_background()
        nc, self._nc = self._nc, None
        try:
            await nc.drain()
        finally:
            for s in list(self._subs.values()):
                s._finish(discard=False)
            self._subs.clear()
            if not nc.is_closed:
                await nc.close()

    async def flush(self, timeout: float | None = None) -> None:
        """Return once the server has processed everything published before (one PING/PONG)."""
        self._check_open()
        try:
            await self._roundtrip(timeout or 10)
        except Exception as e:
            raise _map_error(e, "flush") from e

    async def _roundtrip(self, timeout: float = 10) -> None:
        # nats-py's flush() writes its PING straight to the socket while earlier commands (SUB, PUB) may still
        # sit in its pending buffer, so the PONG can come back before the server saw them (seen as a rare
        # "no responders" right after serve()).  Push the buffer out first, then PING.
        nc = self._nc
        flush_pending = getattr(nc, "_flush_pending", None)
        if flush_pending is not None:
            await flush_pending(force_flush=True)
        await nc.flush(timeout=timeout)

    @property
    def client(self) -> Any:
        """The underlying ``nats.aio.client.Client`` (for what this adapter does not wrap)."""
        return self._nc

    # --- core NATS ---
    async def publish(self, subject: str, payload: Buffer, *, headers: Headers | None = None,
                      reply: str | None = None) -> None:
        """Publish one message.  Raises ``ValueError`` for an invalid subject or reply (wildcards, empty tokens,
        whitespace, NUL), ``lowlat.errors.MaxPayloadError`` past the server's ``max_payload``, ``TransportError`` when
        nats-py's reconnect buffer is full, ``TransportClosedError`` once closed."""
        if self._closed:
            raise self._closed_error()
        if not _LITERAL(subject):
            validate_subject(subject)
            raise ValueError(f"invalid subject {subject!r}")
        if reply and not _LITERAL(reply):
            raise ValueError(f"invalid reply subject {reply!r}")
        try:
            await self._nc.publish(subject, _as_bytes_like(payload), reply=reply or "",
                                   headers=dict(headers) if headers else None)
        except nats.errors.BadSubjectError as e:
            raise ValueError(f"invalid subject {subject!r}") from e
        except Exception as e:  # every nats-py refusal becomes a lowlat error
            raise self._publish_error(e, subject, payload) from e

    def _publish_error(self, e: BaseException, subject: str, payload: Buffer) -> BaseException:
        if isinstance(e, nats.errors.MaxPayloadError):
            return MaxPayloadError(f"publish on {subject!r}: {memoryview(payload).nbytes} bytes exceed the "
                                        f"server's max_payload of {self._nc.max_payload} bytes")
        if isinstance(e, nats.errors.OutboundBufferLimitError):
            return TransportError(f"publish on {subject!r}: disconnected and the reconnect buffer is full")
        return _map_error(e, f"publish on {subject!r}")

    async def publish_batch(self, subject: str, payloads: Sequence[Buffer]) -> None:
        # nats-py buffers writes and flushes them in one go from its flusher task: a loop is the batch path.
        if self._closed:
            raise self._closed_error()
        if not _LITERAL(subject):
            validate_subject(subject)
            raise ValueError(f"invalid subject {subject!r}")
        pub = self._nc.publish
        for p in payloads:
            try:
                await pub(subject, _as_bytes_like(p))
            except Exception as e:
                raise self._publish_error(e, subject, p) from e

    async def subscribe(self, subject: str, *, queue: str | None = None, **options: Any) -> Subscription:
        self._check_open()
        validate_subject(subject, wildcards=True)
        sub = _NatsSub(subject, queue, on_unsubscribe=self._unsub, **self._sub_options(options))
        deliver = sub._deliver

        async def cb(m: Any) -> None:
            if not deliver(Message(m.subject, m.data, m.headers, m.reply or None, self)) and not sub.closed:
                self.slow_consumers += 1  # dropped at our pending limit: counted with nats-py's own events

        try:
            # nats-py's own queue gets the same limits; our callback empties it at once, so drops show up in ours
            nsub = await self._nc.subscribe(subject, queue=queue or "", cb=cb,
                                            pending_msgs_limit=sub.max_pending,
                                            pending_bytes_limit=sub.max_pending_bytes)
            await self._roundtrip()
        except Exception as e:
            raise _map_error(e, "subscribe") from e
        sub._nsub = nsub
        self._subs[nsub._id] = sub
        return sub

    async def _unsub(self, sub: Any) -> None:
        if sub._nsub is not None:
            self._subs.pop(sub._nsub._id, None)
            if self._nc is not None and not self._nc.is_closed:
                try:
                    await sub._nsub.unsubscribe()
                except nats.errors.Error:
                    pass

    async def request(self, subject: str, payload: Buffer, *, timeout: float = 1.0,
                      headers: Headers | None = None) -> Message:
        if self._closed:
            raise self._closed_error()
        try:
            m = await self._nc.request(subject, _as_bytes_like(payload), timeout=timeout,
                                       headers=dict(headers) if headers else None)
        except Exception as e:
            raise _map_error(e, f"request on {subject!r}") from e
        return Message(m.subject, m.data, m.headers, None, self)

    async def serve(self, subject: str, handler: Handler, *, queue: str | None = None,
                    **options: Any) -> asyncio.Task[None]:
        """Request/reply worker on a nats-py callback (no extra queue hop); cancel the task to stop."""
        self._check_open()
        validate_subject(subject, wildcards=True)
        nc = self._nc
        sink = ServeSink(self, subject, queue, handler)

        async def cb(m: Any) -> None:
            await sink.handle(Message(m.subject, m.data, m.headers, m.reply or None, self))

        try:
            nsub = await nc.subscribe(subject, queue=queue or "", cb=cb)
            await self._roundtrip()
        except Exception as e:
            raise _map_error(e, "serve") from e

        async def unregister() -> None:
            if not nc.is_closed:
                try:
                    await nsub.unsubscribe()
                except nats.errors.Error:
                    pass

        return self._serve_task(sink, unregister)

    # --- JetStream ---
    @property
    def jetstream(self) -> Any:
        """nats-py's JetStreamContext (created on first use)."""
        self._check_open()
        if self._js is None:
            self._js = self._nc.jetstream()
        return self._js

    async def js_add_stream(self, name: str, subjects: Sequence[str], **config: Any) -> Any:
        """Create (or update) a stream; ``config`` goes to ``StreamConfig`` (e.g. ``duplicate_window`` s)."""
        js = self.jetstream
        cfg = nats.js.api.StreamConfig(name=name, subjects=list(subjects), **config)
        try:
            return await js.add_stream(cfg)
        except nats.js.errors.BadRequestError:
            return await js.update_stream(cfg)

    async def js_publish(self, subject: str, payload: Buffer, *, msg_id: str | None = None,
                         headers: Headers | None = None, stream: str | None = None,
                         timeout: float = 5.0) -> Any:
        """Publish to a stream and wait for its ack; returns nats-py's ``PubAck`` (``.seq``, ``.duplicate``).

        ``msg_id`` is sent as ``Nats-Msg-Id``: a second publish with the same id inside the stream's duplicate
        window is acked with ``duplicate=True`` and not stored again.
        """
        h = dict(headers) if headers else {}
        if msg_id is not None:
            h["Nats-Msg-Id"] = msg_id
        try:
            return await self.jetstream.publish(subject, _as_bytes_like(payload),
                                                timeout=timeout, stream=stream, headers=h or None)
        except Exception as e:
            raise _map_error(e, f"js_publish on {subject!r}") from e

    async def js_pull_subscribe(self, subject: str, durable: str, *, stream: str | None = None,
                                ack_wait: float | None = None, max_deliver: int | None = None,
                                **config: Any) -> JsPullSubscription:
        """Bind a durable pull consumer (explicit ack).  Unacked messages are redelivered after ``ack_wait`` s."""
        validate_subject(subject, wildcards=True)
        cfg = nats.js.api.ConsumerConfig(ack_policy=nats.js.api.AckPolicy.EXPLICIT, ack_wait=ack_wait,
                                         max_deliver=max_deliver, **config)
        try:
            psub = await self.jetstream.pull_subscribe(subject, durable=durable, stream=stream, config=cfg)
        except Exception as e:
            raise _map_error(e, f"js_pull_subscribe on {subject!r}") from e
        return JsPullSubscription(self, psub, subject, durable)

    # --- the durable-log protocol (base.DurableLog) on JetStream ---
    async def log_ensure(self, name: str, subjects: Sequence[str], *, replicas: int = 1,
                         duplicate_window: float = 600.0) -> None:
        """A file-backed stream ``name`` capturing ``subjects`` (created, or updated to this config)."""
        try:
            await self.js_add_stream(name, subjects, storage=nats.js.api.StorageType.FILE, num_replicas=replicas,
                                     duplicate_window=duplicate_window)
        except TransportError:
            raise
        except Exception as e:
            raise _map_error(e, f"log_ensure {name!r}") from e

    async def log_append(self, name: str, subject: str, payload: Buffer, *, msg_id: str | None = None,
                         timeout: float = 5.0) -> LogAck:
        ack = await self.js_publish(subject, payload, msg_id=msg_id, stream=name, timeout=timeout)
        return LogAck(ack.seq, bool(ack.duplicate))

    async def log_end(self, name: str) -> int:
        try:
            return int((await self.jetstream.stream_info(name)).state.last_seq)
        except Exception as e:
            raise _map_error(e, f"log_end {name!r}") from e

    async def log_get(self, name: str, pos: int) -> Message:
        try:
            m = await self.jetstream.get_msg(name, pos)
        except Exception as e:
            raise _map_error(e, f"log_get {name!r} #{pos}") from e
        return Message(m.subject, m.data, m.headers, None, self)

    async def log_reader(self, name: str, after: int = 0, *,
                         subjects: Sequence[str] | None = None) -> LogReader:
        """An ephemeral pull consumer from ``after + 1`` (no acks; the server drops it after 30 s unused)."""
        cfg = nats.js.api.ConsumerConfig(deliver_policy=nats.js.api.DeliverPolicy.BY_START_SEQUENCE,
                                         opt_start_seq=after + 1, ack_policy=nats.js.api.AckPolicy.NONE,
                                         inactive_threshold=30.0, filter_subjects=list(subjects or ()) or None)
        try:
            psub = await self.jetstream.pull_subscribe("", durable=None, stream=name, config=cfg)
        except Exception as e:
            raise _map_error(e, f"log_reader {name!r}") from e
        return _JsLogReader(self, psub, after)


class _JsLogReader:
    """``LogReader`` over an ephemeral JetStream pull consumer; skips what it already returned (a re-created
    consumer may start earlier)."""

    def __init__(self, t: NatsTransport, psub: Any, after: int) -> None:
        self._t, self._psub, self.pos = t, psub, after

    async def fetch(self, max_msgs: int = 256, timeout: float = 1.0) -> list[LogRecord]:
        self._t._check_open()
        try:
            msgs = await _pull(self._psub, max_msgs, timeout)
        except Exception as e:
            raise _map_error(e, "log fetch") from e
        out = []
        for m in msgs:
            seq = m.metadata.sequence.stream
            if seq > self.pos:
                self.pos = seq
                out.append(LogRecord(seq, Message(m.subject, m.data, m.headers, None, self._t)))
        return out

    async def close(self) -> None:
        try:
            await self._psub.unsubscribe()
        except Exception:  # noqa: BLE001, S110 - the ephemeral consumer goes away by itself
            pass
