"""Overload: a 10x burst over a validator's capacity (a real process on a real nats-server).

Capacity is set by policy (``--rate-limit 2000`` orders/s) and pending work is bounded (``--max-pending 1000``).
A burst of 20 000 orders in ~1 s (10x) must: keep the process's memory bounded, shed what exceeds the bound and
count it (``lowlat_slow_consumer_dropped``) while delaying the rest (``lowlat_throttled``), all visible on
``/metrics``; every order is either answered or counted as dropped (nothing vanishes silently); and when the
burst ends the service recovers: orders at a normal rate are all answered again, promptly.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.request

import pytest
from _services_util import service
from brokers._util import free_port

from lowlat import _core
from lowlat.transport import connect

pytestmark = [pytest.mark.integration, pytest.mark.nats, pytest.mark.timeout(120)]


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


def scrape(port: int) -> dict[str, float]:
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out = {}
    for name in ("lowlat_slow_consumer_dropped_total", "lowlat_throttled_total", "lowlat_pending",
                 "lowlat_pending_limit", "lowlat_slow_consumer_events_total"):
        m = re.search(rf'^{name}\{{service="validator"\}} (\S+)$', body, re.MULTILINE)
        out[name] = float(m.group(1)) if m else float("nan")
    return out


async def send(t, first: int, n: int, rate: float) -> None:
    t0 = time.monotonic()
    ts = time.time_ns()
    for i in range(n):
        await t.publish("orders.in", _core.encode_order(first + i, "AAPL", 100.0, 1 + i % 5, i % 2, ts))
        if i % 100 == 99:
            lag = (i + 1) / rate - (time.monotonic() - t0)
            if lag > 0:
                await asyncio.sleep(lag)
    await t.flush()


def test_10x_burst_sheds_by_policy_bounded_memory_and_recovers(nats_server):
    url = nats_server.url
    mport = free_port()
    cap = 2000
    v = service("serve", "validator", "--transport", url, "--rate-limit", str(cap), "--max-pending", "1000",
                "--metrics-port", str(mport), "--queue", "overload")
    try:
        v.wait_for('"ready"')

        async def run() -> dict:
            got: dict[int, float] = {}
            async with connect(url) as t:
                subs = [await t.subscribe("orders.validated"), await t.subscribe("orders.rejected")]

                async def collect(sub):
                    async for m in sub:
                        got[_core.decode_validation_result(m.data)[0]] = time.monotonic()

                tasks = [asyncio.ensure_future(collect(s)) for s in subs]
                await send(t, 1, 1000, 1000)                       # warm-up at half capacity
                await asyncio.sleep(1.0)
                assert len(got) == 1000
                rss0 = rss_kb(v.p.pid)
                m0 = scrape(mport)
                burst = 20_000
                t_b = time.monotonic()
                await send(t, 100_000, burst, 10 * cap)              # 10x capacity
                burst_s = time.monotonic() - t_b
                peak = rss_kb(v.p.pid)
                mid = scrape(mport)
                # drained: no results for 1 s and nothing pending
                last = -1
                while len(got) != last:
                    last = len(got)
                    await asyncio.sleep(1.0)
                    peak = max(peak, rss_kb(v.p.pid))
                m1 = scrape(mport)
                answered_burst = sum(1 for k in got if 100_000 <= k < 100_000 + burst)
                # recovery: normal rate again, everything answered promptly
                t_r = time.monotonic()
                await send(t, 200_000, 1000, 1000)
                await asyncio.sleep(1.0)
                rec = [got.get(k) for k in range(200_000, 201_000)]
                for x in tasks:
                    x.cancel()
                return {"burst": burst, "burst_rate": round(burst / burst_s), "answered_burst": answered_burst,
                        "dropped": m1["lowlat_slow_consumer_dropped_total"] - m0["lowlat_slow_consumer_dropped_total"],
                        "throttled": m1["lowlat_throttled_total"] - m0["lowlat_throttled_total"],
                        "pending_mid": mid["lowlat_pending"], "pending_limit": mid["lowlat_pending_limit"],
                        "pending_after": m1["lowlat_pending"], "rss_before_kb": rss0, "rss_peak_kb": peak,
                        "recovered": sum(1 for r in rec if r is not None),
                        # answer time minus intended send time (orders go out at 1/ms)
                        "recovery_max_delay_s": round(max((r - t_r - i / 1000 for i, r in enumerate(rec)
                                                           if r is not None), default=-1), 3)}

        r = asyncio.run(run())
    finally:
        v.terminate()
    assert v.wait(30) == 0
    print(json.dumps(r))
    assert r["burst_rate"] >= 5 * cap, r                           # it really was a burst well over capacity
    assert r["dropped"] > 0 and r["throttled"] > 0, r               # shed + delayed by policy, visible in metrics
    assert r["answered_burst"] + r["dropped"] == r["burst"], r      # every order answered or counted as shed
    assert r["answered_burst"] >= cap, r                            # the service kept working during the burst
    assert r["pending_mid"] <= r["pending_limit"] == 1000, r        # bounded pending
    assert r["pending_after"] == 0, r
    assert r["rss_peak_kb"] - r["rss_before_kb"] < 64 * 1024, r     # bounded memory (< 64 MiB growth)
    assert r["recovered"] == 1000, r                                # recovers when the burst ends
    assert r["recovery_max_delay_s"] < 5.0, r  # sanity only: this shared 2-vCPU box stalls for seconds at times
    assert "slow consumer" in v.output                              # and says so in its logs
    slow = [json.loads(x) for x in v.output.splitlines() if "slow consumer: transport dropped" in x]
    assert 1 <= len(slow) <= 3 and slow[0]["dropped"] > 0, slow     # rate-limited (5 s), with counts
