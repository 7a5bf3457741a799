"""Embedded transports, no broker: ``inproc://name`` (one process) and ``shm://name`` (processes on one host).

``inproc://name``: every transport connected to the same name in this process shares one bus.  Delivery hands
the *same* payload object to each subscriber (no copy at all: a ``bytes`` you publish is the ``Message.data``
the subscriber gets), so publishers must not mutate a buffer after publishing it.  Subscribers may live on other
event loops/threads (delivery then goes through ``call_soon_threadsafe``).  No ring is needed for that: a ring
would add a copy; the cross-process ``shm://`` transport (``lowlat.transport.shm``) is the one built on
``lowlat._ring``.

Semantics shared with NATS: subjects with ``*``/``>`` wildcards, queue groups (round-robin across the group's
members), request/reply through inbox subjects (``request`` with no subscriber fails at once with
``NoRespondersError``), headers (any mapping, passed by reference), per-subscription
``max_pending``/``max_pending_bytes`` with counted drops (see ``QueueSubscription``).  Ordering: per publisher,
messages reach each subscriber in publish order.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Sequence
from typing import Any, Self

from ..errors import NoRespondersError, TransportClosedError, TransportTimeoutError
from .base import (
    Buffer,
    Capability,
    Headers,
    Message,
    QueueSubscription,
    Subscription,
    Transport,
    new_inbox,
    subject_matches,
    validate_subject,
)

__all__ = ["InprocTransport", "RouteTable", "ShmTransport", "shm_available", "sync_idle"]


class RouteTable:
    """Subject -> subscribers, with a per-subject cache invalidated on every (un)subscribe.

    ``route(subject)`` returns ``(plain, groups)``: the list of non-queue subscribers and a list of queue-group
    member lists; the publisher delivers to every plain one and to one member per group (round robin).  Entries
    are any objects with ``subject`` and ``queue`` attributes.  Cost: a dict hit per publish once warm.
    """

    def __init__(self) -> None:
        self._subs: list[Any] = []
        self._cache: dict[str, tuple[list[Any], list[list[Any]]]] = {}
        self._rr = itertools.count()
        self.lock = threading.Lock()

    def add(self, sub: Any) -> None:
        with self.lock:
            self._subs.append(sub)
            self._cache = {}

    def remove(self, sub: Any) -> None:
        with self.lock:
            try:
                self._subs.remove(sub)
            except ValueError:
                return
            self._cache = {}

    def __len__(self) -> int:
        return len(self._subs)

    def route(self, subject: str) -> tuple[list[Any], list[list[Any]]]:
        hit = self._cache.get(subject)
        if hit is not None:
            return hit
        with self.lock:
            plain: list[Any] = []
            groups: dict[str, list[Any]] = {}
            for s in self._subs:
                if subject_matches(s.subject, subject):
                    if s.queue:
                        groups.setdefault(s.queue, []).append(s)
                    else:
                        plain.append(s)
            out = (plain, list(groups.values()))
            if len(self._cache) > 4096:  # bound the cache under subject churn
                self._cache = {}
            self._cache[subject] = out
            return out

    def pick(self, members: list[Any]) -> Any:
        """One member of a queue group (round robin over the process-wide counter)."""
        return members[next(self._rr) % len(members)]


class _Bus:
    def __init__(self, name: str) -> None:
        self.name = name
        self.routes = RouteTable()
        self.users = 0


_BUSES: dict[str, _Bus] = {}
_BUSES_LOCK = threading.Lock()


class _InboxSink:
    """Receives replies for one transport's requests: resolves the waiting future (no queue)."""

    queue = None

    def __init__(self, prefix: str, loop: asyncio.AbstractEventLoop) -> None:
        self.subject = prefix + ".*"
        self.prefix_len = len(prefix) + 1
        self._loop = loop
        self.waiting: dict[str, asyncio.Future[Message]] = {}

    def _deliver(self, msg: Message) -> bool:
        fut = self.waiting.pop(msg.subject[self.prefix_len:], None)
        if fut is not None and not fut.done():
            fut.set_result(msg)
            return True
        return False

    def _deliver_threadsafe(self, msg: Message) -> None:
        self._loop.call_soon_threadsafe(self._deliver, msg)


class _InprocSub(QueueSubscription):
    _transport: InprocTransport


class InprocTransport(Transport):
    """In-process bus ``inproc://name`` (see the module docstring).

    Options: ``max_pending`` (default 65536 msgs) and ``max_pending_bytes`` (64 MiB) per subscription,
    ``on_slow_consumer(sub)`` callback; each can be overridden per ``subscribe``.
    """

    schemes = ("inproc",)
    capabilities = Capability.QUEUE_GROUPS | Capability.HEADERS | Capability.REQUEST_REPLY | Capability.WILDCARDS

    def __init__(self, url: str, **options: Any) -> None:
        super().__init__(url, **options)
        name = url.partition("://")[2]
        if not name:
            raise ValueError(f"inproc URL needs a bus name: {url!r} (e.g. 'inproc://md')")
        self.name = name
        self._bus: _Bus | None = None
        self._subs: set[Any] = set()
        self._inbox: _InboxSink | None = None
        self._req_ids = itertools.count(1)

    async def connect(self) -> None:
        if self._bus is not None:
            return
        with _BUSES_LOCK:
            bus = _BUSES.get(self.name)
            if bus is None:
                bus = _BUSES[self.name] = _Bus(self.name)
            bus.users += 1
        self._bus = bus
        self._mark_open()

    # --- publishing ---
    def _fanout(self, subject: str, payload: Buffer, headers: Headers | None, reply: str | None) -> int:
        routes = self._bus.routes  # type: ignore[union-attr]
        plain, groups = routes.route(subject)
        if not plain and not groups:
            validate_subject(subject)  # only checked on a route miss: a hit means it was valid before
            return 0
        loop = asyncio.get_running_loop()
        n = 0
        for s in plain:
            msg = Message(subject, payload, headers, reply, s._transport if hasattr(s, "_transport") else self)
            if s._loop is loop:
                s._deliver(msg)
            else:
                s._deliver_threadsafe(msg)
            n += 1
        for members in groups:
            s = routes.pick(members)
            msg = Message(subject, payload, headers, reply, getattr(s, "_transport", self))
            if s._loop is loop:
                s._deliver(msg)
            else:
                s._deliver_threadsafe(msg)
            n += 1
        return n

    async def publish(self, subject: str, payload: Buffer, *, headers: Headers | None = None,
                      reply: str | None = None) -> None:
        """Deliver ``payload`` (by reference) to every matching subscriber; O(subscribers)."""
        if self._closed:
            raise self._closed_error()
        self._fanout(subject, payload, headers, reply)

    async def publish_batch(self, subject: str, payloads: Sequence[Buffer]) -> None:
        if self._closed:
            raise self._closed_error()
        for p in payloads:
            self._fanout(subject, p, None, None)

    # --- subscribing ---
    async def subscribe(self, subject: str, *, queue: str | None = None, **options: Any) -> Subscription:
        self._check_open()
        validate_subject(subject, wildcards=True)
        opts: dict[str, Any] = {k: self.options[k] for k in ("max_pending", "max_pending_bytes", "on_slow_consumer")
                if k in self.options}
        opts.update(options)
        sub = _InprocSub(subject, queue, on_unsubscribe=self._forget, **opts)
        sub._transport = self
        self._subs.add(sub)
        self._bus.routes.add(sub)  # type: ignore[union-attr]
        return sub

    def _forget(self, sub: Any) -> None:
        self._subs.discard(sub)
        if self._bus is not None:
            self._bus.routes.remove(sub)

    # --- request/reply ---
    async def request(self, subject: str, payload: Buffer, *, timeout: float = 1.0,
                      headers: Headers | None = None) -> Message:
        self._check_open()
        loop = asyncio.get_running_loop()
        if self._inbox is None:
            self._inbox = _InboxSink(new_inbox("_INBOX"), loop)
            self._inbox._transport = self  # type: ignore[attr-defined]
            self._bus.routes.add(self._inbox)  # type: ignore[union-attr]
        token = str(next(self._req_ids))
        fut: asyncio.Future[Message] = loop.create_future()
        self._inbox.waiting[token] = fut
        try:
            if self._fanout(subject, payload, headers, self._inbox.subject[:-1] + token) == 0:
                raise NoRespondersError(f"no responders on {subject!r}")
            async with asyncio.timeout(timeout):
                return await fut
        except NoRespondersError:
            raise
        except TimeoutError:
            raise TransportTimeoutError(f"request on {subject!r} timed out after {timeout}s") from None
        finally:
            self._inbox.waiting.pop(token, None)

    # --- lifecycle ---
    async def drain(self) -> None:
        """Stop new deliveries; subscribers still iterate what is pending; then close."""
        for s in list(self._subs):
            s._finish(discard=False)
        await self.close()

    async def close(self) -> None:
        self._cancel_background()
        if self._bus is None:
            self._closed = True
            return
        self._closed = True
        bus, self._bus = self._bus, None
        for s in list(self._subs):
            bus.routes.remove(s)
            s.close_nowait()
        self._subs.clear()
        if self._inbox is not None:
            bus.routes.remove(self._inbox)
            for fut in self._inbox.waiting.values():
                if not fut.done():
                    fut.set_exception(TransportClosedError("transport closed while waiting for a reply"))
            self._inbox = None
        with _BUSES_LOCK:
            bus.users -= 1
            if bus.users <= 0 and not len(bus.routes):
                _BUSES.pop(bus.name, None)



# ------------------------------------------------------------------------------------------------
# shm://name — a cross-process bus over lowlat._ring
# ------------------------------------------------------------------------------------------------
#
# Layout (documented in the README "Transports" section):
#   <root>/lowlat-bus-<name>/            root = /dev/shm (else the temp dir)
#       gen                              8-byte little-endian generation counter, mmapped by everyone
#       lock                             flock()ed while a member rewrites its entry and bumps gen
#       <member>.json                    {"pid", "ring", "subs": [[sid, subject, queue], ...]}
#   POSIX shm ring "llb-<name>-<member>" one MpscRing per member (transport): its inbound queue
#
# publish(subject): if gen changed, re-read the directory (entries of dead pids are removed); route the
# subject over every member's subscriptions; push ONE record per member that has plain matches (sid 0:
# "deliver to all your matching plain subs") and one record per queue group to a member picked round-robin
# (sid = that subscription).  Record = struct _REC (sid, subject len, meta len) + subject + meta + payload.
# Receiving: the event loop drains the ring and dispatches.  Wake-up ("doorbell"): every member also owns a
# FIFO <dir>/<member>.bell; a publisher writes one byte to it after pushing (non-blocking; a full FIFO already
# means "wake up"), and the owner's event loop watches the FIFO with add_reader(): no polling thread, one epoll
# wake-up per burst.  The owner empties the FIFO *before* draining the ring, so a record pushed after the drain
# always leaves a byte behind (no lost wake-up).  `wait="spin"` instead polls the ring from the event loop
# (lowest latency, burns a core), and `spin_us=N` makes request() poll its reply ring for up to N µs before
# sleeping (a bounded spin that saves the wake-up when the server answers fast).

import fcntl
import json
import logging
import mmap
import os
import re
import struct
import tempfile
import time
from collections.abc import Callable

from ..errors import RingError, TransportError
from .base import Handler, ServeSink, decode_meta, encode_meta

_log = logging.getLogger("lowlat.transport.shm")
_REC = struct.Struct("<IHI")  # sid, subject length, meta length
_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
_SID_ALL = 0
_SID_INBOX = 1
_SMALL_RECORD = 2048  # records up to this size are concatenated and pushed in one call, larger ones claimed


_SYNC_IDLE: Any = None


def sync_idle() -> Any:
    """The default idle strategy of ``request_sync``/``serve_sync``: ``BackoffIdle(max_spins=4000,
    max_yields=0, min_park_ns=50_000, max_park_ns=1_000_000)``.

    Poll ≈200 µs (4000 polls of ≈50 ns) after the last message, then sleep 50 µs doubling to 1 ms.  While a
    request/reply exchange is active each side polls only between its own messages (a few µs), and nothing
    polls for more than ≈200 µs after the traffic stops, so an idle worker costs little CPU and wakes within
    ≈1 ms.  There is no ``sched_yield`` phase on purpose: on a loaded machine a yield hands the core to another
    process for a whole time slice (ms), which measured far worse than a bounded spin.  The price: when the
    scheduler puts client and server on ONE core (``taskset``), the waiting side holds the core for up to its
    spin window; pass ``idle=BackoffIdle()`` there.  On a dedicated core ``BusySpinIdle()`` on ONE side is
    the lowest-latency choice."""
    global _SYNC_IDLE
    if _SYNC_IDLE is None:
        from .._ring import BackoffIdle

        _SYNC_IDLE = BackoffIdle(max_spins=4000, max_yields=0, min_park_ns=50_000, max_park_ns=1_000_000)
    return _SYNC_IDLE


def shm_root() -> str:
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else tempfile.gettempdir()


def shm_available() -> tuple[bool, str]:
    """(True, "") if ``shm://`` can work here, else (False, why)."""
    try:
        from .. import _ring  # noqa: F401
    except ImportError as e:
        return False, f"lowlat._ring is not built ({e}); build it: python setup.py build_ext --inplace"
    if not os.path.isdir("/dev/shm"):
        return False, "/dev/shm is missing (POSIX shared memory)"
    return True, ""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is dead for our purposes
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().split(b") ", 1)[1][:1] != b"Z"
    except (OSError, IndexError):
        return True


class _Remote:
    """One subscription of some member, as seen by publishers."""

    __slots__ = ("member", "queue", "sid", "subject")

    def __init__(self, subject: str, queue: str | None, member: str, sid: int) -> None:
        self.subject, self.queue, self.member, self.sid = subject, queue, member, sid


class _ShmSub(QueueSubscription):
    sid: int = 0


class ShmTransport(Transport):
    """Shared-memory bus ``shm://name`` between processes on one host (see the notes above the class).

    Options: ``ring_capacity`` (bytes, power of two, default 4 MiB: largest payload is half of it),
    ``wait`` ("bell" default: FIFO doorbell watched by the event loop, or "spin": poll the ring from the loop,
    one core busy), ``spin_us`` (µs request() polls for its reply before sleeping; default 0), ``publish_timeout`` (s a publish waits for room in a full
    subscriber ring before dropping the message and counting it in ``full_drops``; default 1.0),
    ``max_pending``/``max_pending_bytes``/``on_slow_consumer`` per subscription.
    """

    schemes = ("shm",)
    capabilities = Capability.QUEUE_GROUPS | Capability.HEADERS | Capability.REQUEST_REPLY | Capability.WILDCARDS

    def __init__(self, url: str, *, ring_capacity: int = 4 << 20, wait: str = "bell", spin_us: float = 0.0,
                 publish_timeout: float = 1.0, **options: Any) -> None:
        super().__init__(url, **options)
        name = url.partition("://")[2]
        if not _NAME_RE.match(name):
            raise ValueError(f"shm URL needs a bus name of [A-Za-z0-9_.-]{{1,64}}: {url!r}")
        if wait not in ("bell", "spin"):
            raise ValueError("wait must be 'bell' or 'spin'")
        self.name = name
        self.ring_capacity = ring_capacity
        self.wait = wait
        self.spin_ns = int(spin_us * 1000)
        self.publish_timeout = publish_timeout
        self.dir = os.path.join(shm_root(), f"lowlat-bus-{name}")
        self.member = f"{os.getpid()}-{os.urandom(4).hex()}"
        self.full_drops = 0
        self._ring: Any = None
        self._gen_map: mmap.mmap | None = None
        self._gen_seen = -1
        self._routes = RouteTable()          # every member's subscriptions (_Remote)
        self._targets: dict[str, Any] = {}   # member -> attached MpscRing
        self._bells: dict[str, int] = {}     # member -> write fd of its doorbell FIFO
        self._bell_fd = -1                   # our own FIFO (O_RDWR, non-blocking)
        self._local: dict[int, Any] = {}     # sid -> local subscription / serve sink / inbox
        self._local_plain = RouteTable()     # local non-queue subs, for sid 0 records
        self._sids = itertools.count(2)
        self._inbox: _InboxSink | None = None
        self._req_ids = itertools.count(1)
        self._reader: asyncio.Task[None] | None = None
        self._poll = False                   # this member polls its ring (spin / sync): publishers skip its bell
        self._nobell: set[str] = set()       # members that poll, from the registry
        self._owner = 0                      # thread id of the ring's consumer (async mode: the loop thread)
        self._consume_lock = threading.Lock()

    # --- registry ---
    def _bump_and_write(self) -> None:
        entry = {"pid": os.getpid(), "ring": self._ring.name, "poll": self._poll,
                 "subs": [[sid, s.subject, s.queue] for sid, s in self._local.items()]}
        path = os.path.join(self.dir, f"{self.member}.json")
        with open(os.path.join(self.dir, "lock"), "a+b") as lk:
            fcntl.flock(lk, fcntl.LOCK_EX)
            tmp = path + ".tmp"
            with open(tmp, "w") as f:
                json.dump(entry, f)
            os.replace(tmp, path)
            gm = self._gen_map
            assert gm is not None  # connect() mapped it
            g = struct.unpack_from("<Q", gm, 0)[0]
            struct.pack_into("<Q", gm, 0, g + 1)

    def _reload(self, gen: int) -> None:
        from .._ring import MpscRing

        routes = RouteTable()
        seen: set[str] = set()
        nobell: set[str] = set()
        for fn in os.listdir(self.dir):
            if not fn.endswith(".json"):
                continue
            member = fn[:-5]
            try:
                with open(os.path.join(self.dir, fn)) as f:
                    entry = json.load(f)
            except (OSError, ValueError):
                continue
            if member != self.member and not _pid_alive(int(entry.get("pid", 0))):
                self._reap(member, entry)
                continue
            if member not in self._targets:
                try:
                    self._targets[member] = MpscRing.attach(entry["ring"])
                except (RingError, OSError, KeyError):
                    continue
            seen.add(member)
            if entry.get("poll"):
                nobell.add(member)
            for sid, subject, queue in entry.get("subs", ()):
                routes.add(_Remote(subject, queue, member, sid))
        for member in list(self._targets):
            if member not in seen:
                self._targets.pop(member).close()
                self._close_bell(member)
        self._routes = routes
        self._nobell = nobell
        self._gen_seen = gen

    def _reap(self, member: str, entry: dict[str, Any]) -> None:
        # a member died without closing: remove its entry and its ring name (best effort, racing reapers ok)
        from .._ring import MpscRing

        for suffix in (".json", ".bell"):
            try:
                os.unlink(os.path.join(self.dir, member + suffix))
            except OSError:
                pass
        try:
            r = MpscRing.attach(entry.get("ring") or f"llb-{self.name}-{member}")
            r.unlink()
            r.close()
        except (OSError, RingError):
            pass
        _log.warning("shm bus %r: removed member %s of dead pid %s", self.name, member, member.split("-")[0])

    def _reap_member(self, member: str) -> None:
        path = os.path.join(self.dir, f"{member}.json")
        try:
            with open(path) as f:
                entry = json.load(f)
        except (OSError, ValueError):
            entry = {}
        ring = self._targets.pop(member, None)
        if ring is not None:
            ring.close()
        self._close_bell(member)
        self._reap(member, entry)
        with open(os.path.join(self.dir, "lock"), "a+b") as lk:
            fcntl.flock(lk, fcntl.LOCK_EX)
            g = struct.unpack_from("<Q", self._gen_map, 0)[0]  # type: ignore[arg-type]
            struct.pack_into("<Q", self._gen_map, 0, g + 1)  # type: ignore[arg-type]

    # --- lifecycle ---
    async def connect(self) -> None:
        if not self._closed:
            return
        loop = asyncio.get_running_loop()
        self._open(poll=self.wait == "spin")
        if self.wait == "spin":
            self._reader = loop.create_task(self._spin_loop(), name=f"lowlat-shm:{self.name}")
        else:
            loop.add_reader(self._bell_fd, self._on_bell)

    def connect_sync(self) -> Self:
        """Join the bus without an event loop, for ``request_sync``/``serve_sync`` (a latency-critical
        process or thread that polls its ring).  Publishers skip this member's doorbell; what arrives waits in
        the ring until the next ``request_sync``/``serve_sync`` call.  ``subscribe``/``serve``/``request``
        (async) are not available on such a transport.  Also ``with ShmTransport(url) as t:``.  Cost: a few
        syscalls and one ring allocation (``ring_capacity`` bytes, prefaulted)."""
        if not self._closed:
            return self
        self._open(poll=True)
        self._owner = 0  # any one thread at a time (guarded by _consume_lock)
        return self

    def __enter__(self) -> Self:
        return self.connect_sync()

    def __exit__(self, *exc: object) -> None:
        self.close_sync()

    def _open(self, poll: bool) -> None:
        ok, why = shm_available()
        if not ok:
            raise TransportError(f"shm transport unavailable: {why}")
        from .._ring import MpscRing

        os.makedirs(self.dir, exist_ok=True)
        gen_path = os.path.join(self.dir, "gen")
        fd = os.open(gen_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size < 8:
                os.ftruncate(fd, 8)
            self._gen_map = mmap.mmap(fd, 8)
        finally:
            os.close(fd)
        try:
            self._ring = MpscRing(self.ring_capacity, name=f"llb-{self.name}-{self.member}", create=True)
        except (RingError, ValueError, OSError) as e:
            raise TransportError(f"cannot create the inbound ring for {self.url}: {e}") from e
        bell = os.path.join(self.dir, f"{self.member}.bell")
        os.mkfifo(bell, 0o600)
        self._bell_fd = os.open(bell, os.O_RDWR | os.O_NONBLOCK)
        self._poll = poll
        self._owner = threading.get_ident()
        self._mark_open()
        self._bump_and_write()

    async def close(self) -> None:
        self._cancel_background()
        if self._closed and self._ring is None:
            return
        self._closed = True
        if self._reader is not None:
            self._reader.cancel()
            try:
                await self._reader
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
            self._reader = None
        if self._bell_fd >= 0 and not self._poll:
            try:
                asyncio.get_running_loop().remove_reader(self._bell_fd)
            except RuntimeError:
                pass
        self.close_sync()

    def close_sync(self) -> None:
        """Leave the bus now (what ``close()`` does, without an event loop; for ``connect_sync`` users)."""
        if self._closed and self._ring is None:
            return
        self._closed = True
        for s in list(self._local.values()):
            if isinstance(s, (QueueSubscription, ServeSink)):
                s.close_nowait()
        self._local.clear()
        if self._inbox is not None:
            for fut in self._inbox.waiting.values():
                if not fut.done():
                    fut.set_exception(TransportClosedError("transport closed while waiting for a reply"))
            self._inbox = None
        if self._bell_fd >= 0:
            os.close(self._bell_fd)
            self._bell_fd = -1
        for member in list(self._bells):
            self._close_bell(member)
        for suffix in (".json", ".bell"):
            try:
                os.unlink(os.path.join(self.dir, self.member + suffix))
            except OSError:
                pass
        if self._gen_map is not None:
            try:
                with open(os.path.join(self.dir, "lock"), "a+b") as lk:
                    fcntl.flock(lk, fcntl.LOCK_EX)
                    g = struct.unpack_from("<Q", self._gen_map, 0)[0]
                    struct.pack_into("<Q", self._gen_map, 0, g + 1)
            except OSError:
                pass
            self._gen_map.close()
            self._gen_map = None
        for r in self._targets.values():
            r.close()
        self._targets.clear()
        if self._ring is not None:
            self._ring.unlink()
            self._ring.close()
            self._ring = None

    async def drain(self) -> None:
        if self._closed:
            return
        self._drain_ring()  # what already arrived goes to the subscriptions
        for s in list(self._local.values()):
            if isinstance(s, QueueSubscription):
                s._finish(discard=False)
        await self.close()

    # --- sending ---
    def _push(self, member: str, sid: int, subj: bytes, meta: bytes, payload: Buffer) -> bool:
        ring = self._targets.get(member)
        if ring is None:
            return False
        n = payload.nbytes if type(payload) is memoryview else memoryview(payload).nbytes
        size = _REC.size + len(subj) + len(meta) + n
        if size <= _SMALL_RECORD:
            # small record: one concatenation and one try_push (≈0.25 µs) beat claim + 4 slice writes (≈1 µs)
            if not ring.try_push(_REC.pack(sid, len(subj), len(meta)) + subj + meta + payload):
                return False
            if member not in self._nobell:
                self._ring_bell(member)
            return True
        if size > ring.max_record_size:
            raise ValueError(f"message of {size} bytes exceeds the shm ring's max record ({ring.max_record_size})")
        buf = ring.claim(size)
        if buf is None:
            return False
        try:
            _REC.pack_into(buf, 0, sid, len(subj), len(meta))
            o = _REC.size
            buf[o:o + len(subj)] = subj
            o += len(subj)
            if meta:
                buf[o:o + len(meta)] = meta
                o += len(meta)
            if n:
                buf[o:] = memoryview(payload).cast("B")
        except BaseException:
            ring.abort()
            raise
        ring.publish()
        self._ring_bell(member)
        return True

    def _ring_bell(self, member: str) -> None:
        if member in self._nobell:
            return  # it polls its ring (wait="spin" or a sync member): the doorbell write would be a wasted syscall
        fd = self._bells.get(member)
        if fd is None:
            try:
                fd = self._bells[member] = os.open(os.path.join(self.dir, f"{member}.bell"),
                                                   os.O_WRONLY | os.O_NONBLOCK)
            except OSError:  # owner gone (ENXIO: no reader) or not created yet: it polls on connect anyway
                return
        try:
            os.write(fd, b"\x01")
        except BlockingIOError:
            pass  # FIFO full: the owner has wake-ups pending already
        except OSError:
            self._close_bell(member)

    def _close_bell(self, member: str) -> None:
        fd = self._bells.pop(member, None)
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass

    def _plan(self, subject: str) -> list[tuple[str, int]]:
        g = struct.unpack_from("<Q", self._gen_map, 0)[0]  # type: ignore[arg-type]
        if g != self._gen_seen:
            self._reload(g)
        plain, groups = self._routes.route(subject)
        out: list[tuple[str, int]] = []
        seen: set[str] = set()
        for r in plain:
            if r.member not in seen:
                seen.add(r.member)
                out.append((r.member, _SID_ALL))
        for members in groups:
            r = self._routes.pick(members)
            out.append((r.member, r.sid))
        return out

    def _send(self, subject: str, payload: Buffer, headers: Headers | None, reply: str | None) -> list:
        """Push to every target now; returns the (member, sid) pairs whose ring was full."""
        if subject.startswith("_INBOX.") and not headers and not reply:
            # reply fast path: the inbox names its member; skip routing (each reply subject is unique, so the
            # route cache would only miss)
            member = subject[7:].partition(".")[0].replace("_", "-")
            if member in self._targets:
                subj = subject.encode()
                if self._push(member, _SID_INBOX, subj, b"", payload):
                    return []
                return [(member, _SID_INBOX, subj, b"")]
        plan = self._plan(subject)
        if not plan:
            validate_subject(subject)
            return plan
        subj = subject.encode()
        meta = encode_meta(reply, headers) if (reply or headers) else b""
        return [(m, sid, subj, meta) for m, sid in plan if not self._push(m, sid, subj, meta, payload)]

    async def _send_async(self, subject: str, payload: Buffer, headers: Headers | None,
                          reply: str | None) -> None:
        full = self._send(subject, payload, headers, reply)
        if not full:
            return
        # a full ring whose owner died is reaped at once instead of stalling every publish
        for f in full:
            pid = int(f[0].split("-", 1)[0])
            if not _pid_alive(pid):
                self._reap_member(f[0])
        full = [f for f in full if f[0] in self._targets]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.publish_timeout
        while full and loop.time() < deadline:
            await asyncio.sleep(0.0002)
            full = [f for f in full if not self._push(f[0], f[1], f[2], f[3], payload)]
        if full:
            self.full_drops += len(full)
            _log.warning("shm bus %r: %d subscriber ring(s) full for %.3fs, message on %r dropped (total %d)",
                         self.name, len(full), self.publish_timeout, subject, self.full_drops)

    async def publish(self, subject: str, payload: Buffer, *, headers: Headers | None = None,
                      reply: str | None = None) -> None:
        """Copy ``payload`` once into each target process's ring.  Waits up to ``publish_timeout`` for room."""
        if self._closed:
            raise self._closed_error()
        await self._send_async(subject, payload, headers, reply)

    # --- receiving ---
    def _dispatch(self, rec: bytes) -> None:
        mv = memoryview(rec)
        sid, ls, lm = _REC.unpack_from(rec, 0)
        o = _REC.size
        subject = rec[o:o + ls].decode()
        o += ls
        if not lm:
            reply = headers = None
        else:
            meta = rec[o:o + lm]
            # reply subject only (the request case): skip decode_meta's header parsing
            reply, headers = (meta.decode(), None) if b"\n" not in meta else decode_meta(meta)
        data = mv[o + lm:]
        if sid == _SID_ALL:
            for s in self._local_plain.route(subject)[0]:
                s._deliver(Message(subject, data, headers, reply, self))
        else:
            s = self._local.get(sid)
            if s is not None:
                s._deliver(Message(subject, data, headers, reply, self))

    def _drain_ring(self) -> int:
        ring = self._ring
        n = 0
        while ring is not None:
            recs = ring.pop_batch(64)
            if not recs:
                break
            for rec in recs:
                try:
                    self._dispatch(rec)
                except (ValueError, UnicodeDecodeError, struct.error) as e:
                    _log.warning("shm bus %r: dropped malformed record: %s", self.name, e)
            n += len(recs)
        return n

    def _on_bell(self) -> None:
        # empty the FIFO first, then the ring: a push after our drain leaves a byte -> we are called again
        try:
            while len(os.read(self._bell_fd, 65536)) == 65536:
                pass
        except BlockingIOError:
            pass
        except OSError:
            return
        self._drain_ring()

    async def _spin_loop(self) -> None:
        while True:
            self._drain_ring()
            await asyncio.sleep(0)

    # --- subscribing ---
    def _register(self, sink: Any) -> None:
        self._local[sink.sid] = sink
        if not sink.queue:
            self._local_plain.add(sink)
        self._bump_and_write()

    def _forget(self, sink: Any) -> None:
        if self._local.pop(sink.sid, None) is not None:
            self._local_plain.remove(sink)
            if not self._closed:
                self._bump_and_write()

    def _check_async(self) -> None:
        self._check_open()
        if self._poll and self._reader is None:
            raise TransportError("this ShmTransport was opened with connect_sync(): nothing drains its ring in the "
                                 "event loop; use request_sync()/serve_sync(), or connect() for the async API")

    async def subscribe(self, subject: str, *, queue: str | None = None, **options: Any) -> Subscription:
        self._check_async()
        validate_subject(subject, wildcards=True)
        opts: dict[str, Any] = {k: self.options[k] for k in ("max_pending", "max_pending_bytes", "on_slow_consumer")
                if k in self.options}
        opts.update(options)
        sub = _ShmSub(subject, queue, on_unsubscribe=self._forget, **opts)
        sub.sid = next(self._sids)
        self._register(sub)
        return sub

    async def serve(self, subject: str, handler: Handler, *, queue: str | None = None,
                    **options: Any) -> asyncio.Task[None]:
        """Handler runs inline in the ring reader (no queue hop); cancel the task to stop."""
        self._check_async()
        validate_subject(subject, wildcards=True)
        sink = ServeSink(self, subject, queue, handler, reply_now=self._reply_now)
        sink.sid = next(self._sids)  # type: ignore[attr-defined]
        self._register(sink)
        return self._serve_task(sink, lambda: self._forget(sink))

    def _reply_now(self, reply: str, payload: Buffer) -> None:
        self._send(reply, payload, None, None)

    async def request(self, subject: str, payload: Buffer, *, timeout: float = 1.0,
                      headers: Headers | None = None) -> Message:
        self._check_async()
        loop = asyncio.get_running_loop()
        inbox = self._inbox or self._make_inbox(loop)
        token = str(next(self._req_ids))
        fut: asyncio.Future[Message] = loop.create_future()
        inbox.waiting[token] = fut
        try:
            if not self._plan(subject):
                validate_subject(subject)
                raise NoRespondersError(f"no responders on {subject!r}")
            await self._send_async(subject, payload, headers, inbox.subject[:-1] + token)
            if self.spin_ns and not fut.done():
                end = time.perf_counter_ns() + self.spin_ns
                while not fut.done() and time.perf_counter_ns() < end:
                    self._drain_ring()
                if fut.done():
                    return fut.result()
            async with asyncio.timeout(timeout):
                return await fut
        except NoRespondersError:
            raise
        except TimeoutError:
            raise TransportTimeoutError(f"request on {subject!r} timed out after {timeout}s") from None
        finally:
            if self._inbox is not None:
                self._inbox.waiting.pop(token, None)

    def _make_inbox(self, loop: asyncio.AbstractEventLoop | None) -> _InboxSink:
        inbox = _InboxSink(f"_INBOX.{self.member.replace('-', '_')}", loop)  # type: ignore[arg-type]
        inbox.sid = _SID_INBOX  # type: ignore[attr-defined]
        self._inbox = inbox
        self._register(inbox)
        return inbox

    # --- synchronous fast path (no event loop between the ring and the caller) ---
    def _enter_consumer(self) -> None:
        # The inbound ring has ONE consumer.  In async mode that is the event loop's thread (its doorbell
        # reader drains the ring whenever the loop runs), so sync calls must come from that thread (they block
        # the loop while they poll).  After connect_sync() any thread may consume, one at a time.
        self._check_open()
        if self._owner and self._owner != threading.get_ident():
            raise TransportError("ShmTransport: sync calls must run on the thread that connected it (the inbound "
                                 "ring has a single consumer)")
        if not self._consume_lock.acquire(blocking=False):
            raise TransportError("ShmTransport: another thread is already consuming this transport's ring")

    def request_sync(self, subject: str, payload: Buffer, *, timeout: float = 1.0, headers: Headers | None = None,
                     idle: Any = None) -> Message:
        """Send a request and wait for its reply **synchronously**, polling this member's ring (no event loop).

        The latency path of the shm transport: with the server in ``serve_sync`` the round trip is two ring
        pushes and two polls (see BENCHMARKS.md for p50 on a 2-vCPU VM).  ``idle`` is the ``lowlat._ring``
        idle strategy while waiting (default ``sync_idle()``: poll ≈200 µs, then sleep 50 µs..1 ms;
        ``BusySpinIdle()`` burns a core for up to ``timeout``: let at most one side spin).  Records for other local consumers that arrive meanwhile are dispatched as usual.  Works on a
        ``connect_sync()`` transport (any one thread) or, from the event loop's thread, on an async one (the
        loop is blocked meanwhile).  Interoperates with async ``serve()``/``request()`` members of the bus.

        Returns the reply ``Message`` (``data`` a memoryview of the popped record).  Raises
        ``NoRespondersError`` at once when nobody serves ``subject``, ``TransportTimeoutError`` when no reply
        comes within ``timeout`` s.
        """
        self._enter_consumer()
        if idle is None:
            idle = sync_idle()
        try:
            inbox = self._inbox or self._make_inbox(None)
            plan = self._plan(subject)
            if not plan:
                validate_subject(subject)
                raise NoRespondersError(f"no responders on {subject!r}")
            reply = inbox.subject[:-1] + str(next(self._req_ids))
            expect = reply.encode()
            subj = subject.encode()
            meta = encode_meta(reply, headers)
            for m, sid in plan:
                if not self._push(m, sid, subj, meta, payload):
                    self._push_retry_sync(m, sid, subj, meta, payload)
            # Wait for the reply in our ring; match it here instead of through the inbox's future table (saves
            # ≈1 µs); anything else that arrives meanwhile is dispatched as the doorbell reader would.
            ring = self._ring
            unpack = _REC.unpack_from
            o = _REC.size
            got: Message | None = None
            deadline = time.monotonic() + timeout
            while True:
                if ring.wait_readable(max(0.0, deadline - time.monotonic()), idle):
                    for rec in ring.pop_batch(64):
                        try:
                            sid, ls, lm = unpack(rec, 0)
                            if got is None and sid <= _SID_INBOX and rec[o:o + ls] == expect:  # sid 0 if routed by subject
                                hdrs = decode_meta(rec[o + ls:o + ls + lm])[1] if lm else None
                                got = Message(reply, memoryview(rec)[o + ls + lm:], hdrs, None, self)
                            else:
                                self._dispatch(rec)
                        except (ValueError, UnicodeDecodeError, struct.error) as e:
                            _log.warning("shm bus %r: dropped malformed record: %s", self.name, e)
                    if got is not None:
                        return got
                elif time.monotonic() >= deadline:
                    raise TransportTimeoutError(f"request on {subject!r} timed out after {timeout}s")
        finally:
            self._consume_lock.release()

    def _push_retry_sync(self, member: str, sid: int, subj: bytes, meta: bytes, payload: Buffer) -> None:
        # target ring full: reap a dead owner at once, else retry until publish_timeout, then drop and count
        if not _pid_alive(int(member.split("-", 1)[0])):
            self._reap_member(member)
            return
        deadline = time.monotonic() + self.publish_timeout
        while member in self._targets and time.monotonic() < deadline:
            time.sleep(0.0002)
            if self._push(member, sid, subj, meta, payload):
                return
        self.full_drops += 1
        _log.warning("shm bus %r: subscriber ring full for %.3fs, message on %r dropped (total %d)",
                     self.name, self.publish_timeout, subj.decode(), self.full_drops)

    def serve_sync(self, subject: str, handler: Callable[[Message], Buffer | None], *, queue: str | None = None,
                   idle: Any = None, stop: Callable[[], bool] | threading.Event | None = None,
                   check_interval: float = 0.05, ready: Callable[[], Any] | None = None) -> int:
        """Run a request/reply worker **in this thread** until ``stop`` is set (or KeyboardInterrupt).

        Polls this member's inbound ring with ``idle`` (a ``lowlat._ring`` idle strategy; default
        ``sync_idle()``: poll ≈200 µs after the last request, then sleep 50 µs doubling to 1 ms, so a busy
        worker answers from the poll and an idle one costs little CPU and wakes within ≈1 ms;
        ``BusySpinIdle()`` never sleeps but burns a core) and calls the
        synchronous ``handler(msg) -> reply payload | None`` inline, then pushes the reply straight into the
        requester's ring: no event loop, no doorbell.  Any ``request``/``request_sync`` on the bus reaches it.
        ``stop`` is a ``threading.Event`` or a callable, checked at least every ``check_interval`` s.  Returns
        the number of requests handled.  Registration is removed on return.  ``ready()`` (if given) is called
        once the worker is registered in the bus, i.e. once requests reach it (a readiness signal for the process
        that starts the worker).
        """
        self._enter_consumer()
        if idle is None:
            idle = sync_idle()
        try:
            validate_subject(subject, wildcards=True)
            if stop is None:
                stopped: Callable[[], bool] = lambda: False
            elif isinstance(stop, threading.Event):
                stopped = stop.is_set
            else:
                stopped = stop
            sink = ServeSink(self, subject, queue, handler, reply_now=self._reply_now, sync=True)
            sink.sid = next(self._sids)  # type: ignore[attr-defined]
            self._register(sink)
            try:
                if ready is not None:
                    ready()
                self._serve_loop(sink, stopped, idle, check_interval)
            finally:
                self._forget(sink)
            return sink.handled
        finally:
            self._consume_lock.release()

    def _serve_loop(self, sink: ServeSink, stopped: Callable[[], bool], idle: Any, check_interval: float) -> None:
        # serve_sync's hot loop, specialised for "request for our sink with a reply subject and no headers":
        # the reply subject stays bytes (no decode/encode round trip) and its member is cached per inbox.
        # Anything else goes through the generic _dispatch.
        ring = self._ring
        unpack = _REC.unpack_from
        o = _REC.size
        my_sid = sink.sid  # type: ignore[attr-defined]
        call = sink.call
        inbox_member: dict[bytes, str] = {}
        targets = self._targets
        plain_route = self._local_plain.route
        while not self._closed and not stopped():
            recs = ring.pop_batch(64)
            if not recs:
                ring.wait_readable(check_interval, idle)
                continue
            for rec in recs:
                try:
                    sid, ls, lm = unpack(rec, 0)
                    meta = rec[o + ls:o + ls + lm]
                    subject = rec[o:o + ls].decode()
                    # sid 0 = "every plain subscription of yours that matches": ours alone in the common case
                    if sid == my_sid or (sid == _SID_ALL and plain_route(subject)[0] == [sink]):
                        if not meta.startswith(b"_INBOX.") or b"\n" in meta:
                            self._dispatch(rec)
                            continue
                    else:
                        self._dispatch(rec)
                        continue
                    msg = Message(subject, memoryview(rec)[o + ls + lm:], None, meta.decode(), self)
                except (ValueError, UnicodeDecodeError, struct.error) as e:
                    _log.warning("shm bus %r: dropped malformed record: %s", self.name, e)
                    continue
                out = call(msg)  # the handler, its failures logged; None: no answer
                if out is None:
                    continue
                prefix = meta[:meta.rfind(b".")]
                member = inbox_member.get(prefix)
                if member is None or member not in targets:
                    member = meta[7:].partition(b".")[0].decode().replace("_", "-")
                    if member not in targets:
                        self._plan(msg.reply)  # type: ignore[arg-type]  # a new requester: re-read the registry
                        targets = self._targets
                        if member not in targets:
                            continue  # requester gone
                    if len(inbox_member) > 4096:
                        inbox_member.clear()
                    inbox_member[prefix] = member
                if not self._push(member, _SID_INBOX, meta, b"", out):  # type: ignore[arg-type]  # checked above
                    self._push_retry_sync(member, _SID_INBOX, meta, b"", out)  # type: ignore[arg-type]
