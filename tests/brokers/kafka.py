"""kafka fixtures: a real Kafka-protocol broker (Tansu 0.6.0, memory storage) on 127.0.0.1:<free port>.

Installed by tests/setup/20-kafka.sh (exports LOWLAT_TANSU).  One broker per test session; tests isolate
themselves with unique topic names.  Group-join settings are shortened for Tansu (it joins in ~session/2).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import uuid

import pytest

from ._util import LOOPBACK, free_port, require_binary, stop, wait_port

__all__ = ["tansu_broker", "kafka_url", "kafka_options", "kafka_topic", "endpoint_kafka"]

# Client settings the tests use: Tansu answers a fetch only after fetch.wait.max.ms (1 ms is the adapter
# default) and completes a group join after about session.timeout.ms / 2.
KAFKA_TEST_OPTIONS = {"session_timeout_ms": 1500, "heartbeat_interval_ms": 300}


@pytest.fixture(scope="session")
def tansu_broker():
    """Start Tansu on loopback only (its default listener is 0.0.0.0, never used); yield 'host:port'."""
    exe = require_binary("tansu", "bash tests/setup/20-kafka.sh", env="LOWLAT_TANSU")
    port = free_port()
    url = f"tcp://{LOOPBACK}:{port}"
    log = tempfile.NamedTemporaryFile(prefix="tansu-", suffix=".log", delete=False)
    proc = subprocess.Popen(
        [exe, "broker", "--listener-url", url, "--advertised-listener-url", url,
         "--storage-engine", "memory://tansu/", "--cluster-id", f"lowlat-{uuid.uuid4().hex[:8]}"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        wait_port(port, proc=proc)
        yield f"{LOOPBACK}:{port}"
    finally:
        stop(proc)
        log.close()
        if proc.returncode not in (0, -15, None):
            print(open(log.name, errors="replace").read()[-4000:])
        os.unlink(log.name)


@pytest.fixture
def kafka_url(tansu_broker) -> str:
    return f"kafka://{tansu_broker}"


@pytest.fixture
def kafka_options() -> dict:
    return dict(KAFKA_TEST_OPTIONS)


@pytest.fixture
def kafka_topic() -> str:
    return f"lowlat.test.{uuid.uuid4().hex[:12]}"


@pytest.fixture
def endpoint_kafka(kafka_url):
    """The Kafka endpoint for the transport conformance suite."""
    from ._util import Endpoint  # defined by the conformance work

    return Endpoint(url=kafka_url, options=dict(KAFKA_TEST_OPTIONS), caps=KAFKA_CAPS)


# What Kafka can do, as the conformance suite names capabilities (see test_transport_conformance.py).
KAFKA_CAPS = frozenset({"pubsub", "headers", "request", "queue", "ack"})
