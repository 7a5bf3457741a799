"""End-to-end services benchmarks, each next to its peer in the same run:

1. Validator round trip per transport: sequential request/reply RTTs (closed loop) through the validator service
   (``python -m lowlat.services serve validator``: decode + validate + encode a ValidationResult) versus a bare
   echo on the same transport in the same run.  Peer: the **bare client** echo (nats-py client + nats-py
   responder) for NATS; for the embedded transports and ZeroMQ, lowlat's own adapter echo (``serve`` returning the
   payload from a plain subscribe loop, the validator's own intake path).  Goal: validator p50 <= 1.10 x echo p50.
2. Pipelined throughput over NATS: the load generator publishes orders as fast as they go (target 400k/s) and
   correlates the validator's published results; the validator process is pinned to one core (``taskset -c 1``),
   the generator to the other.  Goal: >= 200k validated orders/s.  Peer: bare nats-py one-way publish+count
   throughput of the same payloads in the same run (an upper bound for any NATS service in Python).

Run::

    python -m pytest benchmarks/bench_services.py --benchmark-only -s -p no:cacheprovider

Servers run as separate processes on 127.0.0.1; the client is this process.  Results (p50/p99, ratios, orders/s)
go to ``benchmark.extra_info`` and to the table printed at the end, which BENCHMARKS.md records.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from _nats_peers import bench_nats_server, natspy_throughput
from _services_util import Proc
from _timing import timed_requests
from brokers._util import free_port

RTT_N = int(os.environ.get("LOWLAT_BENCH_RTT_N", "3000"))
TP_N = int(os.environ.get("LOWLAT_BENCH_TP_N", "200000"))
RESULTS: list[dict] = []

ECHO = r'''
import asyncio, sys
url, kind = sys.argv[1], sys.argv[2]
async def main():
    if kind == "bare-nats":
        import nats
        nc = await nats.connect(url)
        async def echo(m):
            await nc.publish(m.reply, m.data)
        await nc.subscribe("bench.echo", cb=echo)
        await nc.flush()
        print("ready", flush=True)
        await asyncio.Event().wait()
    from lowlat.transport import connect
    opts = {"bind": True} if url.startswith("zmq+") else {}
    async with connect(url, **opts) as t:
        # the same intake path as the validator service (subscribe + respond), minus the validation work
        sub = await t.subscribe("bench.echo")
        print("ready", flush=True)
        async for m in sub:
            await m.respond(bytes(m.data))
asyncio.run(main())
'''


def _orders(n: int = 256) -> list[bytes]:
    from lowlat.services import ServiceConfig
    from lowlat.services.loadgen import OrderFactory

    f = OrderFactory(ServiceConfig(reject_ratio=0.05))
    now = time.time_ns()
    return [f.order(i, now) for i in range(n)]


async def _rtts_lowlat(url: str, subject: str, payloads: list[bytes], n: int) -> np.ndarray:
    from lowlat.transport import connect

    async with connect(url) as t:
        return await timed_requests(t.request, subject, payloads, n)


async def _rtts_bare_nats(url: str, payloads: list[bytes], n: int) -> np.ndarray:
    import nats

    nc = await nats.connect(url)
    try:
        return await timed_requests(nc.request, "bench.echo", payloads, n)
    finally:
        await nc.close()


@pytest.fixture(scope="module")
def nats_url(request, tmp_path_factory):
    return bench_nats_server(request, tmp_path_factory).url


def _url(kind: str, request) -> str:
    if kind == "nats":
        return request.getfixturevalue("nats_url")
    if kind == "zmq":
        pytest.importorskip("zmq")
        return f"zmq+tcp://127.0.0.1:{free_port()}"
    if kind == "shm":
        return f"shm://bench-{uuid.uuid4().hex[:8]}"
    raise ValueError(kind)


def _start(args: list[str]) -> Proc:
    p = Proc(args)
    p.wait_for("ready", timeout=30)
    return p


def _stop(p: Proc) -> None:
    p.terminate()
    try:
        p.wait(15)
    finally:
        p.kill()


def _summ(a: np.ndarray) -> dict:
    return {"p50_us": float(np.percentile(a, 50)) / 1e3, "p99_us": float(np.percentile(a, 99)) / 1e3,
            "n": int(a.size)}


@pytest.mark.benchmark(group="services.validator_rtt", disable_gc=True)
@pytest.mark.parametrize("kind", ["shm", "zmq", "nats"])
def test_validator_round_trip_vs_echo(benchmark, kind, request):
    url = _url(kind, request)
    payloads = _orders()
    # the peer first: echo on the same transport (bare nats-py for NATS), then the validator service
    if kind == "nats":
        echo = _start([sys.executable, "-c", ECHO, url, "bare-nats"])
        try:
            echo_rtt = asyncio.run(_rtts_bare_nats(url, payloads, RTT_N))
        finally:
            _stop(echo)
    echo_ll = _start([sys.executable, "-c", ECHO, url, "lowlat"])
    try:
        ll_rtt = asyncio.run(_rtts_lowlat(url, "bench.echo", payloads, RTT_N))
    finally:
        _stop(echo_ll)
    if kind != "nats":
        echo_rtt = ll_rtt
        url = _url(kind, request) if kind == "zmq" else url  # a fresh hub port for the validator's bind
    v = Proc([sys.executable, "-m", "lowlat.services", "serve", "validator", "--transport", url, "--queue", "",
              "--log-level", "INFO"] + (["--bind"] if kind == "zmq" else []))
    v.wait_for('"ready"', timeout=30)
    try:
        state: dict = {}

        def run():
            state["rtt"] = asyncio.run(_rtts_lowlat(url, "orders.in", payloads, RTT_N))

        benchmark.pedantic(run, rounds=1, iterations=1)
    finally:
        _stop(v)
    val = _summ(state["rtt"])
    peer = _summ(echo_rtt)
    row = {"case": f"validator RTT {kind}", "validator": val, "peer": peer,
           "lowlat_echo": _summ(ll_rtt), "ratio_p50": val["p50_us"] / peer["p50_us"],
           "peer_name": "bare nats-py echo" if kind == "nats" else "lowlat adapter echo"}
    benchmark.extra_info.update(row)
    RESULTS.append(row)


@pytest.mark.benchmark(group="services.pipeline", disable_gc=True)
def test_pipelined_validator_throughput_nats(benchmark, nats_url):
    from lowlat.services import LoadGenerator, ServiceConfig
    from lowlat.transport import connect

    payloads = _orders()
    pin = shutil.which("taskset") and (os.cpu_count() or 1) >= 2
    try:
        if pin:
            os.sched_setaffinity(0, {0})
        bare = asyncio.run(natspy_throughput(nats_url, payloads, TP_N))
        cmd = [sys.executable, "-m", "lowlat.services", "serve", "validator", "--transport", nats_url,
               "--publish-results", "--batch-max", "4096"]
        v = Proc((["taskset", "-c", "1"] if pin else []) + cmd)
        v.wait_for('"ready"', timeout=30)
        try:
            state: dict = {}

            async def go():
                cfg = ServiceConfig(transport=nats_url, mode="pipeline", rate=400_000.0, count=TP_N,
                                    reject_ratio=0.05)
                async with connect(nats_url) as t:
                    state["res"] = await LoadGenerator(t, cfg, answer_timeout=60).run()

            benchmark.pedantic(lambda: asyncio.run(go()), rounds=1, iterations=1)
        finally:
            _stop(v)
    finally:
        if pin:
            os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
    res = state["res"]
    row = {"case": "pipelined validator NATS", "validated_per_s": res.throughput, "answered": res.answered,
           "sent": res.sent, "bare_nats_one_way_per_s": bare, "ratio": res.throughput / bare, "pinned": bool(pin),
           "latency_p50_ms": res.latency.percentile(50) / 1e6}
    benchmark.extra_info.update(row)
    RESULTS.append(row)
    assert res.answered == res.sent  # correctness, not speed


@pytest.mark.benchmark(group="services.validator_cpu", disable_gc=True)
@pytest.mark.parametrize("batch", [1, 64, 1024])
def test_validator_service_cost_per_order(benchmark, batch):
    """CPU cost of ``ValidatorService.handle`` per order (inproc replies, no wire), next to the bare core work it
    wraps (``validate_many`` + ``read_order`` + result encoding) in the same run: what the service layer adds."""
    from lowlat import _core
    from lowlat.services import ServiceConfig, ValidatorService, _wire
    from lowlat.transport import connect
    from lowlat.transport.base import Message

    payloads = _orders()
    loop = asyncio.new_event_loop()
    url = f"inproc://cpu-{uuid.uuid4().hex[:6]}"
    t = connect(url)
    loop.run_until_complete(t.connect())
    v = ValidatorService(ServiceConfig(transport=url, batch_max=max(batch, 1)))
    loop.run_until_complete(v.start(t))
    sink = loop.run_until_complete(t.subscribe("sink", max_pending=1 << 22))
    msgs = [Message("orders.in", payloads[i % 256], None, "sink", t) for i in range(batch)]
    bufs = [m.data for m in msgs]
    codes = np.zeros(max(batch, 1), dtype=np.uint8)
    validator = v.validator
    reps = max(1, 4096 // batch)

    def bare():
        for _ in range(reps):
            validator.validate_many(bufs, codes)
            _wire.encode_results(bufs, codes[:batch].tolist(), 1)

    async def _service():
        for _ in range(reps):
            await v.handle("orders.in", msgs)
            while sink.get_nowait() is not None:
                pass

    def service():
        loop.run_until_complete(_service())  # one loop entry per round: its ~40 us is not per order

    t0 = time.process_time()
    for _ in range(20):
        bare()
    bare_us = (time.process_time() - t0) / (20 * reps * batch) * 1e6
    benchmark.pedantic(service, rounds=20, iterations=1, warmup_rounds=2)
    svc_us = benchmark.stats.stats.min / (reps * batch) * 1e6
    loop.run_until_complete(t.close())
    loop.close()
    row = {"case": f"validator CPU batch={batch}", "service_us_per_order": svc_us, "bare_us_per_order": bare_us,
           "orders_per_s_one_core": 1e6 / svc_us}
    benchmark.extra_info.update(row)
    RESULTS.append(row)
    del _core


def test_zz_print_table():
    """Print what BENCHMARKS.md records (run with -s)."""
    if not RESULTS:
        pytest.skip("no results")
    print("\n\n== services benchmarks ==")
    for r in RESULTS:
        if "service_us_per_order" in r:
            print(f"{r['case']:<24} service {r['service_us_per_order']:.2f} us/order (min of 20) | bare core work "
                  f"{r['bare_us_per_order']:.2f} us/order | {r['orders_per_s_one_core']:,.0f} orders/s per core")
        elif "validator" in r:
            print(f"{r['case']:<24} validator p50 {r['validator']['p50_us']:8.1f} us  p99 "
                  f"{r['validator']['p99_us']:8.1f} us | {r['peer_name']} p50 {r['peer']['p50_us']:8.1f} us  p99 "
                  f"{r['peer']['p99_us']:8.1f} us | lowlat echo p50 {r['lowlat_echo']['p50_us']:8.1f} us | "
                  f"ratio p50 {r['ratio_p50']:.2f}")
        else:
            print(f"{r['case']:<24} {r['validated_per_s']:,.0f} validated orders/s ({r['answered']}/{r['sent']}, "
                  f"pinned={r['pinned']}) | bare nats-py one-way {r['bare_nats_one_way_per_s']:,.0f} msg/s | "
                  f"ratio {r['ratio']:.2f}")
