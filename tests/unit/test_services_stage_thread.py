"""Services with ``stage_thread=True`` on ``shm://``: the validator answers every order (valid, rejected,
malformed) exactly once, by request/reply and pipelined; the matcher publishes, subject by subject, what the
event-loop path publishes for the same orders and keeps answering queries; both stop clean (thread joined,
subscription gone, nothing left unread)."""

from __future__ import annotations

import os
import time

from _helpers import Recorder, unstamped

import lowlat
from lowlat._batch import MessageBatch
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


async def _bus(**cfg: object) -> tuple[ServiceConfig, ShmTransport, ShmTransport]:
    """A fresh bus: a stage-thread config for it, the service's (server) and the test's (client) transports."""
    url = f"shm://tstage{os.urandom(4).hex()}"
    server, client = ShmTransport(url), ShmTransport(url)
    await server.connect()
    await client.connect()
    return ServiceConfig(transport=url, stage_thread=True, **cfg), server, client  # type: ignore[arg-type]


async def test_validator_stage_thread_answers_every_order_once_and_stops_clean():
    cfg, server, client = await _bus(symbols=("AAPL",))
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


def _match_flow() -> list[tuple[str, bytes]]:
    # two symbols; orders that rest, cross, sweep and collide on ids, a frame of the wrong symbol for its
    # subject, and hostile frames: (intake subject, payload) in send order
    ts = time.time_ns()
    flow: list[tuple[str, bytes]] = []
    for i in range(1, 61):
        sym = "AAPL" if i % 3 else "MSFT"
        side = Side.BUY if i % 2 else Side.SELL
        price = 100.0 + ((i * 7) % 5 - 2) * 0.01
        flow.append((f"orders.match.{sym}", lowlat.encode_order(i % 45 + 1, sym, price, i % 9 + 1, side, ts + i)))
    flow.insert(10, ("orders.match.AAPL", lowlat.encode_order(99, "MSFT", 100.0, 1, Side.BUY, ts)))
    for junk in (b"junk", b"", lowlat.encode_order(98, "AAPL", 100.0, 5, Side.BUY, ts)[:-9]):
        flow.insert(20, ("orders.match.MSFT", junk))
    return flow


async def test_matcher_stage_thread_publishes_what_the_loop_path_does_and_stops_clean():
    from lowlat.services.matcher import MatcherService

    syms = ("AAPL", "MSFT")
    flow = _match_flow()
    # the reference: the matcher on the event loop, one received message per batch
    ref = MatcherService(ServiceConfig(symbols=syms, snapshot_interval_s=0))
    ref.transport = Recorder()  # type: ignore[assignment]
    for subject, payload in flow:
        b = MessageBatch(1, 256)
        b.append(payload, subject, None)
        await ref.handle_batch(subject, b)
    want = {s: [unstamped(s, p) for p in ps] for s, ps in ref.transport.out.items()}
    assert want["md.AAPL.trade"] and want["md.MSFT.l2"]  # the flow trades on both books

    cfg, server, client = await _bus(symbols=syms, snapshot_interval_s=0)
    ms = MatcherService(cfg)
    try:
        await ms.start(server)
        st = ms._stage_thread
        assert st is not None and st.alive and st.subjects == ["orders.match.AAPL", "orders.match.MSFT"]
        subs = {s: await client.subscribe(s) for s in want}
        await client.flush()
        for subject, payload in flow:
            await client.publish(subject, payload)
        got = {s: [unstamped(s, bytes((await sub.next_msg(timeout=5)).data)) for _ in want[s]]
               for s, sub in subs.items()}
        assert got == want
        # queries are answered on the loop from the read side the thread keeps current
        snap = lowlat.decode_book_snapshot((await client.request("query.book.AAPL", b"", timeout=5)).data)
        assert snap.sequence == len(want["md.AAPL.l2"])
    finally:
        await ms.stop()
    assert not st.alive and st.error is None
    client._drain_ring()
    assert all(sub.pending == 0 for sub in subs.values())  # nothing published twice
    assert ms.processed == len(flow) == ms.metrics.counts["in"]
    assert ms.metrics.counts["exec_reports"] == ref.metrics.counts["exec_reports"]
    assert dict(ms.metrics.rejects) == dict(ref.metrics.rejects)
    assert all("orders.match.AAPL" not in [s[1] for s in e.get("subs", [])] for _m, e in server._reg.entries())
    await client.close()
    await server.close()
