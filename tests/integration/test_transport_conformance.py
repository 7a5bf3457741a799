"""One conformance suite for every transport adapter.

Each adapter proves itself by passing these tests.  To join, define a fixture named ``endpoint_<name>`` (in
``tests/brokers/<yours>.py``, exported in ``__all__``) that starts what it needs and returns a
``brokers._util.Endpoint``, and add ``<name>`` to ``ADAPTERS`` below.  A name whose fixture does not exist yet is
skipped ("no fixture"), so adapters can land in any order.  A test needing a capability the adapter lacks *by
design* is skipped with that reason (``Endpoint.caps`` / ``missing_caps``); a missing broker FAILS in CI
(the fixture calls ``_util.missing``).

Semantics every adapter shares (documented in ``lowlat.transport.base``):
- after ``await t.subscribe(s)`` returns, messages published afterwards (by any transport on the endpoint) reach
  the subscription; earlier ones do not;
- per publisher, order is kept; ``publish_batch`` is the same as a loop of ``publish``;
- ``request`` raises ``TransportTimeoutError`` when nothing answers in time, and ``NoRespondersError`` at once
  where the adapter can know that nobody is subscribed;
- every operation before ``connect()`` raises ``TransportNotConnectedError`` (a ``TransportClosedError``);
- a closed transport raises ``TransportClosedError`` on publish/subscribe/request; its subscriptions end;
- ``Message.data`` is a buffer: ``memoryview(msg.data)`` works without a copy;
- ``Transport.capabilities`` declares at least what the suite tests (``Endpoint.caps``), and what is not
  declared is refused rather than silently ignored;
- every subscription has ``next_msg(timeout)``, ``get_nowait()`` and ``drain()``.
"""

from __future__ import annotations

import asyncio
import os
import uuid

import pytest
from _helpers import recv_n
from brokers._util import Endpoint, free_port, missing

from lowlat._batch import MessageBatch
from lowlat.errors import (
    NoRespondersError,
    TransportClosedError,
    TransportError,
    TransportNotConnectedError,
    TransportTimeoutError,
)
from lowlat.transport.base import Capability
from lowlat.transport.durable import DurableLog, log_replay

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

# Adapters under test.  Others extend this list (and define endpoint_<name> fixtures).
ADAPTERS = ["inproc", "shm", "zmq_tcp", "zmq_ipc", "zmq_inproc", "nats", "natscore", "kafka", "aeron_ipc", "aeron_udp"]

ALL_CAPS = frozenset({"wildcards", "queue_groups", "headers", "request_reply", "no_responders",
                      "multi_transport", "flow_control", "large_payload"})

RECV_TIMEOUT = 10.0


# --- endpoints owned by the transport work (nats lives in brokers/nats.py) ---

@pytest.fixture
def endpoint_inproc() -> Endpoint:
    return Endpoint(url=f"inproc://conf-{uuid.uuid4().hex[:8]}", caps=ALL_CAPS, max_payload=4 << 20)


@pytest.fixture
def endpoint_shm():
    import shutil

    from lowlat.transport.shm import shm_available, shm_root

    ok, why = shm_available()
    if not ok:
        missing("the shm transport", f"python setup.py build_ext --inplace  ({why})")
    name = f"conf-{uuid.uuid4().hex[:8]}"
    yield Endpoint(url=f"shm://{name}", caps=ALL_CAPS, max_payload=1 << 20)
    shutil.rmtree(os.path.join(shm_root(), f"lowlat-bus-{name}"), ignore_errors=True)


def _zmq_endpoint(url: str) -> Endpoint:
    try:
        import zmq  # noqa: F401
    except ImportError:
        missing("pyzmq", "pip install 'lowlat[zmq]'")
    return Endpoint(url=url, options={"bind": True}, peer_options={"bind": False},
                    caps=ALL_CAPS - {"queue_groups", "no_responders"},
                    missing_caps={
                        "queue_groups": "zmq: PUB/SUB fans out to every SUB; use one ROUTER worker per subject",
                        "no_responders": "zmq: a request to an unserved subject times out (no broker to say so)",
                    }, max_payload=4 << 20)


@pytest.fixture
def endpoint_zmq_tcp() -> Endpoint:
    for _ in range(50):
        p = free_port()
        try:
            import socket
            with socket.socket() as s:
                s.bind(("127.0.0.1", p + 1))
        except OSError:
            continue
        return _zmq_endpoint(f"zmq+tcp://127.0.0.1:{p}")
    raise RuntimeError("no two consecutive free ports")


@pytest.fixture
def endpoint_zmq_ipc(tmp_path) -> Endpoint:
    return _zmq_endpoint(f"zmq+ipc://{tmp_path}/bus")


@pytest.fixture
def endpoint_zmq_inproc() -> Endpoint:
    return _zmq_endpoint(f"zmq+inproc://conf-{uuid.uuid4().hex[:8]}")


@pytest.fixture(params=ADAPTERS)
def ep(request) -> Endpoint:
    name = request.param
    try:
        return request.getfixturevalue(f"endpoint_{name}")
    except pytest.FixtureLookupError:
        pytest.skip(f"adapter {name!r} has no endpoint_{name} fixture yet")


# --- helpers ---

async def recv(sub, timeout: float = RECV_TIMEOUT):
    return await asyncio.wait_for(sub.__anext__(), timeout)


async def nothing_within(sub, seconds: float = 0.3) -> bool:
    try:
        await asyncio.wait_for(sub.__anext__(), seconds)
    except TimeoutError:
        return True
    except StopAsyncIteration:
        return True
    return False


# --- tests ---

async def test_pubsub_delivers_all_in_publish_order(ep: Endpoint):
    async with ep.connect() as t:
        sub = await t.subscribe("conf.order")
        payloads = [i.to_bytes(4, "little") * 4 for i in range(200)]
        for p in payloads:
            await t.publish("conf.order", p)
        await t.flush()
        got = await recv_n(sub, len(payloads))
        assert [bytes(m.data) for m in got] == payloads
        assert all(m.subject == "conf.order" for m in got)


async def test_only_messages_after_subscribe_are_delivered(ep: Endpoint):
    async with ep.connect() as t:
        await t.publish("conf.late", b"before")
        await t.flush()
        sub = await t.subscribe("conf.late")
        await t.publish("conf.late", b"after")
        await t.flush()
        m = await recv(sub)
        assert bytes(m.data) == b"after"
        assert await nothing_within(sub, 0.2)


async def test_other_subjects_are_not_delivered(ep: Endpoint):
    async with ep.connect() as t:
        sub = await t.subscribe("conf.x.a")
        await t.publish("conf.x.b", b"no")
        await t.publish("conf.x.ab", b"no")
        await t.publish("conf.x.a", b"yes")
        await t.flush()
        assert bytes((await recv(sub)).data) == b"yes"
        assert await nothing_within(sub, 0.2)


async def test_wildcards_star_and_gt(ep: Endpoint):
    ep.require("wildcards")
    async with ep.connect() as t:
        star = await t.subscribe("conf.w.*.px")
        gt = await t.subscribe("conf.w.>")
        await t.publish("conf.w.aapl.px", b"1")
        await t.publish("conf.w.aapl.qty", b"2")
        await t.publish("conf.w.a.b.px", b"3")
        await t.flush()
        assert [bytes(m.data) for m in await recv_n(gt, 3)] == [b"1", b"2", b"3"]
        m = await recv(star)
        assert (m.subject, bytes(m.data)) == ("conf.w.aapl.px", b"1")
        assert await nothing_within(star, 0.2)


async def test_publish_batch_equals_loop_of_publish(ep: Endpoint):
    async with ep.connect() as t:
        sub = await t.subscribe("conf.batch")
        payloads = [bytes([i]) * (i + 1) for i in range(64)]
        await t.publish_batch("conf.batch", payloads)
        await t.publish_batch("conf.batch", [])
        await t.flush()
        assert [bytes(m.data) for m in await recv_n(sub, 64)] == payloads


async def test_request_reply_with_serve(ep: Endpoint):
    ep.require("request_reply")
    async with ep.connect() as t:
        seen = []

        def handler(msg):
            seen.append(bytes(msg.data))
            return bytes(msg.data)[::-1]

        task = await t.serve("conf.rr", handler)
        try:
            for i in range(20):
                rep = await t.request("conf.rr", b"abc%d" % i, timeout=5)
                assert bytes(rep.data) == (b"abc%d" % i)[::-1]
            assert len(seen) == 20
        finally:
            task.cancel()


async def test_request_from_peer_transport_and_async_handler(ep: Endpoint):
    ep.require("request_reply", "multi_transport")
    async with ep.connect() as server, ep.connect(peer=True) as client:
        async def handler(msg):
            await asyncio.sleep(0)
            return b"ok:" + bytes(msg.data)

        task = await server.serve("conf.rr2", handler)
        try:
            rep = await client.request("conf.rr2", b"x", timeout=5)
            assert bytes(rep.data) == b"ok:x"
            # concurrent requests each get their own reply
            reps = await asyncio.gather(*(client.request("conf.rr2", b"%d" % i, timeout=5) for i in range(10)))
            assert sorted(bytes(r.data) for r in reps) == sorted(b"ok:%d" % i for i in range(10))
        finally:
            task.cancel()


async def test_request_without_responder_fails(ep: Endpoint):
    ep.require("request_reply")
    async with ep.connect() as t:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        if "no_responders" in ep.caps:  # the adapter knows nobody is subscribed: it says so at once
            with pytest.raises(NoRespondersError, match="no responders"):
                await t.request("conf.nobody", b"?", timeout=5)
            assert loop.time() - t0 < 2, "no responders must not wait for the request timeout"
        else:
            with pytest.raises(TransportTimeoutError):
                await t.request("conf.nobody", b"?", timeout=0.3)
            assert loop.time() - t0 < 5


async def test_every_operation_before_connect_raises_not_connected(ep: Endpoint):
    t = ep.connect()
    assert t.closed
    batch = MessageBatch(4)
    batch.append(b"x", "conf.pre", None)
    ops = {
        "publish": lambda: t.publish("conf.pre", b"x"),
        "publish_batch": lambda: t.publish_batch("conf.pre", [b"x"]),
        "publish_batch_to": lambda: t.publish_batch_to(batch, "conf.pre"),
        "subscribe": lambda: t.subscribe("conf.pre"),
        "flush": lambda: t.flush(),
        "request": lambda: t.request("conf.pre", b"x", timeout=0.2),
        "serve": lambda: t.serve("conf.pre", lambda m: b""),
    }
    for name, op in ops.items():
        with pytest.raises(TransportNotConnectedError):
            await op()
            pytest.fail(f"{name} before connect() did not raise")
    await t.drain()  # no-ops on a transport that never connected
    await t.close()
    async with t:  # and it still connects
        sub = await t.subscribe("conf.pre")
        await t.publish("conf.pre", b"after")
        await t.flush()
        assert bytes((await recv(sub)).data) == b"after"


async def test_await_connect_gives_a_connected_transport(ep: Endpoint):
    """The nats-py form next to ``async with``: ``t = await connect(url)`` is connected; the caller closes it."""
    t = await ep.connect()
    try:
        assert not t.closed
        sub = await t.subscribe("conf.await")
        await t.publish("conf.await", b"awaited")
        await t.flush()
        assert bytes((await sub.next_msg(RECV_TIMEOUT)).data) == b"awaited"
    finally:
        await t.close()
    assert t.closed
    with pytest.raises(TransportClosedError):
        await t.publish("conf.await", b"after close")


async def test_request_to_silent_handler_times_out(ep: Endpoint):
    ep.require("request_reply")
    async with ep.connect() as t:
        task = await t.serve("conf.silent", lambda msg: None)  # handler that never answers
        try:
            with pytest.raises(TransportTimeoutError):
                await t.request("conf.silent", b"?", timeout=0.3)
        finally:
            task.cancel()


async def test_queue_group_spreads_load_without_duplicates(ep: Endpoint):
    ep.require("queue_groups")
    async with ep.connect() as t, ep.connect(peer=True) as t2:
        a = await t.subscribe("conf.q", queue="workers")
        b = await t2.subscribe("conf.q", queue="workers")
        plain = await t.subscribe("conf.q")
        n = 200
        for i in range(n):
            await t.publish("conf.q", b"%d" % i)
        await t.flush()
        everything = await recv_n(plain, n)
        assert len(everything) == n
        got_a, got_b = [], []
        deadline = asyncio.get_running_loop().time() + RECV_TIMEOUT
        while len(got_a) + len(got_b) < n and asyncio.get_running_loop().time() < deadline:
            for sub, out in ((a, got_a), (b, got_b)):
                try:
                    out.append(bytes((await asyncio.wait_for(sub.__anext__(), 0.05)).data))
                except TimeoutError:
                    pass
        assert len(got_a) + len(got_b) == n
        assert sorted(got_a + got_b, key=int) == [b"%d" % i for i in range(n)]
        assert got_a and got_b, "queue group did not spread the load"


async def test_headers_round_trip(ep: Endpoint):
    ep.require("headers")
    async with ep.connect() as t:
        sub = await t.subscribe("conf.hdr")
        await t.publish("conf.hdr", b"p", headers={"X-Trace": "abc", "Nats-ish": "1"})
        await t.publish("conf.hdr", b"q")
        await t.flush()
        m1, m2 = await recv_n(sub, 2)
        assert m1.headers is not None and m1.headers["X-Trace"] == "abc" and m1.headers["Nats-ish"] == "1"
        assert not m2.headers


async def test_payload_is_a_zero_copy_buffer(ep: Endpoint):
    async with ep.connect() as t:
        sub = await t.subscribe("conf.buf")
        src = bytearray(b"\x01\x02\x03\x04" * 16)
        await t.publish("conf.buf", memoryview(src))
        await t.flush()
        m = await recv(sub)
        mv = memoryview(m.data)  # must not raise, must not need bytes(m.data)
        assert mv.nbytes == 64 and mv.tobytes() == bytes(src)
        assert mv.cast("B")[3] == 4


async def test_empty_payload(ep: Endpoint):
    async with ep.connect() as t:
        sub = await t.subscribe("conf.empty")
        await t.publish("conf.empty", b"")
        await t.flush()
        assert bytes((await recv(sub)).data) == b""


async def test_large_payload_intact(ep: Endpoint):
    ep.require("large_payload")
    async with ep.connect() as t:
        sub = await t.subscribe("conf.big")
        big = os.urandom(ep.max_payload - 4096)
        await t.publish("conf.big", big)
        await t.flush()
        m = await recv(sub, 30)
        assert memoryview(m.data).nbytes == len(big) and bytes(m.data) == big


async def test_peer_publish_reaches_subscriber(ep: Endpoint):
    ep.require("multi_transport")
    async with ep.connect() as t, ep.connect(peer=True) as t2:
        sub = await t.subscribe("conf.peer")
        sub2 = await t2.subscribe("conf.peer")
        # Interest registered on one connection is not visible to a publisher on another until the
        # server has processed it: NATS (like nats-py's docs) needs a flush round trip in between.
        await t.flush()
        await t2.flush()
        await t2.publish("conf.peer", b"from-peer")
        await t.publish("conf.peer", b"from-server")
        await t2.flush()
        await t.flush()
        got = sorted(bytes(m.data) for m in await recv_n(sub, 2))
        got2 = sorted(bytes(m.data) for m in await recv_n(sub2, 2))
        assert got == got2 == [b"from-peer", b"from-server"]


async def test_unsubscribe_stops_delivery(ep: Endpoint):
    async with ep.connect() as t:
        sub = await t.subscribe("conf.unsub")
        keep = await t.subscribe("conf.unsub")
        await sub.unsubscribe()
        await t.publish("conf.unsub", b"x")
        await t.flush()
        assert bytes((await recv(keep)).data) == b"x"
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(sub.__anext__(), 2)


async def test_slow_consumer_is_counted_not_hidden(ep: Endpoint):
    ep.require("flow_control")
    async with ep.connect() as t:
        reported = []
        sub = await t.subscribe("conf.slow", max_pending=8, on_slow_consumer=reported.append)
        for i in range(100):
            await t.publish("conf.slow", b"%d" % i)
        await t.flush()
        deadline = asyncio.get_running_loop().time() + RECV_TIMEOUT
        while sub.dropped + sub.pending < 100 and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)
        assert sub.pending <= 8
        assert sub.dropped == 100 - sub.pending and sub.dropped > 0
        assert sub.delivered == sub.pending and sub.pending_bytes == sum(len(b"%d" % i) for i in range(sub.pending))
        assert reported and reported[0] is sub
        kept = sub.pending
        got = [bytes(m.data) for m in await recv_n(sub, kept)]
        assert got == [b"%d" % i for i in range(len(got))]  # the oldest are kept, in order
        assert (sub.pending, sub.pending_bytes, sub.delivered) == (0, 0, kept)
        with pytest.raises(AttributeError):
            sub.pending = 0  # type: ignore[assignment]  # the counters are the adapter's, read-only


async def test_flush_then_close_then_everything_raises_closed(ep: Endpoint):
    t = ep.connect()
    await t.connect()
    sub = await t.subscribe("conf.closed")
    await t.publish("conf.closed", b"1")
    await t.flush()
    await recv(sub)
    await t.close()
    assert t.closed
    with pytest.raises(TransportClosedError):
        await t.publish("conf.closed", b"2")
    with pytest.raises(TransportClosedError):
        await t.subscribe("conf.closed")
    if "request_reply" in ep.caps:
        with pytest.raises(TransportClosedError):
            await t.request("conf.closed", b"3", timeout=0.2)
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(sub.__anext__(), 5)
    await t.close()  # idempotent


async def test_drain_delivers_pending_then_ends(ep: Endpoint):
    async with ep.connect() as t:
        sub = await t.subscribe("conf.drain")
        for i in range(10):
            await t.publish("conf.drain", b"%d" % i)
        await t.flush()
        first = await recv(sub)
        await asyncio.sleep(0.05)
        await t.drain()
        rest = [m async for m in sub]
        got = [bytes(first.data)] + [bytes(m.data) for m in rest]
        assert got == [b"%d" % i for i in range(10)]
        assert t.closed
        with pytest.raises(TransportClosedError):
            await t.publish("conf.drain", b"x")


async def test_async_context_manager_closes(ep: Endpoint):
    async with ep.connect() as t:
        assert not t.closed
        await t.publish("conf.cm", b"x")
    assert t.closed


async def test_invalid_subject_is_rejected(ep: Endpoint):
    async with ep.connect() as t:
        with pytest.raises(ValueError):
            await t.subscribe("conf..bad")
        with pytest.raises(ValueError):
            await t.subscribe("conf.>.bad")


# --- the interface members every adapter has ---

_CAP_FLAGS = {"wildcards": Capability.WILDCARDS, "queue_groups": Capability.QUEUE_GROUPS,
              "headers": Capability.HEADERS, "request_reply": Capability.REQUEST_REPLY}


async def test_capabilities_are_declared_and_honoured(ep: Endpoint):
    async with ep.connect() as t:
        caps = t.capabilities
        assert isinstance(caps, Capability)
        for name, flag in _CAP_FLAGS.items():
            if name in ep.caps:
                assert flag in caps, f"the suite tests {name!r} but {type(t).__name__} does not declare it"
        if Capability.QUEUE_GROUPS in caps:
            await (await t.subscribe("conf.capq", queue="g")).unsubscribe()
        else:
            with pytest.raises(TransportError):
                await t.subscribe("conf.capq", queue="g")
        if Capability.WILDCARDS not in caps:
            with pytest.raises(ValueError):
                await t.subscribe("conf.capw.*")


async def test_next_msg_delivers_then_times_out_then_ends(ep: Endpoint):
    async with ep.connect() as t:
        sub = await t.subscribe("conf.next")
        await t.publish("conf.next", b"1")
        await t.flush()
        assert bytes((await sub.next_msg(RECV_TIMEOUT)).data) == b"1"
        with pytest.raises(TransportTimeoutError):
            await sub.next_msg(0.2)
        await t.publish("conf.next", b"2")  # a timeout leaves the subscription usable
        await t.flush()
        assert bytes((await sub.next_msg(RECV_TIMEOUT)).data) == b"2"
        await sub.unsubscribe()
        with pytest.raises(TransportClosedError):
            await sub.next_msg(5)


async def _until_pending(sub, n: int) -> None:
    # delivery into the subscription's queue may run on another task or thread: wait for the count, bounded
    deadline = asyncio.get_running_loop().time() + RECV_TIMEOUT
    while sub.pending < n:
        assert asyncio.get_running_loop().time() < deadline, f"only {sub.pending} of {n} messages arrived"
        await asyncio.sleep(0.005)


async def test_get_nowait_takes_pending_without_waiting(ep: Endpoint):
    async with ep.connect() as t:
        sub = await t.subscribe("conf.nowait")
        assert sub.get_nowait() is None
        for i in range(5):
            await t.publish("conf.nowait", b"%d" % i)
        await t.flush()
        await _until_pending(sub, 5)
        got = [sub.get_nowait() for _ in range(5)]
        assert [bytes(m.data) for m in got] == [b"%d" % i for i in range(5)]
        assert sub.get_nowait() is None and sub.pending == 0


async def test_subscription_drain_keeps_pending_and_stops_intake(ep: Endpoint):
    async with ep.connect() as t:
        sub = await t.subscribe("conf.sdrain")
        other = await t.subscribe("conf.sdrain")
        for i in range(5):
            await t.publish("conf.sdrain", b"%d" % i)
        await t.flush()
        await _until_pending(sub, 5)
        await sub.drain()
        await t.publish("conf.sdrain", b"late")
        await t.flush()
        assert [bytes(m.data) async for m in sub] == [b"%d" % i for i in range(5)]
        # the transport and its other subscriptions are unaffected
        assert [bytes(m.data) for m in await recv_n(other, 6)] == [b"%d" % i for i in range(5)] + [b"late"]
        assert not t.closed


async def test_publish_with_reply_subject(ep: Endpoint):
    ep.require("request_reply")
    # under the inbox prefix Kafka honours by default (it ignores reply subjects elsewhere: see kafka.py)
    answer = "_lowlat.inbox.conf_answer"
    async with ep.connect() as t:
        sub = await t.subscribe("conf.withreply")
        answers = await t.subscribe(answer)
        await t.publish("conf.withreply", b"q", reply=answer)
        await t.flush()
        m = await recv(sub)
        assert m.reply == answer and bytes(m.data) == b"q"
        await m.respond(b"a")
        await t.flush()
        assert bytes((await recv(answers)).data) == b"a"


async def test_durable_log_append_end_get_replay(ep: Endpoint):
    async with ep.connect() as t:
        if Capability.DURABLE not in t.capabilities:
            pytest.skip(f"{type(t).__name__} has no durable log by design (no Capability.DURABLE)")
        assert isinstance(t, DurableLog)
        tag = uuid.uuid4().hex[:8]
        name, subject = f"CONF_{tag}", f"conf.log.{tag}"
        await t.log_ensure(name, [subject])
        await t.log_ensure(name, [subject])  # idempotent
        assert await t.log_end(name) == 0
        acks = [await t.log_append(name, subject, b"r%d" % i, msg_id=f"{name}:{i}") for i in range(5)]
        assert acks[0].pos == 1 and [a.pos for a in acks] == list(range(1, 6)) and not any(a.duplicate for a in acks)
        assert await t.log_end(name) == 5
        assert bytes((await t.log_get(name, 3)).data) == b"r2"
        got = [(r.pos, bytes(r.msg.data)) async for r in log_replay(t, name, 2)]
        assert got == [(3, b"r2"), (4, b"r3"), (5, b"r4")]
        assert [r async for r in log_replay(t, name, 5)] == []
        if "jetstream" in ep.caps:  # the broker deduplicates a retried append by its id
            again = await t.log_append(name, subject, b"r0", msg_id=f"{name}:0")
            assert again.duplicate and again.pos == 1 and await t.log_end(name) == 5
        reader = await t.log_reader(name, 4)
        try:
            recs = await reader.fetch(10, RECV_TIMEOUT)
            assert [(r.pos, bytes(r.msg.data)) for r in recs] == [(5, b"r4")]
            assert await reader.fetch(10, 0.2) == []
        finally:
            await reader.close()


# --- the batch path (lowlat._batch.MessageBatch; lifetime: until the next take/next_batch) ---

def _rows(b: MessageBatch) -> list[tuple[str, bytes, str | None]]:
    return [(b.subject(i), bytes(b.payload(i)), b.reply(i)) for i in range(b.n)]


async def test_take_batch_hands_over_everything_pending(ep: Endpoint):
    ep.require("request_reply")  # reply subjects travel with the messages
    async with ep.connect() as t:
        sub = await t.subscribe("conf.tb")
        assert sub.take_batch(16).n == 0
        for i in range(20):
            await t.publish("conf.tb", b"p%d" % i, reply=f"_lowlat.inbox.conf.r{i}" if i % 2 else None)
        await t.flush()
        await _until_pending(sub, 20)
        b = sub.take_batch(16)  # at most max_msgs; the rest stays pending, in order
        assert b.n == 16
        b2_rows = _rows(b)
        rest = sub.take_batch(16)
        assert rest.n == 4
        got = b2_rows + _rows(rest)
        assert got == [("conf.tb", b"p%d" % i, f"_lowlat.inbox.conf.r{i}" if i % 2 else None) for i in range(20)]
        assert sub.take_batch(16).n == 0 and sub.pending == 0


async def test_next_batch_waits_then_times_out_empty(ep: Endpoint):
    async with ep.connect() as t:
        sub = await t.subscribe("conf.nb")
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        assert (await sub.next_batch(8, timeout=0.2)).n == 0
        assert loop.time() - t0 >= 0.15
        for i in range(12):
            await t.publish("conf.nb", b"%d" % i)
        await t.flush()
        got: list[bytes] = []
        deadline = loop.time() + RECV_TIMEOUT
        while len(got) < 12 and loop.time() < deadline:
            b = await sub.next_batch(8, timeout=RECV_TIMEOUT)
            assert b.n <= 8
            got += [bytes(b.payload(i)) for i in range(b.n)]
        assert got == [b"%d" % i for i in range(12)]


async def test_large_message_gets_a_batch_of_its_own(ep: Endpoint):
    async with ep.connect() as t:
        sub = await t.subscribe("conf.bigb")
        big = os.urandom(min(ep.max_payload - 4096, 1 << 19))
        await t.publish("conf.bigb", b"small")
        await t.publish("conf.bigb", big)
        await t.flush()
        await _until_pending(sub, 2)
        got: list[bytes] = []
        while len(got) < 2:
            b = await sub.next_batch(4, timeout=RECV_TIMEOUT)
            assert b.n > 0
            got += [bytes(b.payload(i)) for i in range(b.n)]
        assert got == [b"small", big]


async def test_publish_batch_to_one_subject(ep: Endpoint):
    async with ep.connect() as t:
        sub = await t.subscribe("conf.bto")
        batch = MessageBatch(64)
        for i in range(30):
            assert batch.append(b"m%d" % i, "ignored.subject", None)
        assert await t.publish_batch_to(batch, "conf.bto") == 30
        await t.flush()
        assert [bytes(m.data) for m in await recv_n(sub, 30)] == [b"m%d" % i for i in range(30)]
        assert t.publish_errors == 0


async def test_copies_batch_means_the_batch_can_be_reused_at_once(ep: Endpoint):
    # services reuse one output batch when the adapter declares COPIES_BATCH: overwriting it right after
    # publish_batch_to returns must not change what subscribers receive
    async with ep.connect() as t:
        if Capability.COPIES_BATCH not in t.capabilities:
            pytest.skip(f"{type(t).__name__} does not declare COPIES_BATCH (services give it a fresh batch)")
        sub = await t.subscribe("conf.reuse")
        batch = MessageBatch(16, 4096)
        for i in range(12):  # past inproc's small-batch threshold, so the run path is the one tested
            assert batch.append(b"first-%02d" % i, "conf.reuse", None)
        assert await t.publish_batch_to(batch, "conf.reuse") == 12
        batch.clear()
        for i in range(12):
            assert batch.append(b"XXXXXXXX", "conf.reuse", None)
        await t.flush()
        assert [bytes(m.data) for m in await recv_n(sub, 12)] == [b"first-%02d" % i for i in range(12)]


async def test_publish_batch_to_each_reply_subject(ep: Endpoint):
    ep.require("request_reply")
    async with ep.connect() as t:
        a = await t.subscribe("_lowlat.inbox.conf.a")
        b = await t.subscribe("_lowlat.inbox.conf.b")
        batch = MessageBatch(8)
        batch.append(b"to-a", "conf.in", "_lowlat.inbox.conf.a")
        batch.append(b"nowhere", "conf.in", None)  # no reply subject: skipped, not an error
        batch.append(b"to-b", "conf.in", "_lowlat.inbox.conf.b")
        batch.append(b"to-a2", "conf.in", "_lowlat.inbox.conf.a")
        assert await t.publish_batch_to(batch) == 3
        await t.flush()
        assert [bytes(m.data) for m in await recv_n(a, 2)] == [b"to-a", b"to-a2"]
        assert bytes((await recv(b)).data) == b"to-b"
        assert t.publish_errors == 0


async def test_batch_answers_requests_through_publish_batch_to(ep: Endpoint):
    # the compiled-consumer loop: take a batch of requests, answer them all with one publish_batch_to
    ep.require("request_reply")
    async with ep.connect() as t:
        sub = await t.subscribe("conf.bsrv")

        async def worker() -> None:
            answered = 0
            while answered < 10:
                reqs = await sub.next_batch(16, timeout=RECV_TIMEOUT)
                out = MessageBatch(16)
                for i in range(reqs.n):
                    out.append(b"ok:" + bytes(reqs.payload(i)), "", reqs.reply(i))
                answered += await t.publish_batch_to(out)

        w = asyncio.ensure_future(worker())
        try:
            reps = await asyncio.gather(*(t.request("conf.bsrv", b"%d" % i, timeout=RECV_TIMEOUT) for i in range(10)))
            assert sorted(bytes(r.data) for r in reps) == sorted(b"ok:%d" % i for i in range(10))
            await asyncio.wait_for(w, RECV_TIMEOUT)
        finally:
            w.cancel()


# --- shm:// across real processes ---

SHM_WORKER = """
import asyncio, sys
from lowlat.transport import connect

async def main(url, role):
    async with connect(url) as t:
        if role == "echo":
            task = await t.serve("x.echo", lambda m: b"pid-echo:" + bytes(m.data))
        else:
            sub = await t.subscribe("x.work", queue="workers")
            async def count():
                n = 0
                async for m in sub:
                    n += 1
                    await t.publish("x.done", b"%s:%d" % (role.encode(), n))
            task = asyncio.ensure_future(count())
        stop = await t.subscribe("x.stop")
        print("ready", flush=True)
        await stop.__anext__()
        task.cancel()

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


async def _spawn(url: str, role: str):
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", SHM_WORKER, url, role], stdout=subprocess.PIPE, text=True)
    line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 30)
    assert line.strip() == "ready", line
    return proc


def _reap(*procs):
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()


async def test_shm_request_reply_across_processes(endpoint_shm):
    async with endpoint_shm.connect() as t:
        proc = await _spawn(endpoint_shm.url, "echo")
        try:
            for i in range(50):
                rep = await t.request("x.echo", b"%d" % i, timeout=5)
                assert bytes(rep.data) == b"pid-echo:%d" % i
            await t.publish("x.stop", b"")
            assert await asyncio.wait_for(asyncio.to_thread(proc.wait), 20) == 0
        finally:
            _reap(proc)


async def test_shm_queue_group_across_processes(endpoint_shm):
    async with endpoint_shm.connect() as t:
        done = await t.subscribe("x.done")
        procs = [await _spawn(endpoint_shm.url, "w1"), await _spawn(endpoint_shm.url, "w2")]
        try:
            n = 100
            for i in range(n):
                await t.publish("x.work", b"%d" % i)
            got = [bytes(m.data) for m in await recv_n(done, n, 20)]
            per = {}
            for g in got:
                who, k = g.split(b":")
                per[who] = max(per.get(who, 0), int(k))
            assert sum(per.values()) == n and set(per) == {b"w1", b"w2"}
            await t.publish("x.stop", b"")
            for p in procs:
                assert await asyncio.wait_for(asyncio.to_thread(p.wait), 20) == 0
        finally:
            _reap(*procs)


async def test_shm_killed_subscriber_is_reaped_and_does_not_stall_publishers(endpoint_shm):
    from lowlat.transport import connect

    async with connect(endpoint_shm.url, publish_timeout=5.0) as t:
        proc = await _spawn(endpoint_shm.url, "w1")  # subscribes x.work with its default 4 MiB ring
        proc.kill()
        proc.wait()
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        big = b"x" * 65536
        for _ in range(200):  # 13 MiB: the dead member's ring fills up, then it must be reaped
            await t.publish("x.work", big)
        assert loop.time() - t0 < 4, "a dead subscriber stalled the publisher"
        import os

        assert not [f for f in os.listdir(t.dir) if f.startswith(f"{proc.pid}-")]
        assert t.full_drops == 0


async def test_shm_malformed_record_is_dropped_not_fatal(endpoint_shm):
    async with endpoint_shm.connect() as t:
        sub = await t.subscribe("ok.subject")
        t._ring.push(b"\x00\x01")                 # too short for a record header
        t._ring.push(b"\x00" * 4 + b"\xff\xff" + b"\x00" * 4)  # subject length beyond the record
        await t.publish("ok.subject", b"fine")
        assert bytes((await recv(sub)).data) == b"fine"


async def test_serve_keeps_running_when_the_task_reference_is_dropped(ep: Endpoint):
    # asyncio holds tasks weakly: the transport must keep the serve() worker alive (regression: a dropped task
    # was garbage-collected and silently unregistered the worker after ~160 requests)
    ep.require("request_reply")
    import gc

    async with ep.connect() as t:
        await t.serve("conf.gc", lambda m: b"alive")
        for _ in range(3):
            gc.collect()
            await asyncio.sleep(0)
            assert bytes((await t.request("conf.gc", b"", timeout=5)).data) == b"alive"
    for _ in range(5):
        await asyncio.sleep(0)
    assert all(task.done() for task in t._background), "close() must stop serve() workers"
