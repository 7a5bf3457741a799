"""lowlat's compiled core-NATS client against a real nats-server: interop with nats-py, reconnect after a server
restart on the same port, a hostile server, the batch path, limits and errors."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import subprocess

import pytest
from brokers._util import LOOPBACK, wait_port

from lowlat._batch import MessageBatch
from lowlat.errors import MaxPayloadError, NoRespondersError, TransportError, TransportTimeoutError
from lowlat.transport import connect
from lowlat.transport.base import Capability
from lowlat.transport.natscore import NatsCoreTransport, decode_headers, encode_headers

pytestmark = [pytest.mark.integration, pytest.mark.nats, pytest.mark.timeout(120)]

CORE = {"client": "lowlat", "jetstream": False}


def core(url: str, **kw) -> NatsCoreTransport:
    t = connect(url, **CORE, **kw)
    assert isinstance(t, NatsCoreTransport)
    return t


async def test_interop_with_nats_py_both_ways(nats_server):
    # every message, header and reply one client publishes arrives unchanged at the other, in both directions
    url = nats_server.url
    async with core(url) as ours, connect(url, client="nats-py") as theirs:
        for pub, sub_side in ((ours, theirs), (theirs, ours)):
            sub = await sub_side.subscribe("interop.>")
            await sub_side.flush()
            sent = []
            for i in range(50):
                payload = bytes([i]) * i
                headers = {"X-Seq": str(i), "X-Tag": f"t{i % 3}"} if i % 2 else None
                reply = f"interop.reply.{i}" if i % 3 == 0 else None
                await pub.publish(f"interop.m.{i}", payload, headers=headers, reply=reply)
                sent.append((f"interop.m.{i}", payload, headers, reply))
            await pub.flush()
            got = [await sub.next_msg(5) for _ in sent]
            assert [(m.subject, bytes(m.data), dict(m.headers) if m.headers else None, m.reply)
                    for m in got] == sent
            await sub.unsubscribe()
        # request/reply across clients, each side serving the other
        t1 = await ours.serve("interop.svc.ours", lambda m: b"ours:" + bytes(m.data))
        t2 = await theirs.serve("interop.svc.theirs", lambda m: b"theirs:" + bytes(m.data))
        await ours.flush()
        await theirs.flush()
        assert bytes((await theirs.request("interop.svc.ours", b"q1", timeout=5)).data) == b"ours:q1"
        assert bytes((await ours.request("interop.svc.theirs", b"q2", timeout=5)).data) == b"theirs:q2"
        r = await ours.request("interop.svc.theirs", b"h", timeout=5, headers={"X-Req": "1"})
        assert bytes(r.data) == b"theirs:h"
        t1.cancel()
        t2.cancel()


async def test_no_responders_is_its_own_error_and_fast(nats_server):
    async with core(nats_server.url) as t:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        with pytest.raises(NoRespondersError):
            await t.request("nobody.home", b"?", timeout=5)
        assert loop.time() - t0 < 1.0
        with pytest.raises(TransportTimeoutError):   # a NoRespondersError is a timeout for generic callers
            await t.request("nobody.home", b"?", timeout=5)


async def test_native_batch_path_both_ways(nats_server):
    async with core(nats_server.url) as t:
        assert Capability.NATIVE_BATCH in t.capabilities
        sub = await t.subscribe("nb.in")
        replies = await t.subscribe("nb.reply.*")
        out = MessageBatch(256, 1 << 16)
        for i in range(200):
            out.append(b"p%d" % i, "x", f"nb.reply.{i % 4}" if i % 2 else None)
        assert await t.publish_batch_to(out, "nb.in") == 200
        assert await t.publish_batch_to(out) == 100      # to each message's reply subject; 100 have none
        await t.flush()
        got: list[bytes] = []
        while len(got) < 200:
            b = await sub.next_batch(1024, timeout=5)
            assert b.n > 0
            got += [bytes(b.payload(i)) for i in range(b.n)]
            assert all(b.subject(i) == "nb.in" for i in range(b.n))
        assert got == [b"p%d" % i for i in range(200)]
        n = 0
        while n < 100:
            n += (await replies.next_batch(1024, timeout=5)).n
        assert n == 100 and t.publish_errors == 0


async def test_batch_headers_survive(nats_server):
    async with core(nats_server.url) as t:
        sub = await t.subscribe("bh.x")
        await t.publish("bh.x", b"a", headers={"K": "v"})
        await t.publish("bh.x", b"b")
        await t.flush()
        got = []
        while len(got) < 2:
            b = await sub.next_batch(10, timeout=5)
            assert b.n > 0
            got += [(bytes(b.payload(i)), sub.batch_headers(i)) for i in range(b.n)]
        assert got == [(b"a", {"K": "v"}), (b"b", None)]


async def test_max_payload_is_checked_before_sending(nats_server):
    async with core(nats_server.url) as t:
        limit = t.max_payload
        assert limit == t.server_info["max_payload"] == 8 << 20
        with pytest.raises(MaxPayloadError, match="max_payload"):
            await t.publish("mp.x", b"\0" * (limit + 1))
        with pytest.raises(ValueError):
            await t.publish("bad subject", b"x")
        sub = await t.subscribe("mp.x")
        await t.publish("mp.x", b"ok")                  # the connection is still fine
        assert bytes((await sub.next_msg(5)).data) == b"ok"


async def test_no_echo(nats_server):
    async with core(nats_server.url, no_echo=True) as t, core(nats_server.url) as other:
        mine = await t.subscribe("echo.x")
        theirs = await other.subscribe("echo.x")
        await t.publish("echo.x", b"from-t")
        await t.flush()
        assert bytes((await theirs.next_msg(5)).data) == b"from-t"
        with pytest.raises(TransportTimeoutError):
            await mine.next_msg(0.3)


async def test_queue_group_and_slow_consumer(nats_server):
    async with core(nats_server.url) as t:
        reported = []
        a = await t.subscribe("sc.q", queue="g", max_pending=5, on_slow_consumer=reported.append)
        for i in range(50):
            await t.publish("sc.q", b"%d" % i)
        await t.flush()
        await asyncio.sleep(0.05)
        assert a.pending == 5 and a.dropped == 45 and reported == [a] * len(reported) and reported
        assert t.slow_consumers >= 1
        assert [bytes(a.get_nowait().data) for _ in range(5)] == [b"%d" % i for i in range(5)]


def test_header_codec():
    block = encode_headers({"A": "1", "B-c": "x y"})
    assert block == b"NATS/1.0\r\nA: 1\r\nB-c: x y\r\n\r\n"
    assert decode_headers(block) == ({"A": "1", "B-c": "x y"}, 0)
    assert decode_headers(b"NATS/1.0 503\r\n\r\n") == ({"Status": "503"}, 503)
    assert decode_headers(b"NATS/1.0 408 Request Timeout\r\n\r\n")[0]["Description"] == "Request Timeout"
    for bad in ({"a:b": "1"}, {"a": "1\r\nInjected: 1"}, {"": "x"}):
        with pytest.raises(ValueError):
            encode_headers(bad)


# --- reconnect ---

def _restart(srv) -> subprocess.Popen:
    with open(srv.workdir / "nats-restart.log", "ab") as log:
        proc = subprocess.Popen([srv.proc.args[0], "-c", str(srv.workdir / "nats.conf")], stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    wait_port(srv.port, proc=proc)
    return proc


@pytest.fixture
def own_nats(nats_bin, tmp_path):
    from brokers.nats import start_nats

    srv = start_nats(nats_bin, tmp_path / "nats", jetstream=False)
    yield srv
    srv.stop()


async def test_server_killed_and_restarted_mid_stream(own_nats, caplog):
    # core NATS is at-most-once: what was in flight when the server died is lost, nothing else; both clients
    # reconnect by themselves, resubscribe, and the publishes made while disconnected are sent afterwards
    caplog.set_level(logging.WARNING, logger="lowlat.transport.natscore")
    srv = own_nats
    events = []
    async with core(srv.url, reconnected_cb=lambda: events.append("re"),
                    disconnected_cb=lambda: events.append("dis")) as pub, core(srv.url) as subt:
        sub = await subt.subscribe("rc.x")
        total = 3000
        sent_before_kill = 1000
        for i in range(sent_before_kill):
            await pub.publish("rc.x", b"%d" % i)
        await pub.flush()
        # the server's PONG to the publisher can overtake its delivery to the subscriber: kill it once the
        # subscriber holds them, so "delivered before the kill" is what the assertions below check
        for _ in range(500):
            if sub.pending >= sent_before_kill:
                break
            await asyncio.sleep(0.01)
        srv.proc.kill()
        srv.proc.wait()
        # published while the server is down: buffered in the client
        for i in range(sent_before_kill, 2000):
            await pub.publish("rc.x", b"%d" % i)
        srv.proc = _restart(srv)
        async def wait_connected(t):
            while not t.is_connected:
                await asyncio.sleep(0.02)
        await asyncio.wait_for(asyncio.gather(wait_connected(pub), wait_connected(subt)), 20)
        await subt.flush()   # the resubscribe reached the server
        for i in range(2000, total):
            await pub.publish("rc.x", b"%d" % i)
        await pub.flush()
        got = []
        with contextlib.suppress(TransportTimeoutError):
            while True:
                got.append(int(bytes((await sub.next_msg(1.0)).data)))
        assert pub.reconnects == 1 and subt.reconnects == 1 and events == ["dis", "re"]
        assert got == sorted(set(got)), "duplicates or reordering"
        assert got[:sent_before_kill] == list(range(sent_before_kill))   # delivered before the kill: all there
        assert got[-(total - 2000):] == list(range(2000, total))          # after both reconnected: all there
        # the buffered ones went out before the subscriber's resubscribe reached the server, or after: only
        # those may be missing
        assert set(range(total)) - set(got) <= set(range(sent_before_kill, 2000))
        text = caplog.text
        assert "disconnected" in text and "reconnected" in text


async def test_health_surface_through_an_outage(own_nats, caplog):
    # what services/runtime.py and the metrics read: state, disconnects, reconnects, lost
    caplog.set_level(logging.INFO, logger="lowlat.transport.natscore")
    srv = own_nats
    t = core(srv.url, reconnect_time_wait=0.2)
    assert t.state == "closed" and t.lost is None
    await t.connect()
    assert (t.state, t.disconnects, t.reconnects) == ("connected", 0, 0)
    assert isinstance(t.lost, asyncio.Event) and not t.lost.is_set()
    await t.serve("hs.echo", lambda m: b"re:" + bytes(m.data))
    assert bytes((await t.request("hs.echo", b"1", timeout=5)).data) == b"re:1"   # the inbox exists now
    srv.proc.kill()
    srv.proc.wait()
    while t.state == "connected":
        await asyncio.sleep(0.01)
    assert (t.state, t.disconnects, t.reconnects) == ("reconnecting", 1, 0)
    await asyncio.sleep(1.0)   # several failed attempts: still reconnecting by default, not lost
    assert t.state == "reconnecting" and not t.lost.is_set()
    srv.proc = _restart(srv)
    await t.flush(timeout=20)
    assert (t.state, t.disconnects, t.reconnects) == ("connected", 1, 1) and not t.lost.is_set()
    # serve and the request inbox were resubscribed
    assert bytes((await t.request("hs.echo", b"2", timeout=5)).data) == b"re:2"
    await t.close()
    assert t.state == "closed" and not t.lost.is_set()   # a requested close is not a loss
    msgs = [r.getMessage() for r in caplog.records]
    assert any("disconnected" in m and "reconnecting" in m for m in msgs), msgs
    assert any("reconnected" in m for m in msgs) and any(m.endswith("closed") for m in msgs), msgs
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize("opts", [{"reconnect_attempts": 2}, {"max_reconnect_attempts": 1},
                                  {"allow_reconnect": False}], ids=["reconnect_attempts", "max_reconnect", "off"])
async def test_reconnect_budget_spent_sets_lost(own_nats, caplog, opts):
    caplog.set_level(logging.WARNING, logger="lowlat.transport.natscore")
    closed = []
    t = core(own_nats.url, reconnect_time_wait=0.05, closed_cb=lambda: closed.append(1), **opts)
    await t.connect()
    own_nats.proc.kill()
    own_nats.proc.wait()
    await asyncio.wait_for(t.lost.wait(), 20)
    assert t.state == "closed" and t.closed and t.lost_reason
    assert ("allow_reconnect is off" if "allow_reconnect" in opts else "reconnect attempt") in t.lost_reason
    for _ in range(100):
        if closed:
            break
        await asyncio.sleep(0.01)
    assert closed == [1]
    assert any("closed for good" in r.getMessage() for r in caplog.records)
    # the one ERROR line is the service's (runtime.TransportLostError), not the adapter's
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    with pytest.raises(TransportError):
        await t.publish("x", b"y")


async def test_start_up_retries_until_the_server_comes_up(nats_bin, tmp_path):
    from brokers._util import free_port

    port = free_port()
    url = f"nats://{LOOPBACK}:{port}"
    with pytest.raises(TransportError, match="cannot connect"):   # default: one round, fails at once
        await core(url).connect()
    conf = tmp_path / "nats.conf"
    conf.write_text(f"listen: {LOOPBACK}:{port}\n")

    async def start_later() -> subprocess.Popen:
        await asyncio.sleep(0.5)
        return subprocess.Popen([nats_bin, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)

    starter = asyncio.ensure_future(start_later())
    t = core(url, max_reconnect_attempts=50, reconnect_time_wait=0.1)
    try:
        await asyncio.wait_for(t.connect(), 20)
        assert t.state == "connected"
    finally:
        proc = await starter
        await t.close()
        proc.kill()
        proc.wait()


async def test_credentials_refused_after_an_outage_is_lost_for_good(nats_bin, tmp_path, caplog):
    # the server comes back with another token (rotated credentials, an expired JWT): retrying cannot help
    from brokers.nats import start_nats

    caplog.set_level(logging.WARNING, logger="lowlat.transport.natscore")
    srv = start_nats(nats_bin, tmp_path / "nats", auth="token", jetstream=False)
    try:
        t = core(srv.url, reconnect_time_wait=0.05, **srv.client_options)
        await t.connect()
        srv.proc.kill()
        srv.proc.wait()
        conf = srv.workdir / "nats.conf"
        conf.write_text(conf.read_text().replace(srv.client_options["token"], "an0ther-t0ken"))
        srv.proc = _restart(srv)
        await asyncio.wait_for(t.lost.wait(), 30)
        assert "refused the credentials" in t.lost_reason and "uthoriz" in t.lost_reason
        assert srv.client_options["token"] not in caplog.text + t.lost_reason
    finally:
        srv.stop()


async def test_reconnect_buffer_full_is_a_clear_error(own_nats):
    async with core(own_nats.url, reconnect_buf_size=10_000) as t:
        own_nats.proc.kill()
        own_nats.proc.wait()
        while t.is_connected:
            await asyncio.sleep(0.01)
        with pytest.raises(TransportError, match="reconnect buffer is full"):
            for _ in range(1000):
                await t.publish("full.x", b"x" * 100)
        own_nats.proc = _restart(own_nats)


# --- hostile server ---

class _EvilServer:
    """A socket server speaking just enough NATS to pass the handshake, then sending ``payload``."""

    def __init__(self, payload: bytes) -> None:
        self.payload = payload
        self.connections = 0
        self.pings = 0
        self.server: asyncio.base_events.Server | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        writer.write(b'INFO {"server_id":"evil","max_payload":1024,"headers":true}\r\n')
        await writer.drain()
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                if line.startswith(b"PING"):
                    writer.write(b"PONG\r\n")
                    await writer.drain()
                    self.pings += 1
                    if self.connections == 1 and self.pings == 2:   # after the handshake and one flush
                        writer.write(self.payload)
                        await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def __aenter__(self):
        self.server = await asyncio.start_server(self.handle, LOOPBACK, 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc):
        self.server.close()


@pytest.mark.parametrize("payload", [
    b"FOO\r\n",
    b"MSG a 1 999999\r\n",
    b"MSG a 1 -1\r\n",
    b"MSG a 1 99999999999999999999\r\n",
    b"HMSG a 1 50 10\r\n",
    b"MSG a 1 3\r\nabcdefgh",
    b"I" * 100_000,
    b"PING\r\n" * 20000 + b"BAD\r\n",
], ids=["verb", "over-max", "negative", "huge", "hdr>total", "no-crlf", "endless-line", "ping-flood"])
async def test_hostile_server_gives_an_error_and_a_reconnect(payload, caplog):
    caplog.set_level(logging.ERROR, logger="lowlat.transport.natscore")
    async with _EvilServer(payload) as evil, core(f"nats://{LOOPBACK}:{evil.port}") as t:
        await t.subscribe("a")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while (t.reconnects < 1 or not t.is_connected) and loop.time() < deadline:
            await asyncio.sleep(0.02)
        assert t.protocol_errors == 1 and t.reconnects == 1 and t.is_connected
        assert "protocol error" in caplog.text
        await t.flush()   # the new connection works
        assert t._parser.capacity <= 256 * 1024   # the initial buffer: a hostile size never grew it


async def test_server_err_is_surfaced(own_nats):
    # a server -ERR reaches server_errors and the error_cb
    errs = []
    async with core(own_nats.url, error_cb=errs.append) as t:
        with socket.create_connection((LOOPBACK, own_nats.port)):
            pass
        t._writer.raw(b"SUB\r\n")   # protocol error on purpose: the server answers -ERR and closes
        t._flush_out()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while not t.server_errors and loop.time() < deadline:
            await asyncio.sleep(0.02)
        assert t.server_errors and errs


async def test_close_wakes_everything(own_nats):
    t = core(own_nats.url)
    await t.connect()
    sub = await t.subscribe("cw.x")
    waiter = asyncio.ensure_future(sub.next_msg(None))
    await asyncio.sleep(0.01)
    await t.close()
    with pytest.raises(Exception):  # noqa: B017 - TransportClosedError from next_msg
        await asyncio.wait_for(waiter, 2)
    assert t.closed
