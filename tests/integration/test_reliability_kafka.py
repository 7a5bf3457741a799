"""Kafka validator (a real ``lowlat serve validator`` process on a real Kafka-protocol broker, Tansu).

- Offsets: the validator commits what it answered, so a restart does not re-validate and re-publish the whole
  topic (30 results became 60 after one restart).  At-least-once: what was handled but not yet committed when
  the process died is handled again (the window is one consumer poll interval plus the batch in flight).
- Reply header: anyone who can write to the orders topic sets ``lowlat-reply``; only inbox topics
  (``_lowlat.inbox.*``) are honoured, so a header cannot make the validator create a topic or write into one
  (``orders.victim``), and a malformed one (``bad topic!#x``) among 9 requests leaves the 9 answered.
- Every other ``lowlat-*`` header is stripped on receive.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from _services_util import service
from brokers.kafka import KAFKA_TEST_OPTIONS

from lowlat import _core
from lowlat.errors import TransportTimeoutError
from lowlat.transport import connect

pytestmark = [pytest.mark.integration, pytest.mark.kafka, pytest.mark.timeout(180)]


def _env(tag: str) -> dict[str, str]:
    return {"LOWLAT_ORDERS_SUBJECT": f"rel.{tag}.orders", "LOWLAT_VALIDATED_SUBJECT": f"rel.{tag}.validated",
            "LOWLAT_REJECTED_SUBJECT": f"rel.{tag}.rejected", "LOWLAT_QUEUE": f"rel-{tag}"}


def order(oid: int) -> bytes:
    return _core.encode_order(oid, "AAPL", 100.0, 1, 0, time.time_ns())


async def read_all(url: str, topic: str, quiet: float = 2.0) -> list[int]:
    """Order ids of every ValidationResult in ``topic`` (partition 0, from the beginning)."""
    async with connect(url, **KAFKA_TEST_OPTIONS) as t:
        sub = await t.subscribe(topic, partitions=[0], offset="beginning")
        out = []
        while True:
            try:
                m = await sub.next_msg(timeout=quiet)
            except TransportTimeoutError:
                return out
            out.append(_core.decode_validation_result(m.data)[0])


def test_kafka_validator_commits_answered_offsets_across_restart(kafka_url):
    tag = uuid.uuid4().hex[:8]
    env = _env(tag)
    topic = env["LOWLAT_ORDERS_SUBJECT"]

    async def publish(first: int, n: int) -> None:
        async with connect(kafka_url, **KAFKA_TEST_OPTIONS) as t:
            for i in range(first, first + n):
                await t.publish(topic, order(i))
            await t.flush()

    asyncio.run(publish(1, 30))
    v = service("serve", "validator", "--transport", kafka_url, env=env)
    try:
        v.wait_for('"ready"', timeout=60)
        deadline = time.monotonic() + 30
        while len(got := asyncio.run(read_all(kafka_url, env["LOWLAT_VALIDATED_SUBJECT"], 1.0))) < 30:
            assert time.monotonic() < deadline, got
        v.terminate()
        assert v.wait(30) == 0, v.output[-3000:]
        v = service("serve", "validator", "--transport", kafka_url, env=env)
        v.wait_for('"ready"', timeout=60)
        asyncio.run(publish(31, 5))
        deadline = time.monotonic() + 30
        while len(got := asyncio.run(read_all(kafka_url, env["LOWLAT_VALIDATED_SUBJECT"], 1.0))) < 35:
            assert time.monotonic() < deadline, got
        time.sleep(2.0)  # anything re-validated after the restart would have arrived by now
        got = asyncio.run(read_all(kafka_url, env["LOWLAT_VALIDATED_SUBJECT"]))
    finally:
        v.terminate()
    assert v.wait(30) == 0
    assert sorted(got) == list(range(1, 36)), f"{len(got)} results for 35 orders"


def test_kafka_reply_header_only_reaches_inboxes(kafka_url):
    tag = uuid.uuid4().hex[:8]
    env = _env(tag)
    topic = env["LOWLAT_ORDERS_SUBJECT"]
    victim = f"rel.{tag}.victim"
    v = service("serve", "validator", "--transport", kafka_url, env=env)
    try:
        v.wait_for('"ready"', timeout=60)

        async def run() -> tuple[list[int], set[str]]:
            async with connect(kafka_url, **KAFKA_TEST_OPTIONS) as t:
                await t.publish(topic, order(1000), headers={"lowlat-reply": "bad topic!#x"})
                await t.publish(topic, order(1001), headers={"lowlat-reply": f"{victim}#x"})
                out = await asyncio.gather(*(t.request(topic, order(i), timeout=30) for i in range(1, 10)),
                                           return_exceptions=True)
                await asyncio.sleep(1.0)
                topics = set((await asyncio.get_running_loop().run_in_executor(
                    None, lambda: t._admin.list_topics(timeout=5))).topics)
                return sorted(_core.decode_validation_result(r.data)[0] for r in out
                              if not isinstance(r, BaseException)), topics

        answered, topics = asyncio.run(run())
        # the two refused headers: their orders are validated like unanswerable ones (published as results)
        results = asyncio.run(read_all(kafka_url, env["LOWLAT_VALIDATED_SUBJECT"]))
    finally:
        v.terminate()
    assert v.wait(30) == 0, v.output[-3000:]
    assert answered == list(range(1, 10)), answered
    assert victim not in topics
    assert sorted(results) == [1000, 1001], results
    assert v.output.count("outside the allowed reply prefix") == 1, v.output[-3000:]  # first one, rate-limited
    assert "batch failed" not in v.output


async def test_kafka_strips_every_lowlat_header(kafka_url, kafka_topic):
    async with connect(kafka_url, **KAFKA_TEST_OPTIONS) as t:
        sub = await t.subscribe(kafka_topic)
        await t.publish(kafka_topic, b"x", headers={"lowlat-evil": "1", "lowlat-cid": "2", "app": "3"})
        m = await sub.next_msg(timeout=10)
    assert m.headers == {"app": "3"} and m.reply is None
