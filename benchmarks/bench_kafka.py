"""Kafka adapter benchmarks, each next to bare confluent-kafka doing the same thing in the same run.

Run::

    bash tests/setup/20-kafka.sh && . ~/.cache/lowlat/env.sh
    python -m pytest benchmarks/bench_kafka.py --benchmark-only -s -p no:cacheprovider

Broker: Tansu 0.6.0 with memory storage on 127.0.0.1 (started here), NOT Apache Kafka: absolute numbers say
little about a real cluster (disk, replication, a broker that answers fetches as soon as data arrives); the
adapter/bare ratios are the point.  Cases:

- ``produce_tp``: 64-byte messages with batching on (``linger.ms=5``), publish-and-forget then ``flush`` (all
  acked); msg/s (wall) and msg per CPU-second of this process (all its threads: steadier on a shared machine).
  Bare runs twice: without a delivery-report callback, and ``+dr`` with one that keeps failures (what the
  adapter does so ``flush()`` can raise them).  Adapter: ``publish_batch`` (one produce() loop) and a loop of ``await publish``.
- ``ack``: batching off (``linger.ms=0``), one message at a time, time until the broker's ack (delivery report);
  bare: ``produce`` + ``poll()`` blocking until the report; adapter ``publish(wait=True)``.  p50/p99 (HDR histogram).
- ``e2e``: produce→consume latency of one 64-byte message at a time (``fetch.wait.max.ms=1``); adapter:
  ``publish`` + ``async for`` on an assign()-subscription; bare: produce + ``Consumer.poll`` in the same thread.
  Every received message is checked to be the one just sent.
The two latency cases run bare and adapter in one test, alternating blocks of ``BLOCK`` samples, so both see the
same machine (load here changes latencies by 2× within minutes).  Each block uses a fresh topic and starts with
``BLOCK_WARM`` unrecorded samples: Tansu's memory storage slows down as a partition that is being fetched from
grows (past ~3000 single-record batches a produce ack took seconds, which is how the bare case used to stall), and
a consumer only fetches during its own block (the bare one is paused, the adapter's subscription is closed).
Every case has a deadline (``LOWLAT_BENCH_KAFKA_DEADLINE``, s) and fails loudly when it passes.
No thread spins: librdkafka threads block, the adapter's consumer thread blocks in poll().
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid

import pytest

hdrh = pytest.importorskip("hdrh.histogram")
ck = pytest.importorskip("confluent_kafka")

from brokers.kafka import _tansu

from lowlat.transport import connect

TP_N = int(os.environ.get("LOWLAT_BENCH_KAFKA_TP_N", "200000"))
LAT_N = int(os.environ.get("LOWLAT_BENCH_KAFKA_LAT_N", "2000"))
DEADLINE = float(os.environ.get("LOWLAT_BENCH_KAFKA_DEADLINE", "180"))
WARM = 100
BLOCK = 100
BLOCK_WARM = 5
PAYLOAD = b"x" * 64
BATCHING = {"linger.ms": 5, "batch.num.messages": 10000, "queue.buffering.max.messages": 1000000}
RESULTS: list[dict] = []


@pytest.fixture(scope="module")
def bootstrap():
    with _tansu() as b:
        yield b
    print("\nKafka (Tansu 0.6.0, memory storage, 127.0.0.1)")
    print(f"{'case':<10} {'impl':<22} {'msg/s':>10} {'msg/cpu-s':>10} {'p50 us':>9} {'p99 us':>9}")
    bare = {r["case"]: r for r in RESULTS if r["impl"] == "bare-confluent-kafka"}
    for r in RESULTS:
        b = bare.get(r["case"])
        ratio = ""
        if b is not None and b is not r:
            ratio = (f"{r['p50_us'] / b['p50_us']:.2f}x p50" if "p50_us" in r
                     else f"{r['msg_cpu_s'] / b['msg_cpu_s']:.2f}x cpu")
        print(f"{r['case']:<10} {r['impl']:<22} {r.get('msg_s', 0):>10.0f} {r.get('msg_cpu_s', 0):>10.0f} "
              f"{r.get('p50_us', 0):>9.1f} {r.get('p99_us', 0):>9.1f}  {ratio}")


class Deadline:
    """A case's time budget: ``left()`` is what remains, and fails the case loudly once nothing does."""

    def __init__(self, case: str, seconds: float = DEADLINE) -> None:
        self.case, self.seconds, self.end = case, seconds, time.monotonic() + seconds

    def left(self, doing: str = "") -> float:
        r = self.end - time.monotonic()
        if r <= 0:
            pytest.fail(f"{self.case}: deadline of {self.seconds:.0f} s passed{' while ' + doing if doing else ''}")
        return r


def _topic() -> str:
    return f"bench.{uuid.uuid4().hex[:10]}"


def _create(bootstrap: str, topic: str) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})  # must outlive the request
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(10)


def _record(benchmark, case: str, impl: str, **vals: float) -> None:
    benchmark.extra_info.update(vals)
    RESULTS.append({"case": case, "impl": impl, **vals})


def _hist_record(benchmark, case: str, impl: str, samples: list[int]) -> None:
    h = hdrh.HdrHistogram(1, 10_000_000_000, 3)
    for s in samples:
        h.record_value(max(1, s))
    _record(benchmark, case, impl, p50_us=h.get_value_at_percentile(50) / 1e3,
            p99_us=h.get_value_at_percentile(99) / 1e3)


# --- produce throughput, batching on ---

def _bare_tp(bootstrap: str, dr: bool, dl: Deadline) -> tuple[float, float]:
    topic = _topic()
    _create(bootstrap, topic)
    errors: list = []
    # dr: a delivery-report callback that keeps failures, as confluent-kafka's own producer example does (and as
    # the adapter does, so flush() can raise them); without it delivery errors go unnoticed.
    extra = {"on_delivery": lambda err, msg: err is not None and errors.append(err)} if dr else {}
    p = ck.Producer({"bootstrap.servers": bootstrap, "acks": "all", "socket.nagle.disable": True, **BATCHING,
                     **extra})
    p.produce(topic, PAYLOAD)
    p.flush(10)
    t0, c0 = time.perf_counter(), time.process_time()
    produce = p.produce
    for _ in range(TP_N):
        while True:
            try:
                produce(topic, PAYLOAD)
                break
            except BufferError:
                p.poll(min(0.001, dl.left("producing")))
    assert p.flush(dl.left("flushing")) == 0 and not errors
    return TP_N / (time.perf_counter() - t0), TP_N / (time.process_time() - c0)


async def _lowlat_tp(bootstrap: str, batch: bool) -> tuple[float, float]:
    topic = _topic()
    async with asyncio.timeout(DEADLINE), connect(f"kafka://{bootstrap}", producer_config=BATCHING) as t:
        await t.create_topic(topic)
        await t.publish(topic, PAYLOAD)
        await t.flush()
        t0, c0 = time.perf_counter(), time.process_time()
        if batch:
            for i in range(0, TP_N, 10000):
                await t.publish_batch(topic, [PAYLOAD] * min(10000, TP_N - i))
        else:
            for _ in range(TP_N):
                await t.publish(topic, PAYLOAD)
        await t.flush(60)
        return TP_N / (time.perf_counter() - t0), TP_N / (time.process_time() - c0)


@pytest.mark.benchmark(group="kafka-produce-throughput")
@pytest.mark.parametrize("impl", ["bare-confluent-kafka", "bare-confluent-kafka+dr", "lowlat-publish_batch",
                                  "lowlat-publish"])
def test_produce_throughput(benchmark, bootstrap, impl):
    def run():
        if impl.startswith("bare"):
            return _bare_tp(bootstrap, impl.endswith("+dr"), Deadline(f"produce_tp[{impl}]"))
        try:
            return asyncio.run(_lowlat_tp(bootstrap, impl == "lowlat-publish_batch"))
        except TimeoutError:
            pytest.fail(f"produce_tp[{impl}]: deadline of {DEADLINE:.0f} s passed")

    rate, per_cpu = benchmark.pedantic(run, rounds=1, iterations=1)
    _record(benchmark, "produce_tp", impl, msg_s=rate, msg_cpu_s=per_cpu)


# --- latency cases: bare and adapter alternate in blocks, in one run ---

async def _alternate(bare, ours, dl: Deadline) -> tuple[list[int], list[int]]:
    """WARM unrecorded samples of each, then blocks of BLOCK samples, alternating, until LAT_N of each.

    ``bare.block(topic, k)`` / ``await ours.block(topic, k)`` run k+BLOCK_WARM round trips on a fresh topic and
    return the last k times (ns)."""
    topics = [_topic() for _ in range(2 * (LAT_N // BLOCK + 2))]
    _create_many(bare.bootstrap, topics)
    b: list[int] = []
    o: list[int] = []
    bare.block(topics.pop(), WARM)
    async with asyncio.timeout(dl.left("warming up the adapter")):
        await ours.block(topics.pop(), WARM)
    while len(b) < LAT_N:
        k = min(BLOCK, LAT_N - len(b))
        b += bare.block(topics.pop(), k)
        try:
            async with asyncio.timeout(dl.left("waiting for the adapter")):
                o += await ours.block(topics.pop(), k)
        except TimeoutError:
            pytest.fail(f"{dl.case}: deadline of {dl.seconds:.0f} s passed after {len(o)} adapter samples")
    return b, o


def _create_many(bootstrap: str, topics: list[str]) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic(t, 1, 1) for t in topics]).values():
        f.result(30)


def _bare_producer(bootstrap: str) -> ck.Producer:
    return ck.Producer({"bootstrap.servers": bootstrap, "linger.ms": 0, "acks": "all", "socket.nagle.disable": True})


pc = time.perf_counter_ns


class BareAck:
    def __init__(self, bootstrap: str, dl: Deadline) -> None:
        self.bootstrap, self.dl = bootstrap, dl
        self.p = _bare_producer(bootstrap)
        self.done: list[int] = []

    def block(self, topic: str, k: int) -> list[int]:
        p, done, out = self.p, self.done, []
        report = lambda err, msg: done.append(1)
        for i in range(BLOCK_WARM + k):
            t0 = pc()
            p.produce(topic, PAYLOAD, on_delivery=report)
            while not done:
                p.poll(min(1.0, self.dl.left("waiting for a bare delivery report")))  # blocks: no spinning
            done.clear()
            if i >= BLOCK_WARM:
                out.append(pc() - t0)
        return out


class OursAck:
    def __init__(self, t) -> None:
        self.t = t

    async def block(self, topic: str, k: int) -> list[int]:
        publish, out = self.t.publish, []
        for i in range(BLOCK_WARM + k):
            t0 = pc()
            await publish(topic, PAYLOAD, wait=True)
            if i >= BLOCK_WARM:
                out.append(pc() - t0)
        return out


async def _ack(bootstrap: str, dl: Deadline) -> tuple[list[int], list[int]]:
    bare = BareAck(bootstrap, dl)
    try:
        async with connect(f"kafka://{bootstrap}") as t:
            return await _alternate(bare, OursAck(t), dl)
    finally:
        bare.p.flush(5)


def _record_pair(benchmark, case: str, impl: str, pair: tuple[list[int], list[int]]) -> None:
    _hist_record(benchmark, case, "bare-confluent-kafka", pair[0])
    _hist_record(benchmark, case, impl, pair[1])


@pytest.mark.benchmark(group="kafka-ack-latency")
def test_ack_latency(benchmark, bootstrap):
    dl = Deadline("ack")
    pair = benchmark.pedantic(lambda: asyncio.run(_ack(bootstrap, dl)), rounds=1, iterations=1)
    _record_pair(benchmark, "ack", "lowlat-publish-wait", pair)


def _numbered(i: int) -> bytes:
    return b"%08d" % i + PAYLOAD[8:]


class BareE2E:
    def __init__(self, bootstrap: str, dl: Deadline) -> None:
        self.bootstrap, self.dl = bootstrap, dl
        self.p = _bare_producer(bootstrap)
        # earliest: should the first fetch of a new partition be answered "offset out of range", the reset must
        # not jump past a message already produced (with the default, "latest", the case would wait forever)
        self.c = ck.Consumer({"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex, "fetch.wait.max.ms": 1,
                              "enable.auto.commit": False, "socket.nagle.disable": True,
                              "auto.offset.reset": "earliest"})

    def _next(self, want: bytes):
        while True:
            m = self.c.poll(min(1.0, self.dl.left(f"waiting for bare message {want[:8]!r}")))
            if m is None:
                continue
            err = m.error()
            if err is None:
                assert m.value() == want, f"bare consumer got {m.value()[:8]!r}, expected {want[:8]!r}"
                return
            if err.fatal():  # anything else is an event (e.g. partition EOF), not a message
                pytest.fail(f"e2e: bare consumer: {err}")

    def block(self, topic: str, k: int) -> list[int]:
        p, c, out = self.p, self.c, []
        c.assign([ck.TopicPartition(topic, 0, 0)])  # fresh topic: offset 0 is its end; replaces the last one
        for i in range(BLOCK_WARM + k):
            want = _numbered(i)
            t0 = pc()
            p.produce(topic, want)
            p.poll(0)
            self._next(want)
            if i >= BLOCK_WARM:
                out.append(pc() - t0)
        c.unassign()  # stop fetching while the adapter runs its block
        return out


class OursE2E:
    def __init__(self, t) -> None:
        self.t = t

    async def block(self, topic: str, k: int) -> list[int]:
        publish, out = self.t.publish, []
        sub = await self.t.subscribe(topic)
        it = sub.__aiter__()
        try:
            for i in range(BLOCK_WARM + k):
                want = _numbered(i)
                t0 = pc()
                await publish(topic, want)
                m = await it.__anext__()
                took = pc() - t0
                assert bytes(m.data) == want, f"adapter got {bytes(m.data)[:8]!r}, expected {want[:8]!r}"
                if i >= BLOCK_WARM:
                    out.append(took)
        finally:
            await sub.unsubscribe()  # stop fetching while bare runs its block
        return out


async def _e2e(bootstrap: str, dl: Deadline) -> tuple[list[int], list[int]]:
    bare = BareE2E(bootstrap, dl)
    try:
        async with connect(f"kafka://{bootstrap}") as t:
            return await _alternate(bare, OursE2E(t), dl)
    finally:
        bare.c.close()
        bare.p.flush(5)


@pytest.mark.benchmark(group="kafka-produce-consume")
def test_produce_consume_latency(benchmark, bootstrap):
    dl = Deadline("e2e")
    pair = benchmark.pedantic(lambda: asyncio.run(_e2e(bootstrap, dl)), rounds=1, iterations=1)
    _record_pair(benchmark, "e2e", "lowlat", pair)
