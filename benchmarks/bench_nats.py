"""Core NATS: the server's own ceiling, nats-py, lowlat's compiled client and the validator service, in ONE run
against ONE nats-server (started like the tests start it, ``tests/brokers/nats.start_nats``).

Rows (every payload is a 100-byte encoded Order, the validator's input; throughput rows are the best of
``REPEATS`` (3) rounds of ``TP_N`` (1 M; nats-py a quarter of that) messages, latency rows the p50/p99 of ``RTT_N`` (5000) sequential round trips after 500 warm-up ones):

1. **raw floor**: a minimal blocking-socket client in this file.  ``PING``/``PONG`` round trip p50 (the
   latency floor), a request/reply p50 through a raw responder process, and pipelined ``PUB``→``MSG``: one socket
   ``sendall``\\s pre-built ``PUB`` frames while another counts the ``MSG`` bytes the server delivers (the
   throughput floor; two threads that block in the kernel, no spinning).
2. **nats-py** on asyncio and on uvloop: request/reply p50 (a nats-py responder process on the same loop kind)
   and pipelined publish→subscribe (publisher and counting subscriber on two connections in this process).
3. **lowlat** (``client="lowlat"``, the compiled protocol) on asyncio and on uvloop: the same two measurements
   (responder: ``serve()``; subscriber: ``next_batch``).  Goals: throughput ≥ 70 % of the raw floor,
   request/reply p50 ≤ 1.3× raw ``PING``/``PONG`` p50.
4. **validator service** (compiled ``ValidateStage``) in its own process, on each client: pipelined orders
   answered per second (the driver keeps a window of 16 k orders in flight, every answer counted) and the
   sequential round-trip p50.  Goals: ≥ 150 k orders/s, p50 ≤ 1.5× raw ``PING``/``PONG`` p50.

This process is pinned to core 0, every peer process to core 1 (``taskset``), the server floats.  Every
measurement has a deadline (``DEADLINE`` s) so a stall fails the row instead of hanging the run.

Run::

    python -m pytest benchmarks/bench_nats.py --benchmark-only -s -p no:cacheprovider

The table printed at the end (ratios against the raw floor of the same run) is what BENCHMARKS.md records;
``cpu ns/msg`` is this process's CPU time (user + system, every thread, both connections) per message of the
throughput row: the client's own cost, which the machine's load does not inflate the way it does wall time.
"""

from __future__ import annotations

import asyncio
import gc
import os
import shutil
import socket
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from _nats_peers import bench_nats_server, natspy_throughput
from _services_util import Proc
from _timing import timed_requests

RTT_N = int(os.environ.get("LOWLAT_BENCH_RTT_N", "5000"))
TP_N = int(os.environ.get("LOWLAT_BENCH_TP_N", "1000000"))
VAL_N = int(os.environ.get("LOWLAT_BENCH_VAL_N", "300000"))
DEADLINE = float(os.environ.get("LOWLAT_BENCH_DEADLINE", "120"))
WINDOW = 16384
REPEATS = int(os.environ.get("LOWLAT_BENCH_REPEATS", "3"))   # throughput rows: best of (the machine is shared)
RESULTS: dict[str, dict] = {}
PIN = bool(shutil.which("taskset")) and (os.cpu_count() or 1) >= 2
LOOPS = ["asyncio", "uvloop"]

# one responder per client/loop: prints "ready", answers bench.rr with the request's payload
RESPONDER = r'''
import asyncio, socket, sys
url, client, loop_kind = sys.argv[1], sys.argv[2], sys.argv[3]

def raw():
    host, port = url.split("://", 1)[1].rsplit(":", 1)
    s = socket.create_connection((host, int(port)))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    f = s.makefile("rb")
    f.readline()  # INFO
    s.sendall(b'CONNECT {"verbose":false,"pedantic":false}\r\nSUB bench.rr 1\r\nPING\r\n')
    while f.readline() != b"PONG\r\n":
        pass
    print("ready", flush=True)
    while True:
        line = f.readline()
        if not line:
            return
        if line.startswith(b"MSG "):
            parts = line.split()
            n = int(parts[-1])
            data = f.read(n + 2)
            s.sendall(b"PUB %s %d\r\n%s" % (parts[3], n, data))
        elif line == b"PING\r\n":
            s.sendall(b"PONG\r\n")

async def nats_py():
    import nats
    nc = await nats.connect(url)
    async def echo(m):
        await nc.publish(m.reply, m.data)
    await nc.subscribe("bench.rr", cb=echo)
    await nc.flush()
    print("ready", flush=True)
    await asyncio.Event().wait()

async def ours():
    from lowlat.transport import connect
    t = connect(url, client="lowlat", jetstream=False)
    await t.connect()
    await t.serve("bench.rr", lambda m: bytes(m.data))
    await t.flush()
    print("ready", flush=True)
    await asyncio.Event().wait()

if client == "raw":
    raw()
else:
    coro = nats_py() if client == "nats-py" else ours()
    if loop_kind == "uvloop":
        import uvloop
        uvloop.run(coro)
    else:
        asyncio.run(coro)
'''

# the validator service (compiled stage) on the given client and loop
VALIDATOR = r'''
import asyncio, sys
url, client, loop_kind = sys.argv[1], sys.argv[2], sys.argv[3]
from lowlat.services import ServiceConfig
from lowlat.services.runtime import run_services, setup_logging
from lowlat.services.validator import ValidatorService
from lowlat.transport import connect

async def main():
    cfg = ServiceConfig(transport=url, queue="", batch_max=4096, max_pending=1 << 20, log_level="WARNING")
    setup_logging("WARNING")
    opts = {"client": client}
    if client == "lowlat":
        opts["jetstream"] = False
    t = connect(url, **opts)
    await t.connect()
    await run_services(cfg, [ValidatorService(cfg)], transport=t, on_ready=lambda: print("ready", flush=True))

if loop_kind == "uvloop":
    import uvloop
    uvloop.run(main())
else:
    asyncio.run(main())
'''


def _orders(n: int = 256) -> list[bytes]:
    from lowlat.services import ServiceConfig
    from lowlat.services.loadgen import OrderFactory

    f = OrderFactory(ServiceConfig(reject_ratio=0.05))
    now = time.time_ns()
    return [f.order(i, now) for i in range(n)]


PAYLOADS = _orders()


@pytest.fixture(scope="module")
def srv(request, tmp_path_factory):
    return bench_nats_server(request, tmp_path_factory)


@pytest.fixture(scope="module", autouse=True)
def pinned():
    """This process on core 0 and no cyclic GC pauses inside the measurements (the same for every row)."""
    if PIN:
        os.sched_setaffinity(0, {0})
    gc.collect()
    gc.disable()
    yield
    gc.enable()
    if PIN:
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))


def _peer(script: str, *args: str) -> Proc:
    p = Proc((["taskset", "-c", "1"] if PIN else []) + [sys.executable, "-c", script, *args])
    p.wait_for("ready", timeout=30, line=True)
    return p


def _stop(p: Proc) -> None:
    p.terminate()
    try:
        p.wait(10)
    finally:
        p.kill()


def _run(coro, loop_kind: str):
    """Run ``coro`` on a fresh asyncio or uvloop loop, failing after DEADLINE s."""
    bounded = asyncio.wait_for(coro, DEADLINE)
    if loop_kind == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        return uvloop.run(bounded)
    return asyncio.run(bounded)


def _p50_us(a: np.ndarray) -> float:
    return float(np.percentile(a, 50)) / 1e3


def _p99_us(a: np.ndarray) -> float:
    return float(np.percentile(a, 99)) / 1e3


# --- the raw floor --------------------------------------------------------------------------------------------
class RawClient:
    """The smallest correct core-NATS client: a blocking socket, CONNECT, and line/payload reads."""

    def __init__(self, url: str) -> None:
        host, port = url.split("://", 1)[1].rsplit(":", 1)
        self.s = socket.create_connection((host, int(port)), timeout=DEADLINE)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.f = self.s.makefile("rb")
        if not self.f.readline().startswith(b"INFO "):
            raise RuntimeError("no INFO from the server")
        self.s.sendall(b'CONNECT {"verbose":false,"pedantic":false,"echo":false}\r\nPING\r\n')
        self.expect_pong()

    def expect_pong(self) -> None:
        while (line := self.f.readline()) != b"PONG\r\n":
            if not line:
                raise RuntimeError("server closed the connection")
            if line == b"PING\r\n":
                self.s.sendall(b"PONG\r\n")

    def ping_rtts(self, n: int) -> np.ndarray:
        out = np.empty(n, dtype=np.int64)
        pc, send, readline = time.perf_counter_ns, self.s.sendall, self.f.readline
        for i in range(n):
            t0 = pc()
            send(b"PING\r\n")
            if readline() != b"PONG\r\n":
                raise RuntimeError("expected PONG")
            out[i] = pc() - t0
        return out

    def request_rtts(self, subject: bytes, payloads: list[bytes], n: int) -> np.ndarray:
        self.s.sendall(b"SUB _INBOX.raw.* 9\r\nPING\r\n")
        self.expect_pong()
        out = np.empty(n, dtype=np.int64)
        pc, send, readline, read = time.perf_counter_ns, self.s.sendall, self.f.readline, self.f.read
        k = len(payloads)
        frames = [b"PUB %s _INBOX.raw.%d %d\r\n%s\r\n" % (subject, i, len(p), p) for i, p in enumerate(payloads)]
        for i in range(n):
            t0 = pc()
            send(frames[i % k])
            while True:
                line = readline()
                if line.startswith(b"MSG "):
                    read(int(line.rsplit(b" ", 1)[1]) + 2)
                    break
                if line == b"PING\r\n":
                    send(b"PONG\r\n")
                elif not line:
                    raise RuntimeError("server closed the connection")
            out[i] = pc() - t0
        return out

    def close(self) -> None:
        self.f.close()
        self.s.close()


def raw_throughput(url: str, payloads: list[bytes], n: int) -> float:
    """Pipelined PUB frames from one socket, MSG bytes counted on another: messages/s end to end."""
    sub = RawClient(url)
    pub = RawClient(url)
    sub.s.sendall(b"SUB bench.tp.raw 1\r\nPING\r\n")
    sub.expect_pong()
    k = len(payloads)
    chunk = b"".join(b"PUB bench.tp.raw %d\r\n%s\r\n" % (len(p), p) for p in payloads)  # k messages
    reps = n // k
    expect = sum(len(b"MSG bench.tp.raw 1 %d\r\n%s\r\n" % (len(p), p)) for p in payloads) * reps
    got = [0]
    err: list[BaseException] = []

    def count() -> None:
        buf = bytearray(1 << 20)
        s = sub.s
        # nothing was published before the PONG, so the buffered reader holds nothing of the stream
        try:
            while got[0] < expect:
                r = s.recv_into(buf)
                if r == 0:
                    raise RuntimeError("server closed the subscriber")
                got[0] += r
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            err.append(e)

    th = threading.Thread(target=count, daemon=True)
    t0 = time.perf_counter()
    th.start()
    big = chunk * 16
    for _ in range(reps // 16):
        pub.s.sendall(big)
    for _ in range(reps % 16):
        pub.s.sendall(chunk)
    th.join(DEADLINE)
    dt = time.perf_counter() - t0
    pub.close()
    sub.close()
    if th.is_alive() or err or got[0] < expect:
        raise RuntimeError(f"raw subscriber got {got[0]} of {expect} bytes ({err})")
    return reps * k / dt


def test_raw_floor(benchmark, srv):
    state: dict = {}

    def run():
        c = RawClient(srv.url)
        c.ping_rtts(500)
        state["ping"] = c.ping_rtts(RTT_N)
        c.close()

    benchmark.pedantic(run, rounds=1, iterations=1)
    p = _peer(RESPONDER, srv.url, "raw", "-")
    try:
        c = RawClient(srv.url)
        c.request_rtts(b"bench.rr", PAYLOADS, 500)
        rr = c.request_rtts(b"bench.rr", PAYLOADS, RTT_N)
        c.close()
    finally:
        _stop(p)
    RESULTS.setdefault("raw", {}).update(ping_p50=_p50_us(state["ping"]), ping_p99=_p99_us(state["ping"]),
                                         rr_p50=_p50_us(rr), rr_p99=_p99_us(rr))
    benchmark.extra_info.update(RESULTS["raw"])


# --- nats-py ---------------------------------------------------------------------------------------------------
async def natspy_rtts(url: str, n: int) -> np.ndarray:
    import nats

    nc = await nats.connect(url)
    try:
        return await timed_requests(nc.request, "bench.rr", PAYLOADS, n, warmup=500)
    finally:
        await nc.close()


async def natspy_throughput_(url: str, n: int) -> float:
    return await natspy_throughput(url, PAYLOADS, n)


# --- lowlat's compiled client ------------------------------------------------------------------------------------
def _ours(url: str):
    from lowlat.transport import connect

    return connect(url, client="lowlat", jetstream=False)


async def ours_rtts(url: str, n: int) -> np.ndarray:
    t = _ours(url)
    await t.connect()
    try:
        return await timed_requests(t.request, "bench.rr", PAYLOADS, n, warmup=500)
    finally:
        await t.close()


async def ours_throughput(url: str, n: int) -> float:
    ts, tp = _ours(url), _ours(url)
    await ts.connect()
    await tp.connect()
    k = len(PAYLOADS)
    n = n // k * k
    sub = await ts.subscribe("bench.tp", max_pending=n + 1, max_pending_bytes=1 << 30)
    got = 0

    async def count() -> None:
        nonlocal got
        while got < n:
            got += (await sub.next_batch(65536, timeout=1.0)).n

    counter = asyncio.ensure_future(count())
    t0 = time.perf_counter()
    for r in range(n // k):
        await tp.publish_batch("bench.tp", PAYLOADS)
        if r % 16 == 15:   # 4096 messages per loop turn, as the raw floor's sendall and nats-py's loop
            await asyncio.sleep(0)
    await counter
    dt = time.perf_counter() - t0
    await tp.close()
    await ts.close()
    return n / dt


@pytest.mark.parametrize("loop_kind", LOOPS)
@pytest.mark.parametrize("client", ["nats-py", "lowlat"])
def test_request_reply(benchmark, srv, client, loop_kind):
    if loop_kind == "uvloop":
        pytest.importorskip("uvloop")
    p = _peer(RESPONDER, srv.url, client, loop_kind)
    try:
        state: dict = {}

        def run():
            state["rtts"] = _run((natspy_rtts if client == "nats-py" else ours_rtts)(srv.url, RTT_N), loop_kind)

        benchmark.pedantic(run, rounds=1, iterations=1)
    finally:
        _stop(p)
    row = RESULTS.setdefault(f"{client} {loop_kind}", {})
    row.update(rr_p50=_p50_us(state["rtts"]), rr_p99=_p99_us(state["rtts"]))
    benchmark.extra_info.update(row)


def test_throughput(benchmark, srv):
    """Pipelined publish->subscribe, every client in turn, REPEATS rounds (so a change in the machine's load
    hits all of them alike); each keeps its best round."""
    rows = [("raw", None, None)] + [(f"{c} {lk}", c, lk) for c in ("nats-py", "lowlat") for lk in LOOPS]
    try:
        import uvloop  # noqa: F401
    except ImportError:
        rows = [r for r in rows if r[2] != "uvloop"]
    best: dict[str, float] = {}
    cpu: dict[str, float] = {}

    def run():
        for _ in range(REPEATS):
            for name, client, loop_kind in rows:
                c0 = time.process_time()   # this process's CPU (user + system), all its threads
                if client is None:
                    n = TP_N
                    v = raw_throughput(srv.url, PAYLOADS, n)
                else:
                    # nats-py is ~10x slower: a quarter of the messages still runs it for seconds
                    fn, n = (natspy_throughput_, TP_N // 4) if client == "nats-py" else (ours_throughput, TP_N)
                    v = _run(fn(srv.url, n), loop_kind)
                c = (time.process_time() - c0) / n * 1e9
                best[name] = max(best.get(name, 0.0), v)
                cpu[name] = min(cpu.get(name, float("inf")), c)

    benchmark.pedantic(run, rounds=1, iterations=1)
    for name, v in best.items():
        RESULTS.setdefault(name, {}).update(tp=v, cpu_ns=cpu[name])
    benchmark.extra_info.update(best)


# --- the validator service ----------------------------------------------------------------------------------------
async def validator_pipelined(url: str, n: int) -> tuple[float, int]:
    """Publish ``n`` orders with a reply subject, keeping at most WINDOW unanswered; (orders/s, answered)."""
    t = _ours(url)
    await t.connect()
    sub = await t.subscribe("bench.v.answers", max_pending=1 << 20, max_pending_bytes=1 << 30)
    await t.flush()
    k = len(PAYLOADS)
    for i in range(2000):   # warm-up: the validator's first batches (allocations, symbol tables)
        t.publish_nowait("orders.in", PAYLOADS[i % k], reply="bench.v.warm")
    await t.flush()
    answered = sent = 0
    pub = t.publish_nowait
    t0 = time.perf_counter()
    while answered < n:
        room = min(WINDOW - (sent - answered), n - sent)
        for i in range(sent, sent + room):
            pub("orders.in", PAYLOADS[i % k], reply="bench.v.answers")
        sent += room
        answered += (await sub.next_batch(65536, timeout=5.0)).n
    dt = time.perf_counter() - t0
    await t.close()
    return n / dt, answered


async def validator_rtts(url: str, n: int) -> np.ndarray:
    t = _ours(url)
    await t.connect()
    try:
        return await timed_requests(t.request, "orders.in", PAYLOADS, n, warmup=500)
    finally:
        await t.close()


@pytest.mark.parametrize("client,loop_kind", [("nats-py", "asyncio"), ("lowlat", "asyncio"), ("lowlat", "uvloop")])
def test_validator(benchmark, srv, client, loop_kind):
    """The validator process runs on ``client`` and ``loop_kind`` (``lowlat serve`` picks uvloop when installed);
    the driver is lowlat's client on asyncio in every row."""
    if loop_kind == "uvloop":
        pytest.importorskip("uvloop")
    v = _peer(VALIDATOR, srv.url, client, loop_kind)
    try:
        state: dict = {}

        def run():
            runs = [_run(validator_pipelined(srv.url, VAL_N), "asyncio") for _ in range(REPEATS)]
            state["tp"] = max(r[0] for r in runs)
            state["answered"] = min(r[1] for r in runs)

        benchmark.pedantic(run, rounds=1, iterations=1)
        rtts = _run(validator_rtts(srv.url, RTT_N), "asyncio")
    finally:
        _stop(v)
    row = {"rr_p50": _p50_us(rtts), "rr_p99": _p99_us(rtts), "tp": state["tp"], "answered": state["answered"]}
    RESULTS[f"validator {client} {loop_kind}"] = row
    benchmark.extra_info.update(row)
    assert state["answered"] >= VAL_N  # every order answered (correctness, not speed)


@pytest.fixture(scope="module", autouse=True)
def table():
    """Print what BENCHMARKS.md records (run with -s) once the module's rows are in."""
    yield
    raw = RESULTS.get("raw")
    if not raw:
        return
    ping = raw["ping_p50"]
    tp0 = raw.get("tp", float("nan"))

    def cells(r: dict) -> str:
        rr, p99, tp = r.get("rr_p50", float("nan")), r.get("rr_p99", float("nan")), r.get("tp", float("nan"))
        return (f"{rr:16.1f} {p99:8.1f} {rr / ping:10.2f} {tp:15,.0f} {tp / tp0:8.2f} "
                f"{r.get('cpu_ns', float('nan')):12.0f}")

    print(f"\n\n== core NATS, one nats-server, payload {len(PAYLOADS[0])} B, pinned={PIN} ==")
    print(f"{'row':<24} {'req/reply p50 us':>16} {'p99 us':>8} {'x raw PING':>10} {'pub->sub msg/s':>15} "
          f"{'x raw tp':>8} {'cpu ns/msg':>12}")
    print(f"{'raw PING/PONG':<24} {ping:16.1f} {raw['ping_p99']:8.1f} {1.0:10.2f}")
    print(f"{'raw request/reply':<24} {cells(raw)}")
    for name, r in RESULTS.items():
        if name != "raw":
            print(f"{name:<24} {cells(r)}")
    print("goals: lowlat pub->sub >= 0.70 x raw tp, lowlat req/reply p50 <= 1.3 x raw PING; validator >= 150k/s, "
          "p50 <= 1.5 x raw PING")
