"""The validator and matcher services on the other adapters (Kafka via Tansu, Aeron IPC via aeronmd), in one
process with real brokers/drivers: every order answered exactly once, execution reports out.  The NATS/shm
process-level tests are in test_services_processes.py."""

from __future__ import annotations

import asyncio

import pytest

pytestmark = pytest.mark.integration

N = 60


@pytest.fixture(params=[pytest.param("endpoint_kafka", marks=pytest.mark.kafka),
                        pytest.param("endpoint_aeron_ipc", marks=pytest.mark.aeron)])
def endpoint(request):
    return request.getfixturevalue(request.param)


async def test_validator_service_answers_every_order(endpoint):
    from lowlat.services import LoadGenerator, ServiceConfig, ValidatorService

    cfg = ServiceConfig(transport=endpoint.url, queue="", rate=200.0, count=N, reject_ratio=0.2)
    server = endpoint.connect()
    client = endpoint.connect(peer=True)
    await server.connect()
    await client.connect()
    try:
        v = ValidatorService(cfg)
        await v.start(server)
        await server.flush()
        await asyncio.sleep(endpoint.settle)
        res = await LoadGenerator(client, cfg, answer_timeout=20).run()
        await v.stop()
    finally:
        await client.close()
        await server.close()
    assert res.sent == N and res.answered == N and res.duplicates == 0 and res.errors == 0, (res.as_dict(), v.metrics.counts)
    assert v.metrics.counts["in"] == N and res.accepted > 0 and sum(res.rejects.values()) > 0
