"""Journal and replay (lowlat.services.journal): the write-ahead journal round-trips (file and JetStream), a torn
tail is cut, a retried append is stored once, and a matching service restarted from snapshot + journal tail
produces exactly what an uninterrupted one does (every execution report, trade and L2 update, the market-data
sequence numbers and trade ids included)."""

from __future__ import annotations

import asyncio
import collections

import numpy as np
import pytest

from lowlat import _core
from lowlat._book import COMMAND_DTYPE
from lowlat.services import ServiceConfig
from lowlat.services.journal import (
    DurableMatcher,
    FileJournal,
    JetStreamJournal,
    decode_record,
    encode_record,
)
from lowlat.services.matcher import MatcherService
from lowlat.services.snapshot import SnapshotStore, dump_engine
from lowlat.transport import Message

SYMS = ("AAPL", "MSFT")


def rows(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = np.zeros(n, COMMAND_DTYPE)
    c["oid"] = rng.integers(1, 1 << 40, n)
    c["price"] = rng.integers(0, 100, n)
    c["qty"] = rng.integers(1, 9, n)
    c["side"] = rng.integers(0, 2, n)
    return c


def test_record_codec_rejects_damage():
    r = rows(10, 1)
    rec = encode_record(r, 77)
    pos, back = decode_record(rec)
    assert pos == 77 and np.array_equal(back, r)
    from lowlat import DecodeError

    for bad in (rec[:-1], rec[:10], b"XXXX" + rec[4:], rec[:30] + bytes([rec[30] ^ 1]) + rec[31:]):
        with pytest.raises(DecodeError):
            decode_record(bad)


def test_file_journal_round_trip_and_torn_tail(tmp_path):
    p = tmp_path / "j.llj"
    j = FileJournal(p)
    batches = [rows(n, i) for i, n in enumerate((5, 1, 300, 42))]
    for i, b in enumerate(batches):
        assert j.append_sync(b, 100 + i) == i + 1
    got = list(j.replay_sync())
    assert [g[0] for g in got] == [1, 2, 3, 4] and [g[1] for g in got] == [100, 101, 102, 103]
    assert all(np.array_equal(g[2], b) for g, b in zip(got, batches))
    assert [g[0] for g in j.replay_sync(after=2)] == [3, 4]
    asyncio.run(j.close())
    size = p.stat().st_size
    with open(p, "ab") as f:  # a crash in the middle of an append
        f.write(b"\x40\x00\x00\x00LLJ1partial")
    j2 = FileJournal(p)
    assert p.stat().st_size == size and j2.last_pos == 4 and j2.last_input_pos == 103
    assert j2.append_sync(rows(3, 9)) == 5
    assert [g[0] for g in j2.replay_sync()] == [1, 2, 3, 4, 5]


@pytest.mark.integration
@pytest.mark.nats
async def test_jetstream_journal_round_trip_and_idempotent_append(nats_server):
    from lowlat.transport import connect

    async with connect(nats_server.url) as t:
        j = JetStreamJournal(t, "JTEST_" + str(id(t))[-6:])
        await j.ensure()
        assert j.last_pos == 0
        batches = [rows(n, i) for i, n in enumerate((7, 1, 500))]
        for i, b in enumerate(batches):
            await j.append(b, 10 * (i + 1))
        pos = j.last_pos
        await j.append(batches[-1], 30)  # a retry of the last append (same input position): not stored twice
        assert j.last_pos == pos
        got = [x async for x in j.replay()]
        assert [g[1] for g in got] == [10, 20, 30]
        assert all(np.array_equal(g[2], b) for g, b in zip(got, batches))
        j2 = JetStreamJournal(t, j.name)
        await j2.ensure()  # a restarted instance finds its position
        assert (j2.last_pos, j2.last_input_pos) == (pos, 30)
        assert [g[1] async for g in _tail(j2, got[0][0])] == [20, 30]
        await t.jetstream.delete_stream(j.name)


async def _tail(j, after):
    async for x in j.replay(after):
        yield x


class Recorder:
    def __init__(self) -> None:
        self.out: dict[str, list[bytes]] = collections.defaultdict(list)

    async def publish_batch(self, subject, payloads):
        self.out[subject] += [bytes(p) for p in payloads]

    async def publish(self, subject, payload, **kw):
        self.out[subject].append(bytes(payload))


def order_batches(n_batches: int, size: int = 50) -> list[list[Message]]:
    rng = np.random.default_rng(11)
    out, oid = [], 1
    for _ in range(n_batches):
        b = []
        for _ in range(size):
            sym = SYMS[int(rng.integers(0, 2))]
            price = round(100.0 + int(rng.integers(-4, 5)) * 0.01, 2)
            buf = _core.encode_order(oid, sym, price, int(rng.integers(1, 8)), int(rng.integers(0, 2)), 1,
                                     account=int(rng.integers(1, 4)))
            b.append(Message(f"orders.match.{sym}", buf, None, None, None))
            oid += 1
        out.append(b)
    return out


def strip_ts(subject: str, buf: bytes) -> tuple:
    if subject.startswith("exec."):
        r = _core.decode_execution_report(buf)
        return tuple(getattr(r, f) for f in r._fields if f != "timestamp")
    if subject.endswith(".trade"):
        r = _core.decode_trade(buf)
        return tuple(getattr(r, f) for f in r._fields if f != "timestamp")
    r = _core.decode_l2_update(buf)
    return tuple(getattr(r, f) for f in r._fields if f != "timestamp")


def outputs(rec: Recorder) -> dict[str, list[tuple]]:
    return {s: [strip_ts(s, b) for b in bs] for s, bs in rec.out.items() if bs}


@pytest.mark.integration
@pytest.mark.kafka
async def test_kafka_journal_round_trip_and_position(kafka_url, kafka_options, kafka_topic):
    from lowlat.services.journal import KafkaJournal, replay_into
    from lowlat.transport import connect

    async with connect(kafka_url, **kafka_options) as t:
        j = KafkaJournal(t, kafka_topic)
        await j.ensure()
        assert j.last_pos == 0
        batches = [rows(n, i) for i, n in enumerate((7, 1, 500))]
        for i, b in enumerate(batches):
            assert await j.append(b, 10 * (i + 1)) == i + 1
        await j.append(batches[-1], 30)  # a retried append that did get stored twice ...
        got = [x async for x in j.replay()]
        assert [g[0] for g in got] == [1, 2, 3, 4] and [g[1] for g in got] == [10, 20, 30, 30]
        assert all(np.array_equal(g[2], b) for g, b in zip(got, batches))
        j2 = KafkaJournal(t, kafka_topic)
        await j2.ensure()  # a restarted instance finds its position
        assert (j2.last_pos, j2.last_input_pos) == (4, 30)

        class Count:  # ... is applied once by replay_into
            n = 0

            def apply_batch(self, r, ev):
                Count.n += len(r)
                return len(r), 0

        last, last_in, n = await replay_into(Count(), j2, 0)
        assert (last, last_in, n, Count.n) == (4, 30, 508, 508)


def _journal(kind: str, tmp_path, t):
    if kind == "file":
        return FileJournal(tmp_path / "j.llj")
    from lowlat.services.journal import KafkaJournal

    return KafkaJournal(t, f"lowlat.journal.{tmp_path.name[-20:]}")


@pytest.mark.parametrize("kind", ["file", pytest.param("kafka", marks=[pytest.mark.integration, pytest.mark.kafka])])
def test_restarted_matcher_equals_uninterrupted(tmp_path, kind, request):
    cfg = ServiceConfig(symbols=SYMS, snapshot_interval_s=0)
    batches = order_batches(40)
    crash_at = 27  # batches applied before the crash; snapshots every 300 commands -> a snapshot + a tail
    if kind == "kafka":
        url, opts = request.getfixturevalue("kafka_url"), request.getfixturevalue("kafka_options")

    async def run():
        if kind == "kafka":
            from lowlat.transport import connect

            async with connect(url, **opts) as t:
                return await body(t)
        return await body(None)

    async def body(t):
        ref, ref_out = MatcherService(cfg), Recorder()
        ref.transport = ref_out
        for b in batches:
            await ref.handle(b[0].subject, b)

        def durable() -> tuple[DurableMatcher, Recorder]:
            m = DurableMatcher(cfg, journal=_journal(kind, tmp_path, t), store=SnapshotStore(tmp_path / "s"),
                               snapshot_every=300)
            r = Recorder()
            m.transport = r
            return m, r

        a, a_out = durable()
        await a.recover()
        a.journal = a
        for b in batches[:crash_at]:
            await a.handle(b[0].subject, b)
        state_at_crash = dump_engine(a.engine)
        md_at_crash = {s: rm.md_seq for s, rm in a.read.items()}
        # crash: no on_stop, no final snapshot; b starts from the same directory
        b_, b_out = durable()
        info = await b_.recover()
        b_.journal = b_
        assert info["snapshot_pos"] > 0 and info["replayed_commands"] > 0, info
        assert all(x.same_as(y) for x, y in zip(dump_engine(b_.engine).books, state_at_crash.books))
        assert {s: rm.md_seq for s, rm in b_.read.items()} == md_at_crash
        for b in batches[crash_at:]:
            await b_.handle(b[0].subject, b)
        assert all(x.same_as(y) for x, y in zip(dump_engine(b_.engine).books, dump_engine(ref.engine).books))
        return outputs(ref_out), outputs(a_out), outputs(b_out)

    ref, a, b = asyncio.run(run())
    assert sum(len(v) for v in ref.values()) > 2000 and any(s.endswith(".trade") for s in ref)
    for s in ref:
        assert a.get(s, []) + b.get(s, []) == ref[s], s  # same events, same order, same sequence numbers


class BufferingTransport(Recorder):
    """Publishes stay in a client buffer until ``flush`` succeeds (as a broker client's write buffer does);
    ``broker_up`` False makes ``flush`` fail (the broker is away)."""

    def __init__(self) -> None:
        super().__init__()
        self.pending: list[tuple[str, bytes]] = []
        self.broker_up = True

    async def publish_batch(self, subject, payloads):
        self.pending += [(subject, bytes(p)) for p in payloads]

    async def publish(self, subject, payload, **kw):
        self.pending.append((subject, bytes(payload)))

    async def flush(self, timeout=None):
        if not self.broker_up:
            raise ConnectionError("broker away")
        for s, p in self.pending:
            self.out[s].append(p)
        self.pending.clear()


async def test_a_snapshot_never_covers_outputs_still_in_the_client_buffer(tmp_path):
    # a crash loses what is in the client buffer, and the replay starts after the snapshot: so the matcher saves a
    # snapshot only once the broker confirmed every output published before it, else it defers the snapshot
    cfg = ServiceConfig(symbols=SYMS, snapshot_interval_s=0)
    store = SnapshotStore(tmp_path / "s")
    m = DurableMatcher(cfg, journal=FileJournal(tmp_path / "j.llj"), store=store, snapshot_every=100)
    t = BufferingTransport()
    m.transport = t  # type: ignore[assignment]
    await m.recover()
    m.journal = m
    batches = order_batches(6)
    t.broker_up = False
    for b in batches[:3]:
        await m.handle(b[0].subject, b)
    assert not list(store.candidates())            # every snapshot deferred while the broker is away
    assert m.metrics.counts["snapshots_deferred"] >= 1 and t.pending
    t.broker_up = True
    for b in batches[3:]:
        await m.handle(b[0].subject, b)
    snaps = list(store.candidates())
    assert snaps and not t.pending                 # saved, after the buffer reached the broker
