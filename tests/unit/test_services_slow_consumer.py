"""A service whose subscription drops messages (pending limit hit) logs a slow-consumer error and counts it."""

from __future__ import annotations

import asyncio
import logging
import uuid

from lowlat.services import ServiceConfig
from lowlat.services.runtime import BatchService
from lowlat.transport import Message, connect


class _Gated(BatchService):
    """Blocks in its first batch until released, so the test can overflow the subscription meanwhile."""

    name = "gated"

    def __init__(self, cfg: ServiceConfig) -> None:
        super().__init__(cfg)
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.seen = 0
        self.done = asyncio.Event()

    def subjects(self) -> list[tuple[str, str | None]]:
        return [("slow.in", None)]

    async def handle(self, subject: str, batch: list[Message]) -> None:
        self.entered.set()
        await self.release.wait()
        self.seen += len(batch)
        if self.seen >= 5:  # the first message + the 4 that fit in the pending bound
            self.done.set()


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def test_dropped_messages_log_a_slow_consumer_error():
    rec = _Records()
    logger = logging.getLogger("lowlat.services")
    logger.addHandler(rec)
    url = f"inproc://slow-{uuid.uuid4().hex[:8]}"
    try:
        async with connect(url) as t:
            svc = _Gated(ServiceConfig(transport=url, max_pending=4, batch_max=64))
            await svc.start(t)
            await t.publish("slow.in", b"first")
            await asyncio.wait_for(svc.entered.wait(), 10)
            for i in range(20):  # 4 fit in the bound, 16 are dropped by the transport
                await t.publish("slow.in", b"%d" % i)
            svc.release.set()
            await asyncio.wait_for(svc.done.wait(), 10)
            await svc.stop(timeout=5)
    finally:
        logger.removeHandler(rec)
    assert svc.metrics.dropped == 16
    assert svc.metrics.slow_consumer_events == 1
    errors = [r for r in rec.records if r.levelno == logging.ERROR and "slow consumer" in r.getMessage()]
    assert len(errors) == 1, [r.getMessage() for r in rec.records]
    assert errors[0].dropped == 16  # type: ignore[attr-defined]
