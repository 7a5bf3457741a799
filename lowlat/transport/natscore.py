"""Core NATS on lowlat's own compiled protocol (``lowlat._nats_proto``) over an ``asyncio.BufferedProtocol``.

``nats://host:port`` and ``tls://host:port`` (a comma-separated list for a cluster).  nats-py stays available as
``nats+py://`` / ``tls+py://`` (or ``client="nats-py"``) and is what the JetStream methods (``jetstream``,
``js_publish``, ``js_add_stream``, ``js_pull_subscribe``) use: with ``jetstream=True`` (the default) ``connect``
also opens a nats-py connection for them, so the durable paths work unchanged; ``jetstream=False`` skips it.

Why: nats-py parses in Python and makes objects per message; here the event loop reads straight into the compiled
parser's buffer, messages are copied once into their subscription's batch arena, and writes are gathered into one
buffer flushed once per loop turn (or at 64 KiB).  Works on asyncio and uvloop (whichever loop runs).

Options (keyword-only; nats-py names where they exist): ``name``, ``token``, ``user``/``password`` (or in the URL),
``nkeys_seed`` (seed file path) / ``nkeys_seed_str``, ``user_credentials`` (``.creds`` file with JWT + seed; needs
the ``nkeys`` package), ``no_echo``, ``connect_timeout`` (s, 5), ``tls`` (an ``ssl.SSLContext``), ``tls_ca``,
``tls_cert``, ``tls_key``, ``tls_hostname``; reconnect: ``allow_reconnect`` (True), ``max_reconnect_attempts``
(-1 = forever), ``reconnect_time_wait`` (largest backoff, s, 2.0; the first retries are 20 ms, doubling, with
jitter), ``reconnect_buf_size`` (bytes of publishes buffered while disconnected, 8 MiB; past it publish raises
``TransportError``), ``dont_randomize`` ; callbacks ``disconnected_cb``, ``reconnected_cb``, ``closed_cb``,
``error_cb`` (sync or async); subscriptions: ``max_pending`` / ``max_pending_bytes`` / ``on_slow_consumer``.

Semantics: like the nats-py adapter.  ``subscribe`` returns after the server registered the interest (one
PING/PONG); ``flush`` is a PING/PONG round trip; ``request`` uses one wildcard inbox subscription and a
token -> future map and raises ``NoRespondersError`` (a ``TransportTimeoutError``) at once on the server's 503.
At-most-once: what was in flight when a connection dies is lost; publishes made while disconnected are buffered
and sent after the reconnect.  Credentials never appear in logs or errors (URLs are shown without user info).

Layout: the header codec is ``_nats_headers``, the receive-side subscription kinds ``_natscore_subs``; this file
is the connection itself (handshake and credentials, the write buffer, reconnect, routing to sinks, request).  It
stays over the package's ~600-line guide because those parts share one state machine (the socket, the parser,
the pending write buffer and the reconnect state change together on every transition), which mixins would only
scatter; nats-py keeps the same state machine in one ~2,000-line ``client.py``.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import itertools
import json
import logging
import os
import random
import ssl
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

from .._batch import MessageBatch
from .._nats_proto import MsgSink, NatsParser, NatsWriter
from .._redact import redact_url
from ..errors import DecodeError, TransportError, TransportTimeoutError
from ._nats_headers import decode_headers, encode_headers
from ._natscore_subs import _CoreSub, _Inbox, _ServeSub
from ._serve import ServeSink
from ._subjects import validate_subject
from .base import Buffer, Capability, Handler, Headers, Message, Subscription, Transport

__all__ = ["NatsCoreTransport", "decode_headers", "encode_headers"]  # the codec is re-exported from _nats_headers

log = logging.getLogger("lowlat.transport.natscore")

_VERSION = "0.1"
_FLUSH_AT = 64 * 1024          # write at once past this many buffered bytes instead of waiting for the loop turn
_FIRST_BACKOFF = 0.02          # s, first reconnect wait; doubles up to reconnect_time_wait
_OWN_OPTIONS = {"client", "jetstream"}


def _redact(url: str) -> str:
    """``scheme://host:port`` without credentials: the identity of a server (candidate list key)."""
    u = urlsplit(url if "://" in url else "nats://" + url)
    host = u.hostname or ""
    return f"{u.scheme}://{host}:{u.port or 4222}"


def _shown(url: str) -> str:
    """A server URL as logs and errors show it: credentials replaced by ``***``."""
    return redact_url(url if "://" in url else "nats://" + url)


def _auth_refused(text: str) -> bool:
    t = text.lower()
    return "authorization violation" in t or "authentication expired" in t or "authentication revoked" in t \
        or "account authentication expired" in t


async def _maybe_await(cb: Callable[..., Any] | None, *args: Any) -> None:
    if cb is None:
        return
    try:
        out = cb(*args)
        if asyncio.iscoroutine(out):
            await out
    except Exception:
        log.exception("nats callback %r failed", cb)


class _Proto(asyncio.BufferedProtocol):
    """The socket side: reads go straight into the parser's buffer."""

    def __init__(self, t: NatsCoreTransport) -> None:
        self.t = t
        self.transport: asyncio.Transport | None = None
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.t._parser.get_buffer(sizehint)

    def buffer_updated(self, nbytes: int) -> None:
        self.t._on_data(self, nbytes)

    def eof_received(self) -> bool:
        return False

    def pause_writing(self) -> None:
        self.t._paused = self.t._loop.create_future()

    def resume_writing(self) -> None:
        f, self.t._paused = self.t._paused, None
        if f is not None and not f.done():
            f.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)
        self.t._on_lost(self, exc)


class NatsCoreTransport(Transport):
    """Core NATS on the compiled protocol (see the module docstring for options and semantics)."""

    capabilities = (Capability.QUEUE_GROUPS | Capability.HEADERS | Capability.REQUEST_REPLY
                    | Capability.WILDCARDS | Capability.NATIVE_BATCH | Capability.COPIES_BATCH
                    | Capability.DURABLE)

    def __init__(self, url: str, **options: Any) -> None:
        super().__init__(url, **options)
        self._closed = True   # until connect()
        self._servers = [u.strip() for u in url.split(",") if u.strip()]
        if not self._servers:
            raise ValueError(f"no server in {url!r}")
        self._discovered: list[str] = []
        self._parser = NatsParser()
        self._writer = NatsWriter()
        self._subs: dict[int, Any] = {}          # sid -> _CoreSub / _ServeSub / _Inbox
        self._sids = itertools.count(1)
        self._tokens = itertools.count(1)
        self._inbox: _Inbox | None = None
        self._proto: _Proto | None = None
        self._wt: asyncio.Transport | None = None  # the current connection's transport (None: disconnected)
        self._pongs: collections.deque[asyncio.Future[None]] = collections.deque()
        self._seen_pings = 0
        self._seen_pongs = 0
        self._flush_handle: asyncio.Handle | None = None
        self._paused: asyncio.Future[None] | None = None
        self._connected = asyncio.Event()
        self._js_side: Any = None
        if not self.options.get("jetstream", True):  # no side connection: no durable log
            self.capabilities = type(self).capabilities & ~Capability.DURABLE
        self._info: dict[str, Any] = {}
        self._handshake: asyncio.Future[None] | None = None
        self._reconnect_task: asyncio.Task[None] | None = None
        self._current = ""
        self._last_error: str | None = None
        self._nc: Any = None    # the nats-py connection for JetStream
        self.slow_consumers = 0
        self.protocol_errors = 0
        self.server_errors: collections.deque[str] = collections.deque(maxlen=32)
        # connection health, as the nats-py adapter reports it (services/runtime.py and metrics read these)
        self.state = "closed"        # "connected" | "reconnecting" | "closed"
        self.disconnects = 0
        self.reconnects = 0
        self.lost: asyncio.Event | None = None   # set when the connection is closed for good (not by close())
        self.lost_reason: str | None = None
        o = options
        self._reconnect_buf = int(o.get("reconnect_buf_size", 8 << 20))
        self._max_wait = float(o.get("reconnect_time_wait", 2.0))
        # start-up: max_reconnect_attempts more rounds over the servers after the first (default none: a wrong
        # URL fails at once); after an outage: reconnect_attempts, else max_reconnect_attempts, else forever
        self._connect_retries = int(o.get("max_reconnect_attempts", 0))
        self._max_attempts = int(o.get("reconnect_attempts", o.get("max_reconnect_attempts", -1)))
        self._allow_reconnect = bool(o.get("allow_reconnect", True))
        self._connect_timeout = float(o.get("connect_timeout", 5.0))
        self._down_since = 0.0

    # --- properties ---
    @property
    def is_connected(self) -> bool:
        return self._wt is not None and not self._closed

    @property
    def server_info(self) -> dict[str, Any]:
        """The last INFO the server sent."""
        return dict(self._info)

    @property
    def max_payload(self) -> int:
        return self._writer.max_payload

    @property
    def client(self) -> Any:
        """The nats-py connection used for JetStream (None with ``jetstream=False``)."""
        return self._nc

    # --- connection ---
    def _ssl_context(self, required: bool) -> ssl.SSLContext | None:
        o = self.options
        if isinstance(o.get("tls"), ssl.SSLContext):
            return o["tls"]
        wanted = any(u.startswith("tls://") for u in self._servers) or o.get("tls_ca") or o.get("tls")
        if not (wanted or required):
            return None
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=o.get("tls_ca"))
        if o.get("tls_cert"):
            ctx.load_cert_chain(o["tls_cert"], o.get("tls_key"))
        return ctx

    def _tls_wanted(self) -> bool:
        o = self.options
        return bool(any(u.startswith("tls://") for u in self._servers) or o.get("tls_ca") or o.get("tls"))

    def _candidates(self) -> list[str]:
        seen, out = set(), []
        for u in self._servers + self._discovered:
            key = _redact(u)
            if key not in seen:
                seen.add(key)
                out.append(u)
        return out

    def _connect_line(self, nonce: str | None, url: str) -> bytes:
        o = self.options
        u = urlsplit(url if "://" in url else "nats://" + url)
        opts: dict[str, Any] = {"verbose": False, "pedantic": False, "lang": "python-lowlat", "version": _VERSION,
                                "protocol": 1, "headers": True, "no_responders": True,
                                "echo": not o.get("no_echo", False), "tls_required": self._wt_is_tls}
        if o.get("name"):
            opts["name"] = o["name"]
        user, password, token = o.get("user"), o.get("password"), o.get("token")
        if u.username and not (user or token):
            if u.password is not None:
                user, password = u.username, u.password
            else:
                token = u.username
        if token:
            opts["auth_token"] = token
        if user:
            opts["user"], opts["pass"] = user, password or ""
        seed, jwt = self._seed_and_jwt()
        if seed is not None:
            import nkeys

            kp = nkeys.from_seed(bytearray(seed))
            try:
                if nonce:
                    opts["sig"] = base64.urlsafe_b64encode(kp.sign(nonce.encode())).decode().rstrip("=")
                if jwt:
                    opts["jwt"] = jwt
                else:
                    opts["nkey"] = kp.public_key.decode()
            finally:
                kp.wipe()
        return b"CONNECT " + json.dumps(opts, separators=(",", ":")).encode() + b"\r\n"

    def _seed_and_jwt(self) -> tuple[bytes | None, str | None]:
        o = self.options
        if o.get("nkeys_seed_str"):
            return o["nkeys_seed_str"].encode().strip(), None
        if o.get("nkeys_seed"):
            with open(o["nkeys_seed"], "rb") as f:
                return f.read().strip(), None
        if o.get("user_credentials"):
            with open(o["user_credentials"]) as f:
                text = f.read()
            jwt = seed = None
            lines = [ln.strip() for ln in text.splitlines()]
            for i, ln in enumerate(lines):
                if "BEGIN NATS USER JWT" in ln and i + 1 < len(lines):
                    jwt = lines[i + 1]
                if "BEGIN USER NKEY SEED" in ln and i + 1 < len(lines):
                    seed = lines[i + 1].encode()
            if not jwt or not seed:
                raise TransportError("user_credentials file has no JWT or no seed")
            return seed, jwt
        return None, None

    _wt_is_tls = False
    _phase: str | None = None
    _in_data = False      # inside the receive callback: writes are gathered until its end
    _turn_wrote = False   # a write already went out in this loop turn

    async def _open(self, url: str) -> None:
        """One connection attempt: TCP, INFO, TLS upgrade if asked or required, CONNECT, resubscribe, PING/PONG."""
        loop = self._loop
        u = urlsplit(url if "://" in url else "nats://" + url)
        host, port = u.hostname or "127.0.0.1", u.port or 4222
        self._parser.reset()
        self._seen_pings, self._seen_pongs = self._parser.pings, self._parser.pongs
        self._handshake = loop.create_future()
        self._phase = "info"
        proto = _Proto(self)
        self._proto = proto
        self._wt_is_tls = False
        deadline = loop.time() + self._connect_timeout
        try:
            wt, _ = await asyncio.wait_for(loop.create_connection(lambda: proto, host, port), self._connect_timeout)
            await asyncio.wait_for(asyncio.shield(self._handshake), max(deadline - loop.time(), 0.01))
            info = self._info
            ctx = self._ssl_context(bool(info.get("tls_required")))
            if self._tls_wanted() and not (info.get("tls_required") or info.get("tls_available")):
                raise TransportError(f"TLS was requested but {_shown(url)} does not offer it (refusing plaintext)")
            if ctx is not None:
                hostname = self.options.get("tls_hostname") or host
                tls_wt = await asyncio.wait_for(loop.start_tls(wt, proto, ctx, server_hostname=hostname),
                                                max(deadline - loop.time(), 0.01))
                if tls_wt is None:
                    raise TransportError("TLS upgrade failed")
                wt = tls_wt  # type: ignore[assignment]
                proto.transport = wt
                self._wt_is_tls = True
            self._handshake = loop.create_future()
            self._phase = "pong"
            w = NatsWriter()
            w.raw(self._connect_line(info.get("nonce"), url))
            for sid, s in self._subs.items():
                w.sub(s.subject, sid, s.queue)
            w.ping()
            wt.write(w.take())
            await asyncio.wait_for(asyncio.shield(self._handshake), max(deadline - loop.time(), 0.01))
            if proto.lost.done():   # a protocol error right behind the handshake's PONG
                raise TransportError("connection lost right after the handshake")
        except BaseException:
            if proto.transport is not None:
                proto.transport.abort()
            self._proto = None
            raise
        finally:
            self._handshake = None
            self._phase = None
        self._wt = wt
        self._current = url
        self._writer.max_payload = int(self._info.get("max_payload", 1 << 20))
        self._parser.set_max_payload(self._writer.max_payload)
        self._flush_out()

    async def connect(self) -> None:
        """Connect to the first server that answers; with ``max_reconnect_attempts`` N, up to N more rounds over
        the servers (backoff as for reconnects).  A server refusing our credentials ends it at once."""
        if not self._closed:
            return
        self._loop = asyncio.get_running_loop()
        self._connected = asyncio.Event()
        self.lost = asyncio.Event()
        self.lost_reason = None
        self._closed = False
        cands = self._candidates()
        if not self.options.get("dont_randomize", True):
            random.shuffle(cands)
        rounds = 0
        wait = _FIRST_BACKOFF
        while True:
            errors = []
            refused = 0
            for url in cands:
                try:
                    await self._open(url)
                    break
                except (OSError, TimeoutError, TransportError, DecodeError, ssl.SSLError) as e:
                    errors.append(f"{_shown(url)}: {self._describe(e)}")
                    refused += _auth_refused(str(e))
            else:
                rounds += 1
                retries = self._connect_retries if self._allow_reconnect else 0
                if refused == len(cands) or 0 <= retries < rounds:
                    self._closed = True
                    raise TransportError(f"cannot connect to {', '.join(_shown(u) for u in cands)}: "
                                         f"{'; '.join(errors)}")
                await asyncio.sleep(wait * (0.5 + random.random()))
                wait = min(wait * 2, self._max_wait)
                continue
            break
        self._opened = True   # see Transport._closed_error
        self.state = "connected"
        self._connected.set()
        if self.options.get("jetstream", True) is True:
            await self._connect_jetstream()

    def _describe(self, e: BaseException) -> str:
        if isinstance(e, TimeoutError) and self._last_error:
            return f"timed out (server said: {self._last_error})"
        if isinstance(e, TimeoutError):
            return "timed out"
        return f"{type(e).__name__}: {e}"

    async def _connect_jetstream(self) -> None:
        try:
            from .nats import NatsTransport
        except ImportError:   # no nats-py: core NATS works, the JetStream methods say what is missing
            log.debug("nats-py not installed: no JetStream side connection")
            return

        opts = {k: v for k, v in self.options.items()
                if k not in _OWN_OPTIONS and k not in ("reconnect_buf_size", "dont_randomize", "no_echo")}
        for k in ("disconnected_cb", "reconnected_cb", "closed_cb", "error_cb"):
            opts.pop(k, None)
        opts.setdefault("max_reconnect_attempts", -1)
        side = NatsTransport(",".join(self._servers), **opts)
        try:
            await side.connect()
        except BaseException:
            if self.options.get("jetstream", True) is True:   # eager: connect() fails as a whole
                await self.close()
            raise
        self._js_side = side
        self._nc = side.client
        if isinstance(side.lost, asyncio.Event):
            self._keep(self._loop.create_task(self._watch_side(side), name="lowlat-nats-js-watch"))

    async def _watch_side(self, side: Any) -> None:
        # the durable paths ride the side connection: when nats-py gives it up, this transport is lost too
        await side.lost.wait()
        if not self._closed:
            self._give_up(f"JetStream side connection closed for good ({side.lost_reason})")

    def _on_data(self, proto: _Proto, nbytes: int) -> None:
        if proto is not self._proto:
            return
        p = self._parser
        self._in_data = True
        try:
            try:
                p.buffer_updated(nbytes)
            except DecodeError as e:
                self.protocol_errors += 1
                log.error("nats protocol error from %s: %s; dropping the connection", _shown(self._current), e)
                if proto.transport is not None:
                    proto.transport.abort()
                self._process(p)
                return
            self._process(p)
        finally:
            self._in_data = False
        # what the inline handlers (serve replies) and PONGs wrote goes out with one write per read
        if self._writer.pending and self._wt is not None:
            self._flush_out()

    def _process(self, p: NatsParser) -> None:
        if p.events:
            for kind, arg in p.events:
                if kind == "INFO":
                    self._on_info(arg)  # type: ignore[arg-type]
                else:
                    self._on_err(arg)  # type: ignore[arg-type]
            p.events.clear()
        if p.pings != self._seen_pings:
            for _ in range(p.pings - self._seen_pings):
                self._writer.pong()
            self._seen_pings = p.pings
            self._schedule_flush()
        if p.pongs != self._seen_pongs:
            n = p.pongs - self._seen_pongs
            self._seen_pongs = p.pongs
            hs = self._handshake
            if hs is not None and self._phase == "pong" and not hs.done():
                hs.set_result(None)
                n -= 1
            pongs = self._pongs
            while n > 0 and pongs:
                f = pongs.popleft()
                if not f.done():
                    f.set_result(None)
                n -= 1
        if p.ready:
            for sink in p.ready:
                sink.notify = False
                owner: Any = sink.owner
                if sink.slow:
                    sink.slow = False
                    self._slow(owner, sink)
                owner._wake()
            p.ready.clear()

    def _slow(self, owner: Any, sink: MsgSink) -> None:
        # slow_consumers counts dropped messages (as the nats-py adapter does); the log line and the callback
        # come once per receive pass, however many were dropped in it (one per message would slow the loop
        # into more drops)
        before = self.slow_consumers
        new = sink.dropped - owner.__dict__.get("_dropped_seen", 0)
        owner._dropped_seen = sink.dropped
        self.slow_consumers = before + new
        if before == 0 or before // 1000 != self.slow_consumers // 1000:
            log.warning("slow consumer on %r: %d message(s) dropped so far (pending %d msgs / %d bytes)",
                        owner.subject, sink.dropped, sink.pending, sink.pending_bytes)
        cb = getattr(owner, "on_slow_consumer", None)
        if cb is not None:
            try:
                cb(owner)
            except Exception:
                log.exception("on_slow_consumer callback failed")

    def _on_info(self, raw: bytes) -> None:
        try:
            info = json.loads(raw)
        except ValueError:
            self.protocol_errors += 1
            log.error("nats server sent an INFO that is not JSON; dropping the connection")
            if self._proto is not None and self._proto.transport is not None:
                self._proto.transport.abort()
            return
        if not isinstance(info, dict):
            return
        self._info = info
        for u in info.get("connect_urls") or ():
            scheme = "tls" if self._tls_wanted() else "nats"
            url = u if "://" in u else f"{scheme}://{u}"
            if url not in self._discovered:
                self._discovered.append(url)
        if "max_payload" in info and self._wt is not None:
            try:
                self._parser.set_max_payload(int(info["max_payload"]))
                self._writer.max_payload = int(info["max_payload"])
            except (DecodeError, ValueError, TypeError):
                pass
        hs = self._handshake
        if hs is not None and self._phase == "info" and not hs.done():
            hs.set_result(None)   # first INFO of a connection attempt: the handshake goes on (TLS, CONNECT)
        if info.get("ldm") and self._wt is not None:
            log.warning("nats server %s entered lame duck mode; moving to another server", _shown(self._current))
            self._servers = [s for s in self._servers if s != self._current] + [self._current]
            self._wt.close()

    def _on_err(self, text: str) -> None:
        self.server_errors.append(text)
        self._last_error = text
        low = text.lower()
        if "slow consumer" in low:
            self.slow_consumers += 1
            log.warning("nats server reports this connection as a slow consumer: messages were dropped")
        elif "permissions violation" in low:
            log.error("nats server: %s", text)
        else:
            log.error("nats server error: %s", text)
        hs = self._handshake
        if hs is not None and not hs.done():
            hs.set_exception(TransportError(f"server refused the connection: {text}"))
        if self.options.get("error_cb") is not None:
            self._keep(self._loop.create_task(_maybe_await(self.options["error_cb"], TransportError(text))))

    def _on_lost(self, proto: _Proto, exc: Exception | None) -> None:
        if proto is not self._proto:
            return
        self._proto = None
        was_connected = self._wt is not None
        self._wt = None
        hs = self._handshake
        if hs is not None and not hs.done():
            hs.set_exception(TransportError(f"connection lost during the handshake ({exc or 'closed by server'})"))
        p = self._paused
        self._paused = None
        if p is not None and not p.done():
            p.set_result(None)
        if not was_connected or self._closed:
            return
        self._connected.clear()
        self.state = "reconnecting"
        self.disconnects += 1
        self._down_since = self._loop.time()
        why = exc or "closed by server"
        if self._allow_reconnect:
            log.warning("nats disconnected from %s (%s); reconnecting", _shown(self._current), why,
                        extra={"transport": _shown(self._current), "disconnects": self.disconnects})
        else:
            log.warning("nats disconnected from %s (%s)", _shown(self._current), why,
                        extra={"transport": _shown(self._current), "disconnects": self.disconnects})
        self._keep(self._loop.create_task(_maybe_await(self.options.get("disconnected_cb"))))
        if self._allow_reconnect:
            self._reconnect_task = self._keep(self._loop.create_task(self._reconnect(), name="lowlat-nats-reconnect"))
        else:
            self._give_up(f"disconnected and allow_reconnect is off ({why})")

    def _give_up(self, reason: str) -> None:
        """Closed for good, not by ``close()``: ``lost`` is set (services exit on it), then the transport closes."""
        if self._closed:
            return
        self.lost_reason = reason
        self.state = "closed"
        log.warning("nats connection to %s closed for good: %s", _shown(self._current or self._servers[0]), reason,
                    extra={"transport": _shown(self._current or self._servers[0])})
        if self.lost is not None:
            self.lost.set()
        self._keep(self._loop.create_task(self.close()))

    async def _reconnect(self) -> None:
        attempt = 0
        refused_rounds = 0
        wait = _FIRST_BACKOFF
        last = ""
        while not self._closed:
            cands = self._candidates()
            # the server we lost goes last
            cands = [u for u in cands if u != self._current] + [u for u in cands if u == self._current]
            refused = 0
            for url in cands:
                if self._closed:
                    return
                try:
                    await self._open(url)
                except (OSError, TimeoutError, TransportError, DecodeError, ssl.SSLError) as e:
                    last = self._describe(e)
                    refused += _auth_refused(str(e))
                    log.debug("nats reconnect to %s failed: %s", _shown(url), last)
                    continue
                except Exception as e:   # a bug must not end reconnecting silently: say it, count the attempt
                    last = self._describe(e)
                    log.exception("nats reconnect to %s failed unexpectedly", _shown(url))
                    continue
                self.reconnects += 1
                self.state = "connected"
                self._last_error = None
                down = self._loop.time() - self._down_since
                log.warning("nats reconnected to %s after %.1f s (%d attempt(s))", _shown(url), down, attempt + 1,
                            extra={"transport": _shown(url), "reconnects": self.reconnects,
                                   "down_s": round(down, 3)})
                self._connected.set()
                await _maybe_await(self.options.get("reconnected_cb"))
                return
            attempt += 1
            # every server refusing our credentials twice in a row (expired or revoked JWT, changed password)
            # will not get better by retrying
            refused_rounds = refused_rounds + 1 if refused == len(cands) else 0
            if refused_rounds >= 2:
                self._give_up(f"the server refused the credentials ({last})")
                return
            if 0 <= self._max_attempts <= attempt:
                self._give_up(f"{attempt} reconnect attempt(s) failed (last: {last})")
                return
            await asyncio.sleep(wait * (0.5 + random.random()))
            wait = min(wait * 2, self._max_wait)

    async def close(self) -> None:
        if self._closed and self._proto is None and self._nc is None:
            return
        requested = not self._closed and self.state != "closed"
        self._closed = True
        self.state = "closed"
        self._cancel_background()
        for s in list(self._subs.values()):
            s.close_nowait()
        self._subs.clear()
        for f in self._pongs:
            f.cancel()   # a waiting flush() turns this into TransportClosedError
        self._pongs.clear()
        proto, wt = self._proto, self._wt
        self._proto = None
        self._wt = None
        if wt is not None:
            data = self._writer.take()
            if data:
                wt.write(data)
            wt.close()
            if proto is not None:
                try:
                    await asyncio.wait_for(asyncio.shield(proto.lost), 2)
                except TimeoutError:
                    wt.abort()
        self._writer.discard()
        side, self._nc = self._js_side, None
        if side is not None:
            self._js_side = None
            await side.close()
        if requested:
            log.info("nats connection to %s closed", _shown(self._current or self._servers[0]))
        await _maybe_await(self.options.get("closed_cb"))

    async def drain(self) -> None:
        """Unsubscribe everything, deliver what the server already sent, flush, close."""
        if self._closed:
            return
        subs = [s for s in self._subs.values() if isinstance(s, _CoreSub)]
        for s in subs:
            self._unsub(s.sid, keep_sink=True)
        try:
            await self.flush(timeout=5)
        except TransportError:
            pass
        for s in subs:
            s._end(discard=False)
        await self.close()

    # --- writing ---
    def _schedule_flush(self) -> None:
        if self._flush_handle is None:
            self._flush_handle = self._loop.call_soon(self._flush_out)

    def _flush_out(self) -> None:
        self._flush_handle = None
        wt = self._wt
        if wt is not None and self._writer.pending:
            wt.write(self._writer.take())

    def _check_buffer(self) -> None:
        if self._wt is None and self._writer.pending > self._reconnect_buf:
            raise TransportError(f"nats: disconnected and the reconnect buffer is full "
                                 f"({self._writer.pending} bytes > reconnect_buf_size {self._reconnect_buf})")

    def _after_write(self) -> None:
        if self._wt is None:
            return
        if self._writer.pending >= _FLUSH_AT:
            self._flush_out()
        elif self._flush_handle is not None or self._in_data or self._turn_wrote:
            self._schedule_flush()
        else:
            # latency: the first command of a loop turn goes out at once (a request does not wait a loop
            # iteration for its write); what follows in the same turn is gathered into one write at its end
            self._turn_wrote = True
            self._flush_out()
            self._loop.call_soon(self._new_turn)

    def _new_turn(self) -> None:
        self._turn_wrote = False

    def publish_nowait(self, subject: str, payload: Buffer, *, reply: str | None = None,
                       headers: Headers | None = None) -> None:
        """Queue one PUB (written at the end of this loop turn); raises at once for a closed transport, a bad
        subject, a payload over max_payload or a full reconnect buffer."""
        if self._closed:
            raise self._closed_error()
        self._check_buffer()
        self._writer.pub(subject, payload, reply, encode_headers(headers) if headers else None)
        self._after_write()

    async def publish(self, subject: str, payload: Buffer, *, reply: str | None = None,
                      headers: Headers | None = None) -> None:
        if self._closed:
            raise self._closed_error()
        if self._paused is not None:
            await self._paused   # the socket's write buffer is over its high-water mark
        self._check_buffer()
        self._writer.pub(subject, payload, reply, encode_headers(headers) if headers else None)
        self._after_write()

    async def publish_batch(self, subject: str, payloads: Sequence[Buffer]) -> None:
        self._check_open()
        if self._paused is not None:
            await self._paused
        self._check_buffer()
        try:
            self._writer.pub_many(subject, payloads)
        finally:
            self._after_write()   # what was queued before a refused payload goes out

    async def publish_batch_to(self, batch: MessageBatch, subject: str | None = None) -> int:
        """The whole batch in one compiled loop (no Python object per message)."""
        self._check_open()
        if self._paused is not None:
            await self._paused
        self._check_buffer()
        try:
            sent, refused = self._writer.pub_batch(batch, subject)
        except ValueError:
            self.publish_errors += batch.n
            log.error("publish_batch_to: invalid subject %r", subject)
            return 0
        if refused:
            self.publish_errors += refused
            log.error("publish_batch_to: %d message(s) refused (bad reply subject or over max_payload); "
                      "%d refused so far", refused, self.publish_errors)
        self._after_write()
        return sent

    async def flush(self, timeout: float | None = None) -> None:
        """Return once the server has processed everything written before (one PING/PONG); waits through a
        reconnect up to ``timeout`` s (default 10)."""
        self._check_open()
        loop = self._loop
        deadline = loop.time() + (timeout or 10.0)
        while True:
            if self._wt is None:
                try:
                    await asyncio.wait_for(self._connected.wait(), max(deadline - loop.time(), 0))
                except TimeoutError:
                    raise TransportTimeoutError("flush: not connected") from None
                self._check_open()
            proto = self._proto
            fut = loop.create_future()
            self._pongs.append(fut)
            self._writer.ping()
            self._flush_out()
            lost = proto.lost if proto is not None else None
            waits = {fut} if lost is None else {fut, lost}
            done, _ = await asyncio.wait(waits, timeout=max(deadline - loop.time(), 0),
                                         return_when=asyncio.FIRST_COMPLETED)
            if fut in done:
                if fut.cancelled():
                    self._check_open()
                    continue
                return
            if lost is not None and lost in done and not self._closed:
                try:
                    self._pongs.remove(fut)
                except ValueError:
                    pass
                continue   # the connection dropped: ping again after the reconnect
            self._check_open()
            raise TransportTimeoutError("flush: no PONG in time")

    # --- subscriptions ---
    def _new_sink(self, options: dict[str, Any]) -> tuple[int, MsgSink]:
        sid = next(self._sids)
        sink = MsgSink(sid, int(options.get("max_pending", 65536)),
                       int(options.get("max_pending_bytes", 64 * 1024 * 1024)))
        self._parser.add_sink(sink)
        return sid, sink

    def _sub_line(self, subject: str, sid: int, queue: str | None) -> None:
        if self._wt is not None:
            self._writer.sub(subject, sid, queue)
            self._after_write()

    def _unsub(self, sid: int, keep_sink: bool = False) -> None:
        if self._subs.pop(sid, None) is None:
            return
        if not keep_sink:
            self._parser.remove_sink(sid)
        if self._wt is not None and not self._closed:
            self._writer.unsub(sid)
            self._after_write()

    async def subscribe(self, subject: str, *, queue: str | None = None, **options: Any) -> Subscription:
        self._check_open()
        validate_subject(subject, wildcards=True)
        if queue is not None:
            validate_subject(queue)
        opts = self._sub_options(options)
        sid, sink = self._new_sink(opts)
        sub = _CoreSub(self, subject, queue, sid, sink, opts.get("on_slow_consumer"))
        self._subs[sid] = sub
        self._sub_line(subject, sid, queue)
        try:
            await self.flush()
        except TransportTimeoutError:
            pass   # disconnected: the SUB goes out with the resubscribe
        return sub

    async def serve(self, subject: str, handler: Handler, *, queue: str | None = None,
                    **options: Any) -> asyncio.Task[None]:
        """The handler runs inline from the receive path; a returned buffer is written as the reply at once."""
        self._check_open()
        validate_subject(subject, wildcards=True)
        sid, sink = self._new_sink(self._sub_options(options))
        serve = ServeSink(self, subject, queue, handler, reply_now=self._reply_now)
        self._subs[sid] = _ServeSub(self, sink, serve)
        self._sub_line(subject, sid, queue)
        try:
            await self.flush()
        except TransportTimeoutError:
            pass
        return self._serve_task(serve, lambda: self._unsub(sid))

    def _reply_now(self, subject: str, payload: Buffer) -> None:
        self.publish_nowait(subject, payload)

    async def request(self, subject: str, payload: Buffer, *, timeout: float = 1.0,
                      headers: Headers | None = None) -> Message:
        if self._closed:
            raise self._closed_error()
        inbox = self._inbox
        if inbox is None:
            inbox = self._open_inbox()
        token = str(next(self._tokens))
        loop = self._loop
        fut = loop.create_future()
        inbox.futures[token] = (fut, subject)
        try:
            self._check_buffer()
            self._writer.pub(subject, payload, inbox.prefix + token, encode_headers(headers) if headers else None)
        except BaseException:
            inbox.futures.pop(token, None)
            raise
        self._after_write()
        handle = loop.call_later(timeout, _expire, fut, subject, timeout)
        try:
            return await fut
        finally:
            handle.cancel()
            inbox.futures.pop(token, None)

    def _open_inbox(self) -> _Inbox:
        sid, sink = self._new_sink({"max_pending": 1 << 20, "max_pending_bytes": 1 << 30})
        prefix = f"_INBOX.{os.urandom(11).hex()}."
        inbox = _Inbox(self, prefix, sink)
        self._subs[sid] = inbox
        self._inbox = inbox
        self._sub_line(prefix + "*", sid, None)   # same connection: the server sees the SUB before the PUB
        return inbox

    # --- JetStream (nats-py) ---
    def _js(self) -> Any:
        side = self._js_side
        if side is None:
            if self.options.get("jetstream", True) == "lazy":
                raise TransportError("the JetStream side connection opens at the first JetStream or durable-log "
                                     "call (jetstream='lazy'); connect with jetstream=True to have it at once")
            raise TransportError("JetStream needs nats-py (pip install 'lowlat[nats]') and its side connection "
                                 "(connect without jetstream=False)")
        return side

    async def _js_async(self) -> Any:
        """The side connection, opened now with ``jetstream='lazy'`` (one open at a time)."""
        self._check_open()
        if self._js_side is None and self.options.get("jetstream", True) == "lazy":
            lock = self.__dict__.setdefault("_js_lock", asyncio.Lock())
            async with lock:
                if self._js_side is None:
                    await self._connect_jetstream()
        return self._js()

    @property
    def jetstream(self) -> Any:
        """nats-py's JetStreamContext on the side connection."""
        self._check_open()
        return self._js().jetstream

    async def js_add_stream(self, name: str, subjects: Sequence[str], **config: Any) -> Any:
        return await (await self._js_async()).js_add_stream(name, subjects, **config)

    async def js_publish(self, subject: str, payload: Buffer, **kw: Any) -> Any:
        return await (await self._js_async()).js_publish(subject, payload, **kw)

    async def js_pull_subscribe(self, subject: str, durable: str, **kw: Any) -> Any:
        return await (await self._js_async()).js_pull_subscribe(subject, durable, **kw)

    # the durable-log protocol (base.DurableLog), on the JetStream side connection
    async def log_ensure(self, name: str, subjects: Sequence[str], **kw: Any) -> None:
        await (await self._js_async()).log_ensure(name, subjects, **kw)

    async def log_append(self, name: str, subject: str, payload: Buffer, **kw: Any) -> Any:
        return await (await self._js_async()).log_append(name, subject, payload, **kw)

    async def log_end(self, name: str) -> int:
        return await (await self._js_async()).log_end(name)

    async def log_get(self, name: str, pos: int) -> Message:
        return await (await self._js_async()).log_get(name, pos)

    async def log_reader(self, name: str, after: int = 0, **kw: Any) -> Any:
        return await (await self._js_async()).log_reader(name, after, **kw)


def _expire(fut: asyncio.Future[Message], subject: str, timeout: float) -> None:
    if not fut.done():
        fut.set_exception(TransportTimeoutError(f"request on {subject!r}: no reply within {timeout}s"))

