"""kafka fixtures: a real Kafka-protocol broker (Tansu 0.6.0, memory storage) on 127.0.0.1:<free port>.

Installed by tests/setup/20-kafka.sh (exports LOWLAT_TANSU).  One broker per test session; tests isolate
themselves with unique topic names.  Group-join settings are shortened for Tansu (it joins in ~session/2).
"""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
import uuid

import pytest

from ._util import LOOPBACK, free_port, require_binary, wait_port

__all__ = ["endpoint_kafka", "kafka_options", "kafka_topic", "kafka_url", "tansu_broker"]

# Client settings the tests use: Tansu answers a fetch only after fetch.wait.max.ms (1 ms is the adapter
# default) and completes a group join after about session.timeout.ms / 2.
KAFKA_TEST_OPTIONS = {"session_timeout_ms": 1500, "heartbeat_interval_ms": 300}


@contextlib.contextmanager
def _tansu():
    """Start Tansu on loopback only (its default listener is 0.0.0.0, never used); yield 'host:port'."""
    exe = require_binary("tansu", "bash tests/setup/20-kafka.sh", env="LOWLAT_TANSU")
    port = free_port()
    url = f"tcp://{LOOPBACK}:{port}"
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            [exe, "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/", "--cluster-id", f"lowlat-{uuid.uuid4().hex[:8]}"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            wait_port(port, proc=proc)
            yield f"{LOOPBACK}:{port}"
        finally:
            # memory storage, nothing to persist: SIGKILL at once (SIGTERM makes Tansu linger ~5 s per broker)
            proc.kill()
            proc.wait(10)
            if proc.returncode not in (0, -9):
                log.seek(0)
                print(log.read()[-4000:].decode(errors="replace"))


@pytest.fixture(scope="session")
def tansu_broker():
    """One broker for the Kafka-specific tests (they use unique topic names)."""
    with _tansu() as bootstrap:
        yield bootstrap


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
def endpoint_kafka():
    """The Kafka endpoint of the transport conformance suite: a fresh broker per test (Tansu starts in ms), since
    the suite reuses subject names and Kafka keeps topics, offsets and groups."""
    from ._util import Endpoint

    with _tansu() as bootstrap:
        yield Endpoint(url=f"kafka://{bootstrap}", options=dict(KAFKA_TEST_OPTIONS), caps=KAFKA_CAPS,
                       missing_caps=KAFKA_MISSING, max_payload=1_000_000)


KAFKA_CAPS = frozenset({"headers", "request_reply", "multi_transport", "flow_control", "large_payload"})
KAFKA_MISSING = {
    "wildcards": "kafka: no subject wildcards (a subject is one topic; librdkafka's regex subscriptions are not mapped)",
    "queue_groups": "kafka: a consumer group spreads by partition, and unkeyed messages share one partition to keep "
                    "publish order; spreading with keys is tested in test_kafka_adapter.py",
    "no_responders": "kafka: a broker log has no notion of 'nobody subscribed'; requests time out",
}
