"""Validator: one test per reject code, the check order, scalar/frames/many paths and argument errors."""

import math

import numpy as np
import pytest
from reference.ref_validator import official_build_order

import lowlat
from lowlat import DecodeError, InstrumentRules, Reject, Validator

RULES = [
    InstrumentRules("AAPL", tick_size=0.01, lot_size=10, min_qty=10, max_qty=10_000, ref_price=100.0, band=0.05,
                    max_notional=500_000.0),
    InstrumentRules("BTC-USD", tick_size=0.5),
    InstrumentRules("ÄÖÜ", tick_size=1.0),
]
V = Validator(RULES)


def order(**kw):
    d = {"id": 1, "symbol": "AAPL", "price": 100.25, "quantity": 100, "side": 0, "timestamp": 1}
    d.update(kw)
    extra = {k: d.pop(k) for k in list(d) if k not in ("id", "symbol", "price", "quantity", "side", "timestamp")}
    return lowlat.encode_order(d["id"], d["symbol"], d["price"], d["quantity"], d["side"], d["timestamp"],
                               **extra)


@pytest.mark.parametrize("kw,code", [
    ({}, Reject.ACCEPTED),
    ({"symbol": "BTC-USD", "price": 65000.5, "quantity": 3}, Reject.ACCEPTED),
    ({"symbol": "ÄÖÜ", "price": 7.0, "quantity": 1}, Reject.ACCEPTED),
    ({"symbol": None}, Reject.MISSING_FIELD),
    ({"symbol": "MSFT"}, Reject.UNKNOWN_SYMBOL),
    ({"symbol": "AAP"}, Reject.UNKNOWN_SYMBOL),
    ({"side": 2}, Reject.BAD_SIDE),
    ({"side": -1}, Reject.BAD_SIDE),
    ({"order_type": 2}, Reject.BAD_ORDER_TYPE),
    ({"time_in_force": 3}, Reject.BAD_TIME_IN_FORCE),
    ({"time_in_force": -1}, Reject.BAD_TIME_IN_FORCE),
    ({"quantity": 0}, Reject.BAD_QUANTITY),
    ({"quantity": 105}, Reject.OFF_LOT),
    ({"quantity": 0 + 10, "symbol": "AAPL", "price": 100.0}, Reject.ACCEPTED),
    ({"quantity": 20_000}, Reject.QTY_ABOVE_MAX),
    ({"price": 0.0}, Reject.BAD_PRICE),
    ({"price": -1.0}, Reject.BAD_PRICE),
    ({"price": math.nan}, Reject.BAD_PRICE),
    ({"price": math.inf}, Reject.BAD_PRICE),
    ({"price": 100.255}, Reject.OFF_TICK),
    ({"price": 1e300}, Reject.BAD_PRICE),                        # 1e302 ticks: beyond the int64 tick range
    ({"price": 2.0**53 * 0.01}, Reject.PRICE_OUT_OF_BAND),         # a whole number of ticks, then the collar
    ({"price": 0.004}, Reject.OFF_TICK),                          # 0 ticks: not a positive multiple
    ({"price": 5e-324}, Reject.OFF_TICK),
    ({"price": 94.99}, Reject.PRICE_OUT_OF_BAND),
    ({"price": 105.01}, Reject.PRICE_OUT_OF_BAND),
    ({"price": 105.0, "quantity": 5000}, Reject.NOTIONAL_TOO_LARGE),
    ({"order_type": 1, "price": 0.0}, Reject.ACCEPTED),           # MARKET: price not checked
    ({"order_type": 1, "price": math.nan, "quantity": 105}, Reject.OFF_LOT),
])
def test_each_reject_code(kw, code):
    assert V.validate(order(**kw)) == code


def test_qty_below_min():
    v = Validator([InstrumentRules("X", tick_size=1.0, min_qty=5)])
    assert v.validate(lowlat.encode_order(1, "X", 3.0, 4, 0, 0)) == Reject.QTY_BELOW_MIN
    assert v.validate(lowlat.encode_order(1, "X", 3.0, 5, 0, 0)) == Reject.ACCEPTED


def test_missing_fields_from_official_builder():
    # the official builder omits default-valued fields: id 0 / quantity 0 / price 0.0 are then ABSENT
    assert V.validate(official_build_order({"symbol": "BTC-USD", "price": 1.0, "quantity": 1})) == \
        Reject.MISSING_FIELD
    assert V.validate(official_build_order({"id": 1, "symbol": "BTC-USD", "price": 1.0})) == Reject.MISSING_FIELD
    assert V.validate(official_build_order({"id": 1, "symbol": "BTC-USD", "quantity": 1})) == Reject.MISSING_FIELD
    assert V.validate(official_build_order({"id": 1, "symbol": "BTC-USD", "quantity": 1, "order_type": 1})) == \
        Reject.ACCEPTED
    assert V.validate(official_build_order({"id": 1, "symbol": "BTC-USD", "price": 2.5, "quantity": 1})) == \
        Reject.ACCEPTED


def test_malformed_is_a_code_not_an_exception():
    assert V.validate(b"") == Reject.MALFORMED
    assert V.validate(order()[:40]) == Reject.MALFORMED
    assert Reject(Reject.MALFORMED).reason


def test_batch_paths_equal_scalar():
    bufs = [order(), order(symbol="MSFT"), b"junk", order(quantity=105), order(price=94.0), b""]
    want = [V.validate(b) for b in bufs]
    out = np.zeros(len(bufs), np.uint8)
    assert V.validate_frames(lowlat.frame(bufs), out) == len(bufs)
    assert list(out) == want
    out[:] = 0
    assert V.validate_many(bufs, out) == len(bufs)
    assert list(out) == want
    out[:] = 0
    assert V.validate_many([bytearray(b) for b in bufs], out) == len(bufs)   # buffer-protocol path
    assert list(out) == want
    assert V.validate_many([], out) == 0


def test_batch_argument_errors():
    bufs = [order()] * 3
    with pytest.raises(ValueError, match="out_codes"):
        V.validate_frames(lowlat.frame(bufs), np.zeros(2, np.uint8))
    with pytest.raises(ValueError, match="out_codes"):
        V.validate_many(bufs, np.zeros(2, np.uint8))
    with pytest.raises(TypeError):
        V.validate_many(bufs, None)
    with pytest.raises(DecodeError, match="truncated"):
        V.validate_frames(lowlat.frame(bufs)[:-1], np.zeros(3, np.uint8))
    with pytest.raises(ValueError):         # wrong dtype
        V.validate_frames(lowlat.frame(bufs), np.zeros(3, np.int64))


def test_rules_argument_errors():
    with pytest.raises(ValueError):
        InstrumentRules("X", tick_size=0.0)
    with pytest.raises(ValueError):
        InstrumentRules("X", lot_size=0)
    with pytest.raises(ValueError):
        InstrumentRules("X", min_qty=5, max_qty=4)
    with pytest.raises(ValueError):
        InstrumentRules("X", ref_price=-1.0)
    with pytest.raises(ValueError, match="duplicate"):
        Validator([InstrumentRules("X"), InstrumentRules("X")])
    with pytest.raises(TypeError):
        Validator(["X"])
    r = InstrumentRules("X", ref_price=100.0, band=0.1)
    assert r.band_lo == pytest.approx(90.0) and r.band_hi == pytest.approx(110.0)
    assert InstrumentRules("X").band_lo == -math.inf
    assert "X" in repr(Validator([r]))


def test_many_symbols_hash_table():
    syms = [f"S{i:05d}" for i in range(3000)] + ["A" * 40, "B" * 17, ""]
    v = Validator([InstrumentRules(s, tick_size=1.0) for s in syms])
    for s in syms[::97] + syms[-3:]:
        assert v.validate(lowlat.encode_order(1, s, 5.0, 1, 0, 0)) == Reject.ACCEPTED
    assert v.validate(lowlat.encode_order(1, "S99999", 5.0, 1, 0, 0)) == Reject.UNKNOWN_SYMBOL
    assert Validator([]).validate(lowlat.encode_order(1, "X", 5.0, 1, 0, 0)) == Reject.UNKNOWN_SYMBOL
