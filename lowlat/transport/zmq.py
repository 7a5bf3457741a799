"""ZeroMQ adapter (pyzmq): ``zmq+tcp://host:port``, ``zmq+ipc:///path``, ``zmq+inproc://name``.

ZeroMQ has no broker, so one transport per URL is the **hub** (``bind=True``): it binds an ``XPUB`` socket at the
URL's address (fan-out) and a ``ROUTER`` socket at the request address: ``port + 1`` for tcp (or ``rr_port=``),
``<path>.rr`` for ipc, ``<name>.rr`` for inproc.  Every other transport (``bind=False``, the default) connects:

- publish: ``DEALER -> hub ROUTER``; the hub delivers to its own subscriptions and forwards on ``XPUB``
  (so any peer can publish, and each publisher's order is kept);
- subscribe: one ``SUB`` socket per subscription, connected to the hub's ``XPUB``; ``subscribe()`` returns only
  once the hub has seen the subscription (a unique sync topic round trip), so there is no "slow joiner" loss;
- request/reply: ``request`` publishes with a reply subject ``_ZR.<dealer identity>.<n>``; whoever answers
  publishes to it and the hub routes it back through the ``ROUTER`` to that ``DEALER``.  ``serve`` on the hub
  runs the handler inline in the ROUTER reader (no extra hop).  (DEALER/ROUTER for requests, PUB/SUB for fan-out.)

Wire format (pure functions ``encode_meta``/``decode_meta``, unit-tested): ``meta`` is empty, or ``reply`` +
``"\\n"`` + ``"key:value"`` lines for headers.  Fan-out (XPUB -> SUB) frames are ``[subject, meta, payload]``
(the subject frame first, so libzmq's SUB prefix filter applies).  Peer -> hub (DEALER -> ROUTER) is
``[b"P" + subject (+ b" " + meta), payload]`` and hub -> peer replies are one frame ``u16le len(head) + head +
payload`` (head = subject (+ b" " + meta); ``[head, payload]`` for payloads of 64 KiB and more, sent zero-copy),
the same frame counts as a bare DEALER/ROUTER echo (subjects never contain whitespace, so the first space splits).
Received payloads are the ``zmq.Frame``'s buffer (``memoryview``, zero-copy).

Hot path (why it is close to bare pyzmq): sends go straight to a synchronous shadow of the socket with
``NOBLOCK`` (no ``zmq.asyncio`` Future per send; on ``EAGAIN`` they fall back to the awaitable send); the hub
drains its ROUTER with non-blocking receives before it awaits; validated subjects are cached.

Not provided by design: queue groups (every SUB gets every message: run one serve() per subject on the hub),
fast "no responders" (a request nobody serves times out).  ``max_pending``/``max_pending_bytes`` apply to our
per-subscription queue and drops there are counted; drops at libzmq's high-water mark (option ``hwm``, default
100000 messages per socket) happen inside libzmq and are not visible.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import struct
from collections.abc import Sequence
from typing import Any

from ..errors import MissingExtraError, TransportClosedError, TransportError, TransportTimeoutError
from ._routes import RouteTable
from ._serve import ServeSink
from ._subjects import decode_meta, encode_meta, validate_subject
from .base import Buffer, Capability, Handler, Headers, Message, QueueSubscription, Subscription, Transport

try:
    import zmq
    import zmq.asyncio
    import zmq.backend
except ImportError:
    raise MissingExtraError("lowlat.transport.zmq needs pyzmq: pip install 'lowlat[zmq]'") from None

# Hot-path socket calls go to pyzmq's compiled backend with plain-int flags: the sugar layer combines its
# IntFlag enums per frame (``flags | SNDMORE``), which profiling showed as the largest Python cost per message.
_bsend = zmq.backend.Socket.send
_brecv = zmq.backend.Socket.recv
_bget = zmq.backend.Socket.get
_NB = int(zmq.NOBLOCK)
_NB_MORE = int(zmq.NOBLOCK) | int(zmq.SNDMORE)
_EVENTS = int(zmq.EVENTS)
_RCVMORE = int(zmq.RCVMORE)
_POLLIN = int(zmq.POLLIN)

__all__ = ["ZmqTransport", "decode_meta", "encode_meta", "zmq_endpoints", "zmq_prefix"]

log = logging.getLogger("lowlat.transport.zmq")

_EMPTY = b""
_SPACE = b" "
_U16 = struct.Struct("<H")
_BIG = 65536  # payloads from this size are sent zero-copy (copy=False); smaller ones are cheaper to copy
_SYNC = b"\x00sync."
_REPLY = "_ZR."
_LOCAL = "_ZL."


# --- pure helpers (tests/unit/test_transport_zmq_codec.py) ---

def zmq_endpoints(url: str, rr_port: int | None = None) -> tuple[str, str]:
    """(fan-out address, request address) for a ``zmq+<transport>://`` URL."""
    scheme, sep, rest = url.partition("://")
    if not sep or not scheme.startswith("zmq+"):
        raise ValueError(f"not a zmq URL: {url!r}")
    kind = scheme[4:]
    if not rest:
        raise ValueError(f"zmq URL needs an address: {url!r}")
    if kind == "tcp":
        host, _, port = rest.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"zmq+tcp URL needs host:port: {url!r}")
        rp = rr_port if rr_port is not None else int(port) + 1
        return f"tcp://{host}:{port}", f"tcp://{host}:{rp}"
    if kind in ("ipc", "inproc"):
        return f"{kind}://{rest}", f"{kind}://{rest}.rr"
    raise ValueError(f"unknown zmq transport {kind!r} in {url!r} (tcp, ipc, inproc)")


def zmq_prefix(pattern: str) -> bytes:
    """The zmq SUB prefix for a NATS-style pattern: everything before the first wildcard token."""
    toks = pattern.split(".")
    out: list[str] = []
    for t in toks:
        if t in ("*", ">"):
            return (".".join(out) + ".").encode() if out else b""
        out.append(t)
    return pattern.encode()


def _expire(task: asyncio.Task[Any], fired: list[bool]) -> None:
    fired.append(True)
    task.cancel()


class ZmqTransport(Transport):
    """ZeroMQ transport (see the module docstring).  Options: ``bind`` (hub), ``rr_port``, ``hwm``,
    ``sync_timeout`` (s, default 10), ``max_pending``/``max_pending_bytes``/``on_slow_consumer``."""

    capabilities = Capability.HEADERS | Capability.REQUEST_REPLY | Capability.WILDCARDS

    def __init__(self, url: str, *, bind: bool = False, rr_port: int | None = None, hwm: int = 100_000,
                 sync_timeout: float = 10.0, **options: Any) -> None:
        super().__init__(url, **options)
        self.bind = bind
        self.pub_addr, self.rr_addr = zmq_endpoints(url, rr_port)
        self.hwm = hwm
        self.sync_timeout = sync_timeout
        self._ctx = zmq.asyncio.Context.instance()
        self._xpub: Any = None
        self._router: Any = None
        self._dealer: Any = None
        self._identity = os.urandom(8).hex().encode()
        self._routes = RouteTable()  # hub: local subscriptions and serve sinks
        self._subs: set[QueueSubscription] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._waiting: dict[str, asyncio.Future[Message]] = {}
        self._reading = False  # some request()/flush() is reading the DEALER (see _await_reply)
        self._reader: asyncio.Future[None] | None = None  # resolved when that reader steps down
        self._interest: set[bytes] = set()          # hub: SUB prefixes XPUB reported (first sub/last unsub)
        self._interest_cache: dict[str, bool] = {}
        self._ids = itertools.count(1)
        self._valid: set[str] = set()  # subjects already validated (publish hot path), bounded
        self._ident_s = self._identity.decode()
        self._router_busy = False      # hub: _router_loop is processing (no asyncio recv pending on ROUTER)
        self._router_sync: Any = None  # synchronous shadows of the asyncio sockets (same libzmq socket)
        self._dealer_sync: Any = None

    # --- lifecycle ---
    def _socket(self, kind: int) -> Any:
        s = self._ctx.socket(kind)
        s.linger = 0
        s.sndhwm = self.hwm
        s.rcvhwm = self.hwm
        return s

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def connect(self) -> None:
        if not self._closed:
            return
        try:
            if self.bind:
                self._xpub = self._socket(zmq.XPUB)
                self._xpub.bind(self.pub_addr)
                self._router = self._socket(zmq.ROUTER)
                self._router.router_mandatory = False
                self._router.bind(self.rr_addr)
                self._router_sync = zmq.Socket.shadow(self._router.underlying)
                self._spawn(self._xpub_loop(), "lowlat-zmq-xpub")
                self._spawn(self._router_loop(), "lowlat-zmq-router")
            else:
                self._dealer = self._socket(zmq.DEALER)
                self._dealer.identity = self._identity
                self._dealer.connect(self.rr_addr)
                self._dealer_sync = zmq.Socket.shadow(self._dealer.underlying)
                # no permanent reader: a waiting request()/flush() reads the DEALER itself (see _await_reply)
        except zmq.ZMQError as e:
            await self.close()
            raise TransportError(f"cannot {'bind' if self.bind else 'connect'} {self.url}: {e}") from e
        self._mark_open()

    async def close(self) -> None:
        self._closed = True
        self._cancel_background()
        for s in list(self._subs):
            s.close_nowait()
        self._subs.clear()
        for t in list(self._tasks):
            t.cancel()
        for fut in self._waiting.values():
            if not fut.done():
                fut.set_exception(TransportClosedError("transport closed while waiting for a reply"))
        self._waiting.clear()
        self._router_sync = self._dealer_sync = None  # shadows do not own the socket
        for name in ("_xpub", "_router", "_dealer"):
            s = getattr(self, name)
            if s is not None:
                s.close(linger=0)
                setattr(self, name, None)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def drain(self) -> None:
        if self._closed:
            return
        for s in list(self._subs):
            s._finish(discard=False)
        await self.flush()
        await self.close()

    async def flush(self, timeout: float | None = None) -> None:
        """Peer: one round trip to the hub, so everything published before has reached it.  Hub: no-op."""
        self._check_open()
        if self.bind:
            return
        token = f"{_LOCAL}f{next(self._ids)}"
        fut = asyncio.get_running_loop().create_future()
        self._waiting[token] = fut
        try:
            await self._dealer.send_multipart([b"F" + token.encode(), _EMPTY])
            async with asyncio.timeout(timeout or self.sync_timeout):
                await self._await_reply(fut)
        except TimeoutError:
            raise TransportTimeoutError(f"flush: hub at {self.rr_addr} did not answer") from None
        finally:
            self._waiting.pop(token, None)

    # --- hub side ---
    def _hub_route(self, subject: str, meta: bytes, payload: Any) -> None:
        """Deliver one message published by anyone: reply routing, local subscriptions, XPUB fan-out."""
        if subject.startswith(_REPLY):
            ident = subject[4:].partition(".")[0].encode()
            head = subject.encode() + _SPACE + meta if meta else subject.encode()
            # ROUTER never blocks (a full peer queue drops, router_mandatory is off), so a NOBLOCK send on the
            # shadow cannot fail with EAGAIN; it skips zmq.asyncio's Future.  Only safe while no asyncio recv
            # is pending on the ROUTER (edge-triggered FD): true inline in _router_loop; else use the wrapper.
            rs = self._router_sync
            n = memoryview(payload).nbytes
            if self._router_busy and rs is not None:
                _bsend(rs, ident, _NB_MORE)
                if n < _BIG and len(head) < 65536:  # one frame, like a bare echo: u16 head length, head, payload
                    _bsend(rs, _U16.pack(len(head)) + head + payload, _NB)
                else:
                    _bsend(rs, head, _NB_MORE)
                    _bsend(rs, payload, _NB, False)
            else:
                self._router.send_multipart([ident, head, payload], copy=False)
            return
        if subject.startswith(_LOCAL):
            fut = self._waiting.pop(subject, None)
            if fut is not None and not fut.done():
                fut.set_result(Message(subject, payload, None, None, self))
            return
        plain, groups = self._routes.route(subject)
        if plain or groups:
            if not meta:
                reply = headers = None
            elif b"\n" not in meta:  # reply subject only (requests): no header parsing
                reply, headers = meta.decode(), None
            else:
                reply, headers = decode_meta(meta)
            for s in plain:
                s._deliver(Message(subject, payload, headers, reply, self))
            for members in groups:
                self._routes.pick(members)._deliver(Message(subject, payload, headers, reply, self))
        if self._remote_wants(subject):
            self._xpub.send_multipart([subject.encode(), meta, payload], copy=False)

    def _remote_wants(self, subject: str) -> bool:
        # XPUB tells us the first subscribe / last unsubscribe of each prefix; skip the send (a few µs in
        # pyzmq) when no SUB anywhere has a matching prefix.  Cached per subject, reset on every change.
        hit = self._interest_cache.get(subject)
        if hit is None:
            b = subject.encode()
            hit = any(b.startswith(p) for p in self._interest)
            if len(self._interest_cache) > 4096:
                self._interest_cache.clear()
            self._interest_cache[subject] = hit
        return hit

    async def _router_loop(self) -> None:
        router = self._router
        shadow = self._router_sync
        while True:
            # Drain what is queued with non-blocking receives on the shadow (no Future per message); await
            # through zmq.asyncio only when the queue is empty.  While we run here no asyncio recv is pending on
            # the ROUTER, so direct socket calls cannot swallow an edge of its FD.
            self._router_busy = False
            frames = await router.recv_multipart(copy=False)
            self._router_busy = True
            while True:
                try:
                    if len(frames) == 3:
                        head = frames[1].bytes
                        op = head[:1]
                        if op == b"P":
                            subj, _, meta = head[1:].partition(_SPACE)
                            if not subj:
                                raise ValueError("empty subject")
                            self._hub_route(subj.decode(), meta, frames[2].buffer)
                        elif op == b"F":  # flush: echo the token back
                            _bsend(shadow, frames[0].bytes, _NB_MORE)
                            _bsend(shadow, head[1:], _NB_MORE)
                            _bsend(shadow, _EMPTY, _NB)
                        else:
                            log.warning("zmq hub: dropped message with unknown op %r", op)
                    else:
                        log.warning("zmq hub: dropped malformed frame set (%d frames)", len(frames))
                except (ValueError, UnicodeDecodeError, IndexError) as e:
                    log.warning("zmq hub: dropped malformed message: %s", e)
                if self._closed:
                    return
                # more queued?  (EVENTS, not a failing recv: raising zmq.Again costs more than the check)
                if not _bget(shadow, _EVENTS) & _POLLIN:  # type: ignore[operator]  # EVENTS is an int option
                    break
                frames = [_brecv(shadow, _NB, False)]
                while _bget(shadow, _RCVMORE):
                    frames.append(_brecv(shadow, _NB, False))

    async def _xpub_loop(self) -> None:
        xpub = self._xpub
        while True:
            ev = await xpub.recv()
            if ev[:1] == b"\x01" and ev[1:].startswith(_SYNC):
                xpub.send_multipart([ev[1:], _EMPTY, _EMPTY])
            elif ev[:1] == b"\x01":
                self._interest.add(ev[1:])
                self._interest_cache.clear()
            elif ev[:1] == b"\x00":
                self._interest.discard(ev[1:])
                self._interest_cache.clear()

    # --- peer side ---
    def _dispatch_reply(self, frames: list[Any]) -> None:
        if len(frames) == 1:  # packed: u16 head length, head, payload (payload stays a view of the frame)
            buf = frames[0].buffer
            if len(buf) < 2:
                return
            lh = buf[0] | buf[1] << 8
            if len(buf) < 2 + lh:
                return
            head, data = bytes(buf[2:2 + lh]), buf[2 + lh:]
        elif len(frames) == 2:
            head, data = frames[0].bytes, frames[1].buffer
        else:
            return
        subj, _, meta = head.partition(_SPACE)
        subject = subj.decode(errors="replace")
        fut = self._waiting.pop(subject, None)
        if fut is None or fut.done():
            return  # a late reply (its request timed out): dropped
        try:
            _, headers = decode_meta(meta) if meta else (None, None)
        except ValueError as e:
            fut.set_exception(TransportError(f"malformed reply on {subject!r}: {e}"))
            return
        fut.set_result(Message(subject, data, headers, None, self))

    async def _await_reply(self, fut: asyncio.Future[Message]) -> Message:
        """Wait for ``fut`` (a reply routed to our DEALER).

        Reader election instead of a reader task: when nobody reads the DEALER, this waiter does, dispatching
        every reply it sees, until its own arrives; that saves the extra event-loop hop of a reader task handing
        the reply over (the common case is one outstanding request).  Others wait for their future or for the
        reader to step down, then one of them takes over.
        """
        dealer = self._dealer
        while not fut.done():
            if not self._reading:
                self._reading = True
                try:
                    while not fut.done():
                        self._dispatch_reply(await dealer.recv_multipart(copy=False))
                except (asyncio.CancelledError, zmq.ZMQError):
                    if not self._closed:
                        raise  # a timeout or a caller's cancel
                    # close() closed the socket under us (pyzmq cancels the pending recv)
                    if fut.done():
                        return fut.result()  # raises the TransportClosedError close() set
                    raise TransportClosedError("transport closed while waiting for a reply") from None
                finally:
                    self._reading = False
                    free, self._reader = self._reader, None  # created only when someone waits for a turn
                    if free is not None and not free.done():
                        free.set_result(None)
            else:
                if self._reader is None:
                    self._reader = asyncio.get_running_loop().create_future()
                await asyncio.wait((fut, self._reader), return_when=asyncio.FIRST_COMPLETED)
        return fut.result()

    async def _sub_loop(self, sock: Any, sub: QueueSubscription, ready: asyncio.Future[None], sync: bytes) -> None:
        pattern = sub.subject
        exact = "*" not in pattern and ">" not in pattern
        from .base import subject_matches

        try:
            while True:
                frames = await sock.recv_multipart(copy=False)
                topic = frames[0].bytes
                if topic[:1] == b"\x00":
                    if topic == sync and not ready.done():
                        sock.setsockopt(zmq.UNSUBSCRIBE, sync)
                        ready.set_result(None)
                    continue
                if len(frames) != 3:
                    continue
                subject = topic.decode(errors="replace")
                if (subject != pattern) if exact else not subject_matches(pattern, subject):
                    continue
                meta = frames[1].bytes
                try:
                    reply, headers = decode_meta(meta) if meta else (None, None)
                except ValueError as e:
                    log.warning("zmq: dropped message with malformed meta on %r: %s", subject, e)
                    continue
                sub._deliver(Message(subject, frames[2].buffer, headers, reply, self))
        finally:
            sock.close(linger=0)

    # --- API ---
    async def publish(self, subject: str, payload: Buffer, *, headers: Headers | None = None,
                      reply: str | None = None) -> None:
        if self._closed:
            raise self._closed_error()
        meta = encode_meta(reply, headers) if (reply or headers) else _EMPTY
        if subject not in self._valid:
            validate_subject(subject)
            if len(self._valid) > 4096:
                self._valid.clear()
            self._valid.add(subject)
        if self.bind:
            self._hub_route(subject, meta, payload)
        else:
            await self._peer_send(b"P" + subject.encode() + _SPACE + meta if meta else b"P" + subject.encode(),
                                  payload)

    async def _peer_send(self, head: bytes, payload: Buffer) -> None:
        # DEALER send.  Fast path: NOBLOCK on the synchronous shadow (no zmq.asyncio Future), allowed only while
        # no asyncio recv is pending on the DEALER (a direct call could consume the FD edge that recv waits
        # for).  EAGAIN (high-water mark) or a pending reader: the awaitable send, which waits for room.
        if not self._peer_send_nowait(head, payload):
            await self._dealer.send_multipart([head, payload], copy=False)

    def _peer_send_nowait(self, head: bytes, payload: Buffer) -> bool:
        ds = self._dealer_sync
        if self._reading or ds is None:
            return False
        try:
            _bsend(ds, head, _NB_MORE)  # libzmq checks the high-water mark on a message's first frame only
        except zmq.Again:
            return False
        _bsend(ds, payload, _NB, memoryview(payload).nbytes < _BIG)  # type: ignore[call-overload]
        return True

    async def publish_batch(self, subject: str, payloads: Sequence[Buffer]) -> None:
        if self._closed:
            raise self._closed_error()
        validate_subject(subject)
        if self.bind:
            for p in payloads:
                self._hub_route(subject, _EMPTY, p)
        else:
            head = b"P" + subject.encode()
            send = self._peer_send
            for p in payloads:
                await send(head, p)

    async def subscribe(self, subject: str, *, queue: str | None = None, **options: Any) -> Subscription:
        self._check_open()
        validate_subject(subject, wildcards=True)
        if queue:
            raise TransportError("zmq adapter has no queue groups (PUB/SUB fans out to every subscriber)")
        opts: dict[str, Any] = {k: self.options[k] for k in ("max_pending", "max_pending_bytes", "on_slow_consumer")
                if k in self.options}
        opts.update(options)
        sub = QueueSubscription(subject, None, on_unsubscribe=self._unsub, **opts)
        self._subs.add(sub)
        if self.bind:
            self._routes.add(sub)
            return sub
        sock = self._socket(zmq.SUB)
        sock.connect(self.pub_addr)
        sock.setsockopt(zmq.SUBSCRIBE, zmq_prefix(subject))
        sync = _SYNC + os.urandom(8).hex().encode()
        sock.setsockopt(zmq.SUBSCRIBE, sync)
        ready = asyncio.get_running_loop().create_future()
        sub._task = self._spawn(self._sub_loop(sock, sub, ready, sync), f"lowlat-zmq-sub:{subject}")  # type: ignore[attr-defined]
        try:
            await asyncio.wait_for(asyncio.shield(ready), self.sync_timeout)
        except TimeoutError:
            await sub.unsubscribe()
            raise TransportTimeoutError(f"subscribe: no zmq hub answered at {self.pub_addr}") from None
        return sub

    def _unsub(self, sub: Any) -> None:
        self._subs.discard(sub)
        self._routes.remove(sub)
        task = getattr(sub, "_task", None)
        if task is not None:
            task.cancel()

    async def request(self, subject: str, payload: Buffer, *, timeout: float = 1.0,
                      headers: Headers | None = None) -> Message:
        self._check_open()
        n = next(self._ids)
        inbox = f"{_LOCAL}{n}" if self.bind else f"{_REPLY}{self._ident_s}.{n}"
        fut: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._waiting[inbox] = fut
        try:
            if self.bind or headers or subject not in self._valid:
                await self.publish(subject, payload, headers=headers, reply=inbox)
            else:  # the common case, without the publish() coroutine frame and encode_meta
                head = b"P" + subject.encode() + _SPACE + inbox.encode()
                if not self._peer_send_nowait(head, payload):
                    await self._dealer.send_multipart([head, payload], copy=False)
            if self.bind:
                async with asyncio.timeout(timeout):
                    return await fut
            # What asyncio.timeout() does (cancel the task at the deadline, turn that cancel into a timeout
            # unless someone else cancelled too), without its two extra coroutines per call.
            task = asyncio.current_task()
            assert task is not None
            cancelling = task.cancelling()
            fired: list[bool] = []
            handle = asyncio.get_running_loop().call_later(timeout, _expire, task, fired)
            try:
                return await self._await_reply(fut)
            except asyncio.CancelledError:
                if fired and task.uncancel() <= cancelling:
                    raise TimeoutError from None
                raise
            finally:
                handle.cancel()
        except TimeoutError:
            raise TransportTimeoutError(f"request on {subject!r} timed out after {timeout}s") from None
        finally:
            self._waiting.pop(inbox, None)

    async def serve(self, subject: str, handler: Handler, *, queue: str | None = None,
                    **options: Any) -> asyncio.Task[None]:
        """On the hub the handler runs inline in the ROUTER reader; elsewhere it is the generic loop."""
        if not self.bind:
            return await super().serve(subject, handler, queue=queue, **options)
        self._check_open()
        validate_subject(subject, wildcards=True)
        sink = ServeSink(self, subject, queue, handler, reply_now=self._hub_reply)
        self._routes.add(sink)
        return self._serve_task(sink, lambda: self._routes.remove(sink))

    def _hub_reply(self, reply: str, payload: Buffer) -> None:
        self._hub_route(reply, _EMPTY, payload)
