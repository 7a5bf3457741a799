"""Broker outages with a real nats-server and a real service process (``lowlat serve validator``).

- kill -9 of nats-server for 15 s, restarted on the same port: the validator keeps reconnecting (it used to give up
  after 5 attempts and stay up answering nothing), logs the disconnect and the reconnect at WARNING, reports
  ``lowlat_transport_connected 0`` and ``/healthz`` 503 during the outage, answers again after it, and exits 0
  without a traceback on SIGTERM;
- with a bounded reconnect budget the transport is closed for good: the process exits 3 with one ERROR line;
- SIGTERM while the broker is down: a prompt exit 0, no traceback.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import time
import urllib.error
import urllib.request

import pytest
from _services_util import service
from brokers._util import free_port, stop, wait_port
from brokers.nats import start_nats

from lowlat import _core
from lowlat.transport import connect

pytestmark = [pytest.mark.integration, pytest.mark.nats, pytest.mark.timeout(120)]


def restart(srv, binary: str) -> None:
    """Start nats-server again with the same config (same port)."""
    with open(srv.workdir / "nats.log", "ab") as log:
        srv.proc = subprocess.Popen([binary, "-c", str(srv.workdir / "nats.conf")], stdout=log,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    wait_port(srv.port, proc=srv.proc)


def health(port: int) -> tuple[int, dict]:
    try:
        r = urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5)
        return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def gauge(port: int, name: str) -> float:
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    m = re.search(rf'^{name}\{{service="validator"\}} (\S+)$', body, re.MULTILINE)
    assert m, body
    return float(m.group(1))


def ask(url: str, oid: int, timeout: float = 5.0) -> int:
    async def go() -> int:
        async with connect(url, connect_timeout=2, max_reconnect_attempts=0, allow_reconnect=False) as t:
            r = await t.request("orders.in", _core.encode_order(oid, "AAPL", 100.0, 1, 0, time.time_ns()),
                                timeout=timeout)
            return _core.decode_validation_result(r.data)[0]

    return asyncio.run(go())


def wait_until(pred, timeout: float, what: str) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if pred():
            return time.monotonic() - t0
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout}s: {what}")


def test_validator_survives_15s_outage_and_answers_again(nats_bin, tmp_path):
    srv = start_nats(nats_bin, tmp_path / "nats", jetstream=False)
    mport = free_port()
    v = service("serve", "validator", "--transport", srv.url, "--metrics-port", str(mport), "--queue", "outage")
    try:
        v.wait_for('"ready"')
        assert ask(srv.url, 1) == 1
        assert health(mport)[0] == 200 and gauge(mport, "lowlat_transport_connected") == 1
        srv.proc.kill()
        srv.proc.wait(10)
        t_kill = time.monotonic()
        v.wait_for("nats disconnected", timeout=10)
        code, body = health(mport)
        assert code == 503 and body["services"]["validator"]["state"] == "reconnecting", body
        assert gauge(mport, "lowlat_transport_connected") == 0
        time.sleep(max(0.0, 15.0 - (time.monotonic() - t_kill)))
        assert v.p.poll() is None, v.output[-3000:]
        restart(srv, nats_bin)
        t_up = time.monotonic()
        v.wait_for("nats reconnected", timeout=20)
        reconnect_s = time.monotonic() - t_up
        assert ask(srv.url, 2) == 2
        assert health(mport)[0] == 200
        assert gauge(mport, "lowlat_transport_reconnects_total") == 1
        assert gauge(mport, "lowlat_transport_disconnects_total") == 1
    finally:
        v.terminate()
        try:
            rc = v.wait(30)
        finally:
            srv.stop()
    print(json.dumps({"outage_s": 15, "reconnected_after_restart_s": round(reconnect_s, 2)}))
    assert rc == 0, v.output[-3000:]
    assert "Traceback" not in v.output, v.output[-3000:]
    lines = [json.loads(x) for x in v.output.splitlines() if x.startswith("{")]
    warn = [x["msg"] for x in lines if x["level"] == "WARNING"]
    assert any("disconnected" in w for w in warn) and any("reconnected" in w for w in warn), warn


def test_transport_closed_for_good_exits_3_with_one_error_line(nats_bin, tmp_path):
    srv = start_nats(nats_bin, tmp_path / "nats", jetstream=False)
    v = service("serve", "validator", "--transport", srv.url, "--reconnect-attempts", "2",
                env={"LOWLAT_RECONNECT_WAIT_S": "0.2"})
    try:
        v.wait_for('"ready"')
        srv.proc.kill()
        srv.proc.wait(10)
        rc = v.wait(30)
    finally:
        v.terminate()
        stop(srv.proc)
    assert rc == 3, v.output[-3000:]
    assert "Traceback" not in v.output, v.output[-3000:]
    errors = [json.loads(x) for x in v.output.splitlines() if x.startswith("{") and '"ERROR"' in x]
    assert len(errors) == 1 and "closed for good" in errors[0]["msg"], errors


def test_sigterm_during_outage_exits_0_promptly(nats_bin, tmp_path):
    srv = start_nats(nats_bin, tmp_path / "nats", jetstream=False)
    v = service("serve", "validator", "--transport", srv.url)
    try:
        v.wait_for('"ready"')
        srv.proc.kill()
        srv.proc.wait(10)
        v.wait_for("nats disconnected", timeout=10)
        t0 = time.monotonic()
        v.terminate()
        rc = v.wait(30)
        took = time.monotonic() - t0
    finally:
        v.kill()
        stop(srv.proc)
    assert rc == 0, v.output[-3000:]
    assert "Traceback" not in v.output, v.output[-3000:]
    assert took < 5, took
