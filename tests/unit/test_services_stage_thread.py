"""The validator with ``stage_thread=True`` on ``shm://``: every order (valid, rejected, malformed) answered exactly
once, by request/reply and pipelined, and a clean stop (thread joined, subscription gone, nothing left unread)."""

from __future__ import annotations

import os
import time

import lowlat
from lowlat.enums import Reject, Side
from lowlat.services.config import ServiceConfig
from lowlat.services.validator import ValidatorService
from lowlat.transport.shm import ShmTransport


def _orders(n: int) -> list[bytes]:
    ts = time.time_ns()
    out = []
    for i in range(1, n + 1):
        qty = 0 if i % 5 == 0 else 10  # every fifth order is rejected (BAD_QUANTITY)
        out.append(lowlat.encode_order(i, "AAPL", 100.0, qty, Side.BUY, ts))
    return out


async def test_validator_stage_thread_answers_every_order_once_and_stops_clean():
    url = f"shm://tstage{os.urandom(4).hex()}"
    cfg = ServiceConfig(transport=url, stage_thread=True, symbols=("AAPL",))
    server, client = ShmTransport(url), ShmTransport(url)
    await server.connect()
    await client.connect()
    vs = ValidatorService(cfg)
    try:
        await vs.start(server)
        st = vs._stage_thread
        assert st is not None and st.alive
        assert not any(getattr(s, "subject", None) == cfg.orders_subject for s in server._local.values())
        orders = _orders(40)
        malformed = [b"junk", b"", b"\x00" * 7]
        # request/reply: one answer each, with the order's id (0 for a malformed frame)
        for i, p in enumerate(orders + malformed):
            r = lowlat.decode_validation_result((await client.request(cfg.orders_subject, p, timeout=5)).data)
            if i < len(orders):
                assert r.order_id == i + 1
                assert r.accepted == ((i + 1) % 5 != 0)
                assert r.reason == (Reject.ACCEPTED if r.accepted else Reject.BAD_QUANTITY)
            else:
                assert (r.order_id, r.accepted, r.reason) == (0, False, Reject.MALFORMED)
        # pipelined (no reply subject): each result published once on validated/rejected
        ok = await client.subscribe(cfg.validated_subject)
        bad = await client.subscribe(cfg.rejected_subject)
        await client.flush()
        for p in orders + malformed:
            await client.publish(cfg.orders_subject, p)
        got = []
        n_ok = sum(1 for i in range(1, 41) if i % 5)
        for sub, n in ((ok, n_ok), (bad, len(orders) - n_ok + len(malformed))):
            for _ in range(n):
                got.append(lowlat.decode_validation_result((await sub.next_msg(timeout=5)).data).order_id)
        assert sorted(got) == [0] * len(malformed) + list(range(1, 41))
    finally:
        await vs.stop()
    assert not st.alive and st.error is None
    client._drain_ring()  # the thread has pushed everything it will ever push: no duplicate is left behind
    assert ok.pending == 0 and bad.pending == 0
    c = vs.metrics.counts
    assert c["in"] == 2 * 43 and c["replies"] == 43
    assert vs.processed == 2 * 43
    assert vs.metrics.counts.get("drain_dropped", 0) == 0
    # the thread's member left the bus: nobody serves the orders subject any more
    assert all(cfg.orders_subject not in [s[1] for s in e.get("subs", [])] for _m, e in server._reg.entries())
    await client.close()
    await server.close()


async def test_stage_thread_is_ignored_off_shm():
    from lowlat.transport import connect

    cfg = ServiceConfig(transport="inproc://tstage", stage_thread=True, symbols=("AAPL",))
    t = connect(cfg.transport)
    await t.connect()
    vs = ValidatorService(cfg)
    try:
        await vs.start(t)
        assert vs._stage_thread is None
        r = await t.request(cfg.orders_subject, _orders(1)[0], timeout=5)
        assert lowlat.decode_validation_result(r.data).accepted
    finally:
        await vs.stop()
        await t.close()
