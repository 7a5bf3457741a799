"""shm:// stage thread vs the async service vs the sync floor, one run (plain script).

Run::

    python benchmarks/bench_shm_stage.py            # LOWLAT_BENCH_RTT_N / LOWLAT_BENCH_PIPE_N to resize

Every server is a separate process (the client is this one); the client is the same for every peer:
``request_sync`` (closed loop; ``LOWLAT_BENCH_CLIENT_IDLE=sync``: ``sync_idle()`` as the servers, ``spin``:
``BusySpinIdle``, the one spinning thread) for round trips, and for the pipelined rate one thread
publishing 1024-order batches with ``publish_batch_sync`` (no reply subject) while another counts the results on
``orders.validated`` with ``serve_batch_sync``.  ``LOWLAT_BENCH_STAGE_WAIT=poll``: the stage threads (echo and
services) wait with ``sync_idle()`` alone instead of on their doorbell (the previous wait, a peer).  Peers:

- floor: the bare ``MpscRing`` ping-pong and ``request_sync`` against ``serve_sync`` (bench_transport.py's);
- echo: ``serve_batch_sync`` in a thread (stage thread) vs ``serve()`` on the event loop (async);
- validator: ``ValidatorService`` with ``stage_thread=True`` vs on the event loop (``run_services`` both);
- pipeline: validator forwarding to ``MatcherService`` in one server process, both with ``stage_thread=True`` vs
  both on the event loop; orders alternately buy and sell (every sell fills), the rate counted on ``exec.AAPL``
  (the execution reports of every order) instead of ``orders.validated``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from _procs import start_ready, stop_proc

RTT_N = int(os.environ.get("LOWLAT_BENCH_RTT_N", "3000"))
PIPE_N = int(os.environ.get("LOWLAT_BENCH_PIPE_N", "100000"))
# the client's wait for a reply: "sync" (sync_idle(), as the servers) or "spin" (BusySpinIdle: the one spinner)
CLIENT_IDLE = os.environ.get("LOWLAT_BENCH_CLIENT_IDLE", "sync")


def _client_idle():
    from lowlat._idle import BusySpinIdle

    return BusySpinIdle() if CLIENT_IDLE == "spin" else None

SERVER = r'''
import asyncio, signal, sys, threading
mode, url = sys.argv[1], sys.argv[2]
from lowlat.services.config import ServiceConfig
from lowlat.services.runtime import run_services
from lowlat.services.validator import ValidatorService

async def echo_async():
    from lowlat.transport.shm import ShmTransport
    t = ShmTransport(url)
    await t.connect()
    await t.serve("bench.echo", lambda m: bytes(m.data))
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)
    await stop.wait()
    await t.close()

def echo_thread():
    from lowlat._batch import MessageBatch
    from lowlat.transport.shm import ShmTransport
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    out = MessageBatch(1024, 1 << 20)
    import os
    doorbell = os.environ.get("LOWLAT_BENCH_STAGE_WAIT") != "poll"  # as the service stage threads wait
    with ShmTransport(url).connect_sync(doorbell=doorbell) as t:
        def handle(b):
            out.clear()
            for i in range(b.n):
                out.append(b.payload(i), "", b.reply(i))
            t.publish_batch_sync(out)
        th = threading.Thread(target=t.serve_batch_sync, args=("bench.echo", handle),
                              kwargs={"stop": stop, "ready": lambda: print("ready", flush=True)})
        th.start()
        while th.is_alive():
            th.join(0.5)

if mode == "echo-async":
    asyncio.run(echo_async())
elif mode == "echo-thread":
    echo_thread()
else:
    # max_pending: the pipelined sender outruns the async service; its queue must hold the whole run
    pipeline = mode.startswith("pipeline")
    cfg = ServiceConfig(transport=url, stage_thread=mode.endswith("-thread"), queue="", gc_quiet=True,
                        max_pending=1 << 20, log_level="ERROR", forward=pipeline, snapshot_interval_s=0)
    import logging
    import os
    logging.getLogger("lowlat").setLevel("ERROR")
    if os.environ.get("LOWLAT_BENCH_STAGE_WAIT") == "poll":  # the stage threads' previous wait: sync_idle() alone
        from lowlat.services._stage_thread import StageThread
        StageThread.doorbell = False
    services = [ValidatorService(cfg)]
    if pipeline:  # validator -> matcher: accepted orders forwarded per symbol, execution reports out
        from lowlat.services.matcher import MatcherService
        services.append(MatcherService(cfg))
    asyncio.run(run_services(cfg, services, on_ready=lambda: print("ready", flush=True)))
'''


def _orders(n: int, sides: bool = False) -> list[bytes]:
    """``n`` orders for AAPL at 100.0; ``sides``: alternately buy and sell, so each sell fills the buy before it
    and the book is empty again after every pair (the matcher's pipelined run never fills a book)."""
    import lowlat
    from lowlat.enums import Side

    ts = time.time_ns()
    return [lowlat.encode_order(i + 1, "AAPL", 100.0, 10, Side.SELL if sides and i % 2 else Side.BUY, ts)
            for i in range(n)]


def _exec_reports_per_batch(payloads: list[bytes]) -> int:
    """Execution reports the matcher publishes for one batch of ``payloads`` from an empty book (the same
    matcher in this process, publishing into a counter): the pipelined run waits for that many per batch."""
    import asyncio

    from lowlat._batch import MessageBatch
    from lowlat.services.config import ServiceConfig
    from lowlat.services.matcher import MatcherService

    class _Count:
        url, closed, n = "count://", False, 0

        async def publish_batch_to(self, batch: MessageBatch, subject: str | None = None) -> int:
            self.n += sum(1 for i in range(batch.n) if (batch.reply(i) or "").startswith("exec."))
            return batch.n

    m = MatcherService(ServiceConfig(snapshot_interval_s=0))
    m.transport = _Count()  # type: ignore[assignment]
    b = MessageBatch(len(payloads), 1 << 20)
    for p in payloads:
        b.append(p, "orders.match.AAPL", None)
    asyncio.run(m.handle_batch("orders.match.AAPL", b))
    return m.transport.n


def _rtt(url: str, subject: str, payloads: list[bytes]) -> np.ndarray:
    from lowlat.transport.shm import ShmTransport

    pc = time.perf_counter_ns
    vals = np.empty(RTT_N, np.int64)
    idle = _client_idle()
    with ShmTransport(url) as t:
        for i in range(300):
            t.request_sync(subject, payloads[i % len(payloads)], timeout=5, idle=idle)
        for i in range(RTT_N):
            t0 = pc()
            t.request_sync(subject, payloads[i % len(payloads)], timeout=5, idle=idle)
            vals[i] = pc() - t0
    return vals


def _pipelined(url: str, payloads: list[bytes], results: str = "orders.validated", per_batch: int = 1024) -> float:
    """Orders/s from the first publish to the last result, all PIPE_N answered (else raises): ``per_batch``
    messages on ``results`` for each 1024-order batch."""
    from lowlat._batch import MessageBatch
    from lowlat.transport.shm import ShmTransport

    got = [0]
    want = -(-PIPE_N // 1024) * per_batch
    done, ready = threading.Event(), threading.Event()
    rx = ShmTransport(url).connect_sync()

    def count(b: MessageBatch) -> None:
        got[0] += b.n
        if got[0] >= want:
            done.set()

    th = threading.Thread(target=rx.serve_batch_sync, args=(results, count),
                          kwargs={"stop": done, "ready": ready.set})
    th.start()
    ready.wait(10)
    out = MessageBatch(1024, 1 << 20)
    for p in payloads[:1024]:
        out.append(p)
    with ShmTransport(url, publish_timeout=30) as tx:
        t0 = time.perf_counter()
        sent = 0
        while sent < PIPE_N:
            sent += tx.publish_batch_sync(out, "orders.in")
        if not done.wait(60):
            raise RuntimeError(f"pipelined: {got[0]} of {want} results on {results}")
        rate = sent / (time.perf_counter() - t0)
    th.join(10)
    rx.close_sync()
    return rate


def _server(mode: str, url: str) -> subprocess.Popen:
    return start_ready([sys.executable, "-c", SERVER, mode, url], f"server {mode}", cwd=os.getcwd())


def _cleanup(url: str) -> None:
    import shutil

    from lowlat.transport.shm import shm_root

    shutil.rmtree(os.path.join(shm_root(), "lowlat-bus-" + url[6:]), ignore_errors=True)


def main() -> None:
    import bench_transport as bt

    from lowlat._ring import MpscRing

    bt.RTT_N = RTT_N
    rows: list[tuple[str, float, float]] = []

    def add(name: str, p50_ns: float, p99_ns: float) -> None:
        rows.append((name, p50_ns / 1e3, p99_ns / 1e3))
        print(f"{name:<34} p50 {rows[-1][1]:8.1f} us  p99 {rows[-1][2]:9.1f} us", flush=True)

    def add_hist(name: str, h) -> None:
        add(name, h.get_value_at_percentile(50), h.get_value_at_percentile(99))

    def add_vals(name: str, v: np.ndarray) -> None:
        add(name, float(np.percentile(v, 50)), float(np.percentile(v, 99)))

    # floor: bare ring and request_sync <-> serve_sync, as bench_transport.py measures them
    name = f"bench{uuid.uuid4().hex[:6]}"
    req, rep = MpscRing(1 << 20, name=name + "-req"), MpscRing(1 << 20, name=name + "-rep")
    proc = bt.start_server("ring", name, None, False)
    try:
        h = bt.rtt_bare_ring(name, 100)
        proc.wait(5)
    finally:
        bt.stop_server(proc)
        for r in (req, rep):
            r.unlink()
            r.close()
    add_hist("floor: bare MpscRing ping-pong", h)
    url = f"shm://bench{uuid.uuid4().hex[:6]}"
    proc = bt.start_server("shm-sync", url, None, False)
    try:
        add_hist("floor: request_sync<->serve_sync", bt.rtt_sync_shm(url, 100, _client_idle()))
    finally:
        bt.stop_server(proc)
    payloads = _orders(1024)
    echo = [os.urandom(100)]
    rates: dict[str, float] = {}
    pairs = _orders(1024, sides=True)
    per_batch = _exec_reports_per_batch(pairs)
    for mode in ("echo-thread", "echo-async", "validator-thread", "validator-async", "pipeline-thread",
                 "pipeline-async"):
        url = f"shm://bench{uuid.uuid4().hex[:6]}"
        proc = _server(mode, url)
        try:
            if mode.startswith("echo"):
                add_vals(mode, _rtt(url, "bench.echo", echo))
            elif mode.startswith("pipeline"):
                rates[mode] = _pipelined(url, pairs, "exec.AAPL", per_batch)
                print(f"{mode:<34} pipelined {rates[mode]:,.0f} orders/s through validator and matcher", flush=True)
            else:
                add_vals(mode, _rtt(url, "orders.in", payloads))
                rates[mode] = _pipelined(url, payloads)
                print(f"{mode:<34} pipelined {rates[mode]:,.0f} orders/s", flush=True)
        finally:
            stop_proc(proc, 15)
            _cleanup(url)
    p50 = {r[0]: r[1] for r in rows}
    print("\nratios (p50):")
    print(f"  echo thread / async          {p50['echo-thread'] / p50['echo-async']:.2f}")
    print(f"  validator thread / async     {p50['validator-thread'] / p50['validator-async']:.2f}")
    print(f"  echo thread / sync floor     {p50['echo-thread'] / p50['floor: request_sync<->serve_sync']:.2f}")
    print(f"  validator overhead over echo: thread {p50['validator-thread'] / p50['echo-thread'] - 1:+.0%}, "
          f"async {p50['validator-async'] / p50['echo-async'] - 1:+.0%}")
    print(f"  pipelined thread / async     {rates['validator-thread'] / rates['validator-async']:.2f}")
    print(f"  validator+matcher thread / async {rates['pipeline-thread'] / rates['pipeline-async']:.2f}")


if __name__ == "__main__":
    main()
