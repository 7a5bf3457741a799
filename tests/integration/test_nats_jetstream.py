"""NATS JetStream (ack, Nats-Msg-Id dedupe, durable pull consumer with explicit ack) and flow control of the nats-py
adapter (``client="nats-py"``; the compiled client's flow control is in test_natscore.py, its JetStream methods
delegate to this adapter and run in the conformance suite's durable-log test)."""

from __future__ import annotations

import asyncio
import logging
import uuid

import pytest

from lowlat.errors import NoRespondersError
from lowlat.transport import connect

pytestmark = [pytest.mark.integration, pytest.mark.nats, pytest.mark.timeout(60)]


@pytest.fixture
async def nt(nats_server):
    async with connect(nats_server.url, client="nats-py", **nats_server.client_options) as t:
        yield t


@pytest.fixture
async def stream(nt):
    name = "S" + uuid.uuid4().hex[:8].upper()
    await nt.js_add_stream(name, [f"{name.lower()}.>"], duplicate_window=60)
    yield name, name.lower()
    await nt.jetstream.delete_stream(name)


async def test_js_publish_returns_ack_with_increasing_seq(nt, stream):
    name, prefix = stream
    acks = [await nt.js_publish(f"{prefix}.orders", b"o%d" % i) for i in range(5)]
    assert [a.stream for a in acks] == [name] * 5
    assert [a.seq for a in acks] == list(range(1, 6))
    assert not any(a.duplicate for a in acks)


async def test_js_publish_msg_id_deduplicates(nt, stream):
    name, prefix = stream
    a1 = await nt.js_publish(f"{prefix}.orders", b"first", msg_id="order-42")
    a2 = await nt.js_publish(f"{prefix}.orders", b"retry", msg_id="order-42")
    a3 = await nt.js_publish(f"{prefix}.orders", b"other", msg_id="order-43")
    assert not a1.duplicate and a2.duplicate and a2.seq == a1.seq
    assert a3.seq == a1.seq + 1
    info = await nt.jetstream.stream_info(name)
    assert info.state.messages == 2


async def test_js_publish_to_subject_without_stream_fails(nt):
    with pytest.raises(NoRespondersError, match="no responders"):
        await nt.js_publish("nostream.x", b"?", timeout=1)


async def test_durable_pull_consumer_explicit_ack_and_redelivery(nt, stream, nats_server):
    _, prefix = stream
    for i in range(6):
        await nt.js_publish(f"{prefix}.fills", b"f%d" % i)
    sub = await nt.js_pull_subscribe(f"{prefix}.fills", durable="risk", ack_wait=1.0)
    got = await sub.fetch(4, timeout=2)
    assert [bytes(m.data) for m in got] == [b"f0", b"f1", b"f2", b"f3"]
    for m in got[:3]:
        await m.ack()  # f3 is left unacked -> redelivered after ack_wait
    rest = await sub.fetch(2, timeout=2)
    assert [bytes(m.data) for m in rest] == [b"f4", b"f5"]
    for m in rest:
        await m.ack()
    await asyncio.sleep(1.3)
    again = await sub.fetch(1, timeout=3)
    assert [bytes(m.data) for m in again] == [b"f3"]
    await again[0].ack()
    assert await sub.fetch(1, timeout=0.5) == []
    # the consumer is durable: a new connection binding the same durable continues after the acked ones
    await nt.js_publish(f"{prefix}.fills", b"f6")
    async with connect(nats_server.url) as t2:
        sub2 = await t2.js_pull_subscribe(f"{prefix}.fills", durable="risk")
        nxt = await sub2.fetch(1, timeout=2)
        assert [bytes(m.data) for m in nxt] == [b"f6"]
        await nxt[0].ack()


async def test_slow_consumer_is_reported_and_logged(nt, caplog):
    events = []
    sub = await nt.subscribe("flow.slow", max_pending=5, on_slow_consumer=events.append)
    with caplog.at_level(logging.WARNING, logger="lowlat.transport"):
        for i in range(50):
            await nt.publish("flow.slow", b"%d" % i)
        await nt.flush()
        for _ in range(100):
            if sub.pending + sub.dropped >= 50:
                break
            await asyncio.sleep(0.02)
    assert sub.pending == 5 and sub.dropped == 45
    assert len(events) == 45 and events[0] is sub
    assert any("slow consumer" in r.getMessage() for r in caplog.records)


async def test_max_pending_bytes_limit(nt):
    sub = await nt.subscribe("flow.bytes", max_pending_bytes=1000)
    for _ in range(10):
        await nt.publish("flow.bytes", b"x" * 300)
    await nt.flush()
    for _ in range(100):
        if sub.pending + sub.dropped >= 10:
            break
        await asyncio.sleep(0.02)
    assert sub.pending == 3 and sub.pending_bytes == 900 and sub.dropped == 7


async def test_received_payload_is_not_copied_by_the_adapter(nt):
    got = []
    sub = await nt.subscribe("zc.x")
    await nt.publish("zc.x", b"payload")
    m = await asyncio.wait_for(sub.__anext__(), 5)
    got.append(m)
    # Message.data is the very object nats-py parsed (bytes); memoryview over it shares memory
    assert type(m.data) is bytes
    mv = memoryview(m.data)
    assert mv.obj is m.data


async def test_queue_group_across_connections_with_serve(nats_server):
    async with connect(nats_server.url) as a, connect(nats_server.url) as b, connect(nats_server.url) as c:
        ta = await a.serve("svc.q", lambda m: b"a", queue="svc")
        tb = await b.serve("svc.q", lambda m: b"b", queue="svc")
        try:
            answers = [bytes((await c.request("svc.q", b"?", timeout=2)).data) for _ in range(60)]
            assert set(answers) == {b"a", b"b"}
        finally:
            ta.cancel()
            tb.cancel()
