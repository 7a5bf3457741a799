"""ZeroMQ adapter beyond the conformance suite: bind/connect roles, peer-side workers, other processes, bad input."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap

import pytest
import zmq
import zmq.asyncio
from brokers._util import free_port_pair

from lowlat.errors import TransportError, TransportTimeoutError
from lowlat.transport import connect

pytestmark = [pytest.mark.integration, pytest.mark.zmq, pytest.mark.timeout(60)]


def tcp_url() -> str:
    return f"zmq+tcp://127.0.0.1:{free_port_pair()}"


@pytest.fixture(params=["tcp", "ipc", "inproc"])
def url(request, tmp_path):
    return {"tcp": tcp_url, "ipc": lambda: f"zmq+ipc://{tmp_path}/b", "inproc": lambda: "zmq+inproc://topo"}[
        request.param]()


async def test_peer_side_worker_serves_requests_from_hub_and_other_peers(url):
    async with connect(url, bind=True) as hub, connect(url) as worker, connect(url) as client:
        task = await worker.serve("px.quote", lambda m: b"Q:" + bytes(m.data))
        try:
            assert bytes((await hub.request("px.quote", b"AAPL", timeout=5)).data) == b"Q:AAPL"
            assert bytes((await client.request("px.quote", b"MSFT", timeout=5)).data) == b"Q:MSFT"
        finally:
            task.cancel()


async def test_fan_out_to_many_peers(url):
    async with connect(url, bind=True) as hub:
        peers = [connect(url) for _ in range(4)]
        for p in peers:
            await p.connect()
        try:
            subs = [await p.subscribe("md.>") for p in peers]
            for i in range(50):
                await hub.publish("md.trade", b"%d" % i)
            for s in subs:
                got = [bytes((await asyncio.wait_for(s.__anext__(), 5)).data) for _ in range(50)]
                assert got == [b"%d" % i for i in range(50)]
        finally:
            for p in peers:
                await p.close()


async def test_second_hub_on_same_address_is_a_clear_error(url):
    if url.startswith("zmq+ipc"):
        pytest.skip("libzmq lets a second ipc bind take over the path (documented libzmq behaviour)")
    async with connect(url, bind=True):
        with pytest.raises(TransportError, match="cannot bind"):
            async with connect(url, bind=True):
                pass


async def test_subscribe_without_hub_times_out_clearly():
    async with connect(tcp_url(), sync_timeout=0.3) as peer:
        with pytest.raises(TransportTimeoutError, match="no zmq hub"):
            await peer.subscribe("x.y")


async def test_peer_started_before_hub_catches_up():
    url = tcp_url()
    peer = connect(url, sync_timeout=10)
    await peer.connect()
    try:
        sub_task = asyncio.ensure_future(peer.subscribe("late.hub"))
        await asyncio.sleep(0.2)
        async with connect(url, bind=True) as hub:
            sub = await sub_task
            await hub.publish("late.hub", b"hello")
            assert bytes((await asyncio.wait_for(sub.__anext__(), 5)).data) == b"hello"
    finally:
        await peer.close()


async def test_received_payload_is_a_zero_copy_frame_buffer(url):
    async with connect(url, bind=True) as hub, connect(url) as peer:
        sub = await peer.subscribe("zc")
        await hub.publish("zc", b"abc")
        m = await asyncio.wait_for(sub.__anext__(), 5)
        assert isinstance(m.data, memoryview) and isinstance(m.data.obj, zmq.Frame)
        assert m.data.tobytes() == b"abc"


async def test_malformed_frames_do_not_kill_the_hub():
    url = tcp_url()
    async with connect(url, bind=True) as hub:
        ctx = zmq.asyncio.Context.instance()
        raw = ctx.socket(zmq.DEALER)
        raw.linger = 0
        raw.connect(hub.rr_addr)
        try:
            await raw.send_multipart([b"P", b"only-two"])
            await raw.send_multipart([b"?", b"a", b"b", b"c"])
            await raw.send_multipart([b"P", b"\xff\xfe", b"", b"x"])
            await raw.send_multipart([b"P", b"ok.subject", b"no-colon-header\nbad", b"x"])
            await asyncio.sleep(0.2)
            task = await hub.serve("still.alive", lambda m: b"yes")
            async with connect(url) as peer:
                assert bytes((await peer.request("still.alive", b"", timeout=5)).data) == b"yes"
            task.cancel()
        finally:
            raw.close()


PEER_SCRIPT = textwrap.dedent("""
    import asyncio, sys
    from lowlat.transport import connect

    async def main(url):
        async with connect(url) as t:
            task = await t.serve("xproc.echo", lambda m: bytes(m.data).upper())
            sub = await t.subscribe("xproc.stop")
            print("ready", flush=True)
            await sub.__anext__()
            task.cancel()

    asyncio.run(main(sys.argv[1]))
""")


@pytest.mark.parametrize("kind", ["tcp", "ipc"])
async def test_worker_in_another_process(kind, tmp_path):
    url = tcp_url() if kind == "tcp" else f"zmq+ipc://{tmp_path}/x"
    async with connect(url, bind=True) as hub:
        proc = subprocess.Popen([sys.executable, "-c", PEER_SCRIPT, url], stdout=subprocess.PIPE, text=True)
        try:
            line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 30)
            assert line.strip() == "ready"
            for i in range(10):
                rep = await hub.request("xproc.echo", b"order-%d" % i, timeout=5)
                assert bytes(rep.data) == b"ORDER-%d" % i
            await hub.publish("xproc.stop", b"")
            assert await asyncio.wait_for(asyncio.to_thread(proc.wait), 20) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


async def test_close_wakes_pending_requests_with_closed_error(url):
    from lowlat.errors import TransportClosedError

    async with connect(url, bind=True) as hub:
        await hub.serve("silent", lambda m: None)
        peer = connect(url)
        await peer.connect()
        pending = [asyncio.ensure_future(peer.request("silent", b"%d" % i, timeout=10)) for i in range(3)]
        await asyncio.sleep(0.1)
        await peer.close()
        for p in pending:
            with pytest.raises(TransportClosedError):
                await asyncio.wait_for(p, 2)


async def test_concurrent_requests_from_one_peer_all_get_their_reply(url):
    async with connect(url, bind=True) as hub, connect(url) as peer:
        async def slow_echo(m):
            await asyncio.sleep(0.001 * (int(bytes(m.data)) % 5))
            return bytes(m.data)

        await hub.serve("echo", slow_echo)
        reps = await asyncio.gather(*(peer.request("echo", b"%d" % i, timeout=10) for i in range(50)))
        assert [bytes(r.data) for r in reps] == [b"%d" % i for i in range(50)]
