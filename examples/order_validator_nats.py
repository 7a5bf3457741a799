"""The seed's order validator: a NATS queue-group worker that answers each order with a ValidationResult.

Run several copies with the same --queue to scale out; NATS gives each request to one of them.

    python examples/order_validator_nats.py --url nats://127.0.0.1:4222            # serve until Ctrl-C
    python examples/order_validator_nats.py --url nats://127.0.0.1:4222 --count 100 # stop after 100 orders
"""

import argparse
import asyncio
import signal
import time

import numpy as np

from lowlat import _core  # zero-copy FlatBuffers reader + Validator (compiled)
from lowlat.transport import connect


async def main(url: str, queue: str, count: int, seconds: float) -> None:
    # one rule per instrument: tick size, lot, quantity limits, a 10% collar around the reference price
    rules = [_core.InstrumentRules(s, tick_size=0.01, max_qty=1_000_000, ref_price=100.0, band=0.1)
             for s in ("AAPL", "MSFT", "GOOG", "AMZN")]
    validator = _core.Validator(rules)
    codes = np.zeros(1024, dtype=np.uint8)  # preallocated: one reject code per order of a batch
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):  # Ctrl-C stops as cleanly as SIGTERM
        loop.add_signal_handler(sig, stop.set)
    deadline = time.monotonic() + seconds if seconds else None
    done = 0
    async with connect(url) as t:
        sub = await t.subscribe("orders.in", queue=queue)  # queue group: each order goes to one worker
        print("ready", flush=True)
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
            first = nxt.result()
            # under load, take everything already pending and validate it in one nogil call
            batch = [first]
            while len(batch) < len(codes) and (m := sub.get_nowait()) is not None:
                batch.append(m)
            n = validator.validate_many([m.data for m in batch], codes)
            now = time.time_ns()
            for msg, code in zip(batch, codes[:n].tolist()):
                oid, sym = _core.read_order(msg.data)[:2] if code != 1 else (0, None)  # 1 = MALFORMED
                await msg.respond(_core.encode_validation_result(oid, code == 0, code, now, sym))
            done += n
        stopped.cancel()
        await sub.unsubscribe()  # stop intake (lowlat.services.ValidatorService also drains what is pending)
        await t.flush()          # make sure the last replies left this process
    print(f"validated {done} orders", flush=True)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", default="nats://127.0.0.1:4222")
    p.add_argument("--queue", default="validators")
    p.add_argument("--count", type=int, default=0, help="stop after this many orders (0 = run until Ctrl-C / SIGTERM)")
    p.add_argument("--seconds", type=float, default=0, help="stop after this long (0 = no limit)")
    a = p.parse_args()
    asyncio.run(main(a.url, a.queue, a.count, a.seconds))
