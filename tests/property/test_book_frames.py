"""Framed FlatBuffer command batches (``Book.apply_frames`` / ``Engine.apply_frames``) == the numpy batch path
on the same commands; hostile and truncated bytes never crash and lose nothing."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import lowlat._core as core
from lowlat._book import COMMAND_DTYPE, EVENT_DTYPE, Book, Engine, EventKind
from lowlat.enums import Reject

LO, N, MAX_ORDERS, TICK = 100, 16, 10, 0.25

# FlatBuffers cannot tell an absent field from its default, so the strategies stay where both paths agree:
# ids >= 1, qty >= 1, stp absent (book default) or 1..4, prices > 0.
command = st.tuples(
    st.sampled_from([0, 0, 0, 1, 1, 2, 3]),  # op
    st.integers(1, 20),  # oid
    st.integers(1, 3),  # account
    st.integers(LO - 1, LO + N),  # price, ticks
    st.integers(1, 20),  # qty
    st.sampled_from([0, 1, 0, 1, 3]),  # side
    st.sampled_from([0, 0, 1, 2]),  # order type
    st.sampled_from([0, 0, 1, 2, 4]),  # tif
    st.sampled_from([-1, -1, 1, 2, 3, 4]),  # stp
    st.booleans(),  # post only
)


def encode(cmd, symbol="XYZ"):
    op, oid, acct, px, qty, side, ot, tif, stp, po = cmd
    if op == 0:
        msg = core.OrderMsg(id=oid, symbol=symbol, price=px * TICK, quantity=qty, side=side, timestamp=0,
                            order_type=ot, time_in_force=tif, post_only=po, account=acct,
                            client_order_id=None, stp=max(stp, 0))
    elif op == 1:
        msg = core.Cancel(order_id=oid, symbol=symbol, account=acct)
    elif op == 2:
        msg = core.Modify(order_id=oid, symbol=symbol, price=px * TICK, quantity=qty, account=acct)
    else:
        msg = core.MassCancel(account=acct, symbol=symbol)
    return core.encode_command(msg)


def to_array(cmds):
    a = np.zeros(len(cmds), COMMAND_DTYPE)
    for i, (op, oid, acct, px, qty, side, ot, tif, stp, po) in enumerate(cmds):
        a[i] = (oid, acct if op in (0, 3) else 0, px if op in (0, 2) else 0, qty if op in (0, 2) else 0, 0, op,
                side if op == 0 else 0, ot if op == 0 else 0, tif if op == 0 else 0, stp if op == 0 else -1,
                po if op == 0 else 0, 0, 0)
    return a


def norm(events):
    # the numpy rows of cancel/modify carry no account; the FlatBuffer ones may: compare all other fields
    return [e[:4] + e[5:] if e[10] == EventKind.REJECTED else e for e in events.tolist()]


@settings(max_examples=150, deadline=None)
@given(cmds=st.lists(command, max_size=60), stp=st.integers(0, 4))
def test_frames_equal_numpy_batch(cmds, stp):
    frames = core.frame([encode(c) for c in cmds])
    a = Book(LO, N, MAX_ORDERS, default_stp=stp, tick_size=TICK)
    b = Book(LO, N, MAX_ORDERS, default_stp=stp, tick_size=TICK)
    out_a = np.zeros(8 * len(cmds) + 64, EVENT_DTYPE)
    out_b = np.zeros(8 * len(cmds) + 64, EVENT_DTYPE)
    lat = np.zeros(len(cmds) + 1, np.int64)
    n_frames, used, n_ev = a.apply_frames(frames, out_a, lat)
    assert (n_frames, used) == (len(cmds), len(frames))
    _n_cmd, n_ev_b = b.apply_batch(to_array(cmds), out_b)
    assert norm(out_a[:n_ev]) == norm(out_b[:n_ev_b])
    assert a.depth(0, N).tolist() == b.depth(0, N).tolist() and a.depth(1, N).tolist() == b.depth(1, N).tolist()
    assert (lat[: len(cmds)] >= 0).all()


def order_without_quantity(oid, price):
    # built with the official flatbuffers Builder: CommandMsg{cmd_type=Order, cmd=Order{id, symbol, price}}
    import flatbuffers

    bld = flatbuffers.Builder(64)
    sym = bld.CreateString("XYZ")
    bld.StartObject(12)
    bld.PrependUint64Slot(0, oid, 0)
    bld.PrependUOffsetTRelativeSlot(1, sym, 0)
    bld.PrependFloat64Slot(2, price, 0.0)
    order = bld.EndObject()
    bld.StartObject(3)
    bld.PrependUint8Slot(0, 1, 0)
    bld.PrependUOffsetTRelativeSlot(1, order, 0)
    bld.Finish(bld.EndObject())
    return bytes(bld.Output())


def test_off_tick_and_missing_fields_are_rejects():
    b = Book(LO, N, MAX_ORDERS, tick_size=TICK)
    good = encode((0, 1, 1, LO + 2, 5, 0, 0, 0, -1, False))
    off = core.encode_command(core.OrderMsg(id=2, symbol="XYZ", price=(LO + 2) * TICK + 0.1, quantity=5, side=0,
                                            timestamp=0))
    no_qty = order_without_quantity(3, (LO + 2) * TICK)
    out = np.zeros(64, EVENT_DTYPE)
    n, _used, n_ev = b.apply_frames(core.frame([good, off, no_qty]), out)
    ev = out[:n_ev]
    assert n == 3
    assert ev[ev["kind"] == EventKind.REJECTED]["reason"].tolist() == [Reject.OFF_TICK, Reject.MISSING_FIELD]
    assert b.order(1) == (0, LO + 2, 5, 1)


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_hostile_and_truncated_frames_never_crash(data):
    cmds = data.draw(st.lists(command, min_size=1, max_size=8))
    payloads = [bytearray(encode(c)) for c in cmds]
    for p in payloads:  # flip some bytes
        for _ in range(data.draw(st.integers(0, 3))):
            p[data.draw(st.integers(0, len(p) - 1))] = data.draw(st.integers(0, 255))
    payloads.append(data.draw(st.binary(max_size=40)))
    frames = core.frame(payloads)
    cut = data.draw(st.integers(0, len(frames)))
    b = Book(LO, N, MAX_ORDERS, tick_size=TICK)
    out = np.zeros(4096, EVENT_DTYPE)
    n, used, n_ev = b.apply_frames(frames[:cut], out)
    # every complete frame was handled, the truncated tail was left alone
    complete, pos = 0, 0
    while pos + 4 <= cut and pos + 4 + int.from_bytes(frames[pos:pos + 4], "little") <= cut:
        pos += 4 + int.from_bytes(frames[pos:pos + 4], "little")
        complete += 1
    assert (n, used) == (complete, pos)
    assert n_ev >= n  # every frame produced at least one event
    b.check()


def test_engine_routes_frames_by_symbol():
    e = Engine()
    e.add_book("AAA", LO, N, MAX_ORDERS, tick_size=TICK)
    e.add_book("BBB", LO, N, MAX_ORDERS, tick_size=TICK)
    frames = core.frame([
        encode((0, 1, 7, LO + 1, 5, 0, 0, 0, -1, False), "BBB"),
        encode((0, 2, 7, LO + 1, 5, 0, 0, 0, -1, False), "AAA"),
        encode((0, 3, 7, LO + 1, 5, 0, 0, 0, -1, False), "ZZZ"),
        core.encode_command(core.MassCancel(account=7)),  # no symbol: every book
    ])
    out = np.zeros(64, EVENT_DTYPE)
    n, used, n_ev = e.apply_frames(frames, out)
    ev = out[:n_ev]
    assert n == 4 and used == len(frames)
    assert ev[["book", "kind"]].tolist()[:5] == [(1, EventKind.ACCEPTED), (1, EventKind.L2),
                                                 (0, EventKind.ACCEPTED), (0, EventKind.L2),
                                                 (0xFFFFFFFF, EventKind.REJECTED)]
    assert ev[4]["reason"] == Reject.UNKNOWN_SYMBOL
    assert ev[ev["kind"] == EventKind.MASS_CANCELED]["book"].tolist() == [0, 1]
    assert e["AAA"].n_orders == 0 and e["BBB"].n_orders == 0
