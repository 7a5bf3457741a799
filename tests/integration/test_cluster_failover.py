"""Scale-out on a 3-node NATS cluster (loopback, routes on free ports): validators in one queue group spread
across the nodes, one node killed with SIGKILL mid-run.

- Core NATS request/reply: clients on every node keep sending; requests in flight on the killed node fail (they
  are counted and reported, core NATS is at-most-once); the validator and clients that were on it reconnect to
  the surviving nodes (server gossip) and service continues.
- JetStream path (R3 streams, journals R3): durable validators on each node, the matcher sharded by symbol over
  two instances; after the kill nothing is lost or duplicated (``reconcile``).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest
from _reliability_util import SYMS, durable, produce, reconcile, wait_drained
from _services_util import service, stop_all

from lowlat.errors import TransportError
from lowlat.transport import connect

pytestmark = [pytest.mark.integration, pytest.mark.nats, pytest.mark.timeout(240)]

RECONNECT = {"max_reconnect_attempts": -1, "reconnect_time_wait": 0.1, "connect_timeout": 1}


async def request_load(urls: list[str], seconds: float, rate: float, kill_at: float, kill, out: dict) -> None:
    """Requests at ``rate``/s round-robin over one client per node; ``kill()`` runs at ``kill_at`` s."""
    from lowlat import _core

    clients = [connect(u, **RECONNECT) for u in urls]
    for c in clients:
        await c.connect()
    t0 = time.monotonic()
    results: list[tuple[float, bool]] = []
    tasks = []

    async def one(i: int, sent_at: float) -> None:
        payload = _core.encode_order(i + 1, SYMS[i % 2], 100.0, 1 + i % 5, i % 2, time.time_ns())
        try:
            r = await clients[i % len(clients)].request("orders.in", payload, timeout=1.0)
            ok = _core.decode_validation_result(r.data)[0] == i + 1
        except TransportError:
            ok = False
        results.append((sent_at, ok))

    i = 0
    killed = False
    while (now := time.monotonic() - t0) < seconds:
        if not killed and now >= kill_at:
            await asyncio.get_running_loop().run_in_executor(None, kill)
            killed = True
            out["killed_at"] = time.monotonic() - t0
        due = int(now * rate)
        while i < due:
            tasks.append(asyncio.ensure_future(one(i, time.monotonic() - t0)))
            i += 1
        await asyncio.sleep(0.005)
    await asyncio.gather(*tasks)
    for c in clients:
        await c.close()
    out["results"] = results


def test_core_queue_group_survives_node_kill(nats_cluster):
    nodes = nats_cluster.nodes
    vals = [service("serve", "validator", "--transport", nd.url) for nd in nodes]  # one validator per node
    out: dict = {}
    try:
        for v in vals:
            v.wait_for('"ready"', timeout=30)
        asyncio.run(request_load([nd.url for nd in nodes], 5.0, 400.0, 1.5, nodes[0].kill, out))
        # every validator is still up (the one on the killed node reconnected to a survivor)
        assert all(v.p.poll() is None for v in vals), [v.output[-500:] for v in vals if v.p.poll() is not None]
    finally:
        for v in vals:
            v.terminate()
    processed = []
    for v in vals:
        assert v.wait(30) == 0
        processed.append(json.loads(v.wait_for('"service stopped"'))["processed"])
    res = out["results"]
    ok = sum(1 for _, good in res if good)
    failed = [t for t, good in res if not good]
    after = [good for t, good in res if t > out["killed_at"] + 2.0]
    report = {"sent": len(res), "ok": ok, "failed": len(failed), "killed_at_s": round(out["killed_at"], 2),
              "failed_window_s": [round(min(failed), 2), round(max(failed), 2)] if failed else None,
              "processed_per_validator": processed}
    print(json.dumps(report))
    assert len(res) >= 1800
    assert all(after) and len(after) > 500, report       # service continues: 2 s after the kill nothing fails
    # failures (requests in flight through the dead node, or sent while its client reconnected) only in a short
    # window around the kill; how many depends on timing (0 in most runs here, up to ~14 % of one run's requests)
    assert all(out["killed_at"] - 1.0 < t < out["killed_at"] + 2.0 for t in failed), report
    assert all(p > 0 for p in processed), report        # the queue group spread work over all three nodes
    assert ok <= sum(processed) <= len(res), report


def test_jetstream_r3_node_kill_loses_nothing(nats_cluster, tmp_path):
    from lowlat.services import ServiceConfig
    from lowlat.services.durable import ensure_streams

    nodes = nats_cluster.nodes
    url = nats_cluster.url
    n, rate = 3000, 800.0

    async def setup():
        async with connect(url) as t:
            await ensure_streams(t, ServiceConfig(symbols=SYMS), replicas=3)

    asyncio.run(setup())
    shards = {"A": ("AAPL",), "B": ("MSFT",)}
    procs = [durable("validator", "--transport", nd.url) for nd in nodes]
    procs += [durable("matcher", "--transport", nodes[i].url, "--symbols", ",".join(syms), "--shard", sh,
                      "--replicas", "3", "--workdir", str(tmp_path), "--snapshot-every", "500")
              for i, (sh, syms) in enumerate(shards.items())]
    out: dict = {}
    try:
        for p in procs:
            p.wait_for('"ready"', timeout=60)
        th = threading.Thread(target=lambda: asyncio.run(produce(url, n, rate, out)))
        th.start()
        time.sleep(1.5)
        nodes[0].kill()  # validator 0 and matcher shard A were connected to this node
        th.join(150)
        assert not th.is_alive(), "producer did not finish"
        wait_drained(",".join(nd.url for nd in nodes[1:]), n, shards, timeout=90)
        dead = [p.output[-3000:] for p in procs if p.p.poll() is not None]
        assert not dead, dead
    finally:
        stop_all(procs)
    stats = reconcile(",".join(nd.url for nd in nodes[1:]), n, shards)
    print(json.dumps({"fault": "SIGKILL node 0 of 3 (R3 streams)", **stats, "producer_retries": out["retries"]}))
