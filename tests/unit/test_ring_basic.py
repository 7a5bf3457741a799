"""Unit tests of lowlat's rings: construction, errors, framing, zero-copy, blocking, broadcast."""

from __future__ import annotations

import os
import pickle
import threading
import time
import uuid

import pytest
from _helpers import wait_parked

from lowlat import (
    BackoffIdle,
    BroadcastRing,
    BusySpinIdle,
    LappedError,
    MpscRing,
    RingError,
    RingFullError,
    SpscRing,
    YieldingIdle,
    _ring,
)

RINGS = [SpscRing, MpscRing]


@pytest.fixture
def shm_name():
    name = f"lltest-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    yield name
    try:
        os.unlink(f"/dev/shm/{name}")
    except FileNotFoundError:
        pass


@pytest.mark.parametrize("cls", RINGS)
@pytest.mark.parametrize("cap", [0, 1, 63, 100, 1000, 3 << 10, 1 << 30])
def test_capacity_not_power_of_two_or_out_of_range_raises_value_error(cls, cap):
    with pytest.raises(ValueError):
        cls(cap)


@pytest.mark.parametrize("cls", RINGS)
def test_capacity_must_be_int(cls):
    with pytest.raises(TypeError):
        cls(1024.0)


@pytest.mark.parametrize("cls", RINGS)
def test_properties_variable_and_slot_modes(cls):
    r = cls(1024)
    assert (r.capacity, r.slot_size, r.max_record_size, r.name) == (1024, 0, 504, None)
    s = cls(1024, slot_size=56)
    assert (s.slot_size, s.max_record_size) == (56, 56)
    with pytest.raises(ValueError):
        cls(1024, slot_size=1000)          # two slots must fit
    with pytest.raises(ValueError):
        cls(1024, slot_size=-1)


@pytest.mark.parametrize("cls", RINGS)
def test_record_larger_than_max_raises_and_writes_nothing(cls):
    r = cls(256)
    big = b"x" * (r.max_record_size + 1)
    for op in (r.try_push, r.push):
        with pytest.raises(ValueError):
            op(big)
    with pytest.raises(ValueError):
        r.push_batch([b"ok", big])
    with pytest.raises(ValueError):
        r.claim(r.max_record_size + 1)
    assert len(r) == 0 and r.try_pop() is None
    assert r.try_push(b"x" * r.max_record_size)
    assert r.try_pop() == b"x" * r.max_record_size


@pytest.mark.parametrize("cls", RINGS)
def test_fifo_roundtrip_with_empty_and_odd_sized_records(cls):
    r = cls(4096)
    msgs = [b"", b"a", b"bcdefgh", b"12345678", b"x" * 9, bytes(range(200))]
    for m in msgs:
        assert r.try_push(m)
    assert len(r) == len(msgs)
    assert [r.try_pop() for _ in msgs] == msgs
    assert r.try_pop() is None and len(r) == 0


@pytest.mark.parametrize("cls", RINGS)
def test_full_ring_rejects_then_accepts_after_pop(cls):
    r = cls(256, slot_size=24)             # 32-byte frames -> exactly 8 slots
    for i in range(8):
        assert r.try_push(bytes([i]) * 24)
    assert not r.try_push(b"z")
    assert r.try_pop() == bytes([0]) * 24
    assert r.try_push(b"z")
    assert r.pop_batch(100) == [bytes([i]) * 24 for i in range(1, 8)] + [b"z"]


@pytest.mark.parametrize("cls", RINGS)
def test_accepts_any_contiguous_buffer(cls):
    r = cls(1024)
    assert r.try_push(bytearray(b"ba"))
    assert r.try_push(memoryview(b"xmvx")[1:3])
    assert r.push_batch([bytearray(b"1"), memoryview(b"22"), b"333"]) == 3
    assert r.pop_batch(10) == [b"ba", b"mv", b"1", b"22", b"333"]
    with pytest.raises(TypeError):
        r.try_push("text")


@pytest.mark.parametrize("cls", RINGS)
def test_try_push_parts_writes_the_concatenation(cls):
    r = cls(256)
    assert r.try_push_parts([b"hdr:", memoryview(b"subject"), bytearray(b":"), b"payload"])
    assert r.try_push_parts(())
    assert r.try_pop() == b"hdr:subject:payload" and r.try_pop() == b""
    with pytest.raises(ValueError):
        r.try_push_parts([b"x" * 100, b"y" * (r.max_record_size - 99)])
    while r.try_push_parts([b"a" * 20, b"b" * 20]):
        pass
    assert r.pop_batch(10) == [b"a" * 20 + b"b" * 20] * 4    # 4 x 48-byte frames filled it


@pytest.mark.parametrize("cls", RINGS)
def test_push_batch_stops_when_full_and_keeps_order(cls):
    r = cls(256)
    n = r.push_batch([bytes([i]) * 24 for i in range(20)])   # 32-byte frames
    assert n == 8
    assert r.pop_batch(3) == [bytes([i]) * 24 for i in range(3)]
    assert r.push_batch([b"A" * 24, b"B" * 24]) == 2
    rest = r.pop_batch(100)
    assert rest == [bytes([i]) * 24 for i in range(3, 8)] + [b"A" * 24, b"B" * 24]


@pytest.mark.parametrize("cls", RINGS)
def test_peek_is_zero_copy_and_stable_until_commit(cls):
    r = cls(1024)
    r.try_push(b"first")
    r.try_push(b"second")
    v1 = r.try_peek()
    assert bytes(v1) == b"first" and v1.readonly
    assert bytes(r.try_peek()) == b"first"     # same record until commit
    with pytest.raises(RingError):
        r.try_pop()                            # mixing peek and pop is an error
    r.commit()
    with pytest.raises(RingError):
        r.commit()
    views = r.peek_batch(10)
    assert [bytes(v) for v in views] == [b"second"]
    r.commit()
    assert r.try_peek() is None and r.peek_batch(5) == []


@pytest.mark.parametrize("cls", RINGS)
def test_claim_publish_shrink_and_abort(cls):
    r = cls(1024)
    mv = r.claim(32)
    assert len(mv) == 32 and not mv.readonly
    with pytest.raises(RingError):
        r.claim(8)                              # one outstanding claim
    with pytest.raises(RingError):
        r.try_push(b"x")
    mv[:5] = b"hello"
    with pytest.raises(ValueError):
        r.publish(33)
    r.publish(5)
    mv = r.claim(16)
    mv[:] = b"y" * 16
    r.abort()
    r.try_push(b"after")
    assert r.pop_batch(10) == [b"hello", b"after"]
    with pytest.raises(RingError):
        r.publish()


def test_spsc_publish_shrink_returns_unused_space():
    r = SpscRing(256)
    for _ in range(100):                        # would fill a 256-byte ring if space leaked
        mv = r.claim(120)
        mv[:3] = b"abc"
        r.publish(3)
        assert r.try_pop() == b"abc"


@pytest.mark.parametrize("cls", RINGS)
def test_wraparound_many_laps_variable_sizes(cls):
    r = cls(512)
    out = []
    expect = []
    for i in range(5000):
        m = bytes([i & 0xFF]) * (i % 61)
        expect.append(m)
        while not r.try_push(m):
            out.append(r.try_pop())
    out.extend(r.pop_batch(10_000))
    assert out == expect


@pytest.mark.parametrize("cls", RINGS)
def test_blocking_pop_times_out_and_push_raises_ring_full(cls):
    r = cls(128)
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        r.pop(timeout=0.05)
    assert time.monotonic() - t0 >= 0.04
    assert not r.wait_readable(0.01)
    while r.try_push(b"x" * 8):
        pass
    with pytest.raises(RingFullError):
        r.push(b"x" * 8, timeout=0.02, idle=YieldingIdle())


@pytest.mark.parametrize("idle", [None, BackoffIdle(max_spins=1, max_yields=1, min_park_ns=1000,
                                                     max_park_ns=100_000), YieldingIdle()])
def test_threads_producer_consumer_blocking_gil_released(idle):
    r = SpscRing(1024)
    n = 20_000

    def produce():
        for i in range(n):
            r.push(i.to_bytes(4, "little"), idle=idle)

    t = threading.Thread(target=produce)
    t.start()
    got = [int.from_bytes(r.pop(timeout=10, idle=idle), "little") for _ in range(n)]
    t.join()
    assert got == list(range(n))


def test_mpsc_threads_no_loss_no_duplicates():
    r = MpscRing(4096)
    n, k = 5000, 4

    def produce(p):
        for i in range(n):
            r.push(bytes([p]) + i.to_bytes(4, "little"))

    ts = [threading.Thread(target=produce, args=(p,)) for p in range(k)]
    for t in ts:
        t.start()
    last = [-1] * k
    for _ in range(n * k):
        m = r.pop(timeout=10)
        p, i = m[0], int.from_bytes(m[1:], "little")
        assert i == last[p] + 1                # per-producer order kept
        last[p] = i
    for t in ts:
        t.join()
    assert last == [n - 1] * k and r.try_pop() is None


def test_wait_readable_from_worker_thread():
    r = SpscRing(1024)
    res = []
    t = threading.Thread(target=lambda: res.append(r.wait_readable(5.0)))
    t.start()
    wait_parked(t)  # the push wakes a waiting thread, not one that has yet to look
    r.push(b"wake")
    t.join()
    assert res == [True] and r.try_pop() == b"wake"


def test_idle_strategies_validate_and_repr():
    assert "BackoffIdle(max_spins=10" in repr(BackoffIdle())
    assert repr(BusySpinIdle()) == "BusySpinIdle()"
    with pytest.raises(ValueError):
        BackoffIdle(min_park_ns=10, max_park_ns=5)
    with pytest.raises(ValueError, match="unknown idle strategy"):
        SpscRing(64).pop(timeout=0, idle="spin")
    with pytest.raises(TypeError):
        SpscRing(64).pop(timeout=0, idle=3)
    with pytest.raises(TimeoutError):
        SpscRing(64).pop(timeout=0.01, idle="yield")   # kind names are accepted as everywhere else


# ---- shared memory -------------------------------------------------------------------------------

@pytest.mark.parametrize("cls", RINGS)
def test_shm_create_attach_roundtrip_and_unlink(cls, shm_name):
    with cls(4096, name=shm_name) as a, cls.attach(shm_name) as b:
        assert b.capacity == 4096 and b.name == shm_name
        a.push(b"one")
        assert b.pop(timeout=1) == b"one"
        b.push(b"two")
        assert a.try_pop() == b"two"
        a.unlink()
    assert not os.path.exists(f"/dev/shm/{shm_name}")
    with pytest.raises(RingError, match="no ring named"):
        cls.attach(shm_name)


def test_shm_create_existing_name_raises(shm_name):
    r = SpscRing(1024, name=shm_name)
    with pytest.raises(RingError, match="already exists"):
        SpscRing(1024, name=shm_name)
    r.close()
    r.unlink()
    r.unlink()                                 # idempotent


def test_attach_mismatch_errors_are_clear(shm_name):
    r = SpscRing(1024, name=shm_name, slot_size=24)
    try:
        with pytest.raises(RingError, match="is a SpscRing, not a MpscRing"):
            MpscRing.attach(shm_name)
        with pytest.raises(RingError, match="is a SpscRing, not a BroadcastRing"):
            BroadcastRing.attach(shm_name)
        with pytest.raises(RingError, match="capacity 1024 and slot_size 24"):
            SpscRing(2048, name=shm_name, create=False)
        ok = SpscRing(1024, name=shm_name, create=False, slot_size=24)
        ok.close()
    finally:
        r.close()
        r.unlink()


def test_attach_rejects_foreign_and_old_version_memory(shm_name):
    path = f"/dev/shm/{shm_name}"
    with open(path, "wb") as f:
        f.write(b"NOTARING" + bytes(2048))
    with pytest.raises(RingError, match="not a lowlat ring"):
        SpscRing.attach(shm_name)
    os.unlink(path)
    r = SpscRing(1024, name=shm_name)
    with open(path, "r+b") as f:                # pretend a future layout version
        f.seek(8)
        f.write((99).to_bytes(4, "little"))
    with pytest.raises(RingError, match="layout version 99"):
        SpscRing.attach(shm_name)
    r.close()
    with open(path, "wb") as f:                 # truncated file
        f.write(bytes(100))
    with pytest.raises(RingError, match="never initialised"):
        SpscRing.attach(shm_name)


def test_invalid_names():
    for bad in ("", "a/b", "x" * 300):
        with pytest.raises(ValueError):
            SpscRing(1024, name=bad)
    with pytest.raises(TypeError):
        SpscRing(1024, name=b"bytes")
    with pytest.raises(ValueError):
        SpscRing(1024, create=False)


def test_pickle_named_ring_attaches_and_heap_ring_refuses(shm_name):
    r = MpscRing(1024, name=shm_name)
    try:
        r2 = pickle.loads(pickle.dumps(r))
        r2.push(b"via pickle")
        assert r.pop(timeout=1) == b"via pickle"
        r2.close()
    finally:
        r.close()
        r.unlink()
    with pytest.raises(TypeError):
        pickle.dumps(SpscRing(64))


def test_close_is_idempotent_and_views_survive_close():
    r = SpscRing(1024)
    r.try_push(b"keep")
    v = r.try_peek()
    r.close()
    r.close()
    assert r.closed
    assert bytes(v) == b"keep"                  # memory stays mapped while a view exists
    for op in (r.try_pop, lambda: r.try_push(b"x"), r.try_peek):
        with pytest.raises(RingError, match="closed"):
            op()
    del v
    assert len(r) == 0


@pytest.mark.parametrize("cls", RINGS)
def test_corrupt_header_in_shared_memory_raises_not_crashes(cls, shm_name):
    r = cls(1024, name=shm_name)
    try:
        with open(f"/dev/shm/{shm_name}", "r+b") as f:
            f.seek(_ring.HEADER_SIZE)
            # committed record claiming a 1 GB payload
            f.write(((1 << 31) | 16 | ((1 << 30) << 32)).to_bytes(8, "little"))
        _bump_shared_tail(shm_name, 16)
        with pytest.raises(RingError, match="corrupt record header"):
            r.try_pop()
        with pytest.raises(RingError, match="corrupt"):
            r.pop_batch(4)
    finally:
        r.close()
        r.unlink()


# ---- broadcast -----------------------------------------------------------------------------------

def test_broadcast_each_receiver_sees_everything_in_order():
    b = BroadcastRing(4096)
    rxs = [b.receiver() for _ in range(3)]
    msgs = [bytes([i]) * (i % 40) for i in range(200)]
    got = [[] for _ in rxs]
    for m in msgs:
        b.publish(m)
        for g, rx in zip(got, rxs):
            g.append(rx.try_recv())
    assert all(g == msgs for g in got)
    assert all(rx.try_recv() is None for rx in rxs)


def test_broadcast_receiver_starts_at_next_record():
    b = BroadcastRing(1024)
    b.publish(b"old")
    rx = b.receiver()
    assert rx.try_recv() is None
    b.publish(b"new")
    assert rx.try_recv() == b"new"


def test_broadcast_lapped_receiver_raises_then_resyncs():
    b = BroadcastRing(1024)
    rx = b.receiver()
    quiet = b.receiver(raise_on_lap=False)
    for i in range(200):
        b.publish(b"%04d" % i)
    with pytest.raises(LappedError):
        rx.try_recv()
    assert rx.lapped_count == 1
    assert rx.try_recv() == b"0199"          # resumed at the newest record
    assert quiet.try_recv() == b"0199" and quiet.lapped_count == 1


def test_broadcast_max_record_and_blocking_recv_timeout():
    b = BroadcastRing(1024)
    assert b.max_record_size == 120
    with pytest.raises(ValueError):
        b.publish(b"x" * 121)
    rx = b.receiver()
    with pytest.raises(TimeoutError):
        rx.recv(timeout=0.02)
    threading.Timer(0.02, b.publish, args=(b"late",)).start()
    assert rx.recv(timeout=5) == b"late"


def test_broadcast_shared_memory_attach(shm_name):
    b = BroadcastRing(4096, name=shm_name)
    try:
        other = BroadcastRing.attach(shm_name)
        rx = other.receiver()
        b.publish(b"tick")
        assert rx.try_recv() == b"tick"
        other.close()
    finally:
        b.close()
        b.unlink()


def _bump_shared_tail(name: str, nbytes: int) -> None:
    """Simulate a producer that died right after its claim (tail moved, header never written)."""
    with open(f"/dev/shm/{name}", "r+b") as f:
        f.seek(128)
        tail = int.from_bytes(f.read(8), "little")
        f.seek(128)
        f.write((tail + nbytes).to_bytes(8, "little"))


def test_spsc_tail_moved_without_record_is_reported_as_corrupt(shm_name):
    # an SPSC producer publishes by moving the tail after the record: a tail over zeros is foreign
    r = SpscRing(1024, name=shm_name)
    try:
        _bump_shared_tail(shm_name, 24)
        with pytest.raises(RingError, match="corrupt"):
            r.try_pop()
    finally:
        r.close()
        r.unlink()


def test_mpsc_claim_without_header_is_skipped_after_dead_producer_timeout(shm_name):
    r = MpscRing(1024, name=shm_name, dead_producer_timeout=0.05)
    try:
        r.try_push(b"before")
        _bump_shared_tail(shm_name, 24)
        r.try_push(b"after")
        assert r.try_pop() == b"before"
        assert r.try_pop() is None             # stalled at the dead claim, not reading garbage
        assert r.pop(timeout=5) == b"after"
        assert r.dead_records == 1 and len(r) == 0 and r.available == 0
    finally:
        r.close()
        r.unlink()


def test_claim_without_header_stalls_forever_when_timeout_disabled(shm_name):
    r = MpscRing(1024, name=shm_name, dead_producer_timeout=None)
    try:
        _bump_shared_tail(shm_name, 16)
        r.try_push(b"after")
        with pytest.raises(TimeoutError):
            r.pop(timeout=0.2)
        assert r.dead_records == 0
    finally:
        r.close()
        r.unlink()


def test_pending_claim_of_live_process_is_never_skipped():
    r = MpscRing(1024, dead_producer_timeout=0.01)
    mv = r.claim(8)                            # our own pid: alive
    with pytest.raises(TimeoutError):
        r.pop(timeout=0.1)
    mv[:] = b"finished"
    r.publish()
    assert r.pop(timeout=1) == b"finished" and r.dead_records == 0


def test_blocking_pop_runs_signal_handlers():
    import signal

    class Interrupted(Exception):
        pass

    def handler(signum, frame):
        raise Interrupted

    old = signal.signal(signal.SIGALRM, handler)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.1)
        t0 = time.monotonic()
        with pytest.raises(Interrupted):
            SpscRing(1024).pop()                 # no timeout: only the signal ends the wait
        assert time.monotonic() - t0 < 2
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@pytest.mark.parametrize("cls", RINGS)
def test_close_from_another_thread_ends_blocking_calls(cls):
    r = cls(128)
    errs = []

    def waiter():
        try:
            r.pop(timeout=10)
        except RingError as e:
            errs.append(e)

    t = threading.Thread(target=waiter)
    t.start()
    wait_parked(t)  # close a ring a thread is blocked on, not one it has yet to call
    r.close()
    t.join(5)
    assert not t.is_alive() and len(errs) == 1 and "closed" in str(errs[0])
