"""The order validator over ZeroMQ (no broker): this process is the hub and binds the URL.

Clients connect with `lowlat.transport.connect("zmq+tcp://127.0.0.1:5555")` and send requests on orders.in.
ZeroMQ has no queue groups: scale out by giving each validator its own URL.

    python examples/validator_zmq.py --url zmq+tcp://127.0.0.1:5555 --count 1000
"""

import argparse
import asyncio

from lowlat.services import ServiceConfig, ValidatorService, run_services, setup_logging
from lowlat.transport import connect


async def main(url: str, count: int, seconds: float) -> None:
    cfg = ServiceConfig(transport=url, queue="")  # queue groups do not exist on ZeroMQ
    validator = ValidatorService(cfg)  # batches, nogil validation, metrics, graceful drain
    stop = asyncio.Event()

    async def until_done() -> None:  # a bounded run for tests; without limits it serves until SIGTERM/SIGINT
        loop = asyncio.get_running_loop()
        t_end = loop.time() + seconds if seconds else None
        while not (count and validator.processed >= count) and not (t_end and loop.time() >= t_end):
            await asyncio.sleep(0.01)
        stop.set()

    t = connect(url, bind=True)  # the hub: binds XPUB at the URL and ROUTER at port + 1
    await t.connect()
    try:
        watcher = asyncio.create_task(until_done()) if (count or seconds) else None
        await run_services(cfg, [validator], transport=t, stop_event=stop,
                           on_ready=lambda: print("ready", flush=True))
        if watcher:
            await watcher
    finally:
        await t.close()
    print(f"validated {validator.processed} orders", flush=True)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", default="zmq+tcp://127.0.0.1:5555")
    p.add_argument("--count", type=int, default=0, help="stop after this many orders (0 = until SIGTERM)")
    p.add_argument("--seconds", type=float, default=0)
    a = p.parse_args()
    setup_logging("ERROR")
    asyncio.run(main(a.url, a.count, a.seconds))
