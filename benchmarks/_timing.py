"""Timed request/reply loops shared by the benchmarks (one definition of a round-trip sample)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import numpy as np


async def timed_requests(request: Callable[..., Awaitable[Any]], subject: str, payloads: Sequence[bytes], n: int,
                         warmup: int = 300) -> np.ndarray:
    """``n`` sequential ``request(subject, payload, timeout=5)`` round trips in ns (``perf_counter_ns`` around
    each await), after ``warmup`` untimed ones; payloads are cycled."""
    k = len(payloads)
    for i in range(warmup):
        await request(subject, payloads[i % k], timeout=5)
    out = np.empty(n, dtype=np.int64)
    pc = time.perf_counter_ns
    for i in range(n):
        t0 = pc()
        await request(subject, payloads[i % k], timeout=5)
        out[i] = pc() - t0
    return out
