"""Transport benchmarks: request/reply RTT p50/p99 and one-way publish throughput, lowlat adapters next to
the bare client doing the same thing in the same run (bare nats-py, bare pyzmq, bare lowlat._ring), pinned to one
core with ``taskset``/``sched_setaffinity`` and unpinned.

Run::

    python -m pytest benchmarks/bench_transport.py --benchmark-only -s -p no:cacheprovider

The echo/count server always runs in a separate process (started here, 127.0.0.1 only); the client is this
process.  ``pinned``: server ``taskset -c 0`` and client ``sched_setaffinity({0})`` (one core, wake-ups are cheap
but the two sides time-share); ``unpinned``: the scheduler places them (a blocking wake-up across cores costs tens
of µs on this VM).  RTTs go into an HDR histogram (``hdrhistogram``); per-case p50/p99/throughput land in
``benchmark.extra_info`` and in the table printed at the end (``-s``), which is what BENCHMARKS.md records.
At most one spinning thread per case: the shm ``spin`` server (skipped when pinned) or the shm client's bounded
``spin_us=200`` wait for its reply, never both; the bare ring uses ``BackoffIdle`` (spin, yield, then park).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid

import pytest
from _procs import start_ready, stop_proc

hdrh = pytest.importorskip("hdrh.histogram")

RTT_N = int(os.environ.get("LOWLAT_BENCH_RTT_N", "3000"))
RTT_WARM = 300
TP_N = int(os.environ.get("LOWLAT_BENCH_TP_N", "20000"))
RESULTS: list[dict] = []

SERVER = r'''
import asyncio, os, sys
mode, url = sys.argv[1], sys.argv[2]

async def lowlat_server(opts):
    import signal
    from lowlat.transport import connect
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)  # close cleanly (shm rings)
    async with connect(url, **opts) as t:
        await t.serve("bench.echo", lambda m: m.data)
        sub = await t.subscribe("bench.tp", max_pending=1 << 30, max_pending_bytes=1 << 40)
        n = 0
        def count(m):
            return b"%d" % (n + sub.pending)
        await t.serve("bench.count", count)
        async def consume():
            nonlocal n
            async for _ in sub:
                n += 1
        task = asyncio.ensure_future(consume())
        print("ready", flush=True)
        await stop.wait()
        task.cancel()

async def bare_nats():
    import nats
    nc = await nats.connect(url)
    async def echo(m):
        await nc.publish(m.reply, m.data)
    n = 0
    async def tp(m):
        nonlocal n
        n += 1
    async def count(m):
        await nc.publish(m.reply, b"%d" % n)
    await nc.subscribe("bench.echo", cb=echo)
    await nc.subscribe("bench.tp", cb=tp, pending_msgs_limit=1 << 30, pending_bytes_limit=1 << 40)
    await nc.subscribe("bench.count", cb=count)
    await nc.flush()
    print("ready", flush=True)
    await asyncio.Event().wait()

async def bare_zmq():
    import zmq, zmq.asyncio
    ctx = zmq.asyncio.Context.instance()
    s = ctx.socket(zmq.ROUTER)
    s.sndhwm = s.rcvhwm = 100000
    s.bind(url)
    print("ready", flush=True)
    n = 0
    while True:
        f = await s.recv_multipart(copy=False)
        op = f[1].bytes
        if op == b"E":
            await s.send_multipart([f[0], f[2]], copy=False)
        elif op == b"T":
            n += 1
        else:
            await s.send_multipart([f[0], b"%d" % n])

def sync_shm(idle):
    # serve_sync: a plain-Python worker polling its ring, no event loop (the shm latency path)
    import signal, threading
    from lowlat._ring import BackoffIdle
    from lowlat.transport.shm import ShmTransport
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    with ShmTransport(url) as t:
        print("ready", flush=True)
        t.serve_sync("bench.echo", lambda m: m.data, stop=stop, idle=eval(idle) if idle else None)

def bare_ring():
    from lowlat._ring import MpscRing
    req = MpscRing.attach(url + "-req")
    rep = MpscRing.attach(url + "-rep")
    print("ready", flush=True)
    while True:
        m = req.pop()
        if m == b"stop":
            return
        rep.push(m)

if mode == "lowlat":
    asyncio.run(lowlat_server(eval(sys.argv[3]) if len(sys.argv) > 3 else {}))
elif mode == "nats":
    asyncio.run(bare_nats())
elif mode == "zmq":
    asyncio.run(bare_zmq())
elif mode == "ring":
    bare_ring()
elif mode == "shm-sync":
    sync_shm(sys.argv[3] if len(sys.argv) > 3 else "")
'''


def start_server(mode: str, url: str, extra: str | None, pinned: bool) -> subprocess.Popen:
    cmd = [sys.executable, "-c", SERVER, mode, url] + ([extra] if extra else [])
    if pinned:
        cmd = ["taskset", "-c", "0"] + cmd
    return start_ready(cmd, f"bench server {mode}", cwd=os.getcwd())


def stop_server(proc: subprocess.Popen) -> None:
    stop_proc(proc)
    url = next((a for a in proc.args if isinstance(a, str) and a.startswith("shm://")), "")
    if url:  # the bus directory outlives its members by design
        import shutil

        from lowlat.transport.shm import shm_root

        shutil.rmtree(os.path.join(shm_root(), "lowlat-bus-" + url[6:]), ignore_errors=True)


@pytest.fixture(params=["unpinned", "pinned"])
def pin(request):
    pinned = request.param == "pinned"
    old = os.sched_getaffinity(0)
    if pinned:
        os.sched_setaffinity(0, {0})
    yield pinned
    os.sched_setaffinity(0, old)


@pytest.fixture(scope="module")
def nats_url(tmp_path_factory):
    from brokers.nats import find_nats_server, start_nats

    binary = find_nats_server()
    if not binary:
        pytest.skip("nats-server not installed (tests/setup/10-nats.sh)")
    srv = start_nats(binary, tmp_path_factory.mktemp("bench-nats"), jetstream=False)
    yield srv.url
    srv.stop()


def zmq_tcp_url() -> str:
    import socket

    from brokers._util import free_port

    while True:
        p = free_port()
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", p + 1))
            return f"zmq+tcp://127.0.0.1:{p}"
        except OSError:
            continue


def hist():
    return hdrh.HdrHistogram(1, 10_000_000_000, 3)


def record(benchmark, kind: str, transport: str, impl: str, pinned: bool, size: int, **vals) -> None:
    row = {"kind": kind, "transport": transport, "impl": impl, "pinned": pinned, "size": size, **vals}
    RESULTS.append(row)
    benchmark.extra_info.update(row)


# --- client drivers: each returns (rtt histogram) or msgs/s ---

async def rtt_lowlat(url: str, opts: dict, size: int) -> hdrh.HdrHistogram:
    from lowlat.transport import connect

    h = hist()
    payload = os.urandom(size)
    async with connect(url, **opts) as t:
        req = t.request
        for _ in range(RTT_WARM):
            await req("bench.echo", payload, timeout=5)
        pc = time.perf_counter_ns
        for _ in range(RTT_N):
            t0 = pc()
            await req("bench.echo", payload, timeout=5)
            h.record_value(pc() - t0)
    return h


async def tp_lowlat(url: str, opts: dict, size: int) -> float:
    from lowlat.transport import connect

    payload = os.urandom(size)
    async with connect(url, **opts) as t:
        await t.request("bench.count", b"", timeout=5)
        base = int(bytes((await t.request("bench.count", b"", timeout=5)).data))
        pub = t.publish
        t0 = time.perf_counter()
        for _ in range(TP_N):
            await pub("bench.tp", payload)
        while True:
            n = int(bytes((await t.request("bench.count", b"", timeout=30)).data)) - base
            if n >= TP_N:
                break
            await asyncio.sleep(0.001)
        return TP_N / (time.perf_counter() - t0)


async def rtt_bare_nats(url: str, size: int):
    import nats

    h = hist()
    payload = os.urandom(size)
    nc = await nats.connect(url)
    try:
        for _ in range(RTT_WARM):
            await nc.request("bench.echo", payload, timeout=5)
        pc = time.perf_counter_ns
        for _ in range(RTT_N):
            t0 = pc()
            await nc.request("bench.echo", payload, timeout=5)
            h.record_value(pc() - t0)
    finally:
        await nc.close()
    return h


async def tp_bare_nats(url: str, size: int) -> float:
    import nats

    payload = os.urandom(size)
    nc = await nats.connect(url)
    try:
        base = int((await nc.request("bench.count", b"", timeout=5)).data)
        t0 = time.perf_counter()
        for _ in range(TP_N):
            await nc.publish("bench.tp", payload)
        while True:
            n = int((await nc.request("bench.count", b"", timeout=30)).data) - base
            if n >= TP_N:
                break
            await asyncio.sleep(0.001)
        return TP_N / (time.perf_counter() - t0)
    finally:
        await nc.close()


async def rtt_bare_zmq(addr: str, size: int):
    import zmq
    import zmq.asyncio

    h = hist()
    payload = os.urandom(size)
    s = zmq.asyncio.Context.instance().socket(zmq.DEALER)
    s.linger = 0
    s.connect(addr)
    try:
        for _ in range(RTT_WARM):
            await s.send_multipart([b"E", payload])
            await s.recv_multipart(copy=False)
        pc = time.perf_counter_ns
        for _ in range(RTT_N):
            t0 = pc()
            await s.send_multipart([b"E", payload], copy=False)
            await s.recv_multipart(copy=False)
            h.record_value(pc() - t0)
    finally:
        s.close()
    return h


async def tp_bare_zmq(addr: str, size: int) -> float:
    import zmq
    import zmq.asyncio

    payload = os.urandom(size)
    s = zmq.asyncio.Context.instance().socket(zmq.DEALER)
    s.linger = 0
    s.sndhwm = 100000
    s.connect(addr)
    try:
        await s.send_multipart([b"C"])
        base = int((await s.recv_multipart())[0])
        t0 = time.perf_counter()
        for _ in range(TP_N):
            await s.send_multipart([b"T", payload], copy=False)
        while True:
            await s.send_multipart([b"C"])
            n = int((await s.recv_multipart())[0]) - base
            if n >= TP_N:
                break
            await asyncio.sleep(0.001)
        return TP_N / (time.perf_counter() - t0)
    finally:
        s.close()


def rtt_sync_shm(url: str, size: int, idle) -> hdrh.HdrHistogram:
    from lowlat.transport.shm import ShmTransport

    h = hist()
    payload = os.urandom(size)
    with ShmTransport(url) as t:
        req = t.request_sync
        for _ in range(RTT_WARM):
            req("bench.echo", payload, timeout=5, idle=idle)
        pc = time.perf_counter_ns
        for _ in range(RTT_N):
            t0 = pc()
            req("bench.echo", payload, timeout=5, idle=idle)
            h.record_value(pc() - t0)
    return h


def rtt_bare_ring(name: str, size: int):
    from lowlat._ring import MpscRing

    h = hist()
    payload = os.urandom(size)
    req = MpscRing.attach(name + "-req")
    rep = MpscRing.attach(name + "-rep")
    for _ in range(RTT_WARM):
        req.push(payload)
        rep.pop()
    pc = time.perf_counter_ns
    for _ in range(RTT_N):
        t0 = pc()
        req.push(payload)
        rep.pop()
        h.record_value(pc() - t0)
    req.push(b"stop")
    return h


def measure(benchmark, fn):
    """Run one whole measurement under pytest-benchmark (its time = the whole run); return fn's result."""
    return benchmark.pedantic(fn, rounds=1, iterations=1, warmup_rounds=0)


def finish_rtt(benchmark, h, transport, impl, pinned, size):
    record(benchmark, "rtt", transport, impl, pinned, size, p50_us=h.get_value_at_percentile(50) / 1e3,
           p99_us=h.get_value_at_percentile(99) / 1e3, mean_us=h.get_mean_value() / 1e3)


SIZES = [64, 256]


# --- NATS ---

@pytest.mark.benchmark(group="transport.rtt.nats", disable_gc=True)
@pytest.mark.parametrize("impl", ["bare", "lowlat"])
@pytest.mark.parametrize("size", SIZES)
def test_rtt_nats(benchmark, nats_url, pin, impl, size):
    proc = start_server("nats" if impl == "bare" else "lowlat", nats_url, None, pin)
    try:
        coro = rtt_bare_nats(nats_url, size) if impl == "bare" else rtt_lowlat(nats_url, {}, size)
        h = measure(benchmark, lambda: asyncio.run(coro))
    finally:
        stop_server(proc)
    finish_rtt(benchmark, h, "nats", impl, pin, size)


@pytest.mark.benchmark(group="transport.throughput.nats", disable_gc=True)
@pytest.mark.parametrize("impl", ["bare", "lowlat"])
@pytest.mark.parametrize("size", SIZES)
def test_throughput_nats(benchmark, nats_url, pin, impl, size):
    proc = start_server("nats" if impl == "bare" else "lowlat", nats_url, None, pin)
    try:
        coro = tp_bare_nats(nats_url, size) if impl == "bare" else tp_lowlat(nats_url, {}, size)
        rate = measure(benchmark, lambda: asyncio.run(coro))
    finally:
        stop_server(proc)
    record(benchmark, "tp", "nats", impl, pin, size, msgs_per_s=rate)


# --- ZeroMQ (tcp and ipc) ---

def _zmq_urls(kind: str, tmp_path) -> tuple[str, str]:
    """(lowlat URL, bare ROUTER address)."""
    if kind == "tcp":
        u = zmq_tcp_url()
        from lowlat.transport.zmq import zmq_endpoints

        return u, zmq_endpoints(u)[1]
    p = f"{tmp_path}/z{uuid.uuid4().hex[:6]}"
    return f"zmq+ipc://{p}", f"ipc://{p}.rr"


@pytest.mark.benchmark(group="transport.rtt.zmq", disable_gc=True)
@pytest.mark.parametrize("impl", ["bare", "lowlat"])
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("kind", ["tcp", "ipc"])
def test_rtt_zmq(benchmark, tmp_path, pin, kind, impl, size):
    url, addr = _zmq_urls(kind, tmp_path)
    if impl == "bare":
        proc = start_server("zmq", addr, None, pin)
        coro = rtt_bare_zmq(addr, size)
    else:
        proc = start_server("lowlat", url, "{'bind': True}", pin)
        coro = rtt_lowlat(url, {}, size)
    try:
        h = measure(benchmark, lambda: asyncio.run(coro))
    finally:
        stop_server(proc)
    finish_rtt(benchmark, h, f"zmq+{kind}", impl, pin, size)


async def rtt_zmq_interleaved(url: str, addr: str, size: int, block: int = 100):
    """Bare pyzmq and the lowlat adapter measured in alternating blocks of ``block`` requests within one run
    (servers for both are up), so load drift on a shared machine hits both equally.  Returns (bare, lowlat)."""
    import zmq
    import zmq.asyncio

    from lowlat.transport import connect

    hb, hl = hist(), hist()
    payload = os.urandom(size)
    s = zmq.asyncio.Context.instance().socket(zmq.DEALER)
    s.linger = 0
    s.connect(addr)
    pc = time.perf_counter_ns
    try:
        async with connect(url) as t:
            req = t.request

            async def bare_block(n, h):
                for _ in range(n):
                    t0 = pc()
                    await s.send_multipart([b"E", payload], copy=False)
                    await s.recv_multipart(copy=False)
                    if h is not None:
                        h.record_value(pc() - t0)

            async def lowlat_block(n, h):
                for _ in range(n):
                    t0 = pc()
                    await req("bench.echo", payload, timeout=5)
                    if h is not None:
                        h.record_value(pc() - t0)

            await bare_block(RTT_WARM, None)
            await lowlat_block(RTT_WARM, None)
            for i in range(max(1, RTT_N // block)):
                order = (bare_block, lowlat_block) if i % 2 == 0 else (lowlat_block, bare_block)
                for f in order:
                    await f(block, hb if f is bare_block else hl)
    finally:
        s.close()
    return hb, hl


@pytest.mark.benchmark(group="transport.rtt.zmq", disable_gc=True)
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("kind", ["tcp", "ipc"])
def test_rtt_zmq_interleaved(benchmark, tmp_path, pin, kind, size):
    """Same echo as test_rtt_zmq, bare and lowlat alternating in blocks of 100 in one client run."""
    url, _ = _zmq_urls(kind, tmp_path)
    _, addr = _zmq_urls(kind, tmp_path)
    pb = start_server("zmq", addr, None, pin)
    pl = start_server("lowlat", url, "{'bind': True}", pin)
    try:
        hb, hl = measure(benchmark, lambda: asyncio.run(rtt_zmq_interleaved(url, addr, size)))
    finally:
        stop_server(pb)
        stop_server(pl)
    finish_rtt(benchmark, hb, f"zmq+{kind} (interleaved)", "bare", pin, size)
    finish_rtt(benchmark, hl, f"zmq+{kind} (interleaved)", "lowlat", pin, size)


@pytest.mark.benchmark(group="transport.throughput.zmq", disable_gc=True)
@pytest.mark.parametrize("impl", ["bare", "lowlat"])
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("kind", ["tcp", "ipc"])
def test_throughput_zmq(benchmark, tmp_path, pin, kind, impl, size):
    url, addr = _zmq_urls(kind, tmp_path)
    if impl == "bare":
        proc = start_server("zmq", addr, None, pin)
        coro = tp_bare_zmq(addr, size)
    else:
        proc = start_server("lowlat", url, "{'bind': True}", pin)
        coro = tp_lowlat(url, {}, size)
    try:
        rate = measure(benchmark, lambda: asyncio.run(coro))
    finally:
        stop_server(proc)
    record(benchmark, "tp", f"zmq+{kind}", impl, pin, size, msgs_per_s=rate)


# --- embedded: shm across processes (thread wake-up / spinning server) and the bare ring floor; inproc ---

@pytest.mark.benchmark(group="transport.rtt.shm", disable_gc=True)
@pytest.mark.parametrize("impl", ["bare-ring", "lowlat-sync", "lowlat-async-client-sync-server", "lowlat",
                                  "lowlat-spin-server", "lowlat-spin-client"])
@pytest.mark.parametrize("size", SIZES)
def test_rtt_shm(benchmark, pin, impl, size):
    """``lowlat-sync``: ``request_sync`` against ``serve_sync`` in another process, both with the default
    ``sync_idle()`` (poll ≈200 µs after the last message, then park 50 µs..1 ms; each side polls only while the
    exchange is active, nothing spins once it stops); pinned to one core both use ``BackoffIdle()``.
    ``lowlat-async-client-sync-server``: the asyncio ``request()`` (doorbell wake-up) against ``serve_sync``."""
    if impl == "lowlat-spin-server" and pin:
        pytest.skip("a spinning server pinned to the client's core starves the client (time slices)")
    if impl in ("lowlat-sync", "lowlat-async-client-sync-server"):
        name = f"bench{uuid.uuid4().hex[:6]}"
        url = f"shm://{name}"
        # pinned (one core): BackoffIdle() on both sides, as documented (a polling waiter would hold the core)
        proc = start_server("shm-sync", url, "BackoffIdle()" if pin else None, pin)
        try:
            if impl == "lowlat-sync":
                from lowlat._ring import BackoffIdle

                h = measure(benchmark, lambda: rtt_sync_shm(url, size, BackoffIdle() if pin else None))
            else:  # no client spin: the server already polls (one poller at most)
                h = measure(benchmark, lambda: asyncio.run(rtt_lowlat(url, {}, size)))
        finally:
            stop_server(proc)
        finish_rtt(benchmark, h, "shm", impl, pin, size)
        return
    name = f"bench{uuid.uuid4().hex[:6]}"
    if impl == "bare-ring":
        from lowlat._ring import MpscRing

        req = MpscRing(1 << 20, name=name + "-req")
        rep = MpscRing(1 << 20, name=name + "-rep")
        proc = start_server("ring", name, None, pin)
        try:
            h = measure(benchmark, lambda: rtt_bare_ring(name, size))
            proc.wait(5)
        finally:
            stop_server(proc)
            for r in (req, rep):
                r.unlink()
                r.close()
    else:
        extra = "{'wait': 'spin'}" if impl == "lowlat-spin-server" else None
        proc = start_server("lowlat", f"shm://{name}", extra, pin)
        try:
            copts = {"spin_us": 200} if impl == "lowlat-spin-client" else {}
            h = measure(benchmark, lambda: asyncio.run(rtt_lowlat(f"shm://{name}", copts, size)))
        finally:
            stop_server(proc)
    finish_rtt(benchmark, h, "shm", impl, pin, size)


@pytest.mark.benchmark(group="transport.throughput.shm", disable_gc=True)
@pytest.mark.parametrize("size", SIZES)
def test_throughput_shm(benchmark, pin, size):
    name = f"bench{uuid.uuid4().hex[:6]}"
    proc = start_server("lowlat", f"shm://{name}", None, pin)
    try:
        rate = measure(benchmark, lambda: asyncio.run(tp_lowlat(f"shm://{name}", {}, size)))
    finally:
        stop_server(proc)
    record(benchmark, "tp", "shm", "lowlat", pin, size, msgs_per_s=rate)


@pytest.mark.benchmark(group="transport.rtt.inproc", disable_gc=True)
@pytest.mark.parametrize("size", SIZES)
def test_rtt_inproc(benchmark, size):
    async def run():
        from lowlat.transport import connect

        url = f"inproc://bench-{uuid.uuid4().hex[:6]}"
        async with connect(url) as srv:
            await srv.serve("bench.echo", lambda m: m.data)
            return await rtt_lowlat(url, {}, size)

    h = measure(benchmark, lambda: asyncio.run(run()))
    finish_rtt(benchmark, h, "inproc", "lowlat", False, size)


@pytest.fixture(scope="module", autouse=True)
def _print_table():
    yield
    if not RESULTS:
        return
    print("\n\n| transport | case | size | pinned | impl | p50 µs | p99 µs | msgs/s | vs bare |")
    print("|---|---|---|---|---|---|---|---|---|")
    bare = {}
    for r in RESULTS:
        if r["impl"].startswith("bare"):
            bare[(r["kind"], r["transport"], r["size"], r["pinned"])] = r
    for r in RESULTS:
        b = bare.get((r["kind"], r["transport"], r["size"], r["pinned"]))
        if r["kind"] == "rtt":
            ratio = f"{r['p50_us'] / b['p50_us']:.2f}x p50" if b and b is not r else ""
            print(f"| {r['transport']} | rtt | {r['size']} | {r['pinned']} | {r['impl']} | {r['p50_us']:.1f} | "
                  f"{r['p99_us']:.1f} | | {ratio} |")
        else:
            ratio = f"{r['msgs_per_s'] / b['msgs_per_s']:.2f}x rate" if b and b is not r else ""
            print(f"| {r['transport']} | publish | {r['size']} | {r['pinned']} | {r['impl']} | | | "
                  f"{r['msgs_per_s']:,.0f} | {ratio} |")
