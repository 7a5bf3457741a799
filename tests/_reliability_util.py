"""Helpers for the reliability/cluster tests: durable service processes, an order producer that
retries with ``Nats-Msg-Id``, stream readers and the end-to-end reconciliation against local references."""

from __future__ import annotations

import asyncio
import collections
import sys
import time
from typing import Any

import numpy as np
from _services_util import Proc

from lowlat import _core
from lowlat.errors import TransportError
from lowlat.transport import connect

SYMS = ("AAPL", "MSFT")


def durable(*args: str) -> Proc:
    """``python -m lowlat.services.durable ...`` as a real process."""
    return Proc([sys.executable, "-m", "lowlat.services.durable", *args])


def make_order(oid: int) -> bytes:
    """Order ``oid`` (deterministic): ~6% zero quantity and ~3% outside the collar (rejected by the validator)."""
    rng = np.random.default_rng(oid)
    sym = SYMS[oid % 2]
    side = int(rng.integers(0, 2))
    price = round(100.0 + int(rng.integers(-5, 6)) * 0.01, 2)
    qty = int(rng.integers(1, 10))
    if oid % 17 == 0:
        qty = 0
    if oid % 29 == 0:
        price = 150.0
    return _core.encode_order(oid, sym, price, qty, side, time.time_ns(), account=int(rng.integers(1, 4)))


async def produce(url: str, n: int, rate: float, out: dict, window: int = 50) -> None:
    """Publish orders 1..n to ``orders.in`` (stream ORDERS) with ``Nats-Msg-Id``, retrying each until acked.

    ``out`` gets ``acked``, ``retries`` (publish attempts that failed and were retried), ``seconds``.
    """
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

        for s in range(1, n + 1, window):
            await asyncio.gather(*(one(i) for i in range(s, min(n, s + window - 1) + 1)))
            lag = (s + window) / rate - (time.monotonic() - t0)
            if lag > 0:
                await asyncio.sleep(lag)
    out.update(acked=n, retries=retries, seconds=time.monotonic() - t0)


async def read_stream(t: Any, name: str) -> list:
    """Every message of a stream, in stream order (ephemeral consumers, no acks; re-created if one stalls,
    e.g. while a cluster re-elects leaders)."""
    from nats.js import api

    js = t.jetstream
    last = (await js.stream_info(name)).state.last_seq
    out: list = []
    seq = 0
    deadline = time.monotonic() + 60
    while seq < last:
        cfg = api.ConsumerConfig(deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=seq + 1,
                                 ack_policy=api.AckPolicy.NONE, num_replicas=1, mem_storage=True)
        psub = await js.pull_subscribe("", durable=None, stream=name, config=cfg)
        try:
            while seq < last:
                msgs = await psub.fetch(1000, timeout=3)
                out += msgs
                seq = msgs[-1].metadata.sequence.stream
        except Exception:
            if time.monotonic() > deadline:
                raise
        finally:
            try:
                await psub.unsubscribe()
            except Exception:  # noqa: BLE001
                pass
    return out


async def stream_state(url: str, name: str) -> Any:
    async with connect(url) as t:
        return (await t.jetstream.stream_info(name)).state


async def journal_input_pos(url: str, shard: str) -> int:
    """The MATCH position of a matcher shard's last journaled batch (0 if none)."""
    from lowlat.services.journal import decode_record

    async with connect(url) as t:
        name = f"JOURNAL_{shard}"
        last = (await t.jetstream.stream_info(name)).state.last_seq
        if not last:
            return 0
        return decode_record((await t.jetstream.get_msg(name, last)).data)[0]


def wait_drained(url: str, n: int, shards: dict[str, tuple[str, ...]], timeout: float = 60) -> None:
    """Until RESULTS has ``n`` messages and every matcher shard journaled up to its last MATCH message."""
    deadline = time.monotonic() + timeout

    def ok(f: Any) -> bool:
        try:
            return asyncio.run(f())
        except (TransportError, OSError):
            return False

    while time.monotonic() < deadline and not ok(lambda: _ge(url, "RESULTS", n)):
        time.sleep(0.5)

    async def shards_done() -> bool:
        from lowlat.services import ServiceConfig

        async with connect(url) as t:
            match = await read_stream(t, "MATCH")
        cfg = ServiceConfig()
        for shard, syms in shards.items():
            subj = {f"{cfg.match_prefix}.{s}" for s in syms}
            mine = [m.metadata.sequence.stream for m in match if m.subject in subj]
            if mine and await journal_input_pos(url, shard) < mine[-1]:
                return False
        return True

    while time.monotonic() < deadline and not ok(shards_done):
        time.sleep(0.5)


async def _ge(url: str, name: str, n: int) -> bool:
    return (await stream_state(url, name)).messages >= n


class Recorder:
    """The transport an in-process reference matcher publishes to."""

    def __init__(self) -> None:
        self.out: dict[str, list[bytes]] = collections.defaultdict(list)

    async def publish_batch(self, subject: str, payloads: Any) -> None:
        self.out[subject] += [bytes(p) for p in payloads]

    async def publish(self, subject: str, payload: Any, **kw: Any) -> None:
        self.out[subject].append(bytes(payload))


def exec_key(buf: Any) -> tuple:
    """Every field of an ExecutionReport except its timestamp."""
    r = _core.decode_execution_report(buf)
    return (r.symbol, r.order_id, r.status, r.reason, r.trade_id, r.maker_order_id, r.taker_order_id, r.is_maker,
            r.last_price, r.last_quantity, r.leaves_quantity, r.cum_quantity, r.side, r.account)


def reconcile(url: str, n: int, shards: dict[str, tuple[str, ...]]) -> dict[str, int]:
    """End-to-end check of the durable pipeline after faults; raises AssertionError on any loss/duplicate.

    - ORDERS: orders 1..n exactly once;  RESULTS: one ValidationResult per order, equal to a local Validator;
    - MATCH: the accepted orders exactly once;
    - EXEC: per matcher shard, equal (multiset, all fields but the timestamp) to an uninterrupted in-process
      ``MatcherService`` fed that shard's MATCH messages in stream order.
    """
    from lowlat.services import ServiceConfig, _wire
    from lowlat.services.matcher import MatcherService
    from lowlat.transport import Message

    async def fetch() -> tuple:
        async with connect(url) as t:
            return tuple([await read_stream(t, s) for s in ("ORDERS", "RESULTS", "MATCH", "EXEC")])

    orders, results, match, execs = asyncio.run(fetch())
    in_ids = sorted(_core.read_order(m.data)[0] for m in orders)
    assert in_ids == list(range(1, n + 1)), f"ORDERS: {len(in_ids)} messages, {len(set(in_ids))} distinct, want {n}"
    res = [_core.decode_validation_result(m.data) for m in results]
    res_ids = [r[0] for r in res]
    assert len(res_ids) == len(set(res_ids)) == n, f"RESULTS: {len(res_ids)} msgs, {len(set(res_ids))} orders, want {n}"
    cfg = ServiceConfig(symbols=tuple(s for ss in shards.values() for s in ss))
    codes = np.zeros(n, np.uint8)
    _wire.make_validator(cfg).validate_many([make_order(i) for i in range(1, n + 1)], codes)
    got = {r[0]: (bool(r[1]), int(r[2])) for r in res}
    bad = [i + 1 for i in range(n) if got[i + 1] != (codes[i] == 0, int(codes[i]))]
    assert not bad, f"results differ from local validation for orders {bad[:5]}"
    accepted = {i + 1 for i in range(n) if codes[i] == 0}
    assert 0 < len(accepted) < n
    match_ids = [_core.read_order(m.data)[0] for m in match]
    assert len(match_ids) == len(set(match_ids)), "MATCH has duplicates"
    assert set(match_ids) == accepted, f"MATCH: {len(accepted - set(match_ids))} accepted orders missing"

    rec = Recorder()
    for syms in shards.values():
        ref = MatcherService(cfg.replace(symbols=syms, snapshot_interval_s=0))
        ref.transport = rec  # type: ignore[assignment]
        mine = [m for m in match if m.subject.rsplit(".", 1)[-1] in syms]

        async def run_ref(ref: Any = ref, mine: list = mine) -> None:
            for s in range(0, len(mine), 97):  # arbitrary batching: the result must not depend on it
                chunk = mine[s:s + 97]
                await ref.handle(chunk[0].subject, [Message(x.subject, x.data, None, None, None) for x in chunk])

        asyncio.run(run_ref())
    want = collections.Counter(exec_key(b) for s, bs in rec.out.items() if s.startswith("exec.") for b in bs)
    have = collections.Counter(exec_key(m.data) for m in execs)
    assert sum(want.values()) > len(accepted)  # fills happened
    missing, extra = want - have, have - want
    assert not missing and not extra, (f"EXEC: {sum(missing.values())} missing, {sum(extra.values())} extra",
                                       list(missing)[:3], list(extra)[:3])
    return {"orders": n, "accepted": len(accepted), "results": len(res_ids), "exec_reports": sum(have.values()),
            "lost": 0, "duplicates": 0}
