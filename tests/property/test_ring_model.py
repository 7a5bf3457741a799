"""SpscRing / MpscRing against an obviously-correct model: a collections.deque of records plus the
byte arithmetic of the documented layout (8-byte header, 8-byte alignment or fixed slots, filler at
the end of the data area).  Every operation must agree, including exactly when the ring is full."""

from __future__ import annotations

from collections import deque

import hypothesis.strategies as st
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from lowlat import MpscRing, SpscRing


def _frame(n: int, stride: int) -> int:
    return stride if stride else (n + 8 + 7) // 8 * 8


class RefRing:
    """Records in a deque; None entries are filler (wrap padding, aborted MPSC claims)."""

    def __init__(self, cap: int, slot: int, multi: bool):
        self.cap, self.multi = cap, multi
        self.stride = (slot + 8 + 7) // 8 * 8 if slot else 0
        self.max = slot if slot else cap // 2 - 8
        self.q: deque[list] = deque()       # [payload | None, span bytes]
        self.tail = 0
        self.claimed = 0

    @property
    def used(self) -> int:
        return sum(span for _, span in self.q)

    def _reserve(self, frame: int):
        """Room for `frame` (plus filler to the end of the data area if it would not fit there)?
        Returns the filler size, or None when full."""
        off = self.tail % self.cap
        pad = self.cap - off if self.cap - off < frame else 0
        if self.used + pad + frame > self.cap:
            return None
        return pad

    def push(self, m: bytes) -> bool:
        frame = _frame(len(m), self.stride)
        pad = self._reserve(frame)
        if pad is None:
            return False
        if pad:
            self.q.append([None, pad])
        self.q.append([m, frame])
        self.tail += pad + frame
        return True

    def claim(self, size: int) -> bool:
        pad = self._reserve(_frame(size, self.stride))
        self.claimed = pad
        if pad and self.multi:          # MPSC: the claim (and its filler) is visible at once
            self.q.append([None, pad])
        return pad is not None

    def publish(self, size: int, claimed: int, m: bytes) -> None:
        frame = _frame(claimed, self.stride)
        if not self.multi:
            if not self.stride:         # SPSC publishes only the frame the final size needs
                frame = _frame(size, self.stride)
            if self.claimed:
                self.q.append([None, self.claimed])
        self.q.append([m, frame])
        self.tail += self.claimed + frame

    def abort(self, claimed: int) -> None:
        if self.multi:                  # MPSC: the claimed slot turns into filler
            self.q.append([None, _frame(claimed, self.stride)])
            self.tail += self.claimed + _frame(claimed, self.stride)
        # SPSC: nothing was published; the tail stays

    def _drop_filler(self) -> None:
        while self.q and self.q[0][0] is None:
            self.q.popleft()

    def pop(self):
        self._drop_filler()
        if not self.q:
            return None
        return self.q.popleft()[0]

    def pop_batch(self, k: int) -> list[bytes]:
        out = []
        while len(out) < k:
            self._drop_filler()
            if not self.q:
                break
            out.append(self.q.popleft()[0])
        if len(out) < k:
            self._drop_filler()
        return out

    def records(self) -> int:
        return sum(1 for m, _ in self.q if m is not None)


payloads = st.binary(min_size=0, max_size=140)


class RingMachine(RuleBasedStateMachine):
    @initialize(cls=st.sampled_from([SpscRing, MpscRing]), cap=st.sampled_from([64, 128, 256, 1024]),
                slot=st.sampled_from([0, 0, 8, 24, 20, 56]))
    def setup(self, cls, cap, slot):
        if slot and (slot + 15) // 8 * 8 * 2 > cap:
            slot = 0
        self.ring = cls(cap, slot_size=slot)
        self.ref = RefRing(cap, slot, cls is MpscRing)

    def _fit(self, m: bytes) -> bytes:
        return m[: self.ref.max]

    @rule(m=payloads)
    def try_push(self, m):
        m = self._fit(m)
        assert self.ring.try_push(m) == self.ref.push(m)

    @rule(parts=st.lists(st.binary(max_size=40), max_size=5))
    def try_push_parts(self, parts):
        whole = b"".join(parts)
        if len(whole) > self.ref.max:
            return
        assert self.ring.try_push_parts(parts) == self.ref.push(whole)

    @rule(ms=st.lists(payloads, max_size=12))
    def push_batch(self, ms):
        ms = [self._fit(m) for m in ms]
        n = self.ring.push_batch(ms)
        expect = 0
        for m in ms:
            if not self.ref.push(m):
                break
            expect += 1
        assert n == expect

    @rule(size=st.integers(0, 140), cut=st.integers(0, 140), fill=st.integers(0, 255), abort=st.booleans())
    def claim_publish(self, size, cut, fill, abort):
        size = min(size, self.ref.max)
        mv = self.ring.claim(size)
        assert (mv is not None) == self.ref.claim(size)
        if mv is None:
            return
        assert len(mv) == size
        n = min(cut, size)
        mv[:n] = bytes([fill]) * n
        del mv
        if abort:
            self.ring.abort()
            self.ref.abort(size)
        else:
            self.ring.publish(n)
            self.ref.publish(n, size, bytes([fill]) * n)

    @rule()
    def try_pop(self):
        assert self.ring.try_pop() == self.ref.pop()

    @rule(k=st.integers(1, 20))
    def pop_batch(self, k):
        assert self.ring.pop_batch(k) == self.ref.pop_batch(k)

    @rule()
    def peek_commit(self):
        v = self.ring.try_peek()
        if v is None:
            assert self.ref.pop() is None
            return
        assert bytes(v) == bytes(self.ring.try_peek())
        got = bytes(v)
        del v
        self.ring.commit()
        assert got == self.ref.pop()

    @rule(k=st.integers(1, 20))
    def peek_batch_commit(self, k):
        views = self.ring.peek_batch(k)
        got = [bytes(v) for v in views]
        del views
        if got:
            self.ring.commit()
        assert got == self.ref.pop_batch(k)

    @invariant()
    def same_length_and_bytes_in_use(self):
        if not hasattr(self, "ring"):
            return
        assert len(self.ring) == self.ref.records()
        assert self.ring.available == self.ref.used

    @precondition(lambda self: hasattr(self, "ring"))
    @rule()
    def drain_matches(self):
        # occasionally empty everything: the full FIFO content must match
        if self.ref.records() > 6:
            assert self.ring.pop_batch(10_000) == self.ref.pop_batch(10_000)


TestRingMachine = RingMachine.TestCase
TestRingMachine.settings = settings(max_examples=120, stateful_step_count=50, deadline=None)
