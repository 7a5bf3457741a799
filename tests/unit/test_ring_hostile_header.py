"""Hostile shared-memory ring headers: every header word of every ring kind overwritten with hostile values, each
case in its own forked process.  The ring must answer with a clear RingError (or keep working), never crash,
hang or ignore a timeout.  (A segment truncated under a live mapping raises SIGBUS: the shared-memory limit
documented in lowlat/_ring.pyx, not tested here.)"""

from __future__ import annotations

import os
import signal
import struct
import time
import uuid

import pytest

from lowlat import BroadcastRing, LappedError, MpscRing, RingError, SpscRing

CAP = 4096
HARD_LIMIT_S = 10.0          # a case that runs longer than this hung
KINDS = {
    "spsc": lambda name: SpscRing(CAP, name=name),
    "spsc-slot": lambda name: SpscRing(CAP, name=name, slot_size=40),
    "mpsc": lambda name: MpscRing(CAP, name=name, dead_producer_timeout=0.02),
    "mpsc-slot": lambda name: MpscRing(CAP, name=name, slot_size=40, dead_producer_timeout=0.02),
    "broadcast": lambda name: BroadcastRing(CAP, name=name),
}
# (offset, width) of every word the header layout defines
WORDS = [(0, 8), (8, 4), (12, 4), (16, 8), (24, 8), (32, 8), (40, 8), (128, 8), (136, 8), (144, 8), (256, 8),
         (264, 8), (272, 8)]
VALUES = [0, 1, 7, 8, 24, CAP - 8, CAP, CAP + 8, 2**31, 2**32 - 1, 2**62, 2**63, 2**63 + 8, 2**64 - 7, 2**64 - 1]
ALLOWED = (RingError, LappedError, TimeoutError)


def _poke(name: str, off: int, width: int, value: int) -> None:
    with open(f"/dev/shm/{name}", "r+b") as f:
        f.seek(off)
        f.write((value & ((1 << (8 * width)) - 1)).to_bytes(width, "little"))


def _peek_u64(name: str, off: int) -> int:
    with open(f"/dev/shm/{name}", "rb") as f:
        f.seek(off)
        return struct.unpack("<Q", f.read(8))[0]


def _step(fn) -> str:
    t0 = time.monotonic()
    try:
        fn()
        out = "ok"
    except ALLOWED as e:
        out = type(e).__name__
    if time.monotonic() - t0 > 2.0:
        raise AssertionError(f"a call took {time.monotonic() - t0:.1f} s: its timeout was ignored")
    return out


def _exercise(kind: str, name: str) -> None:
    """Everything a user may do with an attached ring; any other exception fails the case."""
    if kind == "broadcast":
        try:
            b = BroadcastRing.attach(name)
        except RingError:
            return
        for raise_on_lap in (True, False):
            rx = b.receiver(raise_on_lap=raise_on_lap)
            _step(lambda: b.publish(b"x" * 100))
            for _ in range(3):
                _step(rx.try_recv)
            _step(lambda: rx.recv(timeout=0.02))
        repr(b)
        return
    cls = MpscRing if kind.startswith("mpsc") else SpscRing
    try:
        r = cls.attach(name, dead_producer_timeout=0.02) if cls is MpscRing else cls.attach(name)
    except RingError:
        return
    len(r), repr(r), r.available, r.dead_records, r.max_record_size
    for data in (b"Z" * 100_000, b"Z" * (r.max_record_size + 1), b"Z" * 40, b"", b"Z" * 3):
        try:
            _step(lambda: r.try_push(data))
        except ValueError:
            pass  # larger than max_record_size: refused before touching memory
    try:
        _step(lambda: r.push_batch([b"a" * 8, b"b" * 16]))
    except ValueError:
        pass  # a (legal) smaller slot_size than the records: refused before touching memory
    _step(r.try_pop)
    _step(lambda: r.pop(timeout=0.02))
    _step(lambda: r.wait_readable(timeout=0.02))
    _step(lambda: r.pop_batch(8))
    if _step(lambda: r.peek_batch(8)) == "ok" and r.available >= 0:
        try:
            r.commit()
        except RingError:
            pass
    len(r), repr(r)


def _child(kind: str, name: str, off: int, width: int, value: int) -> int:
    # create a ring with records in it, corrupt one word, then use it through a fresh attach
    creator = KINDS[kind](name)
    if kind == "broadcast":
        creator.publish(b"hello")
    else:
        creator.try_push(b"hello world")
        creator.try_push(b"second")
    _poke(name, off, width, value)
    try:
        _exercise(kind, name)
    except BaseException as e:  # noqa: BLE001 - reported through the exit code
        os.write(2, f"{kind} off={off} value={value:#x}: {type(e).__name__}: {e}\n".encode())
        return 3
    return 0


def _run_cases(kind: str, cases: list[tuple[int, int, int]], parallel: int = 6) -> list:
    """Run each (offset, width, value) case in its own forked process, a few at a time; returns the failures:
    (offset, value, 'crash'/'hang'/'error', signal or exit code)."""
    bad, running, todo = [], {}, list(cases)
    while todo or running:
        while todo and len(running) < parallel:
            off, width, value = todo.pop()
            name = f"llhdr-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            pid = os.fork()
            if pid == 0:
                code = 4
                try:
                    code = _child(kind, name, off, width, value)
                finally:
                    os._exit(code)
            running[pid] = (off, value, name, time.monotonic() + HARD_LIMIT_S)
        time.sleep(0.005)
        for pid, (off, value, name, deadline) in list(running.items()):
            got, status = os.waitpid(pid, os.WNOHANG)
            if not got:
                if time.monotonic() < deadline:
                    continue
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                bad.append((off, hex(value), "hang", None))
            elif os.WIFSIGNALED(status):
                bad.append((off, hex(value), "crash", os.WTERMSIG(status)))
            elif os.WEXITSTATUS(status):
                bad.append((off, hex(value), "error", os.WEXITSTATUS(status)))
            del running[pid]
            try:
                os.unlink(f"/dev/shm/{name}")
            except FileNotFoundError:
                pass
    return bad


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_header_word_hostile_gives_ring_error_never_crash_or_hang(kind):
    bad = _run_cases(kind, [(off, width, value) for off, width in WORDS for value in VALUES])
    assert not bad, sorted(bad)


@pytest.mark.parametrize("value", [2**64 - 7, 2**63, 2**62, 2**32, CAP])
@pytest.mark.parametrize("cls", [SpscRing, MpscRing])
def test_hostile_slot_size_is_refused_at_attach(cls, value):
    name = f"llhdr-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    r = cls(CAP, name=name)
    try:
        _poke(name, 24, 8, value)
        with pytest.raises(RingError, match="slot_size"):
            cls.attach(name)
    finally:
        r.close()
        r.unlink()


def test_hostile_slot_size_at_create_is_refused():
    for value in (2**64 - 7, 2**64 + 5, CAP):
        with pytest.raises((ValueError, OverflowError)):
            SpscRing(CAP, slot_size=value)


def test_len_never_raises_system_error():
    name = f"llhdr-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    r = SpscRing(CAP, name=name)
    try:
        for pushed, popped in ((2**64 - 1, 0), (2**63, 1), (1, 2**64 - 1), (2**63 + 5, 4)):
            _poke(name, 136, 8, pushed)
            _poke(name, 264, 8, popped)
            n = len(r)
            assert 0 <= n <= CAP // 8
            repr(r)
        _poke(name, 128, 8, 2**63)
        assert 0 <= r.available <= CAP
    finally:
        r.close()
        r.unlink()


def test_corrupt_broadcast_intent_does_not_spin():
    name = f"llhdr-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    b = BroadcastRing(CAP, name=name)
    try:
        rx = b.receiver(raise_on_lap=False)
        b.publish(b"one")
        _poke(name, 128, 8, 2**63)
        pid = os.fork()
        if pid == 0:
            try:
                rx.try_recv()
                rx.try_recv()
                os._exit(1)                         # silently "resynchronised" forever is not an answer
            except RingError:
                os._exit(0)
            except BaseException:  # noqa: BLE001
                os._exit(2)
        deadline = time.monotonic() + 5
        while not os.waitpid(pid, os.WNOHANG)[0]:
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                pytest.fail("try_recv spins forever on a corrupt tail-intent word")
            time.sleep(0.01)
    finally:
        b.close()
        b.unlink()


def test_corrupt_mpsc_tail_keeps_the_pop_timeout():
    name = f"llhdr-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    r = MpscRing(1 << 20, name=name, dead_producer_timeout=0.01)
    try:
        r.try_push(b"x")
        r.try_pop()
        _poke(name, 128, 8, _peek_u64(name, 256) + 2**62)
        t0 = time.monotonic()
        with pytest.raises(RingError, match="tail"):
            r.pop(timeout=0.3)
        with pytest.raises(RingError, match="tail"):
            r.wait_readable(timeout=0.3)
        assert time.monotonic() - t0 < 2
    finally:
        r.close()
        r.unlink()
