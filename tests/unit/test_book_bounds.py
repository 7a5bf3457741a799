"""Book boundaries: int64 price overflow with a negative band start, the quantity bound, sizes and types refused
at the boundary (floats, tick_size=inf, depth(n) beyond the band, a Book too big to allocate)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lowlat._book import COMMAND_DTYPE, EVENT_DTYPE, MAX_QTY, RESTING_DTYPE, Book, Engine
from lowlat.enums import Reject, Side, TimeInForce

I64_MAX = 2**63 - 1


def neg_book() -> Book:
    return Book(lo=-1000, n_ticks=2000, max_orders=16)


@pytest.mark.parametrize("price", [I64_MAX, I64_MAX - 999, 2**63 - 1000, 2**62, -(2**63), -1001, 1000])
def test_submit_far_price_with_negative_lo_is_out_of_range(price):
    b = neg_book()
    assert b.submit(1, Side.SELL, price, 5)[0] == Reject.OUT_OF_RANGE
    assert b.n_orders == 0


def test_no_trade_through_at_huge_price():
    b = neg_book()
    assert b.submit(1, Side.BUY, 999, 5)[0] == Reject.ACCEPTED
    r, filled, _ = b.submit(2, Side.SELL, 2**63 - 1000, 5)
    assert (r, filled) == (Reject.OUT_OF_RANGE, 0)
    assert b.order(1) == (Side.BUY, 999, 5, 0)


def test_modify_far_price_is_out_of_range():
    b = neg_book()
    b.submit(1, Side.BUY, -5, 5)
    b.submit(2, Side.SELL, 999, 5)
    assert b.modify(1, 2**63 - 1000, 5)[0] == Reject.OUT_OF_RANGE
    assert b.modify(1, I64_MAX, 5)[0] == Reject.OUT_OF_RANGE
    assert b.order(1) == (Side.BUY, -5, 5, 0) and b.order(2) == (Side.SELL, 999, 5, 0)


def test_apply_batch_far_price_is_out_of_range():
    b = neg_book()
    b.submit(1, Side.BUY, 999, 5)
    cmds = np.zeros(3, COMMAND_DTYPE)
    cmds["op"] = [0, 0, 2]
    cmds["oid"] = [2, 3, 1]
    cmds["side"] = [Side.SELL, Side.SELL, 0]
    cmds["price"] = [2**63 - 1000, I64_MAX, I64_MAX]
    cmds["qty"] = 5
    cmds["stp"] = -1
    ev = np.zeros(64, EVENT_DTYPE)
    n, k = b.apply_batch(cmds, ev)
    assert n == 3
    assert ev["reason"][:k].tolist() == [Reject.OUT_OF_RANGE] * 3
    assert b.order(1) == (Side.BUY, 999, 5, 0)


def test_restore_far_price_is_refused():
    rows = np.zeros(1, RESTING_DTYPE)
    rows["oid"], rows["price"], rows["qty"], rows["side"], rows["stp"] = 1, 2**63 - 1000, 5, 1, -1
    with pytest.raises(ValueError, match="out of range"):
        neg_book().restore(rows.tobytes(), 1, 0)


@pytest.mark.parametrize("lo,n", [(I64_MAX, 2), (I64_MAX - 10, 12), (-(2**63), 1)])
def test_band_must_fit_in_int64(lo, n):
    if lo + n - 1 <= I64_MAX:
        Book(lo=lo, n_ticks=n, max_orders=1)
        return
    with pytest.raises(ValueError, match="int64"):
        Book(lo=lo, n_ticks=n, max_orders=1)


def test_band_at_the_top_of_int64_works():
    b = Book(lo=I64_MAX - 9, n_ticks=10, max_orders=4)
    assert b.submit(1, Side.SELL, I64_MAX, 3)[0] == Reject.ACCEPTED
    assert b.submit(2, Side.BUY, I64_MAX, 1)[:2] == (Reject.ACCEPTED, 1)
    assert b.best_ask() == I64_MAX


def test_quantity_bound():
    b = Book(lo=0, n_ticks=10, max_orders=8)
    assert MAX_QTY == 2**32 - 1
    for q in (MAX_QTY + 1, 2**62 + 2**61, I64_MAX, 0, -1):
        assert b.submit(1, Side.SELL, 5, q)[0] == Reject.BAD_QUANTITY, q
    b.submit(1, Side.SELL, 5, MAX_QTY)
    assert b.modify(1, 5, MAX_QTY + 1)[0] == Reject.BAD_QUANTITY
    rows = np.zeros(1, RESTING_DTYPE)
    rows["oid"], rows["price"], rows["qty"], rows["side"], rows["stp"] = 1, 5, MAX_QTY + 1, 1, -1
    with pytest.raises(ValueError, match="out of range"):
        Book(lo=0, n_ticks=10, max_orders=8).restore(rows.tobytes(), 1, 0)


def test_level_totals_and_fok_sums_do_not_wrap():
    b = Book(lo=0, n_ticks=10, max_orders=8)
    for i in range(6):
        assert b.submit(i + 1, Side.SELL, 5, MAX_QTY)[0] == Reject.ACCEPTED
    d = b.depth(Side.SELL, 1)
    assert d["qty"].tolist() == [6 * MAX_QTY] and d["count"].tolist() == [6]
    # a FOK for all of the first two is fillable
    r, filled, _ = b.submit(10, Side.BUY, 5, MAX_QTY, tif=TimeInForce.FOK)
    assert (r, filled) == (Reject.ACCEPTED, MAX_QTY)
    assert b.depth(Side.SELL, 1)["qty"].tolist() == [5 * MAX_QTY]


def test_depth_with_huge_n_returns_what_exists():
    b = Book(lo=0, n_ticks=10, max_orders=8)
    b.submit(1, Side.SELL, 5, 1)
    assert b.depth(Side.SELL, 2**40)["price"].tolist() == [5]
    assert len(b.depth(Side.BUY, 2**62)) == 0


@pytest.mark.parametrize("tick", [math.inf, -math.inf, math.nan, 0.0, -1.0])
def test_bad_tick_size_refused(tick):
    with pytest.raises(ValueError, match="tick_size"):
        Book(lo=0, n_ticks=10, max_orders=8, tick_size=tick)
    with pytest.raises(ValueError, match="tick_size"):
        Engine().add_book("X", 0, 10, 8, tick_size=tick)


@pytest.mark.parametrize("call", [
    lambda b: b.submit(1, 0, 5.0, 1),
    lambda b: b.submit(1, 0, 5, 1.5),
    lambda b: b.submit(1.0, 0, 5, 1),
    lambda b: b.submit(1, 0.0, 5, 1),
    lambda b: b.submit(1, 0, 5, 1, account=1.0),
    lambda b: b.submit(1, 0, 5, 1, order_type=0.0),
    lambda b: b.submit(1, 0, 5, 1, tif=0.0),
    lambda b: b.submit(1, 0, 5, 1, stp=0.0),
    lambda b: b.modify(1, 5.5, 1),
    lambda b: b.modify(1, 5, 1.0),
    lambda b: b.cancel(1.0),
    lambda b: b.mass_cancel(0.0),
])
def test_floats_refused(call):
    b = Book(lo=0, n_ticks=10, max_orders=8)
    with pytest.raises(TypeError):
        call(b)
    assert b.n_orders == 0 and b.seq == 0


def test_numpy_integers_accepted():
    b = Book(lo=0, n_ticks=10, max_orders=8)
    assert b.submit(np.uint64(1), np.int8(1), np.int64(5), np.int32(3))[0] == Reject.ACCEPTED
    assert b.modify(np.uint64(1), np.int64(6), np.int64(2))[0] == Reject.ACCEPTED
    assert b.order(1) == (1, 6, 2, 0)


@pytest.mark.parametrize("n_ticks,max_orders,cap", [(1, 1, -1), (1000, 100, -1), (1 << 20, 5000, 100), (77, 3, 16)])
def test_memory_bytes_is_what_the_book_holds(n_ticks, max_orders, cap):
    b = Book(lo=0, n_ticks=n_ticks, max_orders=max_orders, event_capacity=cap)
    assert Book.memory_bytes(n_ticks, max_orders, cap) == b.nbytes
    assert b.nbytes >= b.events.nbytes + 2 * b.levels(0).nbytes


def test_memory_per_order_is_documented_truthfully():
    per_order = (Book.memory_bytes(1, 1 << 20) - Book.memory_bytes(1, 1)) / ((1 << 20) - 1)
    doc = Book.__doc__ or ""
    assert 300 <= per_order <= 400
    assert "event buffer" in doc and "memory_bytes" in doc


def test_book_too_big_is_refused_before_allocating():
    with pytest.raises(MemoryError, match="MiB"):
        Book(lo=0, n_ticks=1 << 31, max_orders=1 << 30)
    with pytest.raises(MemoryError, match="MiB"):
        Book(lo=0, n_ticks=1, max_orders=1, event_capacity=1 << 55)
