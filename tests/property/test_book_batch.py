"""Batch output == per-call output: ``Book.apply_batch`` / ``Engine.apply_batch`` over a numpy command array
write exactly the events a loop of per-call ``submit/cancel/modify/mass_cancel`` writes (and leave the same
book), including when ``events_out`` is small and the batch has to be resumed."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from lowlat._book import COMMAND_DTYPE, EVENT_DTYPE, Book, Command, Engine

LO, N, MAX_ORDERS = 50, 16, 10

command = st.tuples(
    st.sampled_from([0, 0, 0, 0, 1, 1, 2, 3, 7]),  # op (7 = unknown -> MALFORMED)
    st.integers(1, 20),  # oid
    st.integers(1, 3),  # account
    st.integers(LO - 1, LO + N),  # price
    st.integers(-1, 20),  # qty
    st.sampled_from([0, 1, 0, 1, 3]),  # side
    st.sampled_from([0, 0, 1, 2]),  # order type
    st.sampled_from([0, 0, 1, 2, 4]),  # tif
    st.sampled_from([-1, -1, 0, 1, 2, 3, 4, 6]),  # stp
    st.booleans(),  # post only
    st.integers(0, 2),  # book (Engine; 2 = unknown)
)


def to_array(cmds):
    a = np.zeros(len(cmds), COMMAND_DTYPE)
    for i, (op, oid, acct, px, qty, side, ot, tif, stp, po, book) in enumerate(cmds):
        a[i] = (oid, acct, px, qty, book, op, side, ot, tif, stp, po, 0, 0)
    return a


def per_call(book, c):
    op = int(c["op"])
    if op == Command.NEW:
        book.submit(int(c["oid"]), int(c["side"]), int(c["price"]), int(c["qty"]), int(c["account"]),
                        int(c["order_type"]), int(c["tif"]), bool(c["post_only"]), int(c["stp"]))
    elif op == Command.CANCEL:
        book.cancel(int(c["oid"]))
    elif op == Command.MODIFY:
        book.modify(int(c["oid"]), int(c["price"]), int(c["qty"]))
    elif op == Command.MASS_CANCEL:
        book.mass_cancel(int(c["account"]))
    else:
        return None
    return book.last_events().copy()


def book_state(b):
    return (b.depth(0, N).tolist(), b.depth(1, N).tolist(),
            [b.queue(s, p).tolist() for s in (0, 1) for p in range(LO, LO + N)], b.seq, b.trade_id)


@settings(max_examples=200, deadline=None)
@given(cmds=st.lists(command, max_size=80), stp=st.integers(0, 4), cap=st.integers(40, 400))
def test_book_batch_equals_per_call(cmds, stp, cap):
    arr = to_array(cmds)
    one = Book(LO, N, MAX_ORDERS, default_stp=stp)
    expected = []
    for c in arr:
        ev = per_call(one, c)
        if ev is None:  # unknown op: only the batch path can express it
            expected.append(np.array([(0, int(c["oid"]), 0, 0, int(c["account"]), int(c["price"]),
                                       int(c["qty"]), 0, 0, 0, 2, int(c["side"]), 1, 0)], EVENT_DTYPE))
            continue
        expected.append(ev)
    batch = Book(LO, N, MAX_ORDERS, default_stp=stp)
    out = np.zeros(cap, EVENT_DTYPE)
    lat = np.zeros(max(len(arr), 1), np.int64)
    got = []
    done = 0
    while done < len(arr):  # resume when events_out is full, as a caller would
        n, n_ev = batch.apply_batch(arr[done:], out, lat[done:])
        assert n > 0
        got.append(out[:n_ev].copy())
        done += n
    exp = np.concatenate(expected) if expected else np.zeros(0, EVENT_DTYPE)
    got_all = np.concatenate(got) if got else np.zeros(0, EVENT_DTYPE)
    assert got_all.tolist() == exp.tolist()
    assert book_state(batch) == book_state(one)
    assert (lat[: len(arr)] >= 0).all()


@settings(max_examples=100, deadline=None)
@given(cmds=st.lists(command, max_size=80), stp=st.integers(0, 4))
def test_engine_batch_equals_per_book_calls(cmds, stp):
    arr = to_array(cmds)
    arr = arr[arr["op"] <= 3]
    eng = Engine(default_stp=stp)
    eng.add_book("AAA", LO, N, MAX_ORDERS)
    eng.add_book("BBB", LO, N, MAX_ORDERS)
    singles = [Book(LO, N, MAX_ORDERS, default_stp=stp), Book(LO, N, MAX_ORDERS, default_stp=stp)]
    expected = []
    for c in arr:
        b = int(c["book"])
        if b >= 2:
            expected.append((0, int(c["oid"]), 0, 0, int(c["account"]), int(c["price"]), int(c["qty"]), 0, 0,
                             b, 2, int(c["side"]), 3, 0))
            continue
        for row in per_call(singles[b], c).tolist():
            expected.append(row[:9] + (b,) + row[10:])
    out = np.zeros(4 * len(arr) + 64, EVENT_DTYPE)
    n, n_ev = eng.apply_batch(arr, out)
    assert n == len(arr)
    assert out[:n_ev].tolist() == expected
    assert book_state(eng["AAA"]) == book_state(singles[0])
    assert book_state(eng["BBB"]) == book_state(singles[1])


@settings(max_examples=60, deadline=None)
@given(ids=st.lists(st.one_of(st.integers(0, 2**64 - 1), st.integers(0, 4000).map(lambda k: k * 64),
                              st.integers(0, 4000).map(lambda k: k * 1000), st.integers(0, 300)),
                    min_size=1, max_size=400),
       ops=st.lists(st.integers(0, 3), min_size=400, max_size=400))
def test_order_id_map_matches_a_dict_under_churn(ids, ops):
    # random 64-bit, block-aligned and structured ids, adds and cancels interleaved: the Robin Hood map
    # (backward-shift deletion) must answer exactly like a dict; a pool of 64 forces BOOK_FULL too
    b = Book(0, 64, 64)
    live = {}
    for k, oid in enumerate(ids):
        if ops[k] and oid not in live:
            r = b.submit(oid, 0, k % 64, 1)[0]
            assert r == (0 if len(live) < 64 else 64)
            if r == 0:
                live[oid] = k % 64
        else:
            assert b.cancel(oid)[0] == (0 if live.pop(oid, None) is not None else 66)
        b.check()
    for oid in set(ids):
        got = b.order(oid)
        assert (got is not None) == (oid in live)
        if got is not None:
            assert got[1] == live[oid]
