"""Cross-process ring benchmarks: lowlat SpscRing vs a pure-Python shared-memory SPSC ring, faster-fifo and
multiprocessing.Queue, 64-byte messages, Python producer -> Python consumer, all in the same run.

    python -m pytest benchmarks/bench_ring.py --benchmark-only -s

Groups ``ring.throughput.batched`` / ``ring.throughput.single`` time one round = N messages (see
``extra_info['msg_per_s']``); ``ring.rtt`` times one ping-pong round trip per benchmark round (the median is
the p50 RTT).  The machine has 2 shared cores, so at most ONE side busy-spins.  Throughput runs: nobody
spins -- the consumer waits with the default ``BackoffIdle`` (10 pause-polls, 5 sched_yields, then sleeps
1 µs doubling to 1 ms) and the producer calls sched_yield when the ring is full (``YieldingIdle``).  RTT run:
the echo side busy-spins (``BusySpinIdle``), the pinging side uses the default ``BackoffIdle``.  The pure-Python
peer uses the same strategies written in Python; faster-fifo and multiprocessing.Queue block in the kernel.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import struct
import sys
import time
import uuid
from multiprocessing import shared_memory

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from lowlat import BusySpinIdle, SpscRing, YieldingIdle

MSG = bytes(range(64))
BATCH = 256
SPIN = BusySpinIdle()
YIELD = YieldingIdle()
CTX = mp.get_context("fork")
RESULTS: dict[tuple[str, str], float] = {}


# ---- the pure-Python peer: an SPSC ring in multiprocessing.shared_memory --------------------------

class PyRing:
    """Fixed 72-byte slots (u32 length + up to 68 bytes), head/tail u64 on separate cache lines.
    Relies on x86 store ordering and CPython executing the tail store last -- what hand-rolled
    Python rings do."""

    SLOT = 72
    HEAD, TAIL, DATA = 0, 64, 128

    def __init__(self, n_slots: int, shm: shared_memory.SharedMemory | None = None):
        self.n, self.mask = n_slots, n_slots - 1
        self.shm = shm or shared_memory.SharedMemory(create=True, size=self.DATA + n_slots * self.SLOT)
        self.buf = self.shm.buf
        self.sync()

    def sync(self) -> None:
        """Re-read both positions (call when this process switches between producing and consuming)."""
        self.tail = struct.unpack_from("Q", self.buf, self.TAIL)[0]
        self.head = struct.unpack_from("Q", self.buf, self.HEAD)[0]
        self.head_cache = self.head
        self.tail_cache = self.tail

    def try_push(self, m: bytes) -> bool:
        t = self.tail
        if t - self.head_cache >= self.n:
            self.head_cache = struct.unpack_from("Q", self.buf, self.HEAD)[0]
            if t - self.head_cache >= self.n:
                return False
        off = self.DATA + (t & self.mask) * self.SLOT
        struct.pack_into("I", self.buf, off, len(m))
        self.buf[off + 4: off + 4 + len(m)] = m
        self.tail = t + 1
        struct.pack_into("Q", self.buf, self.TAIL, t + 1)
        return True

    def push_many(self, ms: list[bytes]) -> int:
        t = self.tail
        free = self.n - (t - self.head_cache)
        if free < len(ms):
            self.head_cache = struct.unpack_from("Q", self.buf, self.HEAD)[0]
            free = self.n - (t - self.head_cache)
        k = min(free, len(ms))
        buf, mask, slot, data = self.buf, self.mask, self.SLOT, self.DATA
        for i in range(k):
            m = ms[i]
            off = data + ((t + i) & mask) * slot
            struct.pack_into("I", buf, off, len(m))
            buf[off + 4: off + 4 + len(m)] = m
        self.tail = t + k
        struct.pack_into("Q", buf, self.TAIL, t + k)
        return k

    def try_pop(self):
        h = self.head
        if h >= self.tail_cache:
            self.tail_cache = struct.unpack_from("Q", self.buf, self.TAIL)[0]
            if h >= self.tail_cache:
                return None
        off = self.DATA + (h & self.mask) * self.SLOT
        n = struct.unpack_from("I", self.buf, off)[0]
        m = bytes(self.buf[off + 4: off + 4 + n])
        self.head = h + 1
        struct.pack_into("Q", self.buf, self.HEAD, h + 1)
        return m

    def pop_many(self, max_n: int) -> list[bytes]:
        h = self.head
        self.tail_cache = struct.unpack_from("Q", self.buf, self.TAIL)[0]
        k = min(max_n, self.tail_cache - h)
        buf, mask, slot, data = self.buf, self.mask, self.SLOT, self.DATA
        out = []
        for i in range(k):
            off = data + ((h + i) & mask) * slot
            n = struct.unpack_from("I", buf, off)[0]
            out.append(bytes(buf[off + 4: off + 4 + n]))
        if k:
            self.head = h + k
            struct.pack_into("Q", buf, self.HEAD, h + k)
        return out


class PyBackoff:
    """The pure-Python peer's copy of BackoffIdle(): 10 polls, 5 sched_yields, then sleeps 1 µs..1 ms."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.n, self.park = 0, 1e-6

    def idle(self):
        self.n += 1
        if self.n <= 10:
            return
        if self.n <= 15:
            os.sched_yield()
            return
        time.sleep(self.park)
        self.park = min(self.park * 2, 1e-3)


# ---- producer / echo children (forked) -----------------------------------------------------------

def _lowlat_child(conn, name_req, name_resp):
    req = SpscRing.attach(name_req)
    resp = SpscRing.attach(name_resp)
    batch = [MSG] * BATCH
    while True:
        cmd, n = conn.recv()
        if cmd == "quit":
            return
        if cmd == "batched":
            sent = 0
            while sent < n:
                k = req.push_batch(batch if n - sent >= BATCH else batch[: n - sent])
                if k == 0:
                    req.push(MSG, idle=YIELD)
                    k = 1
                sent += k
        elif cmd == "single":
            push, try_push = req.push, req.try_push
            for _ in range(n):
                if not try_push(MSG):
                    push(MSG, idle=YIELD)
        elif cmd == "echo":                    # the spinning side
            pop, push = req.pop, resp.push
            for _ in range(n):
                push(pop(idle=SPIN))
        conn.send("done")


def _pyring_child(conn, req, resp):
    batch = [MSG] * BATCH
    while True:
        cmd, n = conn.recv()
        req.sync()
        resp.sync()
        if cmd == "quit":
            return
        if cmd == "batched":
            sent = 0
            while sent < n:
                k = req.push_many(batch if n - sent >= BATCH else batch[: n - sent])
                if k == 0:
                    os.sched_yield()
                sent += k
        elif cmd == "single":
            try_push = req.try_push
            for _ in range(n):
                while not try_push(MSG):
                    os.sched_yield()
        elif cmd == "echo":
            try_pop, try_push = req.try_pop, resp.try_push
            for _ in range(n):
                m = try_pop()
                while m is None:               # spin
                    m = try_pop()
                try_push(m)
        conn.send("done")


def _queue_child(conn, req, resp, many):
    batch = [MSG] * BATCH
    while True:
        cmd, n = conn.recv()
        if cmd == "quit":
            return
        if cmd == "batched" and many:
            sent = 0
            while sent < n:
                k = min(BATCH, n - sent)
                req.put_many(batch[:k], timeout=30)
                sent += k
        elif cmd in ("single", "batched"):
            for _ in range(n):
                req.put(MSG)
        elif cmd == "echo":
            for _ in range(n):
                resp.put(req.get())
        conn.send("done")


# ---- peers as seen from the benchmark process -----------------------------------------------------

class Peer:
    def __init__(self, kind: str):
        self.kind = kind
        self.conn, child_conn = CTX.Pipe()
        if kind == "lowlat":
            tag = uuid.uuid4().hex[:8]
            self.req = SpscRing(1 << 20, name=f"llbench-req-{tag}")
            self.resp = SpscRing(1 << 12, name=f"llbench-resp-{tag}")
            args = (_lowlat_child, (child_conn, self.req.name, self.resp.name))
        elif kind == "pyring":
            self.req, self.resp = PyRing(1 << 14), PyRing(64)
            args = (_pyring_child, (child_conn, self.req, self.resp))
        elif kind == "faster-fifo":
            import faster_fifo
            self.req, self.resp = faster_fifo.Queue(1 << 24), faster_fifo.Queue(1 << 16)
            args = (_queue_child, (child_conn, self.req, self.resp, True))
        else:
            self.req, self.resp = CTX.Queue(), CTX.Queue()
            args = (_queue_child, (child_conn, self.req, self.resp, False))
        self.proc = CTX.Process(target=args[0], args=args[1], daemon=True)
        self.proc.start()

    def close(self):
        self.conn.send(("quit", 0))
        self.proc.join(10)
        if self.kind == "lowlat":
            for r in (self.req, self.resp):
                r.close()
                r.unlink()
        elif self.kind == "pyring":
            for r in (self.req, self.resp):
                r.buf.release()
                r.shm.close()
                r.shm.unlink()

    # consumer loops (this process); each returns after n messages
    def consume(self, mode: str, n: int) -> None:
        if self.kind == "pyring":
            self.req.sync()
        self.conn.send((mode, n))
        got = 0
        r = self.req
        if self.kind == "lowlat":
            wait = r.wait_readable                  # default BackoffIdle, GIL released
            if mode == "batched":
                pop_batch = r.pop_batch
                while got < n:
                    b = pop_batch(4096)
                    if b:
                        got += len(b)
                    else:
                        wait(5.0)
            else:
                try_pop = r.try_pop
                while got < n:
                    if try_pop() is not None:
                        got += 1
                    else:
                        wait(5.0)
        elif self.kind == "pyring":
            deadline = time.monotonic() + 60
            idle = PyBackoff()
            if mode == "batched":
                while got < n:
                    k = len(r.pop_many(4096))
                    got += k
                    if k:
                        idle.reset()
                    else:
                        idle.idle()
                        if time.monotonic() > deadline:
                            raise RuntimeError(f"pyring stuck: got {got}/{n}, head {r.head}")
            else:
                try_pop = r.try_pop
                while got < n:
                    if try_pop() is not None:
                        got += 1
                        idle.reset()
                    else:
                        idle.idle()
                        if time.monotonic() > deadline:
                            raise RuntimeError(f"pyring stuck: got {got}/{n}, head {r.head}")
        elif self.kind == "faster-fifo":
            if mode == "batched":
                while got < n:
                    got += len(r.get_many(timeout=30, max_messages_to_get=4096))
            else:
                while got < n:
                    r.get(timeout=30)
                    got += 1
        else:
            while got < n:
                r.get(timeout=30)
                got += 1
        assert self.conn.recv() == "done"

    def ping(self):
        """One round trip: the echo child busy-spins; this side waits spin-then-yield (10 polls, then
        sched_yield, then sleeps: lowlat's default BackoffIdle)."""
        if self.kind == "lowlat":
            self.req.push(MSG)
            return self.resp.pop()
        if self.kind == "pyring":
            self.req.try_push(MSG)
            m = self.resp.try_pop()
            spins = 0
            while m is None:
                spins += 1
                if spins > 10:
                    os.sched_yield()
                m = self.resp.try_pop()
            return m
        self.req.put(MSG)
        return self.resp.get(timeout=30)


PEERS = ["lowlat", "pyring", "faster-fifo", "mp.Queue"]
N = {"lowlat": 2_000_000, "pyring": 300_000, "faster-fifo": 100_000, "mp.Queue": 30_000}


@pytest.fixture(scope="module")
def peers():
    ps = {}
    yield lambda k: ps[k] if k in ps else ps.setdefault(k, Peer(k))
    for p in ps.values():
        p.close()
    if RESULTS:
        print("\n\nring benchmark summary (msg/s; RTT p50 in µs)")
        for (what, kind), v in sorted(RESULTS.items()):
            base = RESULTS.get((what, "lowlat"))
            ratio = f"  lowlat/peer = {base / v:6.1f}x" if base and kind != "lowlat" and what != "rtt" else ""
            if what == "rtt" and base and kind != "lowlat":
                ratio = f"  peer/lowlat = {v / base:6.1f}x"
            print(f"  {what:8s} {kind:12s} {v:14,.2f}{ratio}")


@pytest.mark.parametrize("kind", PEERS)
@pytest.mark.parametrize("mode", ["batched", "single"])
def test_throughput(benchmark, peers, kind, mode):
    peer = peers(kind)
    n = N[kind] if mode == "batched" else N[kind] // 2
    benchmark.group = f"ring.throughput.{mode}"
    benchmark.extra_info.update(messages=n, msg_bytes=len(MSG), spinning_side="none",
                                consumer_idle="BackoffIdle()", producer_idle="YieldingIdle when full")
    benchmark.pedantic(peer.consume, args=(mode, n), rounds=5, warmup_rounds=1, iterations=1)
    rate = n / benchmark.stats.stats.median
    benchmark.extra_info["msg_per_s"] = rate
    RESULTS[(mode, kind)] = rate


@pytest.mark.parametrize("kind", PEERS)
def test_rtt(benchmark, peers, kind):
    peer = peers(kind)
    rounds = 20_000 if kind in ("lowlat", "pyring") else 3000
    benchmark.group = "ring.rtt"
    benchmark.extra_info.update(msg_bytes=len(MSG), spinning_side="echo (BusySpinIdle / poll loop)",
                                pinging_side="BackoffIdle() / spin-10-then-yield")
    if kind == "pyring":
        peer.req.sync()
        peer.resp.sync()
    peer.conn.send(("echo", rounds + 200))
    benchmark.pedantic(peer.ping, rounds=rounds, warmup_rounds=200, iterations=1)
    assert peer.conn.recv() == "done"
    RESULTS[("rtt", kind)] = benchmark.stats.stats.median * 1e6
    benchmark.extra_info["rtt_p50_us"] = RESULTS[("rtt", kind)]


# ---- in-process cost per record (no second core involved): scalar vs batch vs the deque model ------

@pytest.mark.parametrize("n", [1, 64, 4096])
@pytest.mark.parametrize("impl", ["scalar", "batch", "deque"])
def test_push_pop_inprocess(benchmark, impl, n):
    """One round = push n 64-byte records, then pop them all.  ``scalar`` = try_push/try_pop per record,
    ``batch`` = one push_batch + one pop_batch, ``deque`` = collections.deque (the model; no framing,
    no shared memory)."""
    from collections import deque

    msgs = [MSG] * n
    ring = SpscRing(1 << 20)
    if impl == "scalar":
        try_push, try_pop = ring.try_push, ring.try_pop

        def run():
            for m in msgs:
                try_push(m)
            for _ in msgs:
                try_pop()
    elif impl == "batch":
        def run():
            ring.push_batch(msgs)
            ring.pop_batch(n)
    else:
        d = deque()

        def run():
            d.extend(msgs)
            for _ in msgs:
                d.popleft()
    benchmark.group = "ring.push_pop"
    benchmark.extra_info["records_per_round"] = n
    benchmark.pedantic(run, rounds=300 if n == 4096 else 3000, warmup_rounds=20, iterations=1)
    benchmark.extra_info["ns_per_record"] = benchmark.stats.stats.median / n * 1e9
