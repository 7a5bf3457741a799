"""How late does an event-loop task wake for a deadline?  The load generator's wait, measured on its own.

    python benchmarks/bench_pacing.py [--n 2000] [--period-us 200]

A task waits for ``n`` deadlines ``period-us`` apart (5,000/s by default, the demo's rate) on an otherwise idle
loop, once per mechanism and loop kind (asyncio, and uvloop when installed), and prints how late it resumed
(p50/p90/p99, µs after the deadline; negative = early) and the process CPU per wait:

- ``asyncio.sleep``: the old generator wait (asyncio's selector rounds the timeout up to whole ms; libuv truncates);
- ``thread``: a pacing thread sleeping with its timer slack lowered to 1 µs (``PR_SET_TIMERSLACK``) that hands
  the loop each wake-up with ``call_soon_threadsafe`` (GIL hand-off + self-pipe write per wake-up);
- ``Pacer``: the generator's wait now (``lowlat.services._loop.Pacer``, a timerfd watched with ``add_reader``);
- ``spin``: ``asyncio.sleep(0)`` until due (``--spin``): the floor for lateness, a core for CPU.

Only one spinning thread at a time (the spin row), so it can share a 2-vCPU machine.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import importlib.util
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import numpy as np

from lowlat.services._loop import Pacer

pc = time.perf_counter_ns
PR_SET_TIMERSLACK = 29

Waiter = Callable[[list[int]], Awaitable[list[int]]]


async def _sleep(sched: list[int]) -> list[int]:
    late = []
    for d in sched:
        while (w := d - pc()) > 0:  # re-wait after an early wake-up (libuv's truncation), as the generator does
            await asyncio.sleep(w / 1e9)
        late.append(pc() - d)
    return late


async def _pacer(sched: list[int]) -> list[int]:
    late = []
    with Pacer() as p:
        for d in sched:
            await p.sleep_until(d)
            late.append(pc() - d)
    return late


async def _thread(sched: list[int]) -> list[int]:
    loop = asyncio.get_running_loop()
    futs = [loop.create_future() for _ in sched]

    def pace() -> None:
        ctypes.CDLL(None).prctl(PR_SET_TIMERSLACK, 1000, 0, 0, 0)  # this thread only (default 50 µs)
        for d, f in zip(sched, futs):
            if (w := d - pc()) > 0:
                time.sleep(w / 1e9)
            loop.call_soon_threadsafe(f.set_result, None)

    th = threading.Thread(target=pace, daemon=True)
    th.start()
    late = []
    for d, f in zip(sched, futs):
        await f
        late.append(pc() - d)
    th.join()
    return late


async def _spin(sched: list[int]) -> list[int]:
    late = []
    for d in sched:
        while pc() < d:
            await asyncio.sleep(0)
        late.append(pc() - d)
    return late


MECHANISMS: dict[str, Waiter] = {"asyncio.sleep": _sleep, "thread": _thread, "Pacer": _pacer, "spin": _spin}


async def measure(waiter: Waiter, n: int, period_ns: int) -> tuple[np.ndarray, float]:
    """Lateness per deadline (ns) and process CPU per wait (ns) for one run on the running loop."""
    await asyncio.sleep(0.01)
    t0 = pc() + 2_000_000
    sched = [t0 + i * period_ns for i in range(n)]
    c0 = time.process_time_ns()
    late = await waiter(sched)
    return np.array(late), (time.process_time_ns() - c0) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000, help="deadlines per run (default %(default)s)")
    ap.add_argument("--period-us", type=float, default=200.0, help="µs between deadlines (default %(default)s)")
    args = ap.parse_args()
    runners: dict[str, Callable[[Coroutine[Any, Any, tuple[np.ndarray, float]]], tuple[np.ndarray, float]]] = {
        "asyncio": asyncio.run}
    if importlib.util.find_spec("uvloop") is not None:
        import uvloop

        runners["uvloop"] = uvloop.run
    period = int(args.period_us * 1000)
    print(f"{args.n} deadlines {args.period_us:g} µs apart; lateness after the deadline, µs")
    print(f"{'loop':8} {'mechanism':14} {'p50':>8} {'p90':>8} {'p99':>9} {'<100µs':>7} {'cpu/wait':>9}")
    for loop_kind, run in runners.items():
        for name, waiter in MECHANISMS.items():
            late, cpu = run(measure(waiter, args.n, period))
            p50, p90, p99 = np.percentile(late, [50, 90, 99]) / 1e3
            print(f"{loop_kind:8} {name:14} {p50:8.1f} {p90:8.1f} {p99:9.1f} {np.mean(late < 100_000):7.1%} "
                  f"{cpu / 1e3:8.1f}µ")


if __name__ == "__main__":
    main()
