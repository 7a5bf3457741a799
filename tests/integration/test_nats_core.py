"""Core NATS ordering guarantees, on both clients (lowlat's compiled one and nats-py: ``nats_client``)."""

from __future__ import annotations

import asyncio

import pytest

from lowlat.transport import connect

pytestmark = [pytest.mark.integration, pytest.mark.nats, pytest.mark.timeout(120)]


async def test_serve_is_live_for_other_connections_when_it_returns(nats_server, nats_client):
    # Regression: nats-py's flush() PING could overtake the queued SUB, so a request from another connection
    # right after serve() returned sometimes got "no responders" (17 of 300 tries before the fix).
    async with connect(nats_server.url, client=nats_client) as client:
        for i in range(150):
            async with connect(nats_server.url, client=nats_client) as server:
                await server.serve(f"live.{i}", lambda m: b"ok")
                assert bytes((await client.request(f"live.{i}", b"?", timeout=5)).data) == b"ok"


async def test_flush_means_the_server_has_every_earlier_publish(nats_server, nats_client):
    async with connect(nats_server.url, client=nats_client) as sub_side, \
            connect(nats_server.url, client=nats_client) as pub_side:
        sub = await sub_side.subscribe("flushed.x")
        for round_ in range(50):
            for i in range(20):
                await pub_side.publish("flushed.x", b"%d" % i)
            await pub_side.flush()
            # after flush the server has all 20; they arrive at the subscriber right after
            got = [bytes((await asyncio.wait_for(sub.__anext__(), 5)).data) for _ in range(20)]
            assert got == [b"%d" % i for i in range(20)], round_
