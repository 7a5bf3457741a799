"""The compiled validator stage (lowlat._vstage) against the previous pure-Python service path
(ValidatorService.handle_python) on the same inputs, message by message per destination subject: well-formed,
official-built, truncated, mutated and oversized orders, with and without reply subjects, every
publish_results/forward combination, and output batches too small for the input (the stage stops before a
message it cannot fit; the caller resumes; nothing lost)."""

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
from lowlat._vstage import ValidateStage
from lowlat.enums import Reject
from lowlat.errors import DecodeError
from lowlat.services import ServiceConfig, ValidatorService
from lowlat.transport import Message

SYMS = ["AAPL", "MSFT", "BTC-USD"]
order_st = st.fixed_dictionaries({
    "id": st.integers(0, 2**64 - 1), "symbol": st.one_of(st.none(), st.sampled_from(SYMS + ["ZZZ", "", "€"])),
    "price": st.one_of(st.integers(1, 40000).map(lambda t: t * 0.01), st.floats(width=64)),
    "quantity": st.integers(0, 2000), "side": st.integers(-1, 2), "timestamp": st.integers(0, 2**63),
    "order_type": st.integers(0, 2), "time_in_force": st.integers(0, 3), "post_only": st.booleans(),
    "account": st.integers(0, 5), "client_order_id": st.none() | st.text(max_size=6), "stp": st.integers(0, 4),
})


@st.composite
def payload_st(draw):
    d = draw(order_st)
    kind = draw(st.sampled_from(["lowlat", "lowlat", "official", "truncated", "mutated", "garbage", "oversized"]))
    b = official_build_order(d) if kind == "official" else _encode(d)
    b = damaged(draw, b, kind)
    if kind == "oversized":
        b = b + bytes(300)     # valid FlatBuffer followed by padding, over the stage's max_payload below
    return b


msgs_st = st.lists(st.tuples(payload_st(), st.one_of(st.none(), st.sampled_from(["_INBOX.a", "_INBOX.bb.1"]))),
                   min_size=1, max_size=30)


_LOOP = asyncio.new_event_loop()


def _run(svc_fn, cfg, msgs, out_cap=None):
    svc = ValidatorService(cfg)
    rec = Recorder()
    svc.transport = rec
    if out_cap is not None:
        svc._out_cap = out_cap
    batch = [Message(cfg.orders_subject, p, None, r) for p, r in msgs]
    _LOOP.run_until_complete(getattr(svc, svc_fn)(cfg.orders_subject, batch))
    return rec.out, svc


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(msgs_st, st.booleans(), st.booleans(), st.sampled_from([None, (3, 1024), (4, 700), (7, 1 << 16)]))
def test_stage_output_equals_python_service(msgs, publish_results, forward, out_cap):
    cfg = ServiceConfig(symbols=SYMS, publish_results=publish_results, forward=forward)
    # oversized frames (the stage's max_payload) are compared in the next test; here both paths get the rest
    msgs = [(p, r) for p, r in msgs if len(p) <= 256]
    if not msgs:
        return
    orig = time.time_ns
    time.time_ns = lambda: 1_700_000_000_000_000_000
    try:
        try:
            ref, rsvc = _run("handle_python", cfg, msgs)
        except DecodeError:  # the Python path fails the whole batch on a non-UTF-8 symbol; the stage answers it
            return
        got, gsvc = _run("handle", cfg, msgs, out_cap)
    finally:
        time.time_ns = orig
    assert dict(got) == dict(ref)
    c_ref, c_got = rsvc.metrics.counts, gsvc.metrics.counts
    for k in ("in", "accepted", "rejected", "replies", "forwarded"):
        assert c_got[k] == c_ref[k], k
    assert dict(gsvc.metrics.rejects) == dict(rsvc.metrics.rejects)


@settings(max_examples=100, deadline=None)
@given(msgs_st)
def test_oversized_and_bad_frames_get_malformed_and_the_rest_is_processed(msgs):
    from lowlat.services import _wire

    cfg = ServiceConfig(symbols=SYMS)
    v = _wire.make_validator(cfg)
    stage = ValidateStage(v, max_payload=256)
    inb = MessageBatch(64, 1 << 16)
    for p, r in msgs:
        assert inb.append(p, "orders.new", r)
    out = MessageBatch(128, 1 << 16)
    assert stage.run(inb, 0, out, 5) == inb.n
    from lowlat import _core

    k = 0
    for p, r in msgs:
        res = _core.decode_validation_result(out.payload(k))
        assert out.reply(k) == (r or "orders.validated" if res.accepted else r or "orders.rejected")
        if len(p) > 256:
            assert (res.order_id, res.accepted, res.reason, res.symbol) == (0, False, Reject.MALFORMED, None)
        else:
            assert res.reason == v.validate(p)
        k += 1
    assert k == out.n and stage.n_in == len(msgs)
    assert stage.oversized == sum(len(p) > 256 for p, _ in msgs)
    assert stage.reject_counts()[1:].sum() == stage.rejected


def test_full_output_batch_stops_before_the_message_and_resumes():
    from lowlat import encode_order
    from lowlat.services import _wire

    cfg = ServiceConfig(symbols=SYMS)
    stage = ValidateStage(_wire.make_validator(cfg), forward=True, publish_results=True)
    inb = MessageBatch(16)
    for i in range(10):
        inb.append(encode_order(i + 1, "AAPL", 100.0, 10, 0, 1), "orders.new", f"_INBOX.{i}")
    out = MessageBatch(7, 1 << 16)   # 3 outputs per accepted order: 2 orders fit, the third does not start
    i, seen = 0, []
    while i < inb.n:
        out.clear()
        j = stage.run(inb, i, out, 1)
        assert j > i and out.n == 3 * (j - i)
        seen += [out.reply(k) for k in range(out.n)]
        i = j
    assert seen[:3] == ["_INBOX.0", "orders.validated", "orders.match.AAPL"]
    assert len(seen) == 30 and stage.dropped == 0 and stage.forwarded == 10
    # a message that cannot fit even an empty output batch is dropped and counted, not retried forever
    tiny = MessageBatch(2, 1 << 16)
    inb.clear()
    inb.append(encode_order(99, "AAPL", 100.0, 10, 0, 1), "orders.new", "_INBOX.x")
    assert stage.run(inb, 0, tiny, 1) == 1 and tiny.n == 0 and stage.dropped == 1
    with pytest.raises(IndexError):
        stage.run(inb, 5, tiny, 1)
    with pytest.raises(ValueError):
        stage.run(inb, 0, inb, 1)
    assert np.asarray(stage.reject_counts()).shape == (256,)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(msgs_st, st.booleans(), st.booleans())
def test_out_size_holds_every_message_and_one_run_for_short_symbols(msgs, publish_results, forward):
    """An output batch of ``out_size(inb)`` never drops a message (resuming in batches of that size gives what one
    huge batch gets), and a batch of orders with symbols of at most 16 bytes takes one run."""
    from lowlat.services import _wire

    stage = ValidateStage(_wire.make_validator(ServiceConfig(symbols=SYMS)), publish_results=publish_results,
                          forward=forward, max_payload=256)
    inb = MessageBatch(64, 1 << 16)
    for p, r in msgs:
        assert inb.append(p, "orders.new", r)
    big = MessageBatch(4 * len(msgs), 1 << 20)
    assert stage.run(inb, 0, big, 5) == inb.n
    want = [(big.reply(k), bytes(big.payload(k))) for k in range(big.n)]
    slots, nbytes = stage.out_size(inb)
    assert slots >= big.n
    got, i, runs = [], 0, 0
    while i < inb.n:
        out = MessageBatch(slots, nbytes)
        i = stage.run(inb, i, out, 5)
        runs += 1
        got += [(out.reply(k), bytes(out.payload(k))) for k in range(out.n)]
    assert got == want and stage.dropped == 0
    if all(len(p) <= 256 and len(_symbol(p)) <= 16 for p, _ in msgs):
        assert runs == 1


def _symbol(p: bytes) -> bytes:
    from lowlat import _core

    try:
        return (_core.decode_order(p).symbol or "").encode()
    except (DecodeError, UnicodeDecodeError):
        return b""
