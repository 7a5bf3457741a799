"""A matching engine service: one book per symbol, orders in on orders.match.<SYMBOL>, execution reports out.

This is the explicit, per-order version (Engine + per-call submit) to copy from; `lowlat serve matcher` is the
batched production version (numpy command batches, market data, snapshots, CQRS queries).

    python examples/matching_engine_service.py --url nats://127.0.0.1:4222 --count 1000
"""

import argparse
import asyncio
import signal
import time

from lowlat import DecodeError, Reject, _book, _core
from lowlat.transport import connect

SYMBOLS = ("AAPL", "MSFT", "GOOG", "AMZN")  # lowlat's default symbols (what `lowlat loadgen` sends)
TICK = 0.01  # quote currency per tick; the engine works in integer ticks and lots


async def main(url: str, count: int, seconds: float) -> None:
    engine = _book.Engine()
    for sym in SYMBOLS:  # preallocated: prices 90.00 .. 110.00, up to 100k resting orders
        engine.add_book(sym, 9_000, 2_001, 100_000, TICK)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):  # Ctrl-C stops as cleanly as SIGTERM
        loop.add_signal_handler(sig, stop.set)
    done = 0
    async with connect(url) as t:
        sub = await t.subscribe("orders.match.*")  # one subscription for every symbol
        print("ready", flush=True)
        deadline = time.monotonic() + seconds if seconds else None
        stopped = asyncio.ensure_future(stop.wait())
        while not stop.is_set() and (not count or done < count):
            timeout = deadline - time.monotonic() if deadline else None
            if timeout is not None and timeout <= 0:
                break
            # wait for the next order or a stop signal, whichever comes first
            nxt = asyncio.ensure_future(sub.__anext__())
            await asyncio.wait((nxt, stopped), timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            if not nxt.done():
                nxt.cancel()
                break
            msg = nxt.result()
            try:
                o = _core.decode_order(msg.data)  # verified, zero-copy view
            except DecodeError:
                continue  # not an Order: nothing to report to
            now = time.time_ns()
            if o.symbol not in engine:  # no book for this symbol: one REJECTED report, the service keeps running
                await t.publish(f"exec.{o.symbol}", _core.encode_execution_report(
                    order_id=o.id, symbol=o.symbol, status=4, reason=int(Reject.UNKNOWN_SYMBOL), timestamp=now))
                done += 1
                continue
            book = engine[o.symbol]
            rc, ticks = _book.to_ticks(o.price, TICK)
            if rc == 0:
                rc, _filled, _n_ev = book.submit(o.id, int(o.side), ticks, o.quantity, account=o.account)
            if rc:  # rejected (off tick, out of range, duplicate id, ...): one REJECTED report
                reports = [_core.encode_execution_report(order_id=o.id, symbol=o.symbol, status=4, reason=rc,
                                                         timestamp=now)]
            else:
                reports = []
                for ev in book.last_events():  # ACCEPTED, FILL (taker side here), EXPIRED, L2, ...
                    kind = _book.EventKind(ev["kind"])
                    if kind == _book.EventKind.FILL:
                        status = 2 if ev["leaves"] == 0 else 1  # FILLED / PARTIALLY_FILLED
                    elif kind == _book.EventKind.ACCEPTED:
                        status = 0  # NEW
                    else:
                        continue
                    reports.append(_core.encode_execution_report(
                        order_id=int(ev["oid"]), symbol=o.symbol, status=status, trade_id=int(ev["trade_id"]),
                        last_price=int(ev["price"]) * TICK, last_quantity=int(ev["qty"]) if status else 0,
                        leaves_quantity=int(ev["leaves"]), timestamp=now))
            await t.publish_batch(f"exec.{o.symbol}", reports)
            done += 1
        stopped.cancel()
        await t.flush()
    print(f"matched {done} orders", flush=True)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", default="nats://127.0.0.1:4222")
    p.add_argument("--count", type=int, default=0, help="stop after this many orders (0 = until Ctrl-C / SIGTERM)")
    p.add_argument("--seconds", type=float, default=0)
    a = p.parse_args()
    asyncio.run(main(a.url, a.count, a.seconds))
