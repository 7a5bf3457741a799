"""Market-data fan-out with gap-detecting consumers.

A matching service publishes L2 updates (sequence 1, 2, 3, ... per symbol), trades and periodic snapshots;
several consumers each keep a local book from a snapshot + deltas.  One consumer is made to miss deltas on
purpose (--drop-every): it detects the gap and resyncs from a snapshot.  At the end every local book must equal
the matcher's own book.  Runs on any transport; the default needs no broker.

    python examples/market_data_fanout.py --url inproc://md --count 2000 --consumers 3
"""

import argparse
import asyncio
import time

import numpy as np

from lowlat import _core
from lowlat.services import MarketDataConsumer, ServiceConfig
from lowlat.services.matcher import MatcherService


class LossyConsumer(MarketDataConsumer):
    """A consumer behind a lossy link: it never sees every ``drop_every``-th delta it receives."""

    def __init__(self, *a, drop_every: int, **kw):
        super().__init__(*a, **kw)
        self.drop_every = drop_every
        self.seen = 0

    def _columns(self, batch):
        cols = super()._columns(batch)
        keep = (np.arange(self.seen + 1, self.seen + 1 + len(cols[0])) % self.drop_every) != 0
        self.seen += len(cols[0])
        return tuple(c[keep] for c in cols)


async def main(url: str, count: int, consumers: int, drop_every: int) -> int:
    from lowlat.transport import connect

    cfg = ServiceConfig(transport=url, symbols=("AAPL",), snapshot_interval_s=0.5)
    async with connect(url) as t:
        matcher = MatcherService(cfg, max_orders=10_000)
        await matcher.start(t)
        books = []
        for i in range(consumers):
            # the first consumer sits behind a lossy link (drops every Nth delta)
            lossy = i == 0 and drop_every
            c = LossyConsumer(t, "AAPL", drop_every=drop_every) if lossy else MarketDataConsumer(t, "AAPL")
            await c.start()
            books.append(c)
        tasks = [asyncio.create_task(c.run(seconds=30)) for c in books]
        # orders straight to the matcher (a validator would normally sit in front, see order_validator_nats.py)
        now = time.time_ns()
        for i in range(count):
            side = i % 2
            price = 100.0 + (((i * 7) % 11) - 5) * 0.01
            await t.publish("orders.match.AAPL", _core.encode_order(i + 1, "AAPL", price, 1 + i % 5, side, now))
            if i % 100 == 99:
                await asyncio.sleep(0.001)
        await asyncio.sleep(0.5)
        want = matcher.read["AAPL"]
        for _ in range(100):  # wait until every consumer has caught up with the published sequence
            if all(c.book.seq == want.md_seq for c in books):
                break
            await asyncio.sleep(0.05)
        for task in tasks:
            task.cancel()
        ok = True
        def levels(side):  # the matcher's read side, in the consumers' units (price, qty)
            return {round(p * cfg.tick_size, 9): q for p, (q, _n) in want.levels[side].items()}

        for i, c in enumerate(books):
            same = ({p: q for p, (q, _n) in c.book.bids.items()} == levels(0)
                    and {p: q for p, (q, _n) in c.book.asks.items()} == levels(1))
            ok &= same and c.book.seq == want.md_seq
            print(f"consumer {i}: seq {c.book.seq}/{want.md_seq}, gaps {c.book.gaps}, resyncs {c.book.resyncs}, "
                  f"best bid {c.book.best_bid()}, best ask {c.book.best_ask()}, matches matcher: {same}")
        await matcher.stop()
    return 0 if ok else 1


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", default="inproc://md-example")
    p.add_argument("--count", type=int, default=2000, help="orders to send")
    p.add_argument("--consumers", type=int, default=3)
    p.add_argument("--drop-every", type=int, default=50, help="consumer 0 drops every Nth delta (0 = none)")
    a = p.parse_args()
    raise SystemExit(asyncio.run(main(a.url, a.count, a.consumers, a.drop_every)))
