"""The shm bus's batch path: ``ShmIntake`` against the Python record decoding (``_codec.decode``), ``BatchRoutes`` /
``publish_batch_sync`` against the per-message push, and ``serve_batch_sync`` answering and stopping clean."""

from __future__ import annotations

import os
import struct
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lowlat._batch import MessageBatch
from lowlat._ring import MpscRing
from lowlat._shmbus import ShmIntake
from lowlat.transport.shm import ShmTransport
from lowlat.transport.shm._batchsync import _BatchSink
from lowlat.transport.shm._codec import SID_ALL, SID_INBOX, decode, encode_small

MY_SID = 5
_MALFORMED = (ValueError, UnicodeDecodeError, struct.error)

_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
_meta = st.one_of(
    st.just(b""),
    _text.map(lambda s: s.replace("\n", "").encode()),                          # a bare reply subject
    st.tuples(_text, st.lists(st.tuples(_text, _text), max_size=3)).map(      # reply + headers, maybe hostile
        lambda t: "\n".join([t[0]] + [f"{k}:{v}" if k else v for k, v in t[1]]).encode()),
    st.binary(max_size=12),                                                   # anything (bad UTF-8, stray "\n")
)
_valid = st.builds(lambda sid, subj, meta, pl: encode_small(sid, subj, meta, pl),
                   st.sampled_from([SID_ALL, SID_INBOX, MY_SID, 9]),
                   st.one_of(_text.map(str.encode), st.binary(max_size=8)), _meta, st.binary(max_size=40))
_record = st.one_of(_valid, _valid.map(lambda r: r[:len(r) // 2]), st.binary(max_size=16),
                    _valid.map(lambda r: r[:4] + b"\xff\xff" + r[6:]))              # subject length beyond the end


def _reference(recs: list[bytes], all_mine: bool) -> tuple[list[tuple[str, bytes, str | None]], list[bytes], int]:
    mine, other, bad = [], [], 0
    for rec in recs:
        try:
            sid, subject, reply, _headers, data = decode(rec)
        except _MALFORMED:
            bad += 1
            continue
        if sid == MY_SID or (sid == SID_ALL and all_mine):
            mine.append((subject, bytes(data), reply))
        else:
            other.append(rec)
    return mine, other, bad


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(recs=st.lists(_record, max_size=30), all_mine=st.booleans(), max_batch=st.integers(1, 8))
def test_intake_equals_python_decoding(recs, all_mine, max_batch):
    ring = MpscRing(1 << 14)
    for rec in recs:
        assert ring.try_push(rec)
    intake = ShmIntake(ring, max_batch)
    batch = MessageBatch(16, 1)
    mine: list[tuple[str, bytes, str | None]] = []
    other: list[bytes] = []
    while True:  # several takes: every split point of the record stream
        k = intake.take(batch, MY_SID, all_mine, other)
        assert k <= max_batch
        mine += [(s, bytes(p), r) for s, p, r in batch]
        if k == 0:
            break
    want_mine, want_other, bad = _reference(recs, all_mine)
    assert mine == want_mine
    assert other == want_other
    assert intake.malformed == bad
    assert intake.taken == len(recs) and len(ring) == 0


def test_intake_batch_is_released_by_the_next_take():
    ring = MpscRing(1 << 12)
    ring.try_push(encode_small(MY_SID, b"a", b"", b"x" * 10))
    intake = ShmIntake(ring, 4)
    batch = MessageBatch(4, 1)
    assert intake.take(batch, MY_SID, False, []) == 1
    assert len(ring) == 1  # still in the ring while the batch is in use
    assert intake.take(batch, MY_SID, False, []) == 0
    assert len(ring) == 0 and batch.n == 0


@pytest.fixture
def bus():
    url = f"shm://tbatch{os.urandom(4).hex()}"
    pub, dst = ShmTransport(url).connect_sync(), ShmTransport(url, publish_timeout=0.05).connect_sync()
    yield pub, dst
    pub.close_sync()
    dst.close_sync()


# inbox.N: the member's request inbox; _INBOX.deadbeef.N: an inbox subject that names no member (a plain
# subscription, routed per message)
_dest = st.sampled_from(["inbox.1", "inbox.2", "_INBOX.deadbeef.3", "res.a", "res.b", "nobody", "bad subject", ""])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(msgs=st.lists(st.tuples(_dest, st.binary(max_size=30)), max_size=25), fixed=st.booleans())
def test_publish_batch_sync_equals_per_message_push(bus, msgs, fixed):
    pub, dst = bus
    if dst._inbox is None:
        dst._make_inbox(None)
        dst._register(_BatchSink("res.*", None, next(dst._sids)))
        dst._register(_BatchSink("_INBOX.deadbeef.*", None, next(dst._sids)))
    inbox = dst._inbox.subject[:-1]
    out = MessageBatch(64, 1 << 14)
    subjects = []
    for d, payload in msgs:
        to = inbox + d[6:] if d.startswith("inbox.") else d
        subjects.append(to)
        out.append(payload, "", to or None)
    fixed_subject = "res.a" if fixed else None
    errs = pub.publish_errors
    sent = pub.publish_batch_sync(out, fixed_subject)
    got = dst._ring.pop_batch(1000)
    assert sent == len(got)
    want = []
    for to, (_d, payload) in zip(subjects, msgs):
        to = fixed_subject or to
        if not to:
            continue
        try:
            pub._send(to, payload, None, None)
        except ValueError:
            continue
    want = dst._ring.pop_batch(1000)
    if not fixed:  # the batch groups by destination: same records, per destination in batch order
        got.sort(key=lambda r: decode(r)[1].split(".")[:2])
        want.sort(key=lambda r: decode(r)[1].split(".")[:2])
    assert got == want
    assert pub.publish_errors - errs == (0 if fixed else sum(1 for s in subjects if s == "bad subject"))


def test_publish_batch_sync_drops_and_counts_when_the_ring_stays_full():
    url = f"shm://tfull{os.urandom(4).hex()}"
    with ShmTransport(url, publish_timeout=0.01) as pub, ShmTransport(url, ring_capacity=4096) as dst:
        dst._register(_BatchSink("sink", None, next(dst._sids)))
        out = MessageBatch(64, 1 << 16)
        for _ in range(40):
            out.append(b"p" * 200, "", "sink")
        sent = pub.publish_batch_sync(out)
        assert 0 < sent < 40
        assert pub.full_drops == 40 - sent
        assert len(dst._ring.pop_batch(100)) == sent


def test_serve_batch_sync_answers_each_request_and_stops_clean():
    url = f"shm://tserve{os.urandom(4).hex()}"
    srv = ShmTransport(url).connect_sync()
    stop, ready = threading.Event(), threading.Event()
    out = MessageBatch(256, 1 << 16)
    sizes: list[int] = []
    handled: list[int] = []

    def handle(b: MessageBatch) -> None:
        sizes.append(b.n)
        out.clear()
        for subject, payload, reply in b:
            assert subject == "echo"
            out.append(bytes(payload) + b"!", "", reply)
        srv.publish_batch_sync(out)

    th = threading.Thread(target=lambda: handled.append(srv.serve_batch_sync("echo", handle, stop=stop,
                                                                              ready=ready.set, max_batch=64)))
    th.start()
    try:
        assert ready.wait(10)
        with ShmTransport(url) as c:
            for i in range(50):
                assert bytes(c.request_sync("echo", b"%d" % i, timeout=5).data) == b"%d!" % i
            c._ring.try_push(b"junk")  # a malformed record on the server's ring is skipped, not fatal
            srv_ring = MpscRing.attach(srv._ring.name)
            srv_ring.try_push(b"\x05")
            srv_ring.close()
            assert bytes(c.request_sync("echo", b"after", timeout=5).data) == b"after!"
    finally:
        stop.set()
        th.join(10)
    assert not th.is_alive()
    assert handled == [51] and sum(sizes) == 51
    assert not any(s.subject == "echo" for s in srv._local.values())  # unregistered
    srv.close_sync()


async def test_async_publish_batch_to_delivers_in_order_and_waits_for_room():
    url = f"shm://tasync{os.urandom(4).hex()}"
    pub, small = ShmTransport(url, publish_timeout=0.01), ShmTransport(url, ring_capacity=4096)
    await pub.connect()
    await small.connect()
    try:
        sub = await small.subscribe("res")
        await pub.flush()
        out = MessageBatch(64, 1 << 16)
        for i in range(40):
            out.append(b"%03d" % i + b"p" * 200, "", "res")
        # the 4 KiB ring holds ~15 of these: the rest waits for room without blocking the loop, which meanwhile
        # drains the ring into the subscription (same loop: a blocking wait would drop them after 10 ms)
        sent = await pub.publish_batch_to(out)
        assert sent == 40 and pub.full_drops == 0
        got = [bytes((await sub.next_msg(timeout=5)).data)[:3] for _ in range(40)]
        assert got == [b"%03d" % i for i in range(40)]
    finally:
        await pub.close()
        await small.close()


async def test_async_publish_batch_to_sleeps_once_per_full_ring_not_once_per_record(monkeypatch):
    # 1,000 records into a ring that holds ~15: after a sleep lets the consumer (same loop) drain the ring, the
    # next records go in at once.  One timer sleep per record would cap the rate at a few thousand records/s.
    import asyncio

    url = f"shm://tsleep{os.urandom(4).hex()}"
    pub, small = ShmTransport(url, publish_timeout=1.0), ShmTransport(url, ring_capacity=4096)
    await pub.connect()
    await small.connect()
    sleeps = []
    real_sleep = asyncio.sleep

    async def counting_sleep(delay, *a, **kw):
        if delay > 0:
            sleeps.append(delay)
        return await real_sleep(delay, *a, **kw)

    try:
        sub = await small.subscribe("res")
        await pub.flush()
        n = 1000
        out = MessageBatch(n, 1 << 20)
        for i in range(n):
            out.append(b"%04d" % i + b"p" * 200, "", "res")
        monkeypatch.setattr(asyncio, "sleep", counting_sleep)
        sent = await pub.publish_batch_to(out)
        monkeypatch.undo()
        assert sent == n and pub.full_drops == 0
        assert 0 < len(sleeps) <= n // 5, f"{len(sleeps)} sleeps for {n} records"
        got = [bytes((await sub.next_msg(timeout=5)).data)[:4] for _ in range(n)]
        assert got == [b"%04d" % i for i in range(n)]
    finally:
        await pub.close()
        await small.close()


def test_doorbell_member_is_woken_by_each_publish_not_by_its_timeout():
    # check_interval 30 s: a stage loop that missed a wake-up would sit out 30 s, so each answer within 2 s
    # after the loop has gone to sleep on its doorbell proves the publisher's ring woke it
    import time

    url = f"shm://tbell{os.urandom(4).hex()}"
    srv = ShmTransport(url).connect_sync(doorbell=True)
    out = MessageBatch(64, 1 << 16)
    batches: list[int] = []

    def handle(b: MessageBatch) -> None:
        batches.append(b.n)
        out.clear()
        for i in range(b.n):
            out.append(b.payload(i), "", b.reply(i))
        srv.publish_batch_sync(out)

    stop, ready = threading.Event(), threading.Event()
    th = threading.Thread(target=srv.serve_batch_sync, args=("bell.echo", handle),
                          kwargs={"stop": stop, "ready": ready.set, "check_interval": 30.0})
    th.start()
    try:
        assert ready.wait(10)
        with ShmTransport(url) as cli:
            for i in range(12):
                time.sleep(0.005)  # past the server's short poll: it is blocked on the doorbell now
                t0 = time.monotonic()
                assert bytes(cli.request_sync("bell.echo", b"m%d" % i, timeout=5).data) == b"m%d" % i
                assert time.monotonic() - t0 < 2.0
            stop.set()
            cli.publish_batch_sync(out, "bell.echo")  # wakes the loop so that it sees the stop
            th.join(10)
            assert not th.is_alive()
    finally:
        stop.set()
        th.join(10)
        srv.close_sync()
    assert batches[:12] == [1] * 12
