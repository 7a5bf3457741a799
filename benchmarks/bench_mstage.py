"""Matching stage: per-order CPU of one batch through the compiled stage next to its peers, in one run.

Every peer gets the same sequence of batches (the demo's order pattern, ``lowlat.services.loadgen.OrderFactory``:
buys a little above and sells a little below the reference price, so about half the orders trade; 40,960 orders
per round in batches of ``LOWLAT_BENCH_MSTAGE_N``, default 1024) from the same state (a fresh matcher warmed
with the same 2,000 earlier orders, not timed), so books and read side grow as in a running service:

- **stage**: ``MatchStage.run`` over the received ``MessageBatch`` (verify + route + match + encode every
  report/trade/L2 update into the output batch + read-side updates);
- **stage via service**: ``MatcherService.handle_batch`` (the stage plus the service's output batch allocation,
  metrics and one ``publish_batch_to`` into a sink transport);
- **floor**: ``Engine.apply_frames`` on the same orders as framed ``CommandMsg`` FlatBuffers (verify + decode +
  match, one nogil call) plus ``MatchStage.encode_events`` (the same messages encoded at C speed, no read side):
  the minimal compiled work a matching service cannot avoid;
- **Python path**: ``MatcherService.handle`` (the previous service path: per-order decode into command rows, one
  ``Engine.apply_batch``, per-event encoding and read side in Python, ``publish_batch`` into the sink).

Goal: stage ≤ 2 × floor.  CPU is this thread's CPU time (``time.thread_time_ns``) per batch divided by its
orders; the table gives the median and p90 over all batches of all rounds.  Run::

    python -m pytest benchmarks/bench_mstage.py --benchmark-only -s -p no:cacheprovider
    LOWLAT_BENCH_MSTAGE_N=64 python -m pytest benchmarks/bench_mstage.py --benchmark-only -s -p no:cacheprovider

The table printed at the end is what BENCHMARKS.md records.
"""

from __future__ import annotations

import asyncio
import os
import time

import numpy as np
import pytest

from lowlat import _core
from lowlat._batch import MessageBatch
from lowlat._book import EVENT_DTYPE
from lowlat.services import ServiceConfig
from lowlat.services.loadgen import OrderFactory
from lowlat.services.matcher import MatcherService
from lowlat.transport import Message

N = int(os.environ.get("LOWLAT_BENCH_MSTAGE_N", "1024"))   # orders per batch
TOTAL = int(os.environ.get("LOWLAT_BENCH_MSTAGE_TOTAL", "40960"))  # orders per round, in batches of N
B = max(1, TOTAL // N)
MAX_ORDERS = 20_000                                        # resting orders per book
WARM = 2000                                                # orders applied before each round (not timed)
ROUNDS = int(os.environ.get("LOWLAT_BENCH_MSTAGE_ROUNDS", "3"))
SUBJECT = "orders.match.x"
NOW = 1_700_000_000_000_000_000
CFG = ServiceConfig(symbols=["AAPL", "MSFT", "BTC-USD"])
RESULTS: dict[str, dict] = {}
_LOOP = asyncio.new_event_loop()


class Sink:
    """A transport that takes what the service publishes and drops it (no broker cost in any peer)."""

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


def _orders() -> tuple[list[bytes], list[list[bytes]]]:
    f = OrderFactory(CFG)
    warm = [f.order(i, NOW) for i in range(WARM)]
    return warm, [[f.order(WARM + k * N + i, NOW) for i in range(N)] for k in range(B)]


WARM_ORDERS, BATCHES = _orders()


def _batch(payloads: list[bytes]) -> MessageBatch:
    b = MessageBatch(len(payloads), sum(len(p) + len(SUBJECT) for p in payloads) + 64)
    for p in payloads:
        assert b.append(p, SUBJECT)
    return b


def _frames(payloads: list[bytes]) -> bytes:
    msgs = []
    for p in payloads:
        o = _core.decode_order_msg(p)
        msgs.append(_core.encode_command(o))
    return _core.frame(msgs)


def _service() -> MatcherService:
    svc = MatcherService(CFG, max_orders=MAX_ORDERS)
    svc.transport = Sink()  # type: ignore[assignment]
    warm = _batch(WARM_ORDERS)
    out = MessageBatch(8 * WARM, 8 * WARM * svc.stage.max_message_bytes())
    assert svc.stage.run(warm, 0, out, NOW) == WARM
    return svc


def _record(name: str, cpu_ns: list[int], messages: int) -> None:
    a = np.array(cpu_ns, dtype=np.float64) / N
    RESULTS[name] = {"cpu_ns_per_order_median": float(np.median(a)), "cpu_ns_per_order_p90": float(np.percentile(a, 90)),
                     "messages": messages}


def _bench(benchmark, name: str, setup, run_one) -> None:
    """``setup()`` -> state (untimed, a fresh warmed matcher); ``run_one(state, k)`` handles batch k and returns
    the messages it produced; each batch's CPU time is one sample."""
    cpu: list[int] = []
    msgs: list[int] = []

    def target(state):
        total = 0
        for k in range(B):
            t0 = time.thread_time_ns()
            total += run_one(state, k)
            cpu.append(time.thread_time_ns() - t0)
        msgs.append(total)

    benchmark.pedantic(target, setup=lambda: ((setup(),), {}), rounds=ROUNDS, iterations=1)
    assert len(set(msgs)) == 1, msgs  # every round did the same work
    _record(name, cpu, msgs[0])
    benchmark.extra_info.update(RESULTS[name])


def _out(svc: MatcherService) -> MessageBatch:
    return MessageBatch(8 * N + 256, (8 * N + 256) * svc.stage.max_message_bytes())


def test_stage(benchmark):
    inbs = [_batch(b) for b in BATCHES]

    def setup():
        svc = _service()
        return [svc.stage, _out(svc)]

    def run_one(state, k):
        st, out = state
        out.clear()
        i = n = 0
        while i < N:
            j = st.run(inbs[k], i, out, NOW)
            if j == i and out.n == 0:  # one order's bound needs a larger batch (as handle_batch does)
                out = state[1] = MessageBatch(max(out.capacity, st.need_slots), max(out.arena_bytes, st.need_bytes))
            i = j
            n += out.n
            out.clear()
        return n

    _bench(benchmark, "stage: MatchStage.run", setup, run_one)


def test_stage_via_service(benchmark):
    inbs = [_batch(b) for b in BATCHES]

    def run_one(svc, k):
        before = svc.transport.n
        _LOOP.run_until_complete(svc.handle_batch(SUBJECT, inbs[k]))
        return svc.transport.n - before

    _bench(benchmark, "stage via MatcherService.handle_batch", _service, run_one)


def test_floor_apply_frames_plus_encoding(benchmark):
    frames = [np.frombuffer(_frames(b), dtype=np.uint8) for b in BATCHES]
    events = np.zeros(3 * MAX_ORDERS + 16, EVENT_DTYPE)  # any one command's bound fits
    events.view(np.uint8)[:] = 0

    def setup():
        svc = _service()
        return svc.engine, svc.stage, _out(svc)

    def run_one(state, k):
        engine, st, out = state
        fr = frames[k]
        pos = n = 0
        while pos < fr.size:  # apply_frames stops before a frame whose bound does not fit in events
            _, used, n_ev = engine.apply_frames(fr[pos:], events)
            pos += used
            e = 0
            while e < n_ev:
                out.clear()
                e += st.encode_events(events[e:], n_ev - e, out, NOW)
                n += out.n
        return n

    _bench(benchmark, "floor: Engine.apply_frames + encode_events", setup, run_one)


def test_python_service_path(benchmark):
    msgs = [[Message(SUBJECT, p, None, None) for p in b] for b in BATCHES]

    def run_one(svc, k):
        before = svc.transport.n
        _LOOP.run_until_complete(svc.handle(SUBJECT, msgs[k]))
        return svc.transport.n - before

    _bench(benchmark, "Python path: MatcherService.handle", _service, run_one)


@pytest.fixture(scope="module", autouse=True)
def _table():
    yield
    if not RESULTS:
        return
    floor = RESULTS.get("floor: Engine.apply_frames + encode_events", {}).get("cpu_ns_per_order_median")
    print(f"\nmatching stage: {B} batches of {N} orders (demo pattern, 3 symbols) after {WARM} warm-up orders, "
          f"{ROUNDS} rounds; CPU per order (per-batch samples)")
    print(f"{'peer':46} {'median ns':>10} {'p90 ns':>8} {'msgs':>7} {'x floor':>8}")
    for name, r in RESULTS.items():
        ratio = f"{r['cpu_ns_per_order_median'] / floor:8.2f}" if floor else "       -"
        print(f"{name:46} {r['cpu_ns_per_order_median']:10.0f} {r['cpu_ns_per_order_p90']:8.0f} "
              f"{r['messages']:7d} {ratio}")
