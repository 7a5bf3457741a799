"""At-least-once with nothing lost: validators + matcher on JetStream, real processes, faults injected mid-stream.

Faults: ``kill -9`` of a validator worker, ``kill -9`` of the matching service (restarted: snapshot + journal
replay), ``kill -9`` of nats-server itself (restarted on the same port and file store).  Afterwards the test
reconciles end to end:

- ORDERS holds every order the producer got a PubAck for, once (producer retries carry ``Nats-Msg-Id``);
- RESULTS holds exactly one ValidationResult per order, and each equals what a local ``Validator`` says;
- MATCH holds exactly the accepted orders, once each;
- EXEC equals, report for report, what an uninterrupted in-process ``MatcherService`` produces from the MATCH
  stream in the same order (no report missing, none twice, same fills/trade ids).
"""

from __future__ import annotations

import asyncio
import collections
import json
import sys
import threading
import time

import numpy as np
import pytest
from _services_util import Proc

from lowlat import _core
from lowlat.errors import TransportError
from lowlat.services import ServiceConfig
from lowlat.transport import connect

pytestmark = [pytest.mark.integration, pytest.mark.nats, pytest.mark.timeout(180)]

SYMS = ("AAPL", "MSFT")
SNAP_EVERY = "0"


def durable(*args: str) -> Proc:
    return Proc([sys.executable, "-m", "lowlat.services.durable", *args])


def make_order(oid: int) -> bytes:
    rng = np.random.default_rng(oid)
    sym = SYMS[oid % 2]
    side = int(rng.integers(0, 2))
    price = round(100.0 + int(rng.integers(-5, 6)) * 0.01, 2)
    qty = int(rng.integers(1, 10))
    if oid % 17 == 0:
        qty = 0          # invalid: rejected by the validator
    if oid % 29 == 0:
        price = 150.0    # outside the collar: rejected
    return _core.encode_order(oid, sym, price, qty, side, time.time_ns(), account=int(rng.integers(1, 4)))


async def produce(url: str, n: int, rate: float, out: dict) -> None:
    """Publish orders 1..n to ORDERS with Nats-Msg-Id, retrying each until it is acked."""
    t0 = time.monotonic()
    retries = 0
    async with connect(url, max_reconnect_attempts=-1, reconnect_time_wait=0.25) as t:
        async def one(oid: int) -> None:
            nonlocal retries
            payload = make_order(oid)
            while True:
                try:
                    await t.js_publish("orders.in", payload, msg_id=f"in:{oid}", timeout=1.0)
                    return
                except TransportError:
                    retries += 1
                    await asyncio.sleep(0.1)

        window = 50
        for s in range(1, n + 1, window):
            await asyncio.gather(*(one(i) for i in range(s, min(n, s + window - 1) + 1)))
            lag = (s + window) / rate - (time.monotonic() - t0)
            if lag > 0:
                await asyncio.sleep(lag)
    out.update(acked=n, retries=retries, seconds=time.monotonic() - t0)


async def read_stream(t, name: str) -> list:
    import nats.js.api as api

    js = t.jetstream
    last = (await js.stream_info(name)).state.last_seq
    if not last:
        return []
    cfg = api.ConsumerConfig(deliver_policy=api.DeliverPolicy.ALL, ack_policy=api.AckPolicy.NONE)
    psub = await js.pull_subscribe("", durable=None, stream=name, config=cfg)
    out: list = []
    seq = 0
    while seq < last:
        msgs = await psub.fetch(1000, timeout=5)
        out += msgs
        seq = msgs[-1].metadata.sequence.stream
    await psub.unsubscribe()
    return out


async def stream_count(url: str, name: str) -> int:
    async with connect(url) as t:
        return (await t.jetstream.stream_info(name)).state.messages


async def last_seq(url: str, name: str) -> int:
    async with connect(url) as t:
        return (await t.jetstream.stream_info(name)).state.last_seq


async def matcher_position(url: str) -> int:
    """The MATCH position of the matcher's last journaled batch."""
    from lowlat.services.journal import decode_record

    async with connect(url) as t:
        last = (await t.jetstream.stream_info("JOURNAL_0")).state.last_seq
        if not last:
            return 0
        return decode_record((await t.jetstream.get_msg("JOURNAL_0", last)).data)[0]


class Recorder:
    """The transport an in-process reference matcher publishes to."""

    def __init__(self) -> None:
        self.out: dict[str, list[bytes]] = collections.defaultdict(list)

    async def publish_batch(self, subject, payloads):
        self.out[subject] += [bytes(p) for p in payloads]

    async def publish(self, subject, payload, **kw):
        self.out[subject].append(bytes(payload))


def exec_key(buf) -> tuple:
    r = _core.decode_execution_report(buf)
    return (r.symbol, r.order_id, r.status, r.reason, r.trade_id, r.maker_order_id, r.taker_order_id, r.is_maker,
            r.last_price, r.last_quantity, r.leaves_quantity, r.cum_quantity, r.side, r.account)


def test_kill9_workers_and_broker_restart_lose_nothing(nats_node, tmp_path):
    from lowlat.services.durable import ensure_streams

    url = nats_node.url
    n, rate = 4000, 1200.0
    cfg = ServiceConfig(transport=url, symbols=SYMS)

    async def setup():
        async with connect(url) as t:
            await ensure_streams(t, cfg)

    asyncio.run(setup())
    common = ["--transport", url, "--symbols", ",".join(SYMS)]
    va, vb = durable("validator", *common), durable("validator", *common)
    mdir = str(tmp_path / "matcher")
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
        faults.append("kill -9 validator")
        time.sleep(0.6)
        m1.kill()                                            # kill -9 the matcher mid-stream ...
        m2 = durable("matcher", *common, "--workdir", mdir, "--snapshot-every", SNAP_EVERY)  # ... and restart it
        procs.append(m2)
        ready = json.loads(m2.wait_for('"ready"', timeout=30))
        faults.append("kill -9 matcher + restart")
        time.sleep(0.4)
        nats_node.restart(down_s=0.5)                        # kill -9 the broker, restart on the same store
        faults.append("kill -9 nats-server + restart")
        va2 = durable("validator", *common)
        procs.append(va2)
        th.join(120)
        assert not th.is_alive(), "producer did not finish"
        assert out["acked"] == n

        # wait until the pipeline drained: every order has a result and the matcher consumed MATCH
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if asyncio.run(stream_count(url, "RESULTS")) >= n:
                    break
            except TransportError:
                pass
            time.sleep(0.5)
        # ... and the matcher journaled its way to the end of MATCH
        while time.monotonic() < deadline and asyncio.run(matcher_position(url)) < asyncio.run(last_seq(url, "MATCH")):
            time.sleep(0.5)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            if p.p.poll() is None:
                try:
                    p.wait(30)
                except AssertionError:
                    p.kill()

    # the restarted matcher recovered from its snapshot + journal, not from scratch
    rec = ready["recovered"]
    assert rec["snapshot_pos"] > 0 or rec["replayed_commands"] > 0, rec

    async def reconcile():
        async with connect(url) as t:
            orders = await read_stream(t, "ORDERS")
            results = await read_stream(t, "RESULTS")
            match = await read_stream(t, "MATCH")
            execs = await read_stream(t, "EXEC")
        return orders, results, match, execs

    orders, results, match, execs = asyncio.run(reconcile())
    # ORDERS: every acked order exactly once
    in_ids = sorted(_core.read_order(m.data)[0] for m in orders)
    assert in_ids == list(range(1, n + 1))
    # RESULTS: exactly one per order, equal to a local validation
    res = [_core.decode_validation_result(m.data) for m in results]
    res_ids = [r[0] for r in res]
    assert len(res_ids) == len(set(res_ids)) == n, (len(res_ids), len(set(res_ids)))
    from lowlat.services import _wire

    v = _wire.make_validator(cfg)
    codes = np.zeros(n, np.uint8)
    v.validate_many([make_order(i) for i in range(1, n + 1)], codes)
    got = {r[0]: (bool(r[1]), int(r[2])) for r in res}
    assert all(got[i + 1] == (codes[i] == 0, int(codes[i])) for i in range(n))
    accepted = {i + 1 for i in range(n) if codes[i] == 0}
    assert 0 < len(accepted) < n
    # MATCH: the accepted orders, once each
    match_ids = [_core.read_order(m.data)[0] for m in match]
    assert len(match_ids) == len(set(match_ids)) and set(match_ids) == accepted

    # EXEC == an uninterrupted matcher fed MATCH in stream order
    from lowlat.services.matcher import MatcherService
    from lowlat.transport import Message

    ref = MatcherService(cfg.replace(snapshot_interval_s=0))
    rec_t = Recorder()
    ref.transport = rec_t  # type: ignore[assignment]

    async def run_ref():
        for s in range(0, len(match), 97):  # arbitrary batching: the result must not depend on it
            chunk = match[s:s + 97]
            await ref.handle(chunk[0].subject, [Message(x.subject, x.data, None, None, None) for x in chunk])

    asyncio.run(run_ref())
    want = collections.Counter(exec_key(b) for s, bs in rec_t.out.items() if s.startswith("exec.") for b in bs)
    have = collections.Counter(exec_key(m.data) for m in execs)
    assert sum(want.values()) > len(accepted)  # fills exist
    missing, extra = want - have, have - want
    assert not missing and not extra, (f"{sum(missing.values())} missing, {sum(extra.values())} extra",
                                       list(missing)[:3], list(extra)[:3])
    print(json.dumps({"faults": faults, "orders": n, "accepted": len(accepted), "exec_reports": sum(have.values()),
                      "producer_retries": out["retries"], "matcher_recovered": rec, "lost": 0, "duplicates": 0}))
