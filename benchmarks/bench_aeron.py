"""Aeron ping-pong from Python: IPC and UDP-loopback round trips through a real aeronmd 1.11.3.

Run::

    python -m pytest benchmarks/bench_aeron.py --benchmark-only -s -p no:cacheprovider

Two implementations in the same run: ``bare`` = lowlat._aeron (offer + poll, payload echoed as received, no
framing) and ``lowlat`` = ``AeronTransport.request`` against ``AeronTransport.serve`` (asyncio, in-band subject
frame, reply stream + correlation id).  The pong side is a separate Python process.  RTTs go into an HDR histogram.

Placements (at most one busy-spinning thread, as the 2-core machine is shared):

- ``1core``: ping, pong and (for UDP) the media driver all pinned to core 0, every side using the *yield* idle
  strategy (each wait hands the core to the next side): one core busy during the run.
- ``2core``: ping *busy-spins* on core 1; pong (and the driver, ``yielding``) on core 0 with the yield idle strategy.
- ``2core-drvspin`` (UDP only): the driver *busy-spins* (``noop`` idle) alone on core 1; ping and pong share core 0
  with the yield idle strategy (the usual Aeron set-up: a spinning driver, as in Aeron's published figures).

The driver runs SHARED (one thread: conductor, sender and receiver).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

import pytest

hdrh = pytest.importorskip("hdrh.histogram")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))

from _procs import start_ready, stop_proc
from brokers._util import LOOPBACK, free_udp_port
from brokers.aeron import find_aeronmd, start_aeronmd

N = int(os.environ.get("LOWLAT_BENCH_RTT_N", "20000"))
WARM = 2000
RESULTS: list[dict] = []
PING_STREAM, PONG_STREAM = 3001, 3003

PONG = r'''
import asyncio, sys
from lowlat import _aeron as A, idle_strategy
impl, aeron_dir, channel, idle = sys.argv[1:5]
if impl == "bare":
    c = A.Client(aeron_dir)
    sub = c.add_subscription(channel, 3001)
    pub = c.add_publication(channel, 3003)   # connects once the ping side subscribes
    print("ready", flush=True)
    offer = pub.offer
    def echo(mv):
        while offer(mv) < 0:
            pass
    strategy = idle_strategy(idle)
    while True:
        sub.poll_wait(echo, 10, strategy, None)
else:
    from lowlat.transport import connect
    async def main():
        async with connect(channel, aeron_dir=aeron_dir, stream_id=3001, poll_idle=idle) as t:
            await t.serve("bench.echo", lambda m: m.data)
            print("ready", flush=True)
            await asyncio.Event().wait()
    asyncio.run(main())
'''


def _taskset(core: int, cmd: list[str]) -> list[str]:
    return ["taskset", "-c", str(core)] + cmd


@pytest.fixture(scope="module")
def aeronmd():
    binary = find_aeronmd()
    if not binary:
        pytest.skip("aeronmd not built (tests/setup/30-aeron.sh)")
    try:
        from lowlat import _aeron  # noqa: F401
    except ImportError:
        pytest.skip("lowlat._aeron not built (set AERON_HOME and rebuild)")
    return binary


def start_driver(binary: str, core: int, idle: str):
    # the driver moves UDP traffic (IPC bypasses it): pinned, SHARED mode, given idle strategy
    drv = start_aeronmd(binary, idle=idle, slack=False)
    subprocess.run(["taskset", "-a", "-p", "-c", str(core), str(drv.proc.pid)], check=True, capture_output=True)
    return drv


def start_pong(impl: str, aeron_dir: str, channel: str, idle: str) -> subprocess.Popen:
    return start_ready(_taskset(0, [sys.executable, "-c", PONG, impl, aeron_dir, channel, idle]), "pong")


stop_pong = stop_proc


def ping_bare(aeron_dir: str, channel: str, idle: str, size: int) -> hdrh.HdrHistogram:
    from lowlat import _aeron as A
    from lowlat import idle_strategy

    h = hdrh.HdrHistogram(1, 10_000_000_000, 3)
    payload = os.urandom(size)
    with A.Client(aeron_dir) as c:
        sub = c.add_subscription(channel, PONG_STREAM)
        pub = c.add_publication(channel, PING_STREAM)
        pub.wait_connected(10)
        sub.wait_connected(10)
        strategy = idle_strategy(idle)
        got = [0]

        def on(mv):
            got[0] += 1

        offer, poll, wait = pub.offer, sub.poll, strategy.idle
        pc = time.perf_counter_ns
        for i in range(WARM + N):
            t0 = pc()
            while offer(payload) < 0:
                pass
            while not poll(on, 1):
                wait(0)
            if i >= WARM:
                h.record_value(pc() - t0)
        assert got[0] == WARM + N
    return h


async def ping_lowlat(aeron_dir: str, channel: str, idle: str, size: int) -> hdrh.HdrHistogram:
    from lowlat.transport import connect

    h = hdrh.HdrHistogram(1, 10_000_000_000, 3)
    payload = os.urandom(size)
    async with connect(channel, aeron_dir=aeron_dir, stream_id=PING_STREAM, poll_idle=idle) as t:
        req = t.request
        pc = time.perf_counter_ns
        for i in range(WARM + N // 4):
            t0 = pc()
            await req("bench.echo", payload, timeout=5)
            if i >= WARM:
                h.record_value(pc() - t0)
    return h


def _channel(kind: str) -> str:
    return "aeron:ipc" if kind == "ipc" else f"aeron:udp?endpoint={LOOPBACK}:{free_udp_port()}"


@pytest.mark.benchmark(group="transport.rtt.aeron", disable_gc=True)
@pytest.mark.parametrize("impl", ["bare", "lowlat"])
@pytest.mark.parametrize("placement", ["1core", "2core", "2core-drvspin"])
@pytest.mark.parametrize("kind", ["ipc", "udp"])
def test_rtt_aeron(benchmark, aeronmd, kind, placement, impl):
    size = 64
    if kind == "ipc" and placement == "2core-drvspin":
        pytest.skip("IPC does not go through the driver")
    channel = _channel(kind)
    ping_core = 1 if placement == "2core" else 0
    ping_idle = "busy_spin" if placement == "2core" else "yield"
    old = os.sched_getaffinity(0)
    if not {0, 1} <= old:
        pytest.skip("needs cores 0 and 1")
    if placement == "2core-drvspin":
        driver = start_driver(aeronmd, 1, "noop")     # the one spinning thread: the driver, alone on core 1
    else:
        driver = start_driver(aeronmd, 0, "yielding")
    pong = start_pong(impl, driver.aeron_dir, channel, "yield")
    os.sched_setaffinity(0, {ping_core})
    try:
        if impl == "bare":
            h = ping_bare(driver.aeron_dir, channel, ping_idle, size)
        else:
            h = asyncio.run(ping_lowlat(driver.aeron_dir, channel, ping_idle, size))
    finally:
        os.sched_setaffinity(0, old)
        stop_pong(pong)
        driver.stop()
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    row = {"transport": f"aeron:{kind}", "impl": impl, "placement": placement, "ping_idle": ping_idle,
           "pong_idle": "yield", "size": size, "n": h.get_total_count(),
           "p50_us": h.get_value_at_percentile(50) / 1e3, "p99_us": h.get_value_at_percentile(99) / 1e3,
           "p999_us": h.get_value_at_percentile(99.9) / 1e3}
    RESULTS.append(row)
    benchmark.extra_info.update(row)


def teardown_module(module) -> None:
    if not RESULTS:
        return
    print("\n\nAeron ping-pong RTT (µs, 64-byte payload)")
    print(f"{'transport':10} {'impl':7} {'placement':13} {'ping idle':10} {'n':>6} {'p50':>8} {'p99':>8} {'p99.9':>8}")
    for r in RESULTS:
        print(f"{r['transport']:10} {r['impl']:7} {r['placement']:13} {r['ping_idle']:10} {r['n']:6d} "
              f"{r['p50_us']:8.2f} {r['p99_us']:8.2f} {r['p999_us']:8.2f}")
    by = {(r["transport"], r["placement"], r["impl"]): r["p50_us"] for r in RESULTS}
    for (tr, pl, impl), p50 in by.items():
        if impl == "lowlat" and (tr, pl, "bare") in by:
            print(f"adapter/bare p50 ratio {tr} {pl}: {p50 / by[(tr, pl, 'bare')]:.2f}")
