"""Kafka adapter against a real Kafka-protocol broker (Tansu, started on 127.0.0.1 by tests/brokers/kafka.py)."""

from __future__ import annotations

import asyncio
import time

import pytest
from _helpers import recv_n as take

from lowlat.errors import TransportClosedError, TransportError, TransportTimeoutError
from lowlat.transport import connect
from lowlat.transport.kafka import KafkaTransport

pytestmark = [pytest.mark.integration, pytest.mark.kafka, pytest.mark.timeout(120)]


@pytest.fixture
async def kt(kafka_url, kafka_options):
    async with connect(kafka_url, **kafka_options) as t:
        yield t


async def test_connect_picks_kafka_adapter(kt):
    assert isinstance(kt, KafkaTransport)


async def test_pubsub_headers_and_bytes(kt, kafka_topic):
    sub = await kt.subscribe(kafka_topic)
    await kt.publish(kafka_topic, b"\x00\x01hello", headers={"symbol": "AAPL", "x": "é"})
    await kt.publish(kafka_topic, memoryview(b"second"))
    await kt.publish(kafka_topic, b"")
    m1, m2, m3 = await take(sub, 3)
    assert isinstance(m1.data, memoryview) and bytes(m1.data) == b"\x00\x01hello"
    assert m1.headers == {"symbol": "AAPL", "x": "é"} and m1.subject == kafka_topic and m1.reply is None
    assert bytes(m2.data) == b"second" and m2.headers is None
    assert bytes(m3.data) == b""
    await sub.unsubscribe()


async def test_every_fanout_subscriber_sees_every_message(kt, kafka_topic):
    await kt.create_topic(kafka_topic, 3)
    subs = [await kt.subscribe(kafka_topic) for _ in range(2)]
    for i in range(30):
        await kt.publish(kafka_topic, b"%d" % i, key=b"k%d" % i)
    for s in subs:
        got = sorted(int(bytes(m.data)) for m in await take(s, 30))
        assert got == list(range(30))


async def test_ordering_per_key_and_one_partition_per_key(kt, kafka_topic):
    await kt.create_topic(kafka_topic, 4)
    parts = {p: await kt.subscribe(kafka_topic, partitions=[p]) for p in range(4)}
    keys = [b"AAPL", b"MSFT", b"GOOG", b"TSLA", b"NVDA"]
    for i in range(50):
        for k in keys:
            await kt.publish(kafka_topic, k + b":%d" % i, key=k)
    await kt.flush()
    seen: dict[bytes, list[int]] = {}
    where: dict[bytes, set[int]] = {}
    total = 0
    for p, sub in parts.items():
        while sub.pending or total < 250:
            try:
                (m,) = await take(sub, 1, timeout=0.5)
            except TimeoutError:
                break
            k, i = bytes(m.data).split(b":")
            seen.setdefault(k, []).append(int(i))
            where.setdefault(k, set()).add(p)
            total += 1
    assert total == 250
    for k in keys:
        assert seen[k] == list(range(50)), k  # in publish order
        assert len(where[k]) == 1, k  # one instrument, one partition
    assert len(set().union(*where.values())) > 1  # keys really spread over partitions


async def test_key_header_option(kafka_url, kafka_options, kafka_topic):
    async with connect(kafka_url, key_header="symbol", **kafka_options) as t:
        await t.create_topic(kafka_topic, 4)
        parts = [await t.subscribe(kafka_topic, partitions=[p]) for p in range(4)]
        for i in range(40):
            await t.publish(kafka_topic, b"%d" % i, headers={"symbol": "AAPL" if i % 2 else "MSFT"})
        await t.flush()
        deadline = time.monotonic() + 10
        while sum(s.pending for s in parts) < 40 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        where: dict[str, list[int]] = {}
        for p, s in enumerate(parts):
            for m in await take(s, s.pending) if s.pending else []:
                where.setdefault(m.headers["symbol"], []).append(p)
        assert len(where["AAPL"]) == len(where["MSFT"]) == 20
        assert len(set(where["AAPL"])) == len(set(where["MSFT"])) == 1  # the header value is the key


async def _has(sub, wait=1.0):
    deadline = time.monotonic() + wait
    while not sub.pending and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    return sub.pending > 0


async def test_consumer_group_spreads_across_two_consumers(kt, kafka_topic):
    await kt.create_topic(kafka_topic, 4)
    a = await kt.subscribe(kafka_topic, queue="workers-" + kafka_topic)
    b = await kt.subscribe(kafka_topic, queue="workers-" + kafka_topic)
    # b's join makes the group rebalance; publish once both members own a share of the 4 partitions
    deadline = time.monotonic() + 30
    while not (a.partitions and b.partitions and not a.partitions & b.partitions
               and a.partitions | b.partitions == set(range(4))):
        assert time.monotonic() < deadline, (a.partitions, b.partitions)
        await asyncio.sleep(0.02)
    n = 200
    for i in range(n):
        await kt.publish(kafka_topic, b"%d" % i, key=b"sym%d" % i)
    got: dict[str, list[int]] = {"a": [], "b": []}

    async def drain(name, sub):
        async for m in sub:
            got[name].append(int(bytes(m.data)))
            await m.ack()
            if len(got["a"]) + len(got["b"]) >= n:
                return

    tasks = [asyncio.create_task(drain("a", a)), asyncio.create_task(drain("b", b))]
    _done, pending = await asyncio.wait(tasks, timeout=30, return_when=asyncio.FIRST_COMPLETED)
    for t in pending:
        t.cancel()
    assert sorted(got["a"] + got["b"]) == list(range(n))  # each message to exactly one member
    assert got["a"] and got["b"]  # and both members worked
    await a.unsubscribe()
    await b.unsubscribe()


async def test_assign_fast_start_and_offsets(kt, kafka_topic):
    await kt.create_topic(kafka_topic, 2)
    for i in range(5):  # one record batch each: Tansu 0.6 reports the end of a partition as the base offset
        # of its last record batch + 1 (Apache Kafka: last offset + 1), so a multi-record batch would make
        # offset="end" start inside that batch on Tansu
        await kt.publish(kafka_topic, b"old%d" % i, partition=0, wait=True)
    t0 = time.monotonic()
    end = await kt.subscribe(kafka_topic, partitions=[0], offset="end")
    started = time.monotonic() - t0
    assert started < 1.0  # no group join (which takes seconds)
    begin = await kt.subscribe(kafka_topic, partitions=[0], offset="beginning")
    at3 = await kt.subscribe(kafka_topic, partitions=[0], offset=3)
    await kt.publish(kafka_topic, b"new", partition=0)
    await kt.publish(kafka_topic, b"other-partition", partition=1)
    assert [bytes(m.data) for m in await take(end, 1)] == [b"new"]
    assert [bytes(m.data) for m in await take(begin, 6)] == [b"old0", b"old1", b"old2", b"old3", b"old4", b"new"]
    assert [bytes(m.data) for m in await take(at3, 3)] == [b"old3", b"old4", b"new"]
    assert not await _has(end, 0.3)  # partition 1 is not assigned


async def test_manual_commit_redelivers_unacked_after_restart(kafka_url, kafka_options, kafka_topic):
    group = "g-" + kafka_topic
    async with connect(kafka_url, **kafka_options) as t:
        for i in range(10):
            await t.publish(kafka_topic, b"%d" % i)
        await t.flush()
        sub = await t.subscribe(kafka_topic, queue=group)
        msgs = await take(sub, 10)
        assert [int(bytes(m.data)) for m in msgs] == list(range(10))
        for m in msgs[:4]:  # processed and committed; 4..9 "crash" before their commit
            await m.ack()
    async with connect(kafka_url, **kafka_options) as t:  # consumer restart, same group
        sub = await t.subscribe(kafka_topic, queue=group)
        again = await take(sub, 6)
        assert [int(bytes(m.data)) for m in again] == list(range(4, 10))
        await again[-1].ack()
    async with connect(kafka_url, **kafka_options) as t:
        sub = await t.subscribe(kafka_topic, queue=group)
        assert not await _has(sub, 1.0)  # everything committed: nothing redelivered
        await t.publish(kafka_topic, b"10")
        assert [bytes(m.data) for m in await take(sub, 1)] == [b"10"]


async def test_idempotent_producer_acked_exactly_once_in_order(kafka_url, kafka_options, kafka_topic):
    async with connect(kafka_url, idempotent=True, **kafka_options) as t:
        assert t._producer is not None
        sub = await t.subscribe(kafka_topic, offset="beginning")
        for i in range(50):
            await t.publish(kafka_topic, b"%d" % i, wait=i % 10 == 0)  # some wait for their ack
        await t.publish_batch(kafka_topic, [b"%d" % i for i in range(50, 100)])
        await t.flush()
        got = [int(bytes(m.data)) for m in await take(sub, 100)]
        assert got == list(range(100))
        assert not await _has(sub, 0.5)  # no duplicates


async def test_publish_wait_returns_after_broker_ack(kt, kafka_topic):
    sub = await kt.subscribe(kafka_topic)
    await kt.publish(kafka_topic, b"acked", wait=True)
    assert [bytes(m.data) for m in await take(sub, 1)] == [b"acked"]


@pytest.mark.parametrize("loop_wake", [True, False])
async def test_delivery_reports_on_the_loop_or_a_thread(kafka_url, kafka_options, kafka_topic, loop_wake):
    """Reports reach wait=True publishers and log_append whichever thread serves them: the loop (eventfd), the
    report thread, or flush() in an executor while waits are outstanding; close() leaves no fd behind."""
    import os

    async with connect(kafka_url, loop_wake=loop_wake, **kafka_options) as t:
        assert (t._wake is not None) == loop_wake  # this machine has eventfd and the wheel's librdkafka
        assert (t._poller is None) == loop_wake
        sub = await t.subscribe(kafka_topic)
        for i in range(20):
            await t.publish(kafka_topic, b"%d" % i, wait=True)
        waits = [asyncio.ensure_future(t.publish(kafka_topic, b"%d" % i, wait=True)) for i in range(20, 220)]
        await asyncio.sleep(0)
        await t.flush()  # serves reports on an executor thread while the waits are pending
        await asyncio.wait_for(asyncio.gather(*waits), 10)
        assert (await t.log_append(kafka_topic, kafka_topic, b"220")).pos == 221  # offset 220, positions are +1
        got = [int(bytes(m.data)) for m in await take(sub, 221)]
        assert got == list(range(221))
        fd = t._wake.fd if t._wake else None
    assert t._wake is None
    if fd is not None:
        with pytest.raises(OSError):
            os.fstat(fd)  # closed (and librdkafka told to stop writing to it first)


def test_loop_wake_refuses_a_handle_it_cannot_identify(tansu_broker):
    from confluent_kafka import Producer

    from lowlat.transport._rdkafka_wake import attach

    p = Producer({"bootstrap.servers": tansu_broker, "client.id": "someone-else"})
    assert attach(p, "lowlat-mine") is None  # rd_kafka_name does not match: never use the pointer
    w = attach(p, "someone-else")
    assert w is not None
    os_fd = w.fd
    p.produce("lowlat.test.wake", b"x")
    p.flush(5)  # its report went through the queue that now signals the fd
    import os

    assert os.eventfd_read(os_fd) >= 1
    w.close()
    w.close()  # idempotent


async def test_request_reply_with_correlation(kt, kafka_topic):
    async def handler(msg):
        return b"re:" + bytes(msg.data)

    worker = await kt.serve(kafka_topic, handler)
    replies = await asyncio.gather(*(kt.request(kafka_topic, b"q%d" % i, timeout=10) for i in range(5)))
    assert [bytes(r.data) for r in replies] == [b"re:q%d" % i for i in range(5)]
    worker.cancel()


async def test_request_reply_across_transports_and_headers(kafka_url, kafka_options, kafka_topic):
    async with connect(kafka_url, **kafka_options) as server, connect(kafka_url, **kafka_options) as client:
        sub = await server.subscribe(kafka_topic)

        async def answer():
            async for m in sub:
                assert m.reply and m.headers == {"h": "1"}
                await server.publish(m.reply, bytes(m.data)[::-1], headers={"answered": "yes"})

        task = asyncio.create_task(answer())
        r = await client.request(kafka_topic, b"abc", headers={"h": "1"}, timeout=10)
        assert bytes(r.data) == b"cba" and r.headers == {"answered": "yes"}
        task.cancel()


async def test_request_timeout(kt, kafka_topic):
    await kt.create_topic(kafka_topic)
    with pytest.raises(TransportTimeoutError):
        await kt.request(kafka_topic, b"nobody", timeout=0.3)


async def test_bad_subjects_and_closed_transport(kafka_url, kafka_options):
    t = connect(kafka_url, **kafka_options)
    await t.connect()
    for bad in ("a.*", "a.>", "has space", ""):
        with pytest.raises(ValueError):
            await t.publish(bad, b"x")
    await t.close()
    await t.close()  # idempotent
    with pytest.raises(TransportClosedError):
        await t.publish("x", b"y")


async def test_unreachable_broker_is_a_clear_error():
    from brokers._util import free_port

    t = connect(f"kafka://127.0.0.1:{free_port()}", timeout=1.0)  # nothing listens there
    with pytest.raises(TransportError, match="cannot reach Kafka"):
        await t.connect()
    await t.close()


async def test_produce_errors_are_transport_errors(kafka_url, kafka_options, kafka_topic):
    async with connect(kafka_url, **kafka_options) as t:
        sub = await t.subscribe(kafka_topic)
        with pytest.raises(TransportError, match="too large|Message size"):
            await t.publish(kafka_topic, b"x" * 2_000_000)  # > message.max.bytes (1 MB): rejected, not sent
        await t.publish(kafka_topic, b"ok", wait=True)  # the transport still works
        assert [bytes(m.data) for m in await take(sub, 1)] == [b"ok"]
        with pytest.raises(TransportError):
            await t.publish(kafka_topic, b"nowhere", partition=99, wait=True)  # the topic has 1 partition
        assert not await _has(sub, 0.3)


def test_url_and_subject_checks_need_no_broker():
    from lowlat.transport.kafka import _topic

    with pytest.raises(ValueError, match="host:port"):
        connect("kafka://")
    assert connect("kafka://h1:9092,h2:9092")._servers == "h1:9092,h2:9092"
    assert _topic("md.AAPL.trades_v-2") == "md.AAPL.trades_v-2"
    for bad in ("md.*", "md.>", "a..b", "", "sp ace", "é.x", "x" * 250, "inbox#cid"):
        with pytest.raises(ValueError):
            _topic(bad)
