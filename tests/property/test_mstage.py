"""The compiled matching stage (lowlat._mstage, MatcherService.handle_batch) against the Python service path
(MatcherService.handle) on the same inputs: every published message per destination subject, the read side
(level totals, order states in their eviction order, sequences, trade counts), the counters and the reject
counts.  Inputs: well-formed, official-built, truncated, mutated, garbage and off-tick orders on a narrow band
(so orders cross, fill, rest and collide on ids), hostile enum values, several batches in a row, tiny output
batches (the stage stops before an order it cannot fit; the caller resumes; nothing lost) and a small read side
(evictions)."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
from _helpers import Recorder, damaged
from _helpers import encode_order_dict as _encode
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference.ref_validator import official_build_order

from lowlat._batch import MessageBatch
from lowlat._mstage import MatchStage
from lowlat.enums import Reject
from lowlat.services import ServiceConfig
from lowlat.services.matcher import MatcherService
from lowlat.transport import Message

SYMS = ["AAPL", "BTC-USD"]
NOW = 1_700_000_000_000_000_000


def _cfg(tick: float) -> ServiceConfig:
    # ref 1000 ticks, +-1 %: an 21-tick band, so random prices cross and rest on few levels
    return ServiceConfig(symbols=SYMS, tick_size=tick, ref_price=1000, band_bps=100)


@st.composite
def order_st(draw, tick):
    # mostly orders the validator would pass (so books fill, cross and trade); some with hostile field values
    hostile = draw(st.integers(0, 5)) == 0
    ticks = draw(st.integers(985, 1015) if hostile else st.integers(995, 1005))
    price = ticks * tick
    if hostile:
        price = draw(st.one_of(st.just(price), st.floats(width=64), st.just((ticks + 0.37) * tick)))
    pick = (lambda good, bad: draw(st.sampled_from(bad)) if hostile else draw(st.sampled_from(good)))
    return {
        "id": draw(st.integers(0, 40)),
        "symbol": draw(st.one_of(st.none(), st.sampled_from(["ZZZ", ""]))) if hostile else draw(st.sampled_from(SYMS)),
        "price": price, "quantity": draw(st.integers(0, 2**32 - 1) if hostile else st.integers(1, 12)),
        "side": pick([0, 1], [-1, 0, 1, 2]), "timestamp": draw(st.integers(0, 2**63)),
        "order_type": pick([0, 0, 0, 0, 1], [0, 1, 2, -3]), "time_in_force": pick([0, 0, 0, 1, 2], [0, 1, 2, 3, -1]),
        "post_only": draw(st.booleans()) and draw(st.booleans()), "account": draw(st.integers(0, 3)),
        "client_order_id": draw(st.none() | st.text(max_size=4)),
        "stp": pick([0, 0, 0, 1, 2, 3, 4], [-1, 0, 4, 5]),
    }


@st.composite
def payload_st(draw, tick):
    d = draw(order_st(tick))
    kind = draw(st.sampled_from(["lowlat"] * 8 + ["official", "truncated", "mutated", "garbage", "bad_utf8"]))
    b = official_build_order(d) if kind == "official" else _encode(d)
    b = damaged(draw, b, kind, max_flips=3)
    if kind == "bad_utf8" and d["symbol"]:
        b = b.replace(d["symbol"].encode(), b"\xff" * len(d["symbol"].encode()), 1)
    return b


@st.composite
def batches_st(draw):
    tick = draw(st.sampled_from([0.01, 0.05, 0.25, 1.0, 0.0001, 7.3]))
    batches = draw(st.lists(st.lists(payload_st(tick), min_size=1, max_size=25), min_size=1, max_size=4))
    return tick, batches


_LOOP = asyncio.new_event_loop()


def _service(cfg, read_max):
    # read_max: a small read side, evictions in both paths
    svc = MatcherService(cfg, max_orders=16, read_max_orders=100_000 if read_max is None else read_max)
    svc.transport = Recorder()
    return svc


def _run(fn, cfg, batches, out_cap=None, read_max=None):
    svc = _service(cfg, read_max)
    if out_cap is not None:
        svc._out_cap = out_cap
    orig = time.time_ns
    time.time_ns = lambda: NOW
    try:
        for payloads in batches:
            if fn == "handle":
                _LOOP.run_until_complete(svc.handle("orders.match.x", [Message("orders.match.x", p, None, None)
                                                                         for p in payloads]))
            else:
                b = MessageBatch(len(payloads), sum(len(p) + 16 for p in payloads) + 64)
                for p in payloads:
                    assert b.append(p, "orders.match.x")
                _LOOP.run_until_complete(svc.handle_batch("orders.match.x", b))
    finally:
        time.time_ns = orig
    return svc.transport.out, svc


def _assert_same(ref, rsvc, got, gsvc):
    assert dict(got) == dict(ref)
    for s in SYMS:
        a, b = rsvc.read[s], gsvc.read[s]
        assert (b.md_seq, b.trades, b.levels) == (a.md_seq, a.trades, a.levels), s
        assert list(b.orders.items()) == list(a.orders.items()), s
    for k in ("in", "exec_reports", "trades", "l2_updates"):
        assert gsvc.metrics.counts[k] == rsvc.metrics.counts[k], k
    assert dict(gsvc.metrics.rejects) == dict(rsvc.metrics.rejects)
    # the engines went through the same commands
    for s in SYMS:
        ra, rb = rsvc.engine[s].resting_orders(), gsvc.engine[s].resting_orders()
        assert ra.tobytes() == rb.tobytes(), s


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches_st(), st.sampled_from([None, None, (3, 700), (1, 200), (6, 4000), (40, 1 << 16)]),
       st.sampled_from([None, None, 3, 1, 0]))
def test_stage_output_equals_python_service(data, out_cap, read_max):
    tick, batches = data
    cfg = _cfg(tick)
    ref, rsvc = _run("handle", cfg, batches, read_max=read_max)
    got, gsvc = _run("handle_batch", cfg, batches, out_cap, read_max)
    _assert_same(ref, rsvc, got, gsvc)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches_st())
def test_oversized_frames_are_counted_malformed_and_the_rest_is_processed(data):
    tick, batches = data
    cfg = _cfg(tick)
    big = _encode({"id": 7, "symbol": SYMS[0], "price": 1000 * tick, "quantity": 1, "side": 0, "timestamp": 0,
                   "order_type": 0, "time_in_force": 0, "post_only": False, "account": 0,
                   "client_order_id": "x" * 70_000, "stp": 0})
    with_big = [[big] + b[: len(b) // 2] + [big] + b[len(b) // 2:] for b in batches]
    ref, rsvc = _run("handle", cfg, batches)
    got, gsvc = _run("handle_batch", cfg, with_big)
    st_ = gsvc.stage
    assert st_.oversized == 2 * len(batches)
    n_bad = sum(1 for b in batches for p in b if _bad(p))
    assert st_.malformed == 2 * len(batches) + n_bad
    assert dict(got) == dict(ref)
    assert gsvc.metrics.rejects[int(Reject.MALFORMED)] == rsvc.metrics.rejects[int(Reject.MALFORMED)] + 2 * len(
        batches)
    assert gsvc.metrics.counts["in"] == rsvc.metrics.counts["in"] + 2 * len(batches)


def _bad(p: bytes) -> bool:
    from lowlat import DecodeError, decode_order
    try:
        decode_order(p)
    except DecodeError:
        return True
    return False


def _sweep_setup(n_makers: int):
    cfg = _cfg(0.01)
    svc = _service(cfg, None)
    st_ = svc.stage
    makers = MessageBatch(n_makers, 1 << 16)
    for i in range(n_makers):
        makers.append(_encode({"id": 100 + i, "symbol": "AAPL", "price": (1000 + i % 5) * 0.01, "quantity": 1,
                               "side": 1, "timestamp": 0, "order_type": 0, "time_in_force": 0, "post_only": False,
                               "account": 1, "client_order_id": None, "stp": 0}))
    out = MessageBatch(4 * n_makers + 16, 1 << 20)
    assert st_.run(makers, 0, out, NOW) == n_makers
    return svc, st_


def test_an_order_whose_outputs_cannot_fit_an_empty_batch_is_not_applied_and_says_what_it_needs():
    svc, st_ = _sweep_setup(12)
    taker = MessageBatch(1, 4096)
    taker.append(_encode({"id": 1, "symbol": "AAPL", "price": 10.10, "quantity": 12, "side": 0, "timestamp": 0,
                          "order_type": 0, "time_in_force": 0, "post_only": False, "account": 2,
                          "client_order_id": None, "stp": 0}))
    resting = svc.engine["AAPL"].resting_orders().tobytes()
    small = MessageBatch(8, 1 << 16)
    assert st_.run(taker, 0, small, NOW) == 0
    assert small.n == 0 and st_.need_slots > 8
    assert svc.engine["AAPL"].resting_orders().tobytes() == resting  # nothing happened to the book
    big = MessageBatch(st_.need_slots, st_.need_bytes)
    assert st_.run(taker, 0, big, NOW) == 1
    assert st_.trades == 12  # 12 trades, 24 fill reports, the acceptance, 5 L2 updates
    assert big.n == 12 + 25 + 5
    assert svc.engine["AAPL"].resting_orders().size == 0


def test_a_full_output_batch_stops_before_the_order_and_resumes_there():
    svc, st_ = _sweep_setup(3)
    inb = MessageBatch(3, 4096)
    for i in range(3):
        inb.append(_encode({"id": 50 + i, "symbol": "AAPL", "price": 9.90, "quantity": 1, "side": 0,
                            "timestamp": 0, "order_type": 0, "time_in_force": 0, "post_only": False, "account": 0,
                            "client_order_id": None, "stp": 0}))
    out = MessageBatch(5, 1 << 16)  # a resting order needs room for 4 messages (it gives 2)
    assert st_.run(inb, 0, out, NOW) == 1 and out.n == 2
    out.clear()
    assert st_.run(inb, 1, out, NOW) == 2 and out.n == 2
    out.clear()
    assert st_.run(inb, 2, out, NOW) == 3
    assert [out.reply(i) for i in range(out.n)] == ["exec.AAPL", "md.AAPL.l2"]
    assert svc.read["AAPL"].md_seq == 3 + 3  # the makers' levels, then three bid updates


def test_run_refuses_bad_arguments():
    svc = _service(_cfg(0.01), None)
    b = MessageBatch(1, 64)
    b.append(b"x")
    with pytest.raises(IndexError):
        svc.stage.run(b, 2, MessageBatch(1, 64), NOW)
    with pytest.raises(ValueError):
        svc.stage.run(b, 0, b, NOW)
    with pytest.raises(ValueError):
        MatchStage(svc.engine, [])
    svc.engine.add_book("NEW", 0, 10, 4)
    with pytest.raises(Exception, match="books"):
        svc.stage.run(b, 0, MessageBatch(1, 64), NOW)
    assert np.array_equal(svc.stage.reject_counts(), np.zeros(256, np.int64))


def test_encode_events_writes_the_engine_events_as_messages():
    """The benchmark floor (Engine.apply_frames events encoded without a read side) writes decodable messages to
    the right subjects, one per report/L2 event and three per fill, and stops before an event that does not fit."""
    import lowlat
    from lowlat import _core
    from lowlat._book import EVENT_DTYPE

    svc = _service(_cfg(0.01), None)
    orders = [(1, "AAPL", 10.00, 5, 1), (2, "AAPL", 10.00, 3, 0), (3, "BTC-USD", 9.95, 1, 0)]
    frames = _core.frame([_core.encode_command(_core.decode_order_msg(lowlat.encode_order(*o, 0))) for o in orders])
    ev = np.zeros(64, EVENT_DTYPE)
    n_frames, _, n_ev = svc.engine.apply_frames(np.frombuffer(frames, np.uint8), ev)
    assert n_frames == 3
    out = MessageBatch(64, 1 << 16)
    assert svc.stage.encode_events(ev, n_ev, out, NOW) == n_ev
    subjects = [out.reply(i) for i in range(out.n)]
    # ACC + L2 (rests), ACC + fill (trade + 2 reports) + L2, ACC + L2
    assert subjects == ["exec.AAPL", "md.AAPL.l2", "exec.AAPL", "md.AAPL.trade", "exec.AAPL", "exec.AAPL",
                        "md.AAPL.l2", "exec.BTC-USD", "md.BTC-USD.l2"]
    tr = lowlat.decode_trade(out.payload(3))
    assert (tr.trade_id, tr.price, tr.quantity, tr.maker_order_id, tr.taker_order_id) == (1, 10.0, 3, 1, 2)
    maker = lowlat.decode_execution_report(out.payload(5))
    assert (maker.order_id, maker.is_maker, maker.leaves_quantity) == (1, True, 2)
    assert lowlat.decode_l2_update(out.payload(6)).quantity == 2
    small = MessageBatch(3, 1 << 16)
    assert svc.stage.encode_events(ev, n_ev, small, NOW) == 1  # every event reserves room for 3 messages (a fill)
