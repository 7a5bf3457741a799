"""Attacker-chosen symbols must not grow anything in the validator (it cached a result template per distinct
symbol, unknown ones included: 300 orders with ~1 MiB symbols grew RSS from 48 to 439 MB).

Orders with 300 distinct 256 KiB unknown symbols go through ``ValidatorService.handle``; afterwards the
validator holds nothing of them (tracemalloc, after a collection).  The per-order cost of rejected orders with a
known symbol, with short unique unknown symbols and with the 256 KiB ones is printed (benchmark figures, not
asserted; the result echoes the symbol, so the last one is linear in the symbol's size).
"""

from __future__ import annotations

import asyncio
import gc
import json
import time
import tracemalloc

from lowlat import _core
from lowlat.services import ServiceConfig
from lowlat.services.validator import ValidatorService
from lowlat.transport import Message


class _Sink:
    url = "sink://"
    closed = False

    async def publish(self, subject, payload, **kw):
        return None

    async def publish_batch(self, subject, payloads):
        return None

    async def publish_batch_to(self, batch, subject=None):
        return batch.n


def _run(svc: ValidatorService, orders: list[bytes]) -> float:
    async def go() -> float:
        t0 = time.perf_counter()
        for i in range(0, len(orders), 16):
            await svc.handle("orders.in", [Message("orders.in", o, None, "_INBOX.x.1") for o in orders[i:i + 16]])
        return (time.perf_counter() - t0) / len(orders)

    return asyncio.run(go())


def test_unique_huge_unknown_symbols_grow_nothing():
    svc = ValidatorService(ServiceConfig(symbols=("AAPL",), publish_results=True))
    svc.transport = _Sink()  # type: ignore[assignment]
    n = 300
    known = [_core.encode_order(i, "AAPL", 100.0, 0, 0, 1) for i in range(1, n + 1)]  # rejected: zero qty
    unique = [_core.encode_order(i, f"Z{i:07d}", 100.0, 1, 0, 1) for i in range(1, n + 1)]
    _run(svc, known)  # warm-up: lazily created state exists before the measurement
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    per_known = _run(svc, known)
    per_unique = _run(svc, unique)
    gc.collect()
    after_known = tracemalloc.get_traced_memory()[0] - base
    hostile = [_core.encode_order(i, f"X{i:06d}" + "Y" * (256 << 10), 100.0, 1, 0, 1) for i in range(1, n + 1)]
    base = tracemalloc.get_traced_memory()[0]
    per_unknown = _run(svc, hostile)
    del hostile
    gc.collect()
    after_unknown = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    print(json.dumps({"per_order_known_us": round(per_known * 1e6, 2),
                      "per_order_unknown_us": round(per_unique * 1e6, 2), "per_order_unknown_256k_us":
                      round(per_unknown * 1e6, 2), "retained_known_b": after_known,
                      "retained_unknown_b": after_unknown}))
    assert after_unknown < 1 << 20, after_unknown  # 300 x 256 KiB = 75 MiB if anything kept a symbol
    assert svc.metrics.counts["rejected"] == 4 * n  # warm-up, known, unique, hostile: all rejected
