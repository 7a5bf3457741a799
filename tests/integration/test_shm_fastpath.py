"""The synchronous shm fast path (shm p50 goal): ``ShmTransport.connect_sync`` / ``request_sync`` /
``serve_sync``, and their interoperation with async members of the same bus (same wire format and registry).

Real processes and real POSIX shared-memory rings; no mocks.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid

import pytest

from lowlat.errors import NoRespondersError, TransportError, TransportTimeoutError

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SYNC_SERVER = r'''
import signal, sys, threading
from lowlat.transport.shm import ShmTransport
from lowlat._ring import BackoffIdle
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *a: stop.set())

def echo(m):
    if bytes(m.data) == b"silent":
        return None
    if m.headers:  # headers arrive through the generic path
        return b"h:" + m.headers["k"].encode()
    return b"echo:" + bytes(m.data)

with ShmTransport(sys.argv[1]) as t:
    # "ready" only once the worker is registered: a request sent after it cannot find "no responders"
    n = t.serve_sync("fp.echo", echo, idle=BackoffIdle(), stop=stop, ready=lambda: print("ready", flush=True))
print("handled", n, flush=True)
'''


@pytest.fixture
def bus():
    from lowlat.transport.shm import shm_available, shm_root

    ok, why = shm_available()
    if not ok:
        from brokers._util import missing

        missing("the shm transport", f"python setup.py build_ext --inplace  ({why})")
    name = f"fp-{uuid.uuid4().hex[:8]}"
    yield f"shm://{name}"
    shutil.rmtree(os.path.join(shm_root(), f"lowlat-bus-{name}"), ignore_errors=True)


@pytest.fixture
def sync_server(bus):
    proc = subprocess.Popen([sys.executable, "-c", SYNC_SERVER, bus], stdout=subprocess.PIPE, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": ROOT})
    try:
        assert proc.stdout.readline().strip() == "ready"
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
        out, _ = proc.communicate(timeout=10)
        proc.handled = out  # type: ignore[attr-defined]


def test_sync_client_against_sync_server_in_another_process(bus, sync_server):
    from lowlat.transport.shm import ShmTransport

    with ShmTransport(bus) as t:
        for i in range(200):
            m = t.request_sync("fp.echo", b"x%d" % i, timeout=5)
            assert bytes(m.data) == b"echo:x%d" % i
            assert memoryview(m.data).nbytes == len(b"echo:x%d" % i)
        m = t.request_sync("fp.echo", b"hi", headers={"k": "v"}, timeout=5)
        assert bytes(m.data) == b"h:v"
        # a handler returning None answers nothing: the requester times out, the worker keeps serving
        t0 = time.monotonic()
        with pytest.raises(TransportTimeoutError):
            t.request_sync("fp.echo", b"silent", timeout=0.2)
        assert time.monotonic() - t0 < 2
        assert bytes(t.request_sync("fp.echo", b"after", timeout=5).data) == b"echo:after"
    sync_server.terminate()
    out, _ = sync_server.communicate(timeout=10)
    assert "handled 203" in out


async def test_async_client_against_sync_server(bus, sync_server):
    from lowlat.transport import connect

    async with connect(bus) as t:
        for i in range(50):
            m = await t.request("fp.echo", b"a%d" % i, timeout=5)
            assert bytes(m.data) == b"echo:a%d" % i
        # the bounded spin path of the async adapter gets the same answer
        async with connect(bus, spin_us=200) as t2:
            assert bytes((await t2.request("fp.echo", b"s", timeout=5)).data) == b"echo:s"


async def test_sync_client_against_async_server(bus):
    from lowlat.transport import connect
    from lowlat.transport.shm import ShmTransport

    async with connect(bus) as srv:
        await srv.serve("fp.async", lambda m: b"async:" + bytes(m.data))

        def client() -> list[bytes]:
            with ShmTransport(bus) as t:
                return [bytes(t.request_sync("fp.async", b"%d" % i, timeout=5).data) for i in range(30)]

        assert await asyncio.to_thread(client) == [b"async:%d" % i for i in range(30)]


async def test_request_sync_on_the_loop_thread_of_an_async_transport(bus, sync_server):
    """Other local subscriptions keep receiving what arrives while request_sync polls."""
    from lowlat.transport import connect

    async with connect(bus) as t, connect(bus) as pub:
        sub = await t.subscribe("fp.side")
        await pub.publish("fp.side", b"1")
        m = t.request_sync("fp.echo", b"q", timeout=5)
        assert bytes(m.data) == b"echo:q"
        got = await asyncio.wait_for(sub.__anext__(), 5)
        assert bytes(got.data) == b"1"
        # another thread may not consume this transport's ring (the loop thread owns it)
        with pytest.raises(TransportError, match="thread"):
            await asyncio.to_thread(t.request_sync, "fp.echo", b"q")


def test_no_responders_and_misuse(bus):
    from lowlat.transport.shm import ShmTransport

    with ShmTransport(bus) as t:
        t0 = time.monotonic()
        with pytest.raises(NoRespondersError, match="no responders"):
            t.request_sync("fp.nobody", b"x", timeout=5)
        assert time.monotonic() - t0 < 1
        with pytest.raises(ValueError):
            t.request_sync("bad subject", b"x")

        async def use_async() -> None:
            await t.subscribe("fp.x")

        with pytest.raises(TransportError, match="connect_sync"):
            asyncio.run(use_async())
    assert t.closed


def test_serve_sync_in_a_thread_stops_and_survives_handler_errors(bus, caplog):
    from lowlat.transport.shm import ShmTransport

    stop = threading.Event()
    srv = ShmTransport(bus).connect_sync()
    calls: list[bytes] = []

    def handler(m):
        calls.append(bytes(m.data))
        if bytes(m.data) == b"boom":
            raise RuntimeError("handler bug")
        if bytes(m.data) == b"str":
            return "not a buffer"
        if bytes(m.data) == b"coro":
            async def c():
                return b"never"
            return c()
        return bytes(m.data).upper()

    result: list[int] = []
    th = threading.Thread(target=lambda: result.append(srv.serve_sync("fp.t", handler, stop=stop,
                                                                     check_interval=0.01)))
    th.start()
    try:
        with ShmTransport(bus) as c:
            deadline = time.monotonic() + 5
            while True:  # the worker registers in its own thread
                try:
                    assert bytes(c.request_sync("fp.t", b"ab", timeout=5).data) == b"AB"
                    break
                except TransportTimeoutError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.01)
            # a second consumer of the same ring is refused while serve_sync runs
            with pytest.raises(TransportError, match="already consuming"):
                srv.request_sync("fp.t", b"x")
            with caplog.at_level(logging.ERROR, logger="lowlat.transport.shm"):
                for bad in (b"boom", b"coro", b"str"):
                    with pytest.raises(TransportTimeoutError):
                        c.request_sync("fp.t", bad, timeout=0.2)
            assert "handler failed" in caplog.text and "synchronously" in caplog.text and "returned str" in caplog.text
            assert bytes(c.request_sync("fp.t", b"ok", timeout=5).data) == b"OK"
    finally:
        stop.set()
        th.join(10)
        srv.close_sync()
    assert not th.is_alive()
    assert result == [len(calls)] and calls[-1] == b"ok"


def test_serve_sync_queue_group_spreads_requests(bus):
    from lowlat.transport.shm import ShmTransport

    stop = threading.Event()
    workers = [ShmTransport(bus).connect_sync() for _ in range(2)]
    counts: list[int] = []
    threads = [threading.Thread(target=lambda w=w, i=i: counts.append(
        w.serve_sync("fp.q", lambda m, i=i: b"%d" % i, queue="g", stop=stop, check_interval=0.01)))
        for i, w in enumerate(workers)]
    for th in threads:
        th.start()
    try:
        with ShmTransport(bus) as c:
            deadline = time.monotonic() + 5
            while len(c._plan("fp.q")) < 1 or sum(1 for r in c._routes._subs if r.subject == "fp.q") < 2:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            answers = [bytes(c.request_sync("fp.q", b"", timeout=5).data) for _ in range(40)]
    finally:
        stop.set()
        for th in threads:
            th.join(10)
        for w in workers:
            w.close_sync()
    assert set(answers) == {b"0", b"1"}  # each request answered once, by one member, both members used
    assert sorted(counts) and sum(counts) == 40
