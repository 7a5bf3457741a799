"""MessageBatch against a list of (payload, subject, reply) tuples: the obviously correct reference."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lowlat._batch import MessageBatch
from lowlat.errors import LowlatError

msgs = st.lists(st.tuples(st.binary(max_size=40), st.text("abc.", max_size=8),
                          st.one_of(st.none(), st.text("xyz.", min_size=1, max_size=8))), max_size=30)


@settings(max_examples=200, deadline=None)
@given(msgs, st.integers(1, 16), st.integers(1, 256))
def test_append_matches_reference(items, capacity, arena):
    b = MessageBatch(capacity, arena)
    ref = []
    used = 0
    for p, s, r in items:
        need = len(p) + len(s.encode()) + len((r or "").encode())
        fits = len(ref) < capacity and used + need <= arena
        assert b.append(p, s, r) is fits
        if fits:
            ref.append((p, s, r))
            used += need
    assert b.n == len(ref) == len(b)
    assert b.used == used
    for i, (p, s, r) in enumerate(ref):
        assert b.payload(i).tobytes() == p
        assert b.subject(i) == s
        assert b.reply(i) == r
        assert b.buf[b.payload_off[i]:b.payload_off[i] + b.payload_len[i]].tobytes() == p
    assert [(bytes(p), s, r) for s, p, r in b] == [(p, s, r) for p, s, r in ref]
    b.clear()
    assert b.n == 0 and b.used == 0


def test_external_buffer_refs_are_zero_copy_and_bounds_checked():
    buf = bytearray(b"payloadsubj.xreply")
    b = MessageBatch(2)
    b.set_buffer(buf)
    assert b.add_ref(0, 7, 7, 6, 13, 5)
    assert b.external
    assert b.payload(0).tobytes() == b"payload" and b.subject(0) == "subj.x" and b.reply(0) == "reply"
    buf[0:1] = b"P"                                  # a view, not a copy
    assert b.payload(0).tobytes() == b"Payload"
    for bad in [(-1, 1), (0, 19), (18, 1), (2**62, 2**62)]:
        with pytest.raises(ValueError):
            b.add_ref(*bad)
    with pytest.raises(LowlatError):
        b.append(b"x")                               # copying needs clear() first
    assert b.add_ref(0, 1)
    assert not b.add_ref(0, 1)                       # slots full: refused, not dropped silently
    with pytest.raises(IndexError):
        b.payload(2)
    b.clear()
    assert not b.external and b.append(b"x")


@pytest.mark.parametrize("capacity,arena", [(0, 1), (1, 0), (2**25, 1)])
def test_bad_sizes_are_refused(capacity, arena):
    with pytest.raises(ValueError):
        MessageBatch(capacity, arena)


async def test_take_batch_and_publish_batch_to_on_inproc():
    from lowlat.transport import connect
    async with connect("inproc://batch-test") as t:
        sub = await t.subscribe("b.in")
        out = await t.subscribe("b.out")
        for i in range(5):
            await t.publish("b.in", b"m%d" % i)
        b = await sub.next_batch(3, timeout=2.0)
        assert [bytes(p) for _, p, _ in b] == [b"m0", b"m1", b"m2"]
        b = sub.take_batch(10)
        assert [bytes(p) for _, p, _ in b] == [b"m3", b"m4"]
        assert sub.take_batch(10).n == 0 and b.n == 0      # the lifetime rule: the same batch, reused
        assert (await sub.next_batch(10, timeout=0.05)).n == 0
        ob = MessageBatch(4)
        ob.append(b"to-subject")
        assert await t.publish_batch_to(ob, "b.out") == 1
        rb = MessageBatch(4)
        for reply in ("b.out", None, "bad..subject", "b.out"):
            rb.append(b"r-%s" % str(reply).encode(), reply=reply)
        assert await t.publish_batch_to(rb) == 2           # no reply: skipped; bad subject: counted, rest sent
        assert t.publish_errors == 1
        got = [bytes((await out.next_msg(2.0)).data) for _ in range(3)]
        assert got == [b"to-subject", b"r-b.out", b"r-b.out"]


@settings(max_examples=200, deadline=None)
@given(msgs, st.integers(0, 30), st.integers(0, 30), st.integers(1, 16), st.integers(1, 256))
def test_extend_from_matches_reference(items, start, stop, capacity, arena):
    src = MessageBatch(64, 4096)
    for p, s, r in items:
        assert src.append(p, s, r)
    start, stop = min(start, len(items)), min(max(start, stop), len(items))
    dst = MessageBatch(capacity, arena)
    k = dst.extend_from(src, start, stop)
    # reference: append one at a time until one does not fit (appended messages share no spans, so exactly)
    ref = MessageBatch(capacity, arena)
    fits = 0
    for p, s, r in items[start:stop]:
        if not ref.append(p, s, r):
            break
        fits += 1
    assert k == fits
    assert [(bytes(p), s, r) for s, p, r in dst] == [(p, s, r) for p, s, r in items[start:start + k]]
    assert dst.payload_bytes() == sum(len(p) for p, _, _ in items[start:start + k])
    assert dst.used == ref.used


def test_extend_from_refuses_bad_ranges_and_modes():
    src = MessageBatch(4)
    src.append(b"x", "s")
    dst = MessageBatch(4)
    for a, b in [(-1, 1), (0, 2), (1, 0)]:
        with pytest.raises(IndexError):
            dst.extend_from(src, a, b)
    with pytest.raises(ValueError):
        src.extend_from(src)
    dst.set_buffer(b"abc")
    with pytest.raises(LowlatError):
        dst.extend_from(src)


def test_fanout_plan_delivers_shared_subject_once_and_counts_drops():
    from lowlat._batch import FanoutPlan
    src = MessageBatch(8)
    for i, r in enumerate(["a", "b", "a", None, "a"]):
        src.append(b"p%d" % i, "x", r)
    plan = FanoutPlan(src)
    assert plan.subjects == ["a", "b"] and plan.counts == [3, 1]
    row = plan.add_row()
    plan.select(row, 0)
    dst = MessageBatch(8, 64)
    # limits: at most 2 pending, 1 already pending -> one accepted, the other two to "a" dropped
    assert plan.deliver(row, dst, 0, 1, 2, 0, 100) == (5, 1, 2, 2)
    assert [(s, bytes(p)) for s, p, _ in dst] == [("a", b"p0")]
    dst.clear()
    assert plan.deliver(row, dst, 0, 0, 10, 0, 100) == (5, 3, 0, 6)
    assert dst.used == 6 + 1                      # three payloads, the subject "a" stored once
    g = plan.add_row()
    plan.select(g, 0, 3, 2, 1)                    # member 2 of 3, first position 1: the 2nd message to "a"
    assert plan.indices(g) == [2]
    with pytest.raises(ValueError):
        plan.select(g, 0, 3, 3, 0)
    with pytest.raises(IndexError):
        plan.select(g, 2)
    tiny = MessageBatch(1, 2)
    assert plan.deliver(row, tiny, 0, 0, 10, 0, 100)[:3] == (0, 0, 0)   # no room: stops, nothing dropped


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=20), max_size=12), st.text("ab.", max_size=6), st.integers(1, 16),
       st.integers(1, 128))
def test_append_payloads_matches_append(payloads, subject, capacity, arena):
    b = MessageBatch(capacity, arena)
    k = b.append_payloads([memoryview(p) if i % 2 else p for i, p in enumerate(payloads)], subject)
    # reference: append one by one, the subject stored once (so at least as many fit as with append)
    used, fits = len(subject.encode()), 0
    for p in payloads:
        if fits >= capacity or used + len(p) > arena:
            break
        used += len(p)
        fits += 1
    assert k == fits == b.n
    assert [(s, bytes(p), r) for s, p, r in b] == [(subject, p, None) for p in payloads[:k]]
