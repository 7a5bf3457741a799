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
  adapter ``publish(wait=True)``.  p50/p99 (HDR histogram).
- ``e2e``: produce→consume latency of one 64-byte message at a time (``fetch.wait.max.ms=1``); adapter:
  ``publish`` + ``async for`` on an assign()-subscription; bare: produce + ``Consumer.poll`` in the same thread.
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
WARM = 100
PAYLOAD = b"x" * 64
BATCHING = {"linger.ms": 5, "batch.num.messages": 10000, "queue.buffering.max.messages": 1000000}
RESULTS: list[dict] = []


@pytest.fixture(scope="module")
def bootstrap():
    with _tansu() as b:
        yield b
    print("\nKafka (Tansu 0.6.0, memory storage, 127.0.0.1)")
    print(f"{'case':<10} {'impl':<22} {'msg/s':>10} {'msg/cpu-s':>10} {'p50 us':>9} {'p99 us':>9}")
    for r in RESULTS:
        print(f"{r['case']:<10} {r['impl']:<22} {r.get('msg_s', 0):>10.0f} {r.get('msg_cpu_s', 0):>10.0f} "
              f"{r.get('p50_us', 0):>9.1f} {r.get('p99_us', 0):>9.1f}")


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

def _bare_tp(bootstrap: str, dr: bool) -> tuple[float, float]:
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
                p.poll(0.001)
    assert p.flush(60) == 0 and not errors
    return TP_N / (time.perf_counter() - t0), TP_N / (time.process_time() - c0)


async def _lowlat_tp(bootstrap: str, batch: bool) -> tuple[float, float]:
    topic = _topic()
    async with connect(f"kafka://{bootstrap}", producer_config=BATCHING) as t:
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
            return _bare_tp(bootstrap, impl.endswith("+dr"))
        return asyncio.run(_lowlat_tp(bootstrap, impl == "lowlat-publish_batch"))

    rate, per_cpu = benchmark.pedantic(run, rounds=1, iterations=1)
    _record(benchmark, "produce_tp", impl, msg_s=rate, msg_cpu_s=per_cpu)


# --- ack latency, batching off ---

def _bare_ack(bootstrap: str) -> list[int]:
    topic = _topic()
    _create(bootstrap, topic)
    p = ck.Producer({"bootstrap.servers": bootstrap, "linger.ms": 0, "acks": "all", "socket.nagle.disable": True})
    done: list[int] = []
    out: list[int] = []
    for i in range(WARM + LAT_N):
        t0 = time.perf_counter_ns()
        p.produce(topic, PAYLOAD, on_delivery=lambda err, msg: done.append(1))
        while not done:
            p.poll(1.0)  # blocks until the delivery report: no spinning
        done.clear()
        if i >= WARM:
            out.append(time.perf_counter_ns() - t0)
    return out


async def _lowlat_ack(bootstrap: str) -> list[int]:
    topic = _topic()
    out: list[int] = []
    async with connect(f"kafka://{bootstrap}") as t:
        await t.create_topic(topic)
        for i in range(WARM + LAT_N):
            t0 = time.perf_counter_ns()
            await t.publish(topic, PAYLOAD, wait=True)
            if i >= WARM:
                out.append(time.perf_counter_ns() - t0)
    return out


@pytest.mark.benchmark(group="kafka-ack-latency")
@pytest.mark.parametrize("impl", ["bare-confluent-kafka", "lowlat-publish-wait"])
def test_ack_latency(benchmark, bootstrap, impl):
    def run():
        return _bare_ack(bootstrap) if impl.startswith("bare") else asyncio.run(_lowlat_ack(bootstrap))

    _hist_record(benchmark, "ack", impl, benchmark.pedantic(run, rounds=1, iterations=1))


# --- produce -> consume ---

def _bare_e2e(bootstrap: str) -> list[int]:
    topic = _topic()
    _create(bootstrap, topic)
    p = ck.Producer({"bootstrap.servers": bootstrap, "linger.ms": 0, "acks": "all", "socket.nagle.disable": True})
    c = ck.Consumer({"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex, "fetch.wait.max.ms": 1,
                     "enable.auto.commit": False, "socket.nagle.disable": True})
    c.assign([ck.TopicPartition(topic, 0, 0)])
    out: list[int] = []
    try:
        for i in range(WARM + LAT_N):
            t0 = time.perf_counter_ns()
            p.produce(topic, PAYLOAD)
            p.poll(0)
            m = None
            while m is None:
                m = c.poll(1.0)
            if i >= WARM:
                out.append(time.perf_counter_ns() - t0)
    finally:
        c.close()
        p.flush(5)
    return out


async def _lowlat_e2e(bootstrap: str) -> list[int]:
    topic = _topic()
    out: list[int] = []
    async with connect(f"kafka://{bootstrap}") as t:
        await t.create_topic(topic)
        sub = await t.subscribe(topic)
        it = sub.__aiter__()
        for i in range(WARM + LAT_N):
            t0 = time.perf_counter_ns()
            await t.publish(topic, PAYLOAD)
            await it.__anext__()
            if i >= WARM:
                out.append(time.perf_counter_ns() - t0)
    return out


@pytest.mark.benchmark(group="kafka-produce-consume")
@pytest.mark.parametrize("impl", ["bare-confluent-kafka", "lowlat"])
def test_produce_consume_latency(benchmark, bootstrap, impl):
    def run():
        return _bare_e2e(bootstrap) if impl.startswith("bare") else asyncio.run(_lowlat_e2e(bootstrap))

    _hist_record(benchmark, "e2e", impl, benchmark.pedantic(run, rounds=1, iterations=1))
