"""A constant-rate load generator: latency from the *intended* send time (no coordinated omission).

Sends --count orders at --rate per second to a validator (request/reply) and prints p50/p99/max, throughput
and rejects by reason.  Start a validator first, e.g. `lowlat serve validator --transport URL`.

    python examples/load_generator.py --url nats://127.0.0.1:4222 --rate 5000 --count 20000
"""

import argparse
import asyncio

from lowlat.services import LoadGenerator, ServiceConfig
from lowlat.transport import connect


async def main(url: str, rate: float, count: int, mode: str) -> int:
    cfg = ServiceConfig(transport=url, rate=rate, count=count, mode=mode, reject_ratio=0.05)
    async with connect(url) as t:
        res = await LoadGenerator(t, cfg).run()
    lat = res.latency.summary()  # ns, from an HDR histogram
    print(f"answered {res.answered}/{res.sent} (duplicates {res.duplicates}) at {res.throughput:,.0f} orders/s")
    print("latency " + "  ".join(f"{k}={lat[k] / 1e3:.1f}us" for k in ("p50", "p90", "p99", "max")))
    print(f"accepted {res.accepted}, rejected {res.rejects}")
    return 0 if res.answered == res.sent and not res.duplicates else 1


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", default="nats://127.0.0.1:4222")
    p.add_argument("--rate", type=float, default=5000.0, help="orders per second (constant)")
    p.add_argument("--count", type=int, default=10000)
    p.add_argument("--mode", choices=["request", "pipeline"], default="request")
    a = p.parse_args()
    raise SystemExit(asyncio.run(main(a.url, a.rate, a.count, a.mode)))
