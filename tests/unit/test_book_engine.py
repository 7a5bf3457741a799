"""Hand-written scenarios for lowlat.Book: STP edge cases, FOK with own orders in the way, modify priority,
BOOK_FULL, id-map churn, tick conversion, batch resumption, the C/Python mirrors."""

from __future__ import annotations

import numpy as np
import pytest

import lowlat._book as B
from lowlat.enums import OrderType, Reject, Side, StpMode, TimeInForce

BUY, SELL = Side.BUY, Side.SELL
K = B.EventKind


def kinds(book):
    return [K(k).name for k in book.last_events()["kind"]]


def make(stp=StpMode.NONE, max_orders=64):
    return B.Book(100, 50, max_orders, default_stp=stp)


def test_price_time_priority_fifo_and_partial_fill():
    b = make()
    b.submit(1, SELL, 110, 5, account=1)
    b.submit(2, SELL, 110, 5, account=2)
    b.submit(3, SELL, 109, 5, account=3)
    r, filled, _n = b.submit(4, BUY, 110, 12, account=9)
    assert (r, filled) == (0, 12)
    ev = b.last_events()
    fills = ev[ev["kind"] == K.FILL]
    assert fills[["maker_oid", "price", "qty", "aux"]].tolist() == [(3, 109, 5, 0), (1, 110, 5, 0), (2, 110, 2, 3)]
    assert fills["trade_id"].tolist() == [1, 2, 3]
    assert (np.diff(ev["seq"]) == 1).all()
    assert b.queue(SELL, 110).tolist() == [(2, 2, 3)]
    assert b.best_ask() == 110 and b.best_bid() is None


def test_ioc_remainder_expires_and_market_without_liquidity_rejects():
    b = make()
    b.submit(1, SELL, 110, 5)
    r, filled, _ = b.submit(2, BUY, 111, 8, tif=TimeInForce.IOC)
    assert (r, filled) == (0, 5)
    assert kinds(b) == ["ACCEPTED", "FILL", "L2", "EXPIRED"]
    assert b.last_events()[-1]["qty"] == 3
    assert b.submit(3, BUY, 0, 1, order_type=OrderType.MARKET)[0] == Reject.NO_LIQUIDITY
    assert b.submit(4, BUY, 0, 1, order_type=OrderType.MARKET, post_only=True)[0] == Reject.MARKET_POST_ONLY


def test_post_only_rejects_when_crossing_and_rests_otherwise():
    b = make()
    b.submit(1, SELL, 110, 5)
    assert b.submit(2, BUY, 110, 1, post_only=True)[0] == Reject.POST_ONLY_WOULD_CROSS
    assert b.submit(3, BUY, 109, 1, post_only=True)[0] == 0
    # a post-only order moved to a crossing price is rejected and stays where it was
    assert b.modify(3, 110, 1)[0] == Reject.POST_ONLY_WOULD_CROSS
    assert b.order(3) == (BUY, 109, 1, 0)


def test_fok_is_all_or_nothing_before_any_fill():
    b = make()
    b.submit(1, SELL, 110, 5)
    b.submit(2, SELL, 111, 5)
    r, filled, n = b.submit(3, BUY, 111, 11, tif=TimeInForce.FOK)
    assert (r, filled, n) == (Reject.FOK_NOT_FILLABLE, 0, 1)
    assert b.depth(SELL, 5).tolist() == [(110, 5, 1), (111, 5, 1)]
    assert b.submit(4, BUY, 111, 10, tif=TimeInForce.FOK)[:2] == (0, 10)
    assert b.n_orders == 0


@pytest.mark.parametrize("mode, expect", [
    # own order at 110 sits between foreign liquidity: 4 lots before it, 6 after
    (StpMode.NONE, 0),  # own liquidity trades -> 4 + 3 + 6 = 13 >= 10
    (StpMode.CANCEL_OLDEST, 0),  # own order skipped (cancelled), 4 + 6 = 10 >= 10
    (StpMode.CANCEL_NEWEST, Reject.FOK_NOT_FILLABLE),  # taker would stop at own order after 4
    (StpMode.CANCEL_BOTH, Reject.FOK_NOT_FILLABLE),
    (StpMode.DECREMENT_AND_CANCEL, Reject.FOK_NOT_FILLABLE),
])
def test_fok_with_own_orders_in_the_way(mode, expect):
    b = make()
    b.submit(1, SELL, 110, 4, account=2)
    b.submit(2, SELL, 110, 3, account=1)  # own
    b.submit(3, SELL, 111, 6, account=2)
    r, filled, _ = b.submit(9, BUY, 111, 10, account=1, tif=TimeInForce.FOK, stp=mode)
    assert r == expect
    if r:
        assert b.n_orders == 3  # a rejected FOK changes nothing, not even the own order
    else:
        assert filled == 10


def test_stp_cancel_newest_after_partial_fill():
    b = make(StpMode.CANCEL_NEWEST)
    b.submit(1, SELL, 110, 4, account=2)
    b.submit(2, SELL, 110, 3, account=1)
    r, filled, _ = b.submit(9, BUY, 112, 10, account=1)
    assert (r, filled) == (0, 4)
    assert kinds(b) == ["ACCEPTED", "FILL", "L2", "CANCELED"]
    last = b.last_events()[-1]
    assert (last["oid"], last["qty"], last["reason"]) == (9, 6, Reject.SELF_TRADE_PREVENTED)
    assert b.order(2) == (SELL, 110, 3, 1) and b.order(9) is None


def test_stp_cancel_oldest_keeps_matching():
    b = make(StpMode.CANCEL_OLDEST)
    b.submit(1, SELL, 110, 3, account=1)
    b.submit(2, SELL, 110, 4, account=2)
    r, filled, _ = b.submit(9, BUY, 110, 10, account=1)
    assert (r, filled) == (0, 4)
    assert kinds(b) == ["ACCEPTED", "CANCELED", "FILL", "L2", "L2"]
    assert b.order(9) == (BUY, 110, 6, 1)  # remainder rests


def test_stp_cancel_both():
    b = make(StpMode.CANCEL_BOTH)
    b.submit(1, SELL, 110, 3, account=1)
    b.submit(2, SELL, 110, 4, account=2)
    assert b.submit(9, BUY, 110, 10, account=1)[:2] == (0, 0)
    assert kinds(b) == ["ACCEPTED", "CANCELED", "L2", "CANCELED"]
    assert [b.order(1), b.order(9)] == [None, None] and b.order(2) is not None


def test_stp_decrement_and_cancel():
    b = make(StpMode.DECREMENT_AND_CANCEL)
    b.submit(1, SELL, 110, 3, account=1)
    b.submit(2, SELL, 110, 4, account=2)
    assert b.submit(9, BUY, 110, 10, account=1)[:2] == (0, 4)  # 3 decremented, 4 filled, 3 rest
    assert b.order(9) == (BUY, 110, 3, 1) and b.order(1) is None
    ev = b.last_events()
    assert ev[ev["kind"] == K.CANCELED][["oid", "qty", "leaves"]].tolist() == [(1, 3, 0), (9, 3, 7)]
    # taker smaller than the own maker: the maker keeps the difference, the taker is gone
    b.submit(10, SELL, 111, 8, account=3)
    assert b.submit(11, BUY, 111, 2, account=3)[:2] == (0, 0)
    assert b.order(10) == (SELL, 111, 6, 3) and b.order(11) is None


def test_per_order_stp_override_beats_default():
    b = make(StpMode.CANCEL_NEWEST)
    b.submit(1, SELL, 110, 3, account=1)
    assert b.submit(2, BUY, 110, 3, account=1, stp=StpMode.NONE)[:2] == (0, 3)


def test_modify_priority_rules():
    b = make()
    for oid in (1, 2, 3):
        b.submit(oid, BUY, 105, 5)
    b.modify(1, 105, 4)  # decrease keeps priority
    assert b.queue(BUY, 105)["oid"].tolist() == [1, 2, 3]
    b.modify(1, 105, 6)  # increase loses it
    assert b.queue(BUY, 105)["oid"].tolist() == [2, 3, 1]
    b.modify(2, 104, 5)  # price change loses it
    assert b.queue(BUY, 104)["oid"].tolist() == [2]
    assert b.modify(99, 105, 1)[0] == Reject.UNKNOWN_ORDER
    assert b.modify(3, 105, 0)[0] == Reject.BAD_QUANTITY
    assert b.modify(3, 1000, 1)[0] == Reject.OUT_OF_RANGE
    # a move across the spread trades
    b.submit(7, SELL, 108, 2)
    assert b.modify(3, 108, 5)[:2] == (0, 2)
    assert b.order(3) == (BUY, 108, 3, 0)


def test_mass_cancel_by_account():
    b = make()
    b.submit(1, BUY, 101, 1, account=5)
    b.submit(2, BUY, 102, 2, account=6)
    b.submit(3, SELL, 120, 3, account=5)
    assert b.mass_cancel(5)[:2] == (0, 2)
    last = b.last_events()[-1]
    assert (K(last["kind"]), last["account"], last["qty"], last["aux"]) == (K.MASS_CANCELED, 5, 4, 2)
    assert b.n_orders == 1


def test_validation_rejects_and_book_full():
    b = make(max_orders=2)
    assert b.submit(1, 2, 110, 1)[0] == Reject.BAD_SIDE
    assert b.submit(1, BUY, 110, 0)[0] == Reject.BAD_QUANTITY
    assert b.submit(1, BUY, 99, 1)[0] == Reject.OUT_OF_RANGE
    assert b.submit(1, BUY, 150, 1)[0] == Reject.OUT_OF_RANGE
    assert b.submit(1, BUY, 110, 1, order_type=5)[0] == Reject.BAD_ORDER_TYPE
    assert b.submit(1, BUY, 110, 1, tif=9)[0] == Reject.BAD_TIME_IN_FORCE
    assert b.submit(1, BUY, 110, 1, stp=7)[0] == Reject.BAD_STP_MODE
    assert b.submit(1, BUY, 110, 1)[0] == 0
    assert b.submit(1, BUY, 110, 1)[0] == Reject.DUPLICATE_ORDER_ID
    assert b.submit(2, SELL, 120, 1)[0] == 0
    assert b.submit(3, SELL, 121, 1)[0] == Reject.BOOK_FULL
    assert b.submit(4, SELL, 110, 2)[:2] == (0, 1)  # crossing order frees a slot and rests
    assert b.order(4) == (SELL, 110, 1, 0)
    assert b.cancel(12345)[0] == Reject.UNKNOWN_ORDER


def test_id_map_survives_long_churn():
    # add/cancel churn with ever-new ids: backward-shift deletion leaves no tombstones behind
    b = B.Book(0, 1000, 256)
    live = []
    for oid in range(1, 100_000):
        assert b.submit(oid, oid & 1, 400 + (oid & 1) * 100 + oid % 50, 1)[0] == 0
        live.append(oid)
        if len(live) > 200:
            assert b.cancel(live.pop(0))[0] == 0
    assert b.n_orders == 200
    for oid in live:
        assert b.order(oid) is not None
    b.check()


def test_to_ticks():
    assert B.to_ticks(100.01, 0.01) == (0, 10001)
    assert B.to_ticks(100.015, 0.01) == (Reject.OFF_TICK, 0)
    assert B.to_ticks(float("nan"), 0.01)[0] == Reject.BAD_PRICE
    assert B.to_ticks(-1.0, 0.01)[0] == Reject.BAD_PRICE


def test_batch_stops_before_a_command_that_may_not_fit_and_resumes():
    b = B.Book(100, 50, 64)
    cmds = np.zeros(10, B.COMMAND_DTYPE)
    cmds["op"] = B.Command.NEW
    cmds["oid"] = np.arange(1, 11)
    cmds["side"] = 0
    cmds["price"] = 110
    cmds["qty"] = 1
    cmds["stp"] = -1
    out = np.zeros(20, B.EVENT_DTYPE)
    n, n_ev = b.apply_batch(cmds, out)
    assert 0 < n < 10 and n_ev == 2 * n
    n2, _ = b.apply_batch(cmds[n:], out)
    assert n + n2 <= 10 and b.n_orders == n + n2
    with pytest.raises(ValueError):
        b.apply_batch(cmds[:1], np.zeros(3, B.EVENT_DTYPE))
    with pytest.raises(ValueError):
        b.apply_batch(cmds, out, np.zeros(2, np.int64))


def test_engine_routes_by_book_index_and_rejects_unknown_symbol():
    e = B.Engine()
    e.add_book("AAA", 100, 50, 16)
    e.add_book("BBB", 100, 50, 16)
    with pytest.raises(ValueError):
        e.add_book("AAA", 100, 50, 16)
    cmds = np.zeros(3, B.COMMAND_DTYPE)
    cmds["book"] = [e.index("BBB"), 7, e.index("AAA")]
    cmds["oid"] = [1, 2, 3]
    cmds["price"] = 110
    cmds["qty"] = 1
    cmds["stp"] = -1
    out = np.zeros(64, B.EVENT_DTYPE)
    n, n_ev = e.apply_batch(cmds, out)
    assert n == 3
    assert out[:n_ev][["book", "kind", "reason", "seq"]].tolist() == [
        (1, K.ACCEPTED, 0, 1), (1, K.L2, 0, 2), (7, K.REJECTED, Reject.UNKNOWN_SYMBOL, 0),
        (0, K.ACCEPTED, 0, 1), (0, K.L2, 0, 2)]
    assert e["BBB"].order(1) == (BUY, 110, 1, 0) and len(e) == 2


def test_levels_view_is_zero_copy_and_read_only():
    b = make()
    v = b.levels(BUY)
    b.submit(1, BUY, 105, 7)
    assert v[5]["qty"] == 7 and v[5]["count"] == 1
    with pytest.raises(ValueError):
        v[5] = v[4]


def test_c_constants_mirror_python_enums():
    assert [k.value for k in B.EventKind] == list(range(1, 9))
    assert [c.value for c in B.Command] == [0, 1, 2, 3]
    assert B.COMMAND_DTYPE.itemsize == 48 and B.EVENT_DTYPE.itemsize == 80


def test_calls_from_another_thread_during_a_nogil_batch_are_refused_not_raced():
    import threading

    b = B.Book(0, 1 << 12, 1 << 16)
    # the debug build scans every invariant after each command (O(levels)): fewer commands keep it to seconds
    n = 4_000 if B.DEBUG else 200_000
    cmds = np.zeros(n, B.COMMAND_DTYPE)
    cmds["oid"] = np.arange(1, n + 1)
    cmds["op"] = np.where(np.arange(n) % 2, B.Command.CANCEL, B.Command.NEW)
    cmds["oid"][1::2] = cmds["oid"][::2]
    cmds["price"] = 100 + np.arange(n) % 50
    cmds["qty"] = 1
    cmds["stp"] = -1
    out = np.zeros(4 * n, B.EVENT_DTYPE)
    refused: list[str] = []
    # the scheduler may run the whole batch before this thread makes a call: run it again until calls overlapped
    for _attempt in range(50):
        t = threading.Thread(target=lambda: b.apply_batch(cmds, out))
        t.start()
        resting = False  # our order was added but its cancel was refused: cancel it once the batch is done
        while t.is_alive():
            try:
                if not resting:
                    b.submit(10**9, 0, 10, 1)
                    resting = True
                b.cancel(10**9)
                resting = False
            except RuntimeError as e:
                refused.append(str(e))
        t.join()
        if resting:
            b.cancel(10**9)
        if refused:
            break
    # the batch takes milliseconds; calls meanwhile were refused with the documented error, not raced
    assert refused and set(refused) == {"this Book is being used by a batch running in another thread"}
    assert b.n_orders == 0  # the batch ran to completion, our own order was added and cancelled
    b.check()


@pytest.mark.debugbuild
@pytest.mark.skipif(not B.DEBUG, reason="the invariant scan is compiled in only with LOWLAT_DEBUG=1")
def test_debug_build_invariant_scan_catches_a_corrupted_level():
    b = make()
    b.submit(1, BUY, 105, 7)
    b.check()
    v = b.levels(BUY)
    v.flags.writeable = True  # reach behind the read-only view on purpose
    v[5]["qty"] = 8
    with pytest.raises(AssertionError, match="level totals"):
        b.check()
    with pytest.raises(AssertionError):
        b.submit(2, BUY, 104, 1)  # every command runs the scan in a debug build
