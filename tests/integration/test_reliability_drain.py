"""SIGTERM with a backlog longer than the drain timeout, and a backlog held by the broker (real nats-server,
real validator process).

- The drain timeout cuts off what was taken in but not answered: that is counted (``drain_dropped`` in the
  ``service stopped`` line and ``lowlat_messages_total{kind="drain_dropped"}``) and logged at ERROR; processed +
  dropped = everything the service took in (it used to be only ``drain_timed_out: true`` at INFO).
- A rate-limited validator behind a burst: the age of what it takes in (``lowlat_intake_age_seconds``) grows
  and one "falling behind" WARNING says so, although its own bounded queue never overflows.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.request
import uuid

import pytest
from _services_util import service
from brokers._util import free_port

from lowlat import _core
from lowlat.transport import connect

pytestmark = [pytest.mark.integration, pytest.mark.nats, pytest.mark.timeout(90)]


def gauge(port: int, name: str) -> float:
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    m = re.search(rf'^{name}\{{service="validator"\}} (\S+)$', body, re.MULTILINE)
    assert m, body
    return float(m.group(1))


def test_sigterm_with_backlog_counts_and_logs_what_the_drain_timeout_drops(nats_server):
    tag = uuid.uuid4().hex[:8]
    n = 3000
    mport = free_port()
    env = {"LOWLAT_ORDERS_SUBJECT": f"d{tag}.orders", "LOWLAT_VALIDATED_SUBJECT": f"d{tag}.ok",
           "LOWLAT_REJECTED_SUBJECT": f"d{tag}.rej", "LOWLAT_DRAIN_TIMEOUT_S": "1"}
    v = service("serve", "validator", "--transport", nats_server.url, "--rate-limit", "500", "--queue", tag,
                "--metrics-port", str(mport), env=env)
    try:
        v.wait_for('"ready"')

        async def burst() -> None:
            async with connect(nats_server.url) as t:
                ts = time.time_ns()
                await t.publish_batch(f"d{tag}.orders",
                                      [_core.encode_order(i, "AAPL", 100.0, 1, 0, ts) for i in range(1, n + 1)])
                await t.flush()

        asyncio.run(burst())
        deadline = time.monotonic() + 20
        while gauge(mport, "lowlat_intake_age_seconds") < 1.0:  # 3000 orders at 500/s: 6 s behind at the end
            assert time.monotonic() < deadline, v.output[-2000:]
            time.sleep(0.2)
        v.terminate()
        rc = v.wait(30)
    finally:
        v.kill()
    assert rc == 0, v.output[-3000:]
    lines = [json.loads(x) for x in v.output.splitlines() if x.startswith("{")]
    stopped = next(x for x in lines if x["msg"] == "service stopped")
    errors = [x for x in lines if x["level"] == "ERROR"]
    behind = [x for x in lines if x["msg"].startswith("falling behind")]
    print(json.dumps({"sent": n, "processed": stopped["processed"], "drain_dropped": stopped["drain_dropped"]}))
    assert stopped["drain_timed_out"] and stopped["drain_dropped"] > 0, stopped
    assert stopped["processed"] + stopped["drain_dropped"] == n, stopped
    assert len(errors) == 1 and errors[0]["dropped"] == stopped["drain_dropped"], errors
    assert len(behind) == 1, behind  # rate-limited: one line per 10 s


async def test_nats_slow_consumer_drops_are_counted_on_the_transport(nats_server):
    subject = f"d{uuid.uuid4().hex[:8]}.slow"
    async with connect(nats_server.url) as t:
        sub = await t.subscribe(subject, max_pending=5)
        for i in range(50):
            await t.publish(subject, b"%d" % i)
        await t.flush()
        deadline = time.monotonic() + 5
        while sub.pending + sub.dropped < 50 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert (sub.pending, sub.dropped) == (5, 45)
        assert t.slow_consumers == sub.dropped  # every drop, in our queue or in nats-py's, counted once
