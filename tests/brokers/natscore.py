"""Endpoints for lowlat's compiled core-NATS client (``lowlat.transport.natscore``) on the shared nats-server; its
JetStream side connection (nats-py, for the durable log) opens at first use."""

from __future__ import annotations

import pytest

from ._util import Endpoint
from .nats import NATS_CAPS

__all__ = ["endpoint_natscore", "nats_client"]


@pytest.fixture
def endpoint_natscore(nats_server) -> Endpoint:
    return Endpoint(url=nats_server.url, options=dict(nats_server.client_options, client="lowlat", jetstream="lazy"),
                    caps=NATS_CAPS, max_payload=4 << 20)


@pytest.fixture(params=["lowlat", "nats-py"])
def nats_client(request) -> str:
    """Both core-NATS clients, for tests that must hold on each (pass as ``connect(url, client=...)``)."""
    return request.param
