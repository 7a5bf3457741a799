"""Restartable nats-server nodes and a 3-node NATS cluster on 127.0.0.1 (faults with nothing lost).

``NatsNode`` is one nats-server whose port, JetStream file store and config survive ``kill()`` / ``stop()`` +
``start()`` (a broker restart mid-stream).  ``start_cluster(binary, workdir, n=3)`` starts ``n`` nodes with
client and route ports on free loopback ports, full-mesh routes and clustered JetStream (R3 streams possible);
``NatsCluster.url`` is the comma-separated list of all client URLs (``lowlat.transport.connect`` takes it).

Fixtures: ``nats_node`` (one restartable JetStream node, function-scoped) and ``nats_cluster`` (3 nodes,
function-scoped: tests kill nodes).
"""

from __future__ import annotations

import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ._util import LOOPBACK, free_port, stop, wait_port

__all__ = ["NatsCluster", "NatsNode", "nats_cluster", "nats_node", "start_cluster"]


@dataclass
class NatsNode:
    binary: str
    workdir: Path
    name: str
    port: int = 0
    cluster_port: int = 0
    routes: list[int] = field(default_factory=list)
    cluster_name: str | None = None
    proc: subprocess.Popen | None = None
    restarts: int = 0

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()

    @property
    def url(self) -> str:
        return f"nats://{LOOPBACK}:{self.port}"

    def config(self) -> str:
        lines = [f"listen: {LOOPBACK}:{self.port}", f'server_name: "{self.name}"', "max_payload: 8MB",
                 f'jetstream {{ store_dir: "{self.workdir / "js"}", max_memory_store: 64MB, max_file_store: 512MB }}']
        if self.cluster_name:
            routes = ", ".join(f"nats-route://{LOOPBACK}:{p}" for p in self.routes)
            lines.append(f'cluster {{ name: "{self.cluster_name}", listen: {LOOPBACK}:{self.cluster_port}, '
                         f"routes: [{routes}] }}")
        return "\n".join(lines) + "\n"

    def start(self, wait: bool = True) -> NatsNode:
        conf = self.workdir / "nats.conf"
        conf.write_text(self.config())
        log = open(self.workdir / "nats.log", "ab")
        self.proc = subprocess.Popen([self.binary, "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        log.close()
        if wait:
            try:
                wait_port(self.port, proc=self.proc)
            except Exception:
                self.stop()
                raise RuntimeError(f"nats-server {self.name} did not start:\n{self.log()[-2000:]}") from None
        return self

    def kill(self) -> None:
        """SIGKILL: no flush, no goodbye to clients or routes (a crash)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)

    def restart(self, down_s: float = 0.0) -> None:
        """Kill -9, stay down ``down_s`` seconds, start again on the same port with the same store."""
        self.kill()
        time.sleep(down_s)
        deadline = time.monotonic() + 10
        while True:  # the port can take a moment to be free again
            try:
                self.start()
                break
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        self.restarts += 1

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        p = self.workdir / "nats.log"
        return p.read_text(errors="replace") if p.exists() else ""


@dataclass
class NatsCluster:
    nodes: list[NatsNode]

    @property
    def url(self) -> str:
        return ",".join(n.url for n in self.nodes)

    def stop(self) -> None:
        for n in self.nodes:
            n.stop()


def start_cluster(binary: str, workdir: Path, n: int = 3, name: str = "lowlat") -> NatsCluster:
    """``n`` nodes, full-mesh routes on loopback, clustered JetStream; waits until JetStream has a leader."""
    cports = [free_port() for _ in range(n)]
    nodes = [NatsNode(binary, workdir / f"n{i}", f"{name}-n{i}", cluster_port=cports[i],
                      routes=[p for j, p in enumerate(cports) if j != i], cluster_name=name) for i in range(n)]
    try:
        for nd in nodes:
            nd.start()
        _wait_js_ready(nodes)
    except Exception:
        for nd in nodes:
            nd.stop()
        raise
    return NatsCluster(nodes)


def _wait_js_ready(nodes: list[NatsNode], timeout: float = 30.0) -> None:
    """Block until clustered JetStream can place a stream on every node (meta leader elected, peers known)."""
    import asyncio

    import nats

    async def probe() -> bool:
        try:
            nc = await nats.connect(servers=[n.url for n in nodes if n.alive], connect_timeout=1,
                                    allow_reconnect=False)
        except Exception:  # noqa: BLE001
            return False
        try:
            # a meta leader AND every peer known: an R<n> stream can be placed (then removed again)
            js = nc.jetstream()
            await js.add_stream(name="LOWLAT_PROBE", subjects=["lowlat.probe"], num_replicas=len(nodes))
            await js.delete_stream("LOWLAT_PROBE")
            return True
        except Exception:  # noqa: BLE001
            return False
        finally:
            await nc.close()

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if asyncio.run(probe()):
            return
        time.sleep(0.3)
    raise RuntimeError(f"NATS cluster: JetStream has no meta leader after {timeout}s:\n{nodes[0].log()[-2000:]}")


@pytest.fixture
def nats_node(nats_bin, tmp_path_factory):
    node = NatsNode(nats_bin, tmp_path_factory.mktemp("natsnode"), "lowlat-node").start()
    yield node
    node.stop()


@pytest.fixture
def nats_cluster(nats_bin, tmp_path_factory):
    c = start_cluster(nats_bin, tmp_path_factory.mktemp("natscluster"))
    yield c
    c.stop()
