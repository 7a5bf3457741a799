"""One price -> ticks rule: the Validator, ``to_ticks`` and the book's FlatBuffer path give the same code for
the same (price, tick_size), edges included (half a tick, subnormals, the 2**51..2**63 tick range, beyond)."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import example, given, settings
from hypothesis import strategies as st

import lowlat._core as core
from lowlat import InstrumentRules, Validator, encode_order
from lowlat._book import EVENT_DTYPE, Book, EventKind, to_ticks
from lowlat.enums import Reject

PRICE_CODES = (Reject.ACCEPTED, Reject.BAD_PRICE, Reject.OFF_TICK)
TICKS = [0.01, 0.25, 1.0, 5.0, 1e-8, 0.1, 3.0, 1e-300, 1e300]


def edge_prices(tick: float) -> list[float]:
    out = [0.0, -0.0, -tick, 5e-324, 2.2250738585072014e-308, tick * 0.4, tick * 0.5, tick * 0.5000001,
           tick * (1 - 1e-7), tick, tick * 1.5, tick * (1 + 2e-6), math.inf, -math.inf, math.nan,
           1e300, 1.7976931348623157e308]
    for e in (50, 51, 52, 53, 62, 63, 64):
        for k in (-1.0, -0.5, 0.0, 0.5, 1.0):
            out.append((2.0**e + k) * tick)
    out += [math.nextafter(2.0**63 * tick, 0.0), 2.0**63 * tick, math.nextafter(2.0**63 * tick, math.inf)]
    return out


def reference(price: float, tick: float) -> tuple[int, int]:
    """The documented rule, in plain Python: BAD_PRICE for a price that is not a finite number > 0 or whose tick
    count price / tick is not below 2**63 (out of the int64 tick range); OFF_TICK unless price / tick is within
    1e-6 of a whole number >= 1."""
    if not (price > 0) or math.isinf(price):
        return Reject.BAD_PRICE, 0
    t = price / tick
    if not t < 2.0**63:
        return Reject.BAD_PRICE, 0
    r = float(round(t))                       # round half even, as the compiled rule
    if r < 1 or abs(t - r) > 1e-6:
        return Reject.OFF_TICK, 0
    return Reject.ACCEPTED, int(r)


def validator_code(price: float, tick: float) -> int:
    v = Validator([InstrumentRules("X", tick_size=tick)])
    return v.validate(encode_order(1, "X", price, 1, 0, 0))


def book_frame_code(price: float, tick: float) -> tuple[int, int]:
    """Code and ticks of the price through Book.apply_frames (OUT_OF_RANGE past the band still means the
    price converted: the event then carries the ticks)."""
    b = Book(lo=1, n_ticks=4, max_orders=4, tick_size=tick)
    f = core.frame([core.encode_command(core.OrderMsg(
        id=1, symbol="X", price=price, quantity=1, side=0, timestamp=0, order_type=0, time_in_force=0,
        post_only=False, account=1, client_order_id=None, stp=0))])
    ev = np.zeros(16, EVENT_DTYPE)
    _, _, n = b.apply_frames(np.frombuffer(f, np.uint8), ev)
    kinds = ev["kind"][:n].tolist()
    if EventKind.REJECTED in kinds:
        code = int(ev["reason"][kinds.index(EventKind.REJECTED)])
        if code == Reject.OUT_OF_RANGE:
            return Reject.ACCEPTED, int(ev["price"][kinds.index(EventKind.REJECTED)])
        return code, 0
    return Reject.ACCEPTED, int(ev["price"][0])


def check(price: float, tick: float) -> None:
    want = reference(price, tick)
    assert to_ticks(price, tick) == want, (price, tick)
    assert validator_code(price, tick) == want[0], (price, tick)
    assert book_frame_code(price, tick) == want, (price, tick)


def test_edges_agree():
    for tick in TICKS:
        for p in edge_prices(tick):
            check(p, tick)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(TICKS),
       st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                 st.integers(-3, 2**64).map(float),
                 st.tuples(st.integers(0, 2**62), st.sampled_from([0.0, 0.5, 1e-7, 2e-6, -0.3]))
                 .map(lambda t: float(t[0]) + t[1])))
@example(0.01, 0.004)
@example(0.01, 1e300)
def test_same_code_for_same_price(tick, x):
    # x is either a raw price or a tick count (+ a fraction); try both readings
    check(x, tick)
    check(x * tick, tick)


def test_rule_is_documented_in_both_places():
    assert "2**63" in (to_ticks.__doc__ or "")
    assert "2**63" in (Validator.__doc__ or "")


def test_codes_are_price_codes():
    for tick in TICKS:
        for p in edge_prices(tick):
            assert reference(p, tick)[0] in PRICE_CODES
