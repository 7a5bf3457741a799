"""inproc:// batch delivery: ``publish_batch_to`` of N payloads to subscribers that take batches, against the
per-message path (one ``Message`` per delivered message, then ``Subscription.take_batch``'s copy from
``get_nowait``: what inproc did before runs) in the same run.

Run::

    python benchmarks/bench_inproc_fanout.py [--n 1024] [--size 100] [--rounds 200]

Prints ns/message (best and median round) per case and the ratio per-message / batch.  One thread, no spinning.
Cases: one subscriber on a fixed subject; the same consumed with ``get_nowait`` (a Message per message on both
sides); each message to its reply subject (8 distinct, interleaved); a queue group of 4.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid

from lowlat._batch import MessageBatch
from lowlat.transport import connect
from lowlat.transport.base import Subscription


def _batch(n: int, size: int, replies: list[str] | None) -> MessageBatch:
    b = MessageBatch(n, n * (size + 64))
    for i in range(n):
        b.append(bytes([i & 0xFF]) * size, "", replies[i % len(replies)] if replies else None)
    return b


async def _per_message(t, batch: MessageBatch, subject: str | None) -> None:
    fanout, payload, reply = t._fanout, batch.payload, batch.reply
    for i in range(batch.n):
        fanout(subject if subject is not None else reply(i), payload(i), None, None)


def _take_all(subs, per_message: bool, max_msgs: int) -> int:
    got = 0
    for s in subs:
        while True:
            b = Subscription.take_batch(s, max_msgs) if per_message else s.take_batch(max_msgs)
            if not b.n:
                break
            got += b.n
    return got


def _drain_nowait(subs) -> int:
    got = 0
    for s in subs:
        while s.get_nowait() is not None:
            got += 1
    return got


async def _case(name: str, args, *, replies: list[str] | None, queue: str | None, nsubs: int,
                nowait: bool) -> dict:
    url = f"inproc://fanout-bench-{uuid.uuid4().hex[:8]}"
    async with connect(url) as t:
        subject = None if replies else "bench.fan"
        pattern = "bench.rep.*" if replies else "bench.fan"
        subs = [await t.subscribe(pattern, queue=queue, max_pending=1 << 24, max_pending_bytes=1 << 34)
                for _ in range(nsubs)]
        batch = _batch(args.n, args.size, replies)
        out = {}
        for mode in ("per_message", "batch"):
            times = []
            for r in range(args.rounds + 10):
                t0 = time.perf_counter_ns()
                if mode == "batch":
                    await t.publish_batch_to(batch, subject)
                else:
                    await _per_message(t, batch, subject)
                got = _drain_nowait(subs) if nowait else _take_all(subs, mode == "per_message", args.n)
                t1 = time.perf_counter_ns()
                assert got == args.n * (1 if queue else nsubs), (got, mode)
                if r >= 10:
                    times.append((t1 - t0) / args.n)
            out[mode] = (min(times), statistics.median(times))
        return {"case": name, **out}


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1024)
    ap.add_argument("--size", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=200)
    args = ap.parse_args()
    reps = [f"bench.rep.{k}" for k in range(8)]
    rows = [
        await _case("1 sub, fixed subject, take_batch", args, replies=None, queue=None, nsubs=1, nowait=False),
        await _case("1 sub, fixed subject, get_nowait", args, replies=None, queue=None, nsubs=1, nowait=True),
        await _case("1 sub, 8 reply subjects, take_batch", args, replies=reps, queue=None, nsubs=1, nowait=False),
        await _case("queue group of 4, take_batch", args, replies=None, queue="g", nsubs=4, nowait=False),
    ]
    print(f"inproc fan-out: {args.n} x {args.size}-byte messages per publish, ns/message (best / median of "
          f"{args.rounds})")
    print(f"{'case':<40} {'per-message':>18} {'batch (runs)':>18} {'ratio':>7}")
    for r in rows:
        pm, bt = r["per_message"], r["batch"]
        print(f"{r['case']:<40} {pm[0]:>8.0f} / {pm[1]:>7.0f} {bt[0]:>8.0f} / {bt[1]:>7.0f} {pm[1] / bt[1]:>6.1f}x")


if __name__ == "__main__":
    asyncio.run(main())
