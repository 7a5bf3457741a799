"""Inline subscriptions on ``inproc://`` (``InprocTransport.subscribe_inline``) and the services' ``inline`` mode: the
handler runs inside the publisher's call, is never re-entered, never lets its failures reach the publisher, shares
queue groups with queued members; the validator and matcher publish, subject by subject, what they publish from
their intake tasks for the same orders."""

from __future__ import annotations

import asyncio
import time
import uuid

from _helpers import unstamped

import lowlat
from lowlat._batch import MessageBatch
from lowlat.enums import Side
from lowlat.services import MatcherService, ServiceConfig, ValidatorService
from lowlat.transport import connect


def _url() -> str:
    return f"inproc://inline-{uuid.uuid4().hex[:8]}"


async def test_handler_runs_inside_the_publish_call_with_payload_subject_and_reply():
    async with connect(_url()) as t:
        seen: list[tuple[bytes, str, str | None]] = []
        sink = t.subscribe_inline("in.*", lambda b: seen.extend(
            (bytes(b.payload(i)), b.subject(i), b.reply(i)) for i in range(b.n)))
        await t.publish("in.a", b"one", reply="_INBOX.x.1")
        assert seen == [(b"one", "in.a", "_INBOX.x.1")]  # before publish returned: no loop turn in between
        batch = MessageBatch(16, 4096)
        for i in range(12):
            batch.append(b"m%d" % i, "ignored", None)
        assert await t.publish_batch_to(batch, "in.b") == 12
        assert seen[1:] == [(b"m%d" % i, "in.b", None) for i in range(12)]
        assert sink.handled == 13
        sink.close()
        await t.publish("in.a", b"late")
        assert len(seen) == 13


async def test_a_handler_that_publishes_to_itself_is_not_reentered():
    async with connect(_url()) as t:
        order: list[tuple[str, int]] = []
        depth = [0]

        def handler(b: MessageBatch) -> None:
            depth[0] += 1
            assert depth[0] == 1, "re-entered"
            for i in range(b.n):
                k = int(bytes(b.payload(i)))
                order.append(("start", k))
                if k < 5:
                    t.publish_batch_sync(_one(b"%d" % (k + 1)), "loop.me")  # reaches this sink again
                order.append(("end", k))
            depth[0] -= 1

        sink = t.subscribe_inline("loop.me", handler)
        await t.publish("loop.me", b"0")
        assert order == [(w, k) for k in range(6) for w in ("start", "end")]
        assert sink.handled == 6 and sink.errors == 0


def _one(payload: bytes) -> MessageBatch:
    b = MessageBatch(1, 256)
    b.append(payload, "", None)
    return b


async def test_a_failing_handler_is_counted_and_the_publisher_goes_on():
    async with connect(_url()) as t:
        got: list[bytes] = []

        def handler(b: MessageBatch) -> None:
            p = bytes(b.payload(0))
            if p == b"bad":
                raise RuntimeError("boom")
            got.append(p)

        sink = t.subscribe_inline("f", handler)
        queued = await t.subscribe("f")
        for p in (b"a", b"bad", b"b"):
            await t.publish("f", p)  # never raises
        assert got == [b"a", b"b"] and sink.errors == 1
        assert [bytes((await queued.next_msg(timeout=2)).data) for _ in range(3)] == [b"a", b"bad", b"b"]


async def test_queue_group_mixes_inline_and_queued_members_without_duplicates():
    async with connect(_url()) as t:
        inline: list[bytes] = []
        t.subscribe_inline("g", lambda b: inline.extend(bytes(b.payload(i)) for i in range(b.n)), queue="w")
        queued = await t.subscribe("g", queue="w")
        for i in range(40):
            await t.publish("g", b"%d" % i)
        other = [bytes(m.data) for m in [await queued.next_msg(timeout=2) for _ in range(40 - len(inline))]]
        assert inline and other
        assert sorted(inline + other, key=int) == [b"%d" % i for i in range(40)]


def _flow() -> list[bytes]:
    # crossing buys and sells on two symbols, a reject, an unknown symbol and hostile frames
    ts = time.time_ns()
    out = []
    for i in range(1, 90):
        sym = "AAPL" if i % 3 else "MSFT"
        side = Side.BUY if i % 2 else Side.SELL
        out.append(lowlat.encode_order(i, sym, 100.0 + ((i * 7) % 5 - 2) * 0.01, 0 if i % 17 == 0 else i % 9 + 1,
                                       side, ts + i))
    out[10] = lowlat.encode_order(500, "NOPE", 100.0, 1, Side.BUY, ts)
    out[20:20] = [b"junk", b"", out[5][:-7]]
    return out


async def _outputs(inline: bool, orders: list[bytes]) -> tuple[dict[str, list[tuple]], dict[str, int]]:
    url = _url()
    cfg = ServiceConfig(transport=url, inline=inline, forward=True, publish_results=True, symbols=("AAPL", "MSFT"),
                        snapshot_interval_s=0)
    async with connect(url) as t:
        spy = {s: await t.subscribe(s, max_pending=1 << 16) for s in
               ("exec.>", "md.*.l2", "md.*.trade", cfg.validated_subject, cfg.rejected_subject)}
        mt, v = MatcherService(cfg), ValidatorService(cfg)
        await mt.start(t)
        await v.start(t)
        assert bool(v._inline) == inline and bool(mt._inline) == inline
        for p in orders[:40]:
            await t.publish(cfg.orders_subject, p)       # one at a time
        b = MessageBatch(1024, 1 << 20)
        for p in orders[40:]:
            b.append(p, "", None)
        await t.publish_batch_to(b, cfg.orders_subject)  # and the rest as one batch
        deadline = time.monotonic() + 10
        while v.processed < len(orders) or mt.processed < v.metrics.counts["forwarded"]:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        await v.stop()
        await mt.stop()
        out: dict[str, list[tuple]] = {}
        for sub in spy.values():
            while (m := sub.get_nowait()) is not None:
                out.setdefault(m.subject, []).append(unstamped(m.subject, bytes(m.data)))
        counts = dict(v.metrics.counts) | {f"m.{k}": n for k, n in mt.metrics.counts.items()}
    return out, counts


async def test_inline_services_publish_what_the_queued_services_publish():
    orders = _flow()
    inline, ci = await _outputs(True, orders)
    queued, cq = await _outputs(False, orders)
    assert inline == queued
    assert inline["md.AAPL.trade"] and inline["exec.MSFT"] and inline["orders.rejected"]
    for k in ("in", "accepted", "rejected", "forwarded", "m.in", "m.exec_reports", "m.trades", "m.l2_updates"):
        assert ci[k] == cq[k], k
    assert ci["in"] == len(orders)
