"""Durable services given more messages per fetch than they asked for (a real nats-server with JetStream).

nats-py's ``fetch(n)`` first drains everything already queued on the pull subscription's inbox, which includes
messages the server sent for earlier pull requests that were orphaned (a fetch that timed out during a broker
restart): a fetch can return more than ``n``.  The validator sized its code array to ``batch_max`` (ValueError) and
the matcher indexed past its command array (IndexError), and the process exited.  Here the orphaned request is
sent on the wire the way nats-py sends one (``$JS.API.CONSUMER.MSG.NEXT`` with the subscription's inbox), so the
first fetch really returns ``10 * batch_max`` messages; every order must be answered and matched.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from brokers.nats import start_nats

from lowlat import _core
from lowlat.services import ServiceConfig
from lowlat.services.durable import ensure_streams, run_matcher, run_validator
from lowlat.transport import connect

pytestmark = [pytest.mark.integration, pytest.mark.nats, pytest.mark.timeout(90)]

BATCH = 4
N = 10 * BATCH


class _OrphanedPullJs:
    """nats-py's JetStream context, but every new pull subscription first gets an earlier, larger pull request."""

    def __init__(self, js: Any, nc: Any, seen: list[int]) -> None:
        self._js, self._nc, self.seen = js, nc, seen

    def __getattr__(self, name: str) -> Any:
        return getattr(self._js, name)

    async def pull_subscribe(self, *args: Any, **kw: Any) -> Any:
        psub = await self._js.pull_subscribe(*args, **kw)
        await self._nc.publish(psub._nms, json.dumps({"batch": N, "no_wait": True}).encode(), reply=psub._deliver)
        await self._nc.flush()
        await asyncio.sleep(0.5)  # the server delivers into the subscription's queue
        real_fetch = psub.fetch

        async def fetch(batch: int = 1, **fkw: Any) -> Any:
            msgs = await real_fetch(batch, **fkw)
            self.seen.append(len(msgs))
            return msgs

        psub.fetch = fetch
        return psub


class _Transport:
    """The transport, with the fault injected where the adapter does JetStream (services only see the
    transport's durable-log / pull-consumer methods)."""

    def __init__(self, t: Any) -> None:
        self._t = t
        self.seen: list[int] = []
        js_t = t._js() if callable(getattr(t, "_js", None)) else t  # natscore: its nats-py side connection
        self._js_t, self._real = js_t, js_t.jetstream
        js_t._js = _OrphanedPullJs(self._real, js_t.client, self.seen)

    def restore(self) -> None:
        self._js_t._js = self._real

    def __getattr__(self, name: str) -> Any:
        return getattr(self._t, name)


async def _run_until(coro_fn: Any, done: Any, timeout: float = 30) -> Any:
    stop = asyncio.Event()
    task = asyncio.ensure_future(coro_fn(stop))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await done() and loop.time() < deadline and not task.done():
        await asyncio.sleep(0.2)
    stop.set()
    return await asyncio.wait_for(task, 15)  # a crash inside the service re-raises here


async def test_durable_validator_and_matcher_take_oversized_fetches(nats_bin, tmp_path):
    srv = start_nats(nats_bin, tmp_path / "nats")
    try:
        cfg = ServiceConfig(transport=srv.url, symbols=("AAPL",), batch_max=BATCH)
        async with connect(srv.url) as t:
            await ensure_streams(t, cfg)
            for oid in range(1, N + 1):
                await t.js_publish("orders.in", _core.encode_order(oid, "AAPL", 100.0 + (oid % 3) * 0.01,
                                                                   1 + oid % 4, oid % 2, 1), msg_id=f"in:{oid}")

            async def count(stream: str) -> int:
                return (await t.jetstream.stream_info(stream)).state.messages

            vt = _Transport(t)

            async def results_done() -> bool:
                return await count("RESULTS") >= N

            v = await _run_until(lambda stop: run_validator(cfg, transport=vt, stop=stop), results_done)
            vt.restore()
            assert max(vt.seen) > BATCH, vt.seen  # the fault really happened
            assert v["acked"] == N and await count("RESULTS") == N and await count("MATCH") == N, v

            mt = _Transport(t)

            async def fetched_all() -> bool:  # the batch being handled when stop is set is still finished
                return sum(mt.seen) >= N

            m = await _run_until(lambda stop: run_matcher(cfg, tmp_path / "m", transport=mt, stop=stop),
                                 fetched_all)
            mt.restore()
            assert max(mt.seen) > BATCH, mt.seen
            assert m["processed"] == N, m
            assert await count("EXEC") >= N  # at least one report per order
    finally:
        srv.stop()
