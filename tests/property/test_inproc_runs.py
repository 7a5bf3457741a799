"""inproc:// delivery (single messages and batch runs) against a trivial Python reference: per subscriber a list
of (subject, payload), limits checked per message, queue groups round robin per message."""

from __future__ import annotations

import asyncio
import threading
import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from lowlat._batch import MessageBatch
from lowlat.transport import connect

SUBJECTS = ["t.a", "t.b", "u.c"]                     # u.c: nobody subscribes
REPLIES = ["t.a", "t.b", "u.c", None]
# (subject pattern, queue, max_pending, max_pending_bytes), in subscription order
SUBS = [("t.a", None, 6, 80), ("t.*", None, 1000, 1 << 20), ("t.a", "g", 4, 1 << 20), ("t.a", "g", 4, 1 << 20),
        ("t.a", "g", 1000, 30)]

payload = st.binary(max_size=12)
op = st.one_of(
    st.tuples(st.just("publish"), st.sampled_from(SUBJECTS), payload),
    st.tuples(st.just("publish_batch"), st.sampled_from(SUBJECTS), st.lists(payload, max_size=12)),  # >= 8: runs
    st.tuples(st.just("batch_to"), st.sampled_from(SUBJECTS), st.lists(st.tuples(payload, st.sampled_from(REPLIES)),
                                                                       max_size=10)),
    st.tuples(st.just("batch_to"), st.none(), st.lists(st.tuples(payload, st.sampled_from(REPLIES)), max_size=10)),
    st.tuples(st.just("take"), st.integers(0, len(SUBS) - 1), st.integers(1, 5)),
    st.tuples(st.just("nowait"), st.integers(0, len(SUBS) - 1), st.none()),
    st.tuples(st.just("anext"), st.integers(0, len(SUBS) - 1), st.none()),
)


def _matches(pattern: str, subject: str) -> bool:
    return pattern == subject or (pattern.endswith(".*") and subject.startswith(pattern[:-1])
                                  and "." not in subject[len(pattern) - 1:])


class Ref:
    """The reference bus: every message in order, each plain match gets it, a group one member (rr counter)."""

    def __init__(self) -> None:
        self.q: list[list[tuple[str, bytes]]] = [[] for _ in SUBS]
        self.dropped = [0] * len(SUBS)
        self.rr = 0

    def _offer(self, k: int, subject: str, data: bytes) -> None:
        _, _, max_n, max_b = SUBS[k]
        if len(self.q[k]) >= max_n or sum(len(p) for _, p in self.q[k]) + len(data) > max_b:
            self.dropped[k] += 1
        else:
            self.q[k].append((subject, data))

    def _targets(self, subject: str) -> tuple[list[int], list[int]]:
        plain = [k for k, (p, q, _, _) in enumerate(SUBS) if q is None and _matches(p, subject)]
        group = [k for k, (p, q, _, _) in enumerate(SUBS) if q is not None and _matches(p, subject)]
        return plain, group

    def publish(self, subject: str, data: bytes) -> None:
        plain, group = self._targets(subject)
        for k in plain:
            self._offer(k, subject, data)
        if group:
            self._offer(group[self.rr % len(group)], subject, data)
            self.rr += 1

    def batch_to(self, items: list[tuple[str, bytes]]) -> None:
        # the documented rule: a destination's k-th message of the batch goes to member (first + k) % m, with
        # `first` reserved per destination in first-appearance order; per subscriber, publish order is kept
        first: dict[str, int] = {}
        rank: dict[str, int] = {}
        for to, _ in items:
            if to not in first and self._targets(to)[1]:
                first[to] = self.rr
                self.rr += sum(1 for t, _ in items if t == to)
        for to, data in items:
            plain, group = self._targets(to)
            for k in plain:
                self._offer(k, to, data)
            if group:
                r = rank.get(to, 0)
                rank[to] = r + 1
                self._offer(group[(first[to] + r) % len(group)], to, data)


async def _run(ops: list[tuple]) -> None:
    ref = Ref()
    async with connect(f"inproc://runs-{uuid.uuid4().hex[:8]}") as t:
        subs = [await t.subscribe(p, queue=q, max_pending=n, max_pending_bytes=b) for p, q, n, b in SUBS]
        t._bus.routes._rr = 0   # the reference starts its counter at 0 as well
        for kind, a, b in ops:
            if kind == "publish":
                await t.publish(a, b)
                ref.publish(a, b)
            elif kind == "publish_batch":
                await t.publish_batch(a, b)
                for p in b:
                    ref.publish(a, p)
            elif kind == "batch_to":
                mb = MessageBatch(16)
                for p, r in b:
                    mb.append(p, "ignored", r)
                items = [(a if a is not None else r, p) for p, r in b if (a if a is not None else r)]
                assert await t.publish_batch_to(mb, a) == len(items)
                ref.batch_to(items)
                mb.clear()                                  # the publisher reuses its batch at once
                mb.append(b"\xff" * 40, "junk", "junk")
            elif kind == "take":
                got = [(s, bytes(p)) for s, p, _ in subs[a].take_batch(b)]
                want, ref.q[a] = ref.q[a][:b], ref.q[a][b:]
                assert got == want
            else:
                if kind == "anext" and ref.q[a]:
                    m = await asyncio.wait_for(subs[a].__anext__(), 1.0)
                else:
                    m = subs[a].get_nowait()
                got = None if m is None else (m.subject, bytes(m.data))
                want = ref.q[a].pop(0) if ref.q[a] else None
                assert got == want
            for k, s in enumerate(subs):
                assert s.pending == len(ref.q[k])
                assert s.pending_bytes == sum(len(p) for _, p in ref.q[k])
                assert s.dropped == ref.dropped[k]
        for k, s in enumerate(subs):   # what is left, through the batch path
            got = [(x, bytes(p)) for x, p, _ in s.take_batch(1024)]
            assert got == ref.q[k]


@settings(max_examples=150, deadline=None)
@given(st.lists(op, max_size=25))
def test_inproc_delivery_matches_reference(ops):
    asyncio.run(_run(ops))


async def test_batch_run_reaches_a_subscriber_on_another_loop():
    url = f"inproc://runs-x-{uuid.uuid4().hex[:8]}"
    ready, done = threading.Event(), threading.Event()
    got: list[tuple[str, bytes]] = []

    def other_loop() -> None:
        async def main() -> None:
            async with connect(url) as t2:
                sub = await t2.subscribe("x.*")
                ready.set()
                while len(got) < 5:
                    b = await sub.next_batch(16, timeout=5.0)
                    got.extend((s, bytes(p)) for s, p, _ in b)
            done.set()
        asyncio.run(main())

    th = threading.Thread(target=other_loop)
    th.start()
    assert await asyncio.to_thread(ready.wait, 5.0)
    async with connect(url) as t:
        mb = MessageBatch(8)
        for i in range(5):
            mb.append(b"m%d" % i, "", "x.a" if i % 2 else "x.b")
        assert await t.publish_batch_to(mb) == 5
        mb.clear()                                          # reused before the other loop ran: still intact
        mb.append(b"junk", "", "x.a")
        assert await asyncio.to_thread(done.wait, 5.0)
    th.join(5.0)
    assert got == [("x.b", b"m0"), ("x.a", b"m1"), ("x.b", b"m2"), ("x.a", b"m3"), ("x.b", b"m4")]


async def test_unsubscribe_from_the_slow_consumer_callback_stops_the_run():
    async with connect(f"inproc://runs-u-{uuid.uuid4().hex[:8]}") as t:
        calls = []

        def slow(sub):
            calls.append(sub.dropped)
            asyncio.get_running_loop().create_task(sub.unsubscribe())
            sub.close_nowait()

        sub = await t.subscribe("u.x", max_pending=2, on_slow_consumer=slow)
        other = await t.subscribe("u.x")
        mb = MessageBatch(8)
        for i in range(6):
            mb.append(b"%d" % i)
        assert await t.publish_batch_to(mb, "u.x") == 6
        assert calls == [1] and sub.dropped == 1             # closed by the first drop: no more drops counted
        assert [bytes(p) for _, p, _ in other.take_batch(10)] == [b"%d" % i for i in range(6)]
        assert await t.publish_batch_to(mb, "u.x") == 6 and sub.pending <= 2  # closed: nothing new queued
