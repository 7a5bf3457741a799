"""Small helpers shared by several test modules (no fixtures here: those live in tests/brokers/)."""

from __future__ import annotations

import asyncio
from typing import Any

import lowlat


async def recv_n(sub: Any, n: int, timeout: float = 10.0) -> list:
    """The next ``n`` messages of ``sub`` (async iterable); ``TimeoutError`` when they take over ``timeout`` s."""
    out: list = []

    async def _go() -> None:
        async for m in sub:
            out.append(m)
            if len(out) == n:
                return

    await asyncio.wait_for(_go(), timeout)
    return out


def encode_order_dict(d: dict) -> bytes:
    """``lowlat.encode_order`` of an order given as a dict with every ``finance.Order`` field (hypothesis rows)."""
    return lowlat.encode_order(d["id"], d["symbol"], d["price"], d["quantity"], d["side"], d["timestamp"],
                               order_type=d["order_type"], time_in_force=d["time_in_force"],
                               post_only=d["post_only"], account=d["account"],
                               client_order_id=d["client_order_id"], stp=d["stp"])
