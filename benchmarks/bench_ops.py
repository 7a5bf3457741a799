"""Operations benchmarks: CPU pinning and GC-quiet, each against its peer configuration in the same run.

1. Pinned vs unpinned validator round trip on ``shm://``: sequential request/reply RTTs (closed loop) from this
   process to ``lowlat serve validator``.  Pinned: the validator with ``--cpus 1 --hot-cpus 1`` and this client's
   thread on CPU 0; unpinned: both left to the scheduler.  The two alternate in rounds (A B A B ...) so load from
   other jobs on this shared machine falls on both alike.  p50 / p99 / p99.9 of all rounds pooled.
2. GC-quiet vs default collector: the same round trip to a validator with the default ``gc_quiet`` (freeze +
   thresholds 10000,20,100) and one with ``--no-gc-quiet``, alternating; plus the collector pauses each service
   reported on its ``/metrics`` (``lowlat_gc_pause_seconds``) over its rounds.

Run::

    python -m pytest benchmarks/bench_ops.py --benchmark-only -s -p no:cacheprovider

Results go to ``benchmark.extra_info`` and the table printed at the end, which BENCHMARKS.md records.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from _services_util import Proc
from _timing import timed_requests
from brokers._util import free_port

N = int(os.environ.get("LOWLAT_BENCH_OPS_N", "3000"))       # round trips per round
ROUNDS = int(os.environ.get("LOWLAT_BENCH_OPS_ROUNDS", "4"))  # rounds per configuration
RESULTS: list[dict] = []


def _orders(n: int = 256) -> list[bytes]:
    from lowlat.services import ServiceConfig
    from lowlat.services.loadgen import OrderFactory

    f = OrderFactory(ServiceConfig(reject_ratio=0.05))
    now = time.time_ns()
    return [f.order(i, now) for i in range(n)]


async def _rtts(url: str, payloads: list[bytes], n: int) -> np.ndarray:
    from lowlat.transport import connect

    async with connect(url) as t:
        return await timed_requests(t.request, "orders.in", payloads, n)


def _validator(*flags: str) -> tuple[Proc, str, int]:
    url = f"shm://ops-{uuid.uuid4().hex[:8]}"
    port = free_port()
    p = Proc([sys.executable, "-m", "lowlat.services", "serve", "validator", "--transport", url,
              "--log-level", "INFO", "--metrics-port", str(port), *flags])
    p.wait_for('"ready"', timeout=30)
    return p, url, port


def _stop(p: Proc) -> None:
    p.terminate()
    try:
        p.wait(15)
    finally:
        p.kill()


def _gc(port: int) -> tuple[float, float]:
    """(pauses, total pause seconds) the service reported so far, every generation."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    n = s = 0.0
    for fam in text_string_to_metric_families(text):
        for smp in fam.samples:
            if smp.name == "lowlat_gc_pause_seconds_count":
                n += smp.value
            elif smp.name == "lowlat_gc_pause_seconds_sum":
                s += smp.value
    return n, s


def _summ(a: np.ndarray) -> dict:
    p50, p99, p999 = np.percentile(a, [50, 99, 99.9]) / 1e3
    return {"p50_us": float(p50), "p99_us": float(p99), "p99.9_us": float(p999), "max_us": float(a.max()) / 1e3,
            "n": int(a.size)}


def _alternate(configs: dict[str, tuple[tuple[str, ...], frozenset[int] | None]], payloads: list[bytes]) -> dict:
    """Rounds of each configuration in turn; ``client_cpus`` pins this thread for that configuration's rounds."""
    from lowlat.services import affinity

    procs = {name: _validator(*flags) for name, (flags, _) in configs.items()}
    before = {name: _gc(port) for name, (_, _, port) in procs.items()}
    got: dict[str, list[np.ndarray]] = {name: [] for name in configs}
    mine = affinity.thread_cpus()
    try:
        for _ in range(ROUNDS):
            for name, (_, client_cpus) in configs.items():
                if client_cpus:
                    affinity.pin_thread(client_cpus)
                try:
                    got[name].append(asyncio.run(_rtts(procs[name][1], payloads, N)))
                finally:
                    affinity.pin_thread(mine)
        after = {name: _gc(port) for name, (_, _, port) in procs.items()}
    finally:
        for p, _, _ in procs.values():
            _stop(p)
    out = {}
    for name in configs:
        s = _summ(np.concatenate(got[name]))
        s["gc_pauses"] = after[name][0] - before[name][0]
        s["gc_pause_ms"] = (after[name][1] - before[name][1]) * 1e3
        out[name] = s
    return out


@pytest.mark.benchmark(group="ops", disable_gc=True)
def test_pinned_vs_unpinned_validator_rtt_shm(benchmark):
    if not hasattr(os, "sched_setaffinity") or not {0, 1} <= os.sched_getaffinity(0):
        pytest.skip("needs CPUs 0 and 1")
    payloads = _orders()
    state: dict = {}

    def run() -> None:
        state["r"] = _alternate({"unpinned": ((), None),
                                 "pinned": (("--cpus", "1", "--hot-cpus", "1"), frozenset({0}))}, payloads)

    benchmark.pedantic(run, rounds=1, iterations=1)
    r = state["r"]
    row = {"case": "validator RTT shm:// pinned vs unpinned", **{k: v for k, v in r.items()},
           "ratio_p99.9": r["pinned"]["p99.9_us"] / r["unpinned"]["p99.9_us"]}
    benchmark.extra_info.update(row)
    RESULTS.append(row)
    _print(row)


@pytest.mark.benchmark(group="ops", disable_gc=True)
def test_gc_quiet_vs_default_validator_rtt_shm(benchmark):
    payloads = _orders()
    state: dict = {}

    def run() -> None:
        state["r"] = _alternate({"default gc": (("--no-gc-quiet",), None), "gc quiet": ((), None)}, payloads)

    benchmark.pedantic(run, rounds=1, iterations=1)
    r = state["r"]
    row = {"case": "validator RTT shm:// gc quiet vs default", **{k: v for k, v in r.items()},
           "ratio_p99.9": r["gc quiet"]["p99.9_us"] / r["default gc"]["p99.9_us"]}
    benchmark.extra_info.update(row)
    RESULTS.append(row)
    _print(row)


async def _per_call_ns(make, n: int) -> float:
    call = make()
    for _ in range(1000):
        await call()
    t0 = time.perf_counter_ns()
    for _ in range(n):
        await call()
    return (time.perf_counter_ns() - t0) / n


@pytest.mark.benchmark(group="ops", disable_gc=True)
def test_breaker_overhead_per_call(benchmark):
    """A closed breaker around a trivial coroutine vs the bare coroutine and, if installed, purgatory's breaker;
    best of 5 rounds of 100,000 calls each, in one event loop."""
    from lowlat.breaker import Breaker

    async def target() -> int:
        return 1

    def bare():
        return target

    def lowlat_breaker():
        b = Breaker("bench", slow_call_s=1.0)
        return lambda: b.call(target)

    makers = {"bare": bare, "lowlat": lowlat_breaker}
    try:
        from purgatory import AsyncCircuitBreakerFactory

        def purgatory_breaker():
            f = AsyncCircuitBreakerFactory(default_threshold=5, default_ttl=1.0)

            async def call() -> int:
                async with await f.get_breaker("bench"):
                    return await target()
            return call

        makers["purgatory"] = purgatory_breaker
    except ImportError:
        pass
    best: dict[str, float] = {}

    def run() -> None:
        async def main() -> None:
            for _ in range(5):
                for name, make in makers.items():
                    v = await _per_call_ns(make, 100_000)
                    best[name] = min(best.get(name, v), v)
        asyncio.run(main())

    benchmark.pedantic(run, rounds=1, iterations=1)
    row = {f"{k}_ns": v for k, v in best.items()}
    row["lowlat_overhead_ns"] = best["lowlat"] - best["bare"]
    if "purgatory" in best:
        row["purgatory_overhead_ns"] = best["purgatory"] - best["bare"]
    benchmark.extra_info.update(row)
    print("\n== breaker overhead per call (best of 5 x 100,000): " + ", ".join(f"{k} {v:.0f}" for k, v in row.items()))


def _print(row: dict) -> None:
    """What BENCHMARKS.md records (run with -s)."""
    print(f"\n== {row['case']} ({ROUNDS} alternating rounds x {N} sequential round trips per configuration)")
    for name, s in row.items():
        if isinstance(s, dict):
            print(f"  {name:<10} p50 {s['p50_us']:7.1f} us  p99 {s['p99_us']:7.1f} us  p99.9 {s['p99.9_us']:8.1f} us"
                  f"  max {s['max_us']:8.1f} us  | service GC: {s['gc_pauses']:.0f} pauses, "
                  f"{s['gc_pause_ms']:.2f} ms")
    print(f"  ratio p99.9 {row['ratio_p99.9']:.2f}")
