"""Validator vs the pure-Python reference (tests/reference/ref_validator.py), and batch == scalar."""

import math

import numpy as np
from _helpers import encode_order_dict as _encode
from hypothesis import given, settings
from hypothesis import strategies as st
from reference.ref_validator import RefRules, official_build_order, official_read_order, ref_validate

import lowlat
from lowlat import InstrumentRules, Validator

SYMS = ["AAPL", "BTC-USD", "€URO", "X"]

rules_st = st.lists(st.builds(
    RefRules,
    symbol=st.sampled_from(SYMS),
    tick_size=st.sampled_from([0.01, 0.05, 0.25, 1.0, 0.001, 5.0]),
    lot_size=st.integers(1, 10),
    min_qty=st.integers(0, 20),
    max_qty=st.integers(20, 5000),
    ref_price=st.sampled_from([0.0, 10.0, 100.0]),
    band=st.sampled_from([0.0, 0.05, 0.5]),
    max_notional=st.sampled_from([math.inf, 1000.0, 1e6]),
), max_size=4, unique_by=lambda r: r.symbol)

price_st = st.one_of(
    st.tuples(st.integers(-5, 20000), st.sampled_from([0.01, 0.05, 0.25, 1.0, 0.001, 5.0])).map(
        lambda t: t[0] * t[1]),
    st.floats(width=64),
    st.sampled_from([0.0, -0.0, math.inf, -math.inf, math.nan, 1e300, 5e-324]),
)
order_st = st.fixed_dictionaries({
    "id": st.integers(0, 3), "symbol": st.one_of(st.none(), st.sampled_from(SYMS + ["MSFT", ""])),
    "price": price_st, "quantity": st.integers(0, 6000) | st.sampled_from([0, 2**32 - 1]),
    "side": st.integers(-2, 3), "timestamp": st.integers(0, 10), "order_type": st.integers(-1, 2),
    "time_in_force": st.integers(-1, 3), "post_only": st.booleans(), "account": st.integers(0, 3),
    "client_order_id": st.none() | st.text(max_size=3), "stp": st.integers(0, 4),
})


def _validator(rules):
    return Validator([InstrumentRules(r.symbol, tick_size=r.tick_size, lot_size=r.lot_size, min_qty=r.min_qty,
                                      max_qty=r.max_qty, ref_price=r.ref_price, band=r.band,
                                      max_notional=r.max_notional) for r in rules])


@settings(max_examples=500, deadline=None)
@given(rules_st, order_st, st.booleans())
def test_validator_matches_reference(rules, d, official):
    buf = official_build_order(d) if official else _encode(d)
    fields, present = official_read_order(buf)
    want = ref_validate(fields, present, {r.symbol: r for r in rules})
    assert _validator(rules).validate(buf) == want


@settings(max_examples=200, deadline=None)
@given(rules_st, st.lists(order_st.map(_encode) | st.binary(max_size=40), max_size=40))
def test_batch_equals_scalar(rules, bufs):
    v = _validator(rules)
    want = [v.validate(b) for b in bufs]
    out = np.full(len(bufs) + 2, 250, np.uint8)
    assert v.validate_frames(lowlat.frame(bufs), out) == len(bufs)
    assert list(out[:len(bufs)]) == want and list(out[len(bufs):]) == [250, 250]
    out[:] = 250
    assert v.validate_many(bufs, out) == len(bufs)
    assert list(out[:len(bufs)]) == want
    out[:] = 250
    assert v.validate_many([memoryview(b) for b in bufs], out) == len(bufs)
    assert list(out[:len(bufs)]) == want


@settings(max_examples=400, deadline=None)
@given(rules_st, order_st.map(_encode), st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=4),
       st.none() | st.integers(0, 200))
def test_canonical_fast_path_equals_generic_verifier(rules, buf, edits, cut):
    # lowlat-encoded buffers take validate_buf_c's fast path; mutated ones may or may not: same code either way
    from lowlat._core import _validate_generic
    b = bytearray(buf)
    for pos, val in edits:
        b[pos % len(b)] = val
    data = bytes(b[:cut] if cut is not None else b)
    v = _validator(rules)
    assert v.validate(data) == _validate_generic(v, data)
