"""At-least-once with nothing lost: validators + matcher on JetStream, real processes, faults injected mid-stream.

Faults: ``kill -9`` of a validator worker, ``kill -9`` of the matching service (restarted: snapshot + journal
replay), ``kill -9`` of nats-server itself (restarted on the same port and file store).  Afterwards
``reconcile`` checks end to end: every acked order once in ORDERS; exactly one ValidationResult per order (equal
to a local Validator's); MATCH = the accepted orders once each; EXEC = report for report what an uninterrupted
in-process matcher produces from MATCH (none missing, none twice, same fills and trade ids).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest
from _reliability_util import SYMS, durable, produce, reconcile, wait_drained
from _services_util import stop_all

from lowlat.services import ServiceConfig
from lowlat.transport import connect

pytestmark = [pytest.mark.integration, pytest.mark.nats, pytest.mark.timeout(180)]

SNAP_EVERY = "400"


def test_kill9_workers_and_broker_restart_lose_nothing(nats_node, tmp_path):
    from lowlat.services.durable import ensure_streams

    url = nats_node.url
    n, rate = 5000, 700.0

    async def setup():
        async with connect(url) as t:
            await ensure_streams(t, ServiceConfig(symbols=SYMS))

    asyncio.run(setup())
    common = ["--transport", url, "--symbols", ",".join(SYMS)]
    mdir = str(tmp_path / "matcher")
    va, vb = durable("validator", *common), durable("validator", *common)
    m1 = durable("matcher", *common, "--workdir", mdir, "--snapshot-every", SNAP_EVERY)
    procs = [va, vb, m1]
    faults = []
    try:
        for p in procs:
            p.wait_for('"ready"', timeout=30)
        out: dict = {}
        th = threading.Thread(target=lambda: asyncio.run(produce(url, n, rate, out)))
        th.start()
        time.sleep(0.8)
        va.kill()                                            # kill -9 a validator mid-stream
        faults.append("kill -9 validator (restarted at the end)")
        time.sleep(0.6)
        nats_node.restart(down_s=1.5)                        # kill -9 the broker, 1.5 s down, same file store
        faults.append("kill -9 nats-server, 1.5 s down, restart")
        time.sleep(0.8)
        m1.kill()                                            # kill -9 the matcher mid-stream ...
        assert th.is_alive(), "the faults should land mid-stream"
        m2 = durable("matcher", *common, "--workdir", mdir, "--snapshot-every", SNAP_EVERY)
        procs.append(m2)
        ready = json.loads(m2.wait_for('"ready"', timeout=30))  # ... restarted: snapshot + journal tail
        faults.append("kill -9 matcher, restart")
        th.join(120)
        assert not th.is_alive(), "producer did not finish"
        procs.append(durable("validator", *common))
        wait_drained(url, n, {"0": SYMS})
    finally:
        stop_all(procs)
    rec = ready["recovered"]
    # restored from a snapshot + tail (the restarted matcher's log says why a snapshot was not used)
    assert rec["snapshot_pos"] > 0 and rec["restored_orders"] > 0, (rec, m1.output[-1500:], m2.output[-1500:])
    stats = reconcile(url, n, {"0": SYMS})
    print(json.dumps({"faults": faults, **stats, "producer_retries": out["retries"], "matcher_recovered": rec}))
