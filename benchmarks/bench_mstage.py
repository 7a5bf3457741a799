"""Matching stage: per-order CPU of one batch through the compiled stage next to its peers, in one run.

Every peer gets the same sequence of batches (the demo's order pattern, ``lowlat.services.loadgen.OrderFactory``:
buys a little above and sells a little below the reference price, so about half the orders trade; 40,960 orders
per round in batches of ``LOWLAT_BENCH_MSTAGE_N``, default 1024) from the same state (a fresh matcher warmed
with the same 2,000 earlier orders, not timed), so books and read side grow as in a running service:

- **stage**: ``MatchStage.run`` over the received ``MessageBatch`` (verify + route + match + encode every
  report/trade/L2 update into the output batch + read-side updates);
- **stage via service**: ``MatcherService.handle_batch`` (the stage plus the service's output batch allocation,
  metrics and one ``publish_batch_to`` into a sink transport; the coroutine is driven to its end directly, as
  the intake loop's ``await`` runs it, not through an event-loop turn);
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

import os

import numpy as np
import pytest
from _stage import Sink, StageRuns, drive, message_batch

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
RUNS = StageRuns(N, B, ROUNDS)


def _orders() -> tuple[list[bytes], list[list[bytes]]]:
    f = OrderFactory(CFG)
    warm = [f.order(i, NOW) for i in range(WARM)]
    return warm, [[f.order(WARM + k * N + i, NOW) for i in range(N)] for k in range(B)]


WARM_ORDERS, BATCHES = _orders()


def _batch(payloads: list[bytes]) -> MessageBatch:
    return message_batch(payloads, SUBJECT)


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

    RUNS.bench(benchmark, "stage: MatchStage.run", setup, run_one)


def test_stage_via_service(benchmark):
    inbs = [_batch(b) for b in BATCHES]

    def run_one(svc, k):
        before = svc.transport.n
        drive(svc.handle_batch(SUBJECT, inbs[k]))
        return svc.transport.n - before

    RUNS.bench(benchmark, "stage via MatcherService.handle_batch", _service, run_one)


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

    RUNS.bench(benchmark, "floor: Engine.apply_frames + encode_events", setup, run_one)


def test_python_service_path(benchmark):
    msgs = [[Message(SUBJECT, p, None, None) for p in b] for b in BATCHES]

    def run_one(svc, k):
        before = svc.transport.n
        drive(svc.handle(SUBJECT, msgs[k]))
        return svc.transport.n - before

    RUNS.bench(benchmark, "Python path: MatcherService.handle", _service, run_one)


@pytest.fixture(scope="module", autouse=True)
def _table():
    yield
    RUNS.table(f"matching stage: {B} batches of {N} orders (demo pattern, 3 symbols) after {WARM} warm-up orders, "
               f"{ROUNDS} rounds; CPU per order (per-batch samples)",
               "floor: Engine.apply_frames + encode_events",
               [("stage: MatchStage.run", "floor: Engine.apply_frames + encode_events"),
                ("Python path: MatcherService.handle", "stage: MatchStage.run")])
