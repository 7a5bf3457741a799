"""Every script in examples/ runs here as a real process, against real servers, with a bounded run."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
import uuid

import pytest
from _services_util import EXAMPLES, Proc, example, service
from brokers._util import free_port_pair

pytestmark = pytest.mark.integration

N = 300


async def _send(url: str, n: int, rate: float = 2000.0, mode: str = "request") -> object:
    """Send ``n`` orders as requests (or pipelined) and return the LoadResult: every order must be answered."""
    from lowlat.services import LoadGenerator, ServiceConfig
    from lowlat.transport import connect

    cfg = ServiceConfig(transport=url, rate=rate, count=n, mode=mode, reject_ratio=0.1)
    async with connect(url) as t:
        return await LoadGenerator(t, cfg, answer_timeout=10).run()


def _check_all_answered(res) -> None:
    assert res.sent == N
    assert res.answered == N, res.as_dict()
    assert res.duplicates == 0 and res.errors == 0
    assert sum(res.rejects.values()) > 0 and res.accepted > 0  # both outcomes came back


TESTED = set()


def covers(name: str):
    TESTED.add(name)
    return name


@pytest.mark.nats
def test_order_validator_nats_answers_every_request(nats_server):
    p = example(covers("order_validator_nats.py"), "--url", nats_server.url, "--count", str(N))
    try:
        p.wait_for("ready", line=True)
        _check_all_answered(asyncio.run(_send(nats_server.url, N)))
        assert p.wait(30) == 0
        p.wait_for(f"validated {N} orders")
    finally:
        p.kill()


@pytest.mark.nats
def test_load_generator_against_validator_service(nats_server):
    v = service("serve", "validator", "--transport", nats_server.url)
    try:
        v.wait_for('"ready"')
        lg = example(covers("load_generator.py"), "--url", nats_server.url, "--count", str(N), "--rate", "1000")
        assert lg.wait(60) == 0, lg.output
        lg.wait_for(f"answered {N}/{N} (duplicates 0)")
    finally:
        v.terminate()
        assert v.wait(30) == 0
        v.kill()


@pytest.mark.nats
def test_matching_engine_service_reports_every_order(nats_server):
    p = example(covers("matching_engine_service.py"), "--url", nats_server.url, "--count", str(N))

    async def drive() -> dict[int, list[int]]:
        from lowlat import _core
        from lowlat.transport import connect

        got: dict[int, list[int]] = {}
        async with connect(nats_server.url) as t:
            sub = await t.subscribe("exec.>")
            await t.flush()
            for i in range(N):  # alternating sides around 100.00 so some orders trade
                price = 100.0 + ((i % 7) - 3) * 0.01
                await t.publish("orders.match.AAPL" if i % 2 else "orders.match.MSFT",
                                _core.encode_order(i + 1, "AAPL" if i % 2 else "MSFT", price, 1 + i % 3, (i // 2) % 2, 1))
            await t.flush()
            while len(got) < N:
                m = await asyncio.wait_for(sub.__anext__(), 10)
                r = _core.decode_execution_report(m.data)
                got.setdefault(r.order_id, []).append(r.status)
        return got

    try:
        p.wait_for("ready", line=True)
        got = asyncio.run(drive())
        assert set(got) == set(range(1, N + 1))
        assert any(2 in s or 1 in s for s in got.values())  # some fills happened
        assert p.wait(30) == 0
        p.wait_for(f"matched {N} orders")
    finally:
        p.kill()


@pytest.mark.nats
def test_order_validator_nats_stops_on_ctrl_c(nats_server):
    """"serve until Ctrl-C": SIGINT stops it like SIGTERM (exit 0, its summary line), even while it is idle."""
    p = example("order_validator_nats.py", "--url", nats_server.url)
    try:
        p.wait_for("ready", line=True)
        res = asyncio.run(_send(nats_server.url, 20))
        assert res.answered == 20, res.as_dict()
        p.p.send_signal(signal.SIGINT)
        assert p.wait(30) == 0, p.output
        p.wait_for("validated 20 orders")
        assert "Traceback" not in p.output
    finally:
        p.kill()


@pytest.mark.nats
def test_matching_engine_service_default_symbols_and_unknown_symbol(nats_server):
    """Orders for every default symbol (GOOG was a KeyError) get reports; an unknown symbol gets one REJECTED
    report with UNKNOWN_SYMBOL and the service keeps running; Ctrl-C stops it cleanly."""
    p = example("matching_engine_service.py", "--url", nats_server.url)

    async def drive() -> dict[int, tuple[str, int, int]]:
        from lowlat import _core
        from lowlat.services.config import DEFAULT_SYMBOLS
        from lowlat.transport import connect

        syms = [*DEFAULT_SYMBOLS, "TSLA"]
        got: dict[int, tuple[str, int, int]] = {}
        async with connect(nats_server.url) as t:
            sub = await t.subscribe("exec.>")
            await t.flush()
            for i, sym in enumerate(syms):
                await t.publish(f"orders.match.{sym}", _core.encode_order(i + 1, sym, 100.0, 1, 0, 1))
            await t.flush()
            while len(got) < len(syms):
                r = _core.decode_execution_report((await asyncio.wait_for(sub.__anext__(), 10)).data)
                got[r.order_id] = (r.symbol, r.status, r.reason)
        return got

    try:
        p.wait_for("ready", line=True)
        got = asyncio.run(drive())
        from lowlat import Reject
        assert got[5] == ("TSLA", 4, int(Reject.UNKNOWN_SYMBOL)), got
        assert {got[i][:2] for i in range(1, 5)} == {("AAPL", 0), ("MSFT", 0), ("GOOG", 0), ("AMZN", 0)}, got
        p.p.send_signal(signal.SIGINT)
        assert p.wait(30) == 0, p.output
        p.wait_for("matched 5 orders")
        assert "Traceback" not in p.output
    finally:
        p.kill()


def test_market_data_fanout_consumers_resync_and_agree():
    p = example(covers("market_data_fanout.py"), "--url", f"inproc://md-{uuid.uuid4().hex[:8]}", "--count", "1500",
                "--consumers", "3", "--drop-every", "40")
    assert p.wait(60) == 0, p.output
    lines = [ln for ln in p.output.splitlines() if ln.startswith("consumer ")]
    assert len(lines) == 3 and all("matches matcher: True" in ln for ln in lines), p.output
    assert "gaps 0" not in lines[0]  # the lossy consumer saw gaps and resynced
    assert "gaps 0" in lines[1]


@pytest.mark.zmq
def test_validator_over_zmq():
    url = f"zmq+tcp://127.0.0.1:{free_port_pair()}"  # the hub binds this port and the next
    p = example(covers("validator_zmq.py"), "--url", url, "--count", str(N))
    try:
        p.wait_for("ready", line=True)
        _check_all_answered(asyncio.run(_send(url, N)))
        assert p.wait(30) == 0
        p.wait_for(f"validated {N} orders")
    finally:
        p.kill()


def test_validator_over_shm():
    url = f"shm://ex-{uuid.uuid4().hex[:8]}"
    p = example(covers("validator_shm.py"), "--url", url, "--count", str(N))
    try:
        p.wait_for("ready", line=True)
        _check_all_answered(asyncio.run(_send(url, N)))
        assert p.wait(30) == 0
        p.wait_for(f"validated {N} orders")
    finally:
        p.kill()


def test_every_example_is_run_by_this_file():
    scripts = {p.name for p in EXAMPLES.glob("*.py")}
    assert scripts == TESTED, f"examples without a test: {scripts - TESTED}"


def test_a_hub_that_failed_to_bind_is_not_taken_for_ready():
    """The example's bind error ("Address already in use") must not pass for its "ready" line: that made a hub
    that never started look ready, and the client then waited the full subscribe timeout for it."""
    p = Proc([sys.executable, "-c", "import sys; sys.exit('zmq.error.ZMQError: Address already in use')"])
    with pytest.raises(AssertionError, match="not seen"):
        p.wait_for("ready", timeout=10, line=True)


def test_free_port_pair_leaves_both_ports_bindable():
    p = free_port_pair()
    with socket.socket() as a, socket.socket() as b:
        a.bind(("127.0.0.1", p))
        b.bind(("127.0.0.1", p + 1))
