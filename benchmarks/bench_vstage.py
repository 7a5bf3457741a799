"""Validator stage: per-order CPU of one batch through the compiled stage next to its peers, in one run.

Every peer gets the same sequence of batches: the demo's order pattern (``lowlat.services.loadgen.OrderFactory``,
3 symbols, 5 % deliberately invalid orders) with every 20th frame truncated (MALFORMED), so ~10 % of the orders
are rejected; 40,960 orders per round in batches of ``LOWLAT_BENCH_VSTAGE_N`` (default 1024).  Mode
``LOWLAT_BENCH_VSTAGE_MODE``: ``request`` (default: every order has its own reply subject and gets one
``ValidationResult`` back, exactly the work of the floor) or ``pipeline`` (the demo's: no reply subjects, every
result published to ``orders.validated``/``orders.rejected`` and accepted orders forwarded to the matcher's
subject).  Peers:

- **stage**: ``ValidateStage.run`` over the received ``MessageBatch`` (verify + validate + encode every result +
  copy it, with its destination subject, into the output batch);
- **stage via service**: ``ValidatorService.handle_batch`` (the stage plus the service's output batch allocation,
  metrics and one ``publish_batch_to`` into a sink transport; the coroutine is driven to its end directly, as
  the intake loop's ``await`` runs it, not through an event-loop turn);
- **floor**: ``Validator.validate_many`` on the same payloads (verify + validate, one nogil loop) plus
  ``lowlat._encode.encode_validation_results_into`` (every result encoded at C speed into a preallocated buffer;
  order ids and symbols read beforehand, untimed): the compiled work a validator cannot avoid;
- **Python path**: ``ValidatorService.handle_python`` (the previous service path: ``validate_many``, per-order
  result encoding and per-message publish in Python, into the sink).

Goal: stage ≤ 2 × floor.  CPU is this thread's CPU time per batch divided by its orders (median and p90 over all
batches of all rounds).  Run::

    python -m pytest benchmarks/bench_vstage.py --benchmark-only -s -p no:cacheprovider
    LOWLAT_BENCH_VSTAGE_N=64 python -m pytest benchmarks/bench_vstage.py --benchmark-only -s -p no:cacheprovider
    LOWLAT_BENCH_VSTAGE_MODE=pipeline python -m pytest benchmarks/bench_vstage.py --benchmark-only -s -p no:cacheprovider
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from _stage import Sink, StageRuns, drive, message_batch

from lowlat import _core, _encode
from lowlat._batch import MessageBatch
from lowlat.errors import DecodeError
from lowlat.services import ServiceConfig
from lowlat.services.loadgen import OrderFactory
from lowlat.services.validator import ValidatorService
from lowlat.transport import Message

N = int(os.environ.get("LOWLAT_BENCH_VSTAGE_N", "1024"))   # orders per batch
TOTAL = int(os.environ.get("LOWLAT_BENCH_VSTAGE_TOTAL", "40960"))  # orders per round, in batches of N
B = max(1, TOTAL // N)
ROUNDS = int(os.environ.get("LOWLAT_BENCH_VSTAGE_ROUNDS", "3"))
MODE = os.environ.get("LOWLAT_BENCH_VSTAGE_MODE", "request")
if MODE not in ("request", "pipeline"):
    raise ValueError(f"LOWLAT_BENCH_VSTAGE_MODE must be request or pipeline, not {MODE!r}")
NOW = 1_700_000_000_000_000_000
CFG = ServiceConfig(symbols=["AAPL", "MSFT", "BTC-USD"], reject_ratio=0.05, publish_results=MODE == "pipeline",
                    forward=MODE == "pipeline")
SUBJECT = CFG.orders_subject
RUNS = StageRuns(N, B, ROUNDS)

STAGE = "stage: ValidateStage.run"
FLOOR = "floor: validate_many + encode results"
PYTHON = "Python path: ValidatorService.handle_python"


def _orders() -> list[list[tuple[bytes, str | None]]]:
    f = OrderFactory(CFG)
    out = []
    for k in range(B):
        batch = []
        for i in range(k * N, (k + 1) * N):
            p = f.order(i, NOW)
            if i % 20 == 7:
                p = p[:len(p) // 2]  # truncated: fails verification -> MALFORMED
            batch.append((p, f"_INBOX.vbench.{i}" if MODE == "request" else None))
        out.append(batch)
    return out


BATCHES = _orders()


def _service() -> ValidatorService:
    svc = ValidatorService(CFG)
    svc.transport = Sink()  # type: ignore[assignment]
    return svc


def test_stage(benchmark):
    inbs = [message_batch([p for p, _ in b], SUBJECT, [r for _, r in b]) for b in BATCHES]
    arena = max(4 * inb.used for inb in inbs) + 512 * N  # results + subjects + forwarded orders of any batch

    def setup():
        return _service().stage, MessageBatch(3 * N, arena)

    def run_one(state, k):
        st, out = state
        i = n = 0
        while i < N:
            i = st.run(inbs[k], i, out, NOW)
            n += out.n
            out.clear()
        return n

    RUNS.bench(benchmark, STAGE, setup, run_one)


def test_stage_via_service(benchmark):
    inbs = [message_batch([p for p, _ in b], SUBJECT, [r for _, r in b]) for b in BATCHES]

    def run_one(svc, k):
        before = svc.transport.n
        drive(svc.handle_batch(SUBJECT, inbs[k]))
        return svc.transport.n - before

    RUNS.bench(benchmark, "stage via ValidatorService.handle_batch", _service, run_one)


def _result_fields(payloads: list[bytes], symbols: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """What a result carries besides its code: the order id and symbol (0 / absent when the frame is malformed)."""
    ids = np.zeros(len(payloads), np.uint64)
    idx = np.full(len(payloads), -1, np.int32)
    for i, p in enumerate(payloads):
        try:
            oid, sym = _core.read_order(p)[:2]
        except DecodeError:
            continue
        ids[i] = oid
        if sym is not None:
            if sym not in symbols:
                symbols.append(sym)
            idx[i] = symbols.index(sym)
    return ids, idx


def test_floor_validate_many_plus_encoding(benchmark):
    payloads = [[p for p, _ in b] for b in BATCHES]
    symbols: list[str] = []
    fields = [_result_fields(b, symbols) for b in payloads]
    buf = bytearray(N * (4 + _encode.validation_result_size("x" * max(map(len, symbols)))))
    codes = np.zeros(N, np.uint8)

    def setup():
        return _service().validator

    def run_one(v, k):
        v.validate_many(payloads[k], codes)
        ids, idx = fields[k]
        _encode.encode_validation_results_into(buf, 0, ids, codes, idx, symbols, NOW)
        return N

    RUNS.bench(benchmark, FLOOR, setup, run_one)


def test_python_service_path(benchmark):
    msgs = [[Message(SUBJECT, p, None, r) for p, r in b] for b in BATCHES]

    def run_one(svc, k):
        before = svc.transport.n
        drive(svc.handle_python(SUBJECT, msgs[k]))
        return svc.transport.n - before

    RUNS.bench(benchmark, PYTHON, _service, run_one)


@pytest.fixture(scope="module", autouse=True)
def _table():
    yield
    RUNS.table(f"validator stage ({MODE} mode): {B} batches of {N} orders (demo pattern, 3 symbols, ~10 % rejected "
               f"of which half malformed), {ROUNDS} rounds; CPU per order (per-batch samples)",
               FLOOR, [(STAGE, FLOOR), (PYTHON, STAGE)])
