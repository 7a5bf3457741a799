"""The ZeroMQ adapter's hot-path shortcuts keep the documented semantics (overhead goal).

The adapter sends on a synchronous shadow of each socket with NOBLOCK, uses two-frame DEALER/ROUTER messages,
drains the hub's ROUTER without a Future per message and replaces ``asyncio.timeout`` in ``request`` by its
own deadline.  These tests pin down what must not change: timeouts vs. a caller's cancel, concurrent
requests sharing one DEALER (reader election), the high-water-mark fallback, and malformed two-frame input.
``zmq+inproc`` needs no broker (libzmq in this process), so these are fast unit tests on real sockets.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
import zmq

from lowlat.errors import TransportTimeoutError
from lowlat.transport import connect

pytestmark = pytest.mark.timeout(60)


def _url() -> str:
    return f"zmq+inproc://fp-{uuid.uuid4().hex[:8]}"


async def test_timeout_is_a_transport_timeout_and_a_cancel_stays_a_cancel():
    url = _url()
    async with connect(url, bind=True) as hub, connect(url) as peer:
        await hub.serve("slow", lambda m: None)  # never answers
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        with pytest.raises(TransportTimeoutError):
            await peer.request("slow", b"x", timeout=0.1)
        assert 0.05 < loop.time() - t0 < 2
        # a caller's cancel is not turned into a timeout, and leaves the task's cancel count balanced
        task = asyncio.ensure_future(peer.request("slow", b"x", timeout=30))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # an outer asyncio.timeout shorter than ours wins and raises the builtin TimeoutError
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):
                await peer.request("slow", b"x", timeout=30)
        # the transport still works afterwards (no reader left marked as reading)
        await hub.serve("echo", lambda m: bytes(m.data))
        assert bytes((await peer.request("echo", b"ok", timeout=5)).data) == b"ok"


async def test_concurrent_requests_share_one_dealer():
    url = _url()
    async with connect(url, bind=True) as hub, connect(url) as peer:
        async def later(m):
            await asyncio.sleep(0.001 * (int(bytes(m.data)) % 5))
            return b"r" + bytes(m.data)

        await hub.serve("echo", later)
        outs = await asyncio.gather(*(peer.request("echo", b"%d" % i, timeout=10) for i in range(100)))
        assert [bytes(m.data) for m in outs] == [b"r%d" % i for i in range(100)]
        # headers travel in the meta part of the two-frame message
        await hub.serve("hdr", lambda m: m.headers["k"].encode())
        assert bytes((await peer.request("hdr", b"", headers={"k": "v w"}, timeout=5)).data) == b"v w"


async def test_publish_beyond_the_high_water_mark_waits_instead_of_dropping():
    url = _url()
    n = 3000
    async with connect(url, bind=True) as hub, connect(url, hwm=10) as peer:
        sub = await hub.subscribe("tp", max_pending=n + 1)
        await peer.publish_batch("tp", [b"%d" % i for i in range(n)])  # NOBLOCK fails at hwm -> awaited send
        await peer.flush()
        got = [bytes((await asyncio.wait_for(sub.__anext__(), 5)).data) for _ in range(n)]
        assert got == [b"%d" % i for i in range(n)]


async def test_malformed_two_frame_messages_are_dropped():
    url = _url()
    async with connect(url, bind=True) as hub:
        sub = await hub.subscribe(">")
        raw = hub._ctx.socket(zmq.DEALER)
        raw.linger = 0
        raw.connect(hub.rr_addr)
        try:
            for frames in ([b"P", b"empty-subject"], [b"P \xff", b"x"], [b"Pa.b", b"ok"], [b"X", b"y"],
                           [b"Pbad.utf8\xff", b"x"], [b"only-one"]):
                await raw.send_multipart(frames)
            m = await asyncio.wait_for(sub.__anext__(), 5)
            assert (m.subject, bytes(m.data)) == ("a.b", b"ok")
            await asyncio.sleep(0.1)
            assert sub.pending == 0
        finally:
            raw.close()
