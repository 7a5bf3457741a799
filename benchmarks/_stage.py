"""What the compiled-stage benchmarks (bench_mstage.py, bench_vstage.py) share: a sink transport, building the
received ``MessageBatch``, one definition of a per-batch CPU sample and the same-run table with the peer ratios."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from lowlat._batch import MessageBatch


class Sink:
    """A transport that takes what a service publishes and drops it (no broker cost in any peer)."""

    url = "sink://"
    publish_errors = 0

    def __init__(self) -> None:
        self.n = 0

    async def publish(self, subject, payload, **kw):
        self.n += 1

    async def publish_batch(self, subject, payloads):
        self.n += len(payloads)

    async def publish_batch_to(self, batch, subject=None):
        self.n += batch.n
        return batch.n


def drive(coro: Any) -> None:
    """Run a coroutine that never waits (every await of a ``Sink`` returns at once) to its end, without an event
    loop turn: what ``await svc.handle_batch(...)`` costs inside a service's intake loop.  Raises
    ``RuntimeError`` if it does wait."""
    try:
        coro.send(None)
    except StopIteration:
        return
    coro.close()
    raise RuntimeError("drive(): the coroutine waited; it needs an event loop")


def message_batch(payloads: Sequence[bytes], subject: str, replies: Sequence[str | None] | None = None) -> MessageBatch:
    """The batch a subscription would hand over: every payload on ``subject``, with ``replies[i]`` when given."""
    rs = replies if replies is not None else [None] * len(payloads)
    b = MessageBatch(len(payloads), sum(len(p) + len(subject) + len(r or "") for p, r in zip(payloads, rs)) + 64)
    for p, r in zip(payloads, rs):
        assert b.append(p, subject, r)
    return b


class StageRuns:
    """The peers of one benchmark module: each handles the same ``batches`` batches of ``n`` messages per round,
    ``rounds`` rounds, every round from a fresh state; one sample = this thread's CPU time
    (``time.thread_time_ns``) for one batch, divided by ``n``."""

    def __init__(self, n: int, batches: int, rounds: int) -> None:
        self.n = n
        self.batches = batches
        self.rounds = rounds
        self.results: dict[str, dict[str, Any]] = {}

    def bench(self, benchmark: Any, name: str, setup: Callable[[], Any], run_one: Callable[[Any, int], int]) -> None:
        """``setup()`` -> state (untimed); ``run_one(state, k)`` handles batch k and returns the messages it
        produced.  Every round must produce the same number of messages (the peers do the same work)."""
        cpu: list[int] = []
        msgs: list[int] = []

        def target(state: Any) -> None:
            total = 0
            for k in range(self.batches):
                t0 = time.thread_time_ns()
                total += run_one(state, k)
                cpu.append(time.thread_time_ns() - t0)
            msgs.append(total)

        benchmark.pedantic(target, setup=lambda: ((setup(),), {}), rounds=self.rounds, iterations=1)
        assert len(set(msgs)) == 1, msgs
        a = np.array(cpu, dtype=np.float64) / self.n
        r = self.results[name] = {"cpu_ns_per_order_median": float(np.median(a)),
                                  "cpu_ns_per_order_p90": float(np.percentile(a, 90)), "messages": msgs[0]}
        benchmark.extra_info.update(r)

    def median(self, name: str) -> float | None:
        r = self.results.get(name)
        return r["cpu_ns_per_order_median"] if r else None

    def table(self, title: str, floor: str, ratios: Sequence[tuple[str, str]] = ()) -> None:
        """Print every peer's median/p90 ns per order and its ratio to ``floor``, then ``a / b`` for each pair
        in ``ratios`` (peer names) measured in this run."""
        if not self.results:
            return
        f = self.median(floor)
        print(f"\n{title}")
        print(f"{'peer':46} {'median ns':>10} {'p90 ns':>8} {'msgs':>7} {'x floor':>8}")
        for name, r in self.results.items():
            ratio = f"{r['cpu_ns_per_order_median'] / f:8.2f}" if f else "       -"
            print(f"{name:46} {r['cpu_ns_per_order_median']:10.0f} {r['cpu_ns_per_order_p90']:8.0f} "
                  f"{r['messages']:7d} {ratio}")
        for a, b in ratios:
            ma, mb = self.median(a), self.median(b)
            if ma and mb:
                print(f"{a} / {b}: {ma / mb:.2f}")
