"""Small helpers shared by several test modules (no fixtures here: those live in tests/brokers/)."""

from __future__ import annotations

import asyncio
import platform
import threading
import time
from collections import defaultdict
from typing import Any

import lowlat


class Recorder:
    """A transport stand-in for service units: collects what a service publishes, per destination subject, through
    every publish API (one message, a list, a ``MessageBatch`` to its reply subjects or one subject)."""

    url = "recorder://"
    closed = False

    def __init__(self) -> None:
        self.out: dict[str, list[bytes]] = defaultdict(list)

    async def publish(self, subject, payload, **kw):
        self.out[subject].append(bytes(payload))

    async def publish_batch(self, subject, payloads):
        for p in payloads:
            self.out[subject].append(bytes(p))

    async def publish_batch_to(self, batch, subject=None):
        for i in range(batch.n):
            self.out[subject or batch.reply(i)].append(bytes(batch.payload(i)))
        return batch.n


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


# nanosleep / clock_nanosleep: the syscalls a ring wait parks in (BackoffIdle), never used to wait for the GIL
_PARK_SYSCALLS = {"x86_64": {"35", "230"}, "aarch64": {"101", "115"}}[platform.machine()]


def wait_parked(thread: threading.Thread, timeout: float = 10.0) -> None:
    """Block until ``thread`` is parked in a sleep syscall (Linux ``/proc``): a thread that runs only a blocking
    ring call parks only inside that call's wait, so the call has really started waiting."""
    path = f"/proc/self/task/{thread.native_id}/syscall"
    deadline = time.monotonic() + timeout
    while True:
        with open(path) as f:
            if f.read().split(" ", 1)[0] in _PARK_SYSCALLS:
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{thread.name} did not park within {timeout} s")
        time.sleep(0.001)


def damaged(draw: Any, b: bytes, kind: str, max_flips: int = 4) -> bytes:
    """A hypothesis-drawn hostile version of the frame ``b``: ``truncated`` (a strict prefix), ``mutated`` (1 to
    ``max_flips`` random bytes overwritten) or ``garbage`` (random bytes); any other ``kind`` returns ``b``."""
    from hypothesis import strategies as st

    if kind == "truncated":
        return b[:draw(st.integers(0, len(b) - 1))]
    if kind == "mutated":
        ba = bytearray(b)
        for _ in range(draw(st.integers(1, max_flips))):
            ba[draw(st.integers(0, len(ba) - 1))] = draw(st.integers(0, 255))
        return bytes(ba)
    if kind == "garbage":
        return draw(st.binary(max_size=120))
    return b


def unstamped(subject: str, payload: bytes) -> tuple:
    """A service's published message (by its subject: ``*.trade``, ``*.l2``, ``exec.*``, else a
    ``ValidationResult``) decoded, without its wall-clock timestamp: what two runs of the same orders must agree on."""
    if subject.endswith(".trade"):
        m = lowlat.decode_trade(payload)
    elif subject.endswith(".l2"):
        m = lowlat.decode_l2_update(payload)
    elif subject.startswith("exec."):
        m = lowlat.decode_execution_report(payload)
    else:
        m = lowlat.decode_validation_result(payload)
    return tuple(m._replace(timestamp=0))
