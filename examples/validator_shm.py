"""The order validator over shared memory (no broker): processes on this host meet at a named bus.

Clients connect with `lowlat.transport.connect("shm://orders")` and send requests on orders.in.
Run several copies: the bus spreads requests over the "validators" queue group.

    python examples/validator_shm.py --url shm://orders --count 1000
"""

import argparse
import asyncio

from lowlat.services import ServiceConfig, ValidatorService, run_services, setup_logging
from lowlat.transport import connect


async def main(url: str, count: int, seconds: float) -> None:
    cfg = ServiceConfig(transport=url)  # queue group "validators", like NATS
    validator = ValidatorService(cfg)  # batches, nogil validation, metrics, graceful drain
    stop = asyncio.Event()

    async def until_done() -> None:  # a bounded run for tests; without limits it serves until SIGTERM/SIGINT
        loop = asyncio.get_running_loop()
        t_end = loop.time() + seconds if seconds else None
        while not (count and validator.processed >= count) and not (t_end and loop.time() >= t_end):
            await asyncio.sleep(0.01)
        stop.set()

    t = connect(url)  # rings in /dev/shm; each process gets its own inbound ring
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
    p.add_argument("--url", default="shm://orders")
    p.add_argument("--count", type=int, default=0, help="stop after this many orders (0 = until SIGTERM)")
    p.add_argument("--seconds", type=float, default=0)
    a = p.parse_args()
    setup_logging("ERROR")
    asyncio.run(main(a.url, a.count, a.seconds))
