"""Order validation: lowlat batch (framed buffer / list of buffers) and scalar vs a numpy vectorized check over
pre-decoded columns (does less: no decoding, no symbol lookup) vs official flatbuffers decode + Python checks.

    python -m pytest benchmarks/bench_validate.py --benchmark-only --benchmark-group-by=group
ns/order = the reported time / extra_info["orders_per_call"].
"""

import math

import numpy as np
import pytest
from conftest import SYMBOLS, OfficialOrder

import lowlat

pytestmark = pytest.mark.benchmark(disable_gc=True, warmup=True)
RULES = [lowlat.InstrumentRules(s, tick_size=0.01, lot_size=10, min_qty=10, max_qty=100_000, ref_price=100.0,
                                band=0.1, max_notional=1e8) for s in SYMBOLS]
V = lowlat.Validator(RULES)


@pytest.fixture(scope="module")
def bufs(order_fields):
    return [lowlat.encode_order(*f) for f in order_fields]


@pytest.mark.benchmark(group="validate.batch")
@pytest.mark.parametrize("n", [64, 4096])
def test_validate_frames(benchmark, bufs, n):
    framed = lowlat.frame(bufs[:n])
    out = np.zeros(n, np.uint8)
    assert benchmark(V.validate_frames, framed, out) == n
    assert (out == 0).all()
    benchmark.extra_info["orders_per_call"] = n


@pytest.mark.benchmark(group="validate.batch")
@pytest.mark.parametrize("n", [4096])
def test_validate_many(benchmark, bufs, n):
    out = np.zeros(n, np.uint8)
    assert benchmark(V.validate_many, bufs[:n], out) == n
    benchmark.extra_info["orders_per_call"] = n


@pytest.mark.benchmark(group="validate.batch")
@pytest.mark.parametrize("n", [4096])
def test_validate_numpy_vectorized(benchmark, order_fields, n):
    # columns already decoded (a numpy check cannot read FlatBuffers); same rules minus the symbol lookup
    price = np.array([f[2] for f in order_fields[:n]], np.float64)
    qty = np.array([f[3] for f in order_fields[:n]], np.int64)
    side = np.array([f[4] for f in order_fields[:n]], np.int8)

    def check(price, qty, side):
        ticks = price * 100.0
        ok = (np.isfinite(price) & (price > 0) & (qty > 0) & ((side == 0) | (side == 1))
              & (np.abs(ticks - np.rint(ticks)) <= 1e-6) & (qty % 10 == 0) & (qty >= 10) & (qty <= 100_000)
              & (price >= 90.0) & (price <= 110.0) & (price * qty <= 1e8))
        return ok
    assert benchmark(check, price, qty, side).all()
    benchmark.extra_info["orders_per_call"] = n


@pytest.mark.benchmark(group="validate.scalar")
def test_validate_scalar_lowlat(benchmark, bufs):
    assert benchmark(V.validate, bufs[0]) == 0


@pytest.mark.benchmark(group="validate.scalar")
def test_validate_scalar_official_flatbuffers(benchmark, bufs):
    allowed = set(SYMBOLS)

    def run(b):
        o = OfficialOrder.GetRootAs(b, 0)
        sym, px, q, side = o.Symbol(), o.Price(), o.Quantity(), o.Side()
        if sym is None or sym.decode() not in allowed:
            return 3
        if side not in (0, 1):
            return 4
        if not (math.isfinite(px) and px > 0):
            return 5
        if q == 0:
            return 6
        t = px * 100.0
        if abs(t - round(t)) > 1e-6:
            return 7
        if q % 10:
            return 8
        if not 90.0 <= px <= 110.0:
            return 11
        return 0
    assert benchmark(run, bufs[0]) == 0
