"""Rings between real processes: ordering, no loss, no duplication over millions of records; MPSC with
several producers; producers SIGKILLed mid-write never make the consumer read a half-written record.

Child processes run this file as a script (``python test_ring_xproc.py <role> ...``)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import uuid

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from lowlat import BroadcastRing, LappedError, MpscRing, SpscRing, YieldingIdle

pytestmark = pytest.mark.integration

KINDS = {"spsc": SpscRing, "mpsc": MpscRing}
HDR = 9                                     # tag (1 byte) + sequence number (8 bytes)


def record(tag: int, seq: int) -> bytes:
    """Self-checking record: length and filler are functions of the sequence number."""
    return bytes([tag]) + seq.to_bytes(8, "little") + bytes([seq & 0xFF]) * (seq % 53)


def check(m: bytes) -> tuple[int, int]:
    assert len(m) >= HDR, f"short record {m!r}"
    tag, seq = m[0], int.from_bytes(m[1:HDR], "little")
    assert len(m) == HDR + seq % 53, f"record {tag}/{seq} has wrong length {len(m)}"
    assert m[HDR:] == bytes([seq & 0xFF]) * (seq % 53), f"record {tag}/{seq} is torn"
    return tag, seq


# ---- child roles ---------------------------------------------------------------------------------

def _produce(kind: str, name: str, tag: int, n: int, batch: int) -> None:
    ring = KINDS[kind].attach(name)
    seq = 0
    idle = YieldingIdle()
    while seq < n:
        k = min(batch, n - seq)
        recs = [record(tag, s) for s in range(seq, seq + k)]
        done = ring.push_batch(recs)
        while done < k:                         # ring full: wait for room, then push the rest
            ring.push(recs[done], timeout=30, idle=idle)
            done += 1
            if done < k:
                done += ring.push_batch(recs[done:])
        seq += k
    ring.close()


def _produce_forever(kind: str, name: str, tag: int) -> None:
    ring = KINDS[kind].attach(name)
    print("ready", flush=True)
    seq = 0
    while True:                                 # until SIGKILLed; mixes claim/publish and push
        if seq % 3 == 0:
            m = record(tag, seq)
            mv = ring.claim(len(m))
            if mv is None:
                time.sleep(0)
                continue
            mv[:] = m
            del mv
            ring.publish()
        elif not ring.try_push(record(tag, seq)):
            time.sleep(0)
            continue
        seq += 1


def _broadcast(name: str, n: int) -> None:
    ring = BroadcastRing.attach(name)
    for seq in range(n):                        # as fast as possible: receivers get lapped
        ring.publish(record(1, seq))
    ring.close()


def _half_write(kind: str, name: str, tag: int) -> None:
    ring = KINDS[kind].attach(name)
    m = record(tag, 52)
    mv = ring.claim(len(m))
    mv[: len(m) // 2] = m[: len(m) // 2]        # half of the payload, then stop forever
    print("claimed", flush=True)
    time.sleep(3600)


# ---- helpers -------------------------------------------------------------------------------------

def _spawn(*args: object) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen([sys.executable, os.path.abspath(__file__), *map(str, args)],
                            env=env, stdout=subprocess.PIPE, text=True)


def _kill(p: subprocess.Popen) -> None:
    if p.poll() is None:
        p.send_signal(signal.SIGKILL)
    p.wait(timeout=10)


@pytest.fixture
def shm_name():
    name = f"llxproc-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    yield name
    try:
        os.unlink(f"/dev/shm/{name}")
    except FileNotFoundError:
        pass


def _drain(ring, procs, expect: dict[int, int], deadline: float) -> dict[int, int]:
    """Consume until every tag reached its expected count; check order/no dup/no loss per tag."""
    nxt = {t: 0 for t in expect}
    idle = YieldingIdle()
    while nxt != expect:
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out: got {nxt}, expected {expect}")
        batch = ring.pop_batch(4096)
        if not batch:
            for p in procs:
                assert p.poll() in (None, 0), f"producer exited with {p.returncode}"
            ring.wait_readable(0.05, idle)
            continue
        for m in batch:
            tag, seq = check(m)
            assert seq == nxt[tag], f"producer {tag}: got seq {seq}, expected {nxt[tag]}"
            nxt[tag] = seq + 1
    assert ring.try_pop() is None
    return nxt


# ---- tests ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("slot", [0, 64])
def test_spsc_two_million_records_in_order_no_loss_no_dup(shm_name, slot):
    n = 2_000_000 if slot == 0 else 300_000
    ring = SpscRing(1 << 16, name=shm_name, slot_size=slot)
    p = _spawn("produce", "spsc", shm_name, 1, n, 512)
    try:
        _drain(ring, [p], {1: n}, time.monotonic() + 60)
        assert p.wait(timeout=30) == 0
        assert len(ring) == 0
    finally:
        _kill(p)
        ring.close()
        ring.unlink()


def test_mpsc_three_producers_each_in_order_no_loss_no_dup(shm_name):
    n = 300_000
    ring = MpscRing(1 << 16, name=shm_name)
    procs = [_spawn("produce", "mpsc", shm_name, t, n, 256) for t in (1, 2, 3)]
    try:
        _drain(ring, procs, {1: n, 2: n, 3: n}, time.monotonic() + 60)
        assert [p.wait(timeout=30) for p in procs] == [0, 0, 0]
        assert ring.dead_records == 0
    finally:
        for p in procs:
            _kill(p)
        ring.close()
        ring.unlink()


@pytest.mark.parametrize("kind", ["spsc", "mpsc"])
def test_producer_killed_after_claim_never_exposes_half_written_record(shm_name, kind):
    ring = KINDS[kind](1 << 14, name=shm_name)
    dead = _spawn("halfwrite", kind, shm_name, 7)
    procs = [dead]
    try:
        assert dead.stdout.readline().strip() == "claimed"
        # the next producer (MPSC: concurrently; SPSC: after the first one is gone)
        if kind == "mpsc":
            procs.append(_spawn("produce", kind, shm_name, 2, 1000, 100))
            t_end = time.monotonic() + 0.3
            while time.monotonic() < t_end:      # stalled at the claimed slot: nothing readable
                assert ring.try_pop() is None
        dead.send_signal(signal.SIGKILL)        # not reaped yet: a zombie must count as dead too
        if kind == "spsc":
            procs.append(_spawn("produce", kind, shm_name, 2, 1000, 100))
        got = _drain(ring, procs[1:], {2: 1000}, time.monotonic() + 30)
        assert got == {2: 1000}                  # tag 7's half record was never delivered
        # MPSC skipped the dead claim; SPSC never published it (the tail moves after the record)
        assert ring.dead_records == (1 if kind == "mpsc" else 0)
    finally:
        for p in procs:
            _kill(p)
        ring.close()
        ring.unlink()


@pytest.mark.parametrize("kind", ["spsc", "mpsc"])
def test_producers_sigkilled_at_random_points_never_tear_records(shm_name, kind):
    rng = random.Random(1234)
    ring = KINDS[kind](1 << 12, name=shm_name)   # small ring: the producer is often mid-claim
    nxt: dict[int, int] = {}
    procs = []
    try:
        for round_ in range(3):
            tags = [10 + round_] if kind == "spsc" else [10 + round_, 50 + round_]
            procs = [_spawn("forever", kind, shm_name, t) for t in tags]
            for t in tags:
                nxt[t] = 0
            for p in procs:
                assert p.stdout.readline().strip() == "ready"
            t_kill = time.monotonic() + rng.uniform(0.15, 0.4)
            while time.monotonic() < t_kill:
                for m in ring.pop_batch(256):
                    tag, seq = check(m)          # never torn, whatever moment the kill hits
                    assert seq == nxt[tag], f"producer {tag}: got {seq}, expected {nxt[tag]}"
                    nxt[tag] = seq + 1
            for p in procs:
                _kill(p)
            # drain what the dead producers published; a claimed-but-unpublished slot is skipped
            t_end = time.monotonic() + 5
            while time.monotonic() < t_end:
                batch = ring.pop_batch(256)
                for m in batch:
                    tag, seq = check(m)
                    assert seq == nxt[tag]
                    nxt[tag] = seq + 1
                if not batch and ring.available == 0:
                    break
                if not batch:
                    time.sleep(0.002)
            assert ring.available == 0, "consumer stuck behind a dead producer's slot"
        assert all(v > 0 for v in nxt.values()), nxt
    finally:
        for p in procs:
            _kill(p)
        ring.close()
        ring.unlink()


def test_broadcast_receivers_never_see_torn_records_when_lapped(shm_name):
    n = 300_000
    ring = BroadcastRing(1 << 12, name=shm_name)       # tiny: the publisher laps the receivers
    quiet = ring.receiver(raise_on_lap=False)
    loud = ring.receiver()
    p = _spawn("bcast", "-", shm_name, n)
    try:
        last = {id(quiet): -1, id(loud): -1}
        laps = 0
        deadline = time.monotonic() + 60
        while last[id(quiet)] < n - 1 or last[id(loud)] < n - 1:
            assert time.monotonic() < deadline, f"timed out at {last}"
            idle = True
            for rx in (quiet, loud):
                try:
                    m = rx.try_recv()
                except LappedError:
                    laps += 1
                    continue
                if m is None:
                    continue
                idle = False
                tag, seq = check(m)                     # intact, whatever the producer overwrote
                assert tag == 1 and seq > last[id(rx)], (seq, last[id(rx)])
                last[id(rx)] = seq
            if idle:
                assert p.poll() in (None, 0)
                time.sleep(0)
        assert p.wait(timeout=30) == 0
        assert laps == loud.lapped_count               # every lap was reported, once
    finally:
        _kill(p)
        ring.close()
        ring.unlink()


def test_attach_from_another_process_sees_missing_name_error():
    code = ("import lowlat\ntry:\n lowlat.SpscRing.attach('llxproc-missing-x')\n"
            "except lowlat.RingError as e: print('RingError', e)")
    out = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=ROOT),
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.stdout.startswith("RingError no ring named"), out.stderr


if __name__ == "__main__":
    role, kind, name, *rest = sys.argv[1:]
    if role == "produce":
        _produce(kind, name, int(rest[0]), int(rest[1]), int(rest[2]))
    elif role == "forever":
        _produce_forever(kind, name, int(rest[0]))
    elif role == "bcast":
        _broadcast(name, int(rest[0]))
    elif role == "halfwrite":
        _half_write(kind, name, int(rest[0]))
    else:
        raise SystemExit(f"unknown role {role}")
