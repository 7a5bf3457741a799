"""examples/container/Dockerfile built and run with podman (tests/setup/50-podman.sh): the image runs as uid 10001
without a compiler, ``lowlat doctor`` works inside, and a containerised validator answers a load generator on the
host over a real nats-server, then drains and exits 0 on SIGTERM (``podman stop``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest
from _services_util import ROOT
from brokers._util import missing

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3000)]  # the image build takes minutes
IMAGE = "localhost/lowlat:suite"
HOST_CA = "/etc/ssl/certs/ca-certificates.crt"


def _podman() -> str:
    path = os.environ.get("LOWLAT_PODMAN")
    if not path:
        missing("a container engine that runs here (podman)", "bash tests/setup/50-podman.sh")
    return path  # type: ignore[return-value]


def _run(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([_podman(), *args], capture_output=True, text=True, timeout=timeout, check=False,
                       stdin=subprocess.DEVNULL)
    if check:
        assert r.returncode == 0, f"podman {' '.join(args)}: rc {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


@pytest.fixture(scope="module")
def image() -> str:
    base = os.environ.get("LOWLAT_CONTAINER_BASE", "python:3.11-slim")
    args = ["build", "--network", "host", "--build-arg", f"BASE={base}", "-f", "examples/container/Dockerfile",
            "-t", IMAGE]
    if os.path.exists(HOST_CA):  # this machine's trust store (a TLS-intercepting proxy's CA may be in it) for pip
        args += ["-v", f"{HOST_CA}:/run/host-ca.crt:ro", "--build-arg", "PIP_CERT=/run/host-ca.crt"]
    r = subprocess.run([_podman(), *args, str(ROOT)], capture_output=True, text=True, timeout=2400, check=False,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 0, f"podman build failed:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
    return IMAGE


def test_runs_as_non_root_without_a_compiler(image):
    r = _run("run", "--rm", "--network", "none", "--entrypoint", "sh", image, "-c",
             "id -u; id -g; command -v gcc cc || echo no-cc")
    assert r.stdout.split() == ["10001", "10001", "no-cc"], r.stdout


def test_doctor_inside_the_container(image):
    r = _run("run", "--rm", "--network", "none", image, "doctor", "--json")
    checks = {c["name"]: c for c in json.loads(r.stdout)["checks"]}
    assert {"cpus", "isolcpus", "governor", "smt", "affinity", "thp", "busy_spin"} <= set(checks)


def test_validator_in_the_container_answers_and_drains(image, nats_server):
    name = f"lowlat-suite-{uuid.uuid4().hex[:8]}"
    _run("run", "-d", "--name", name, "--network", "host", image, "serve", "validator", "--transport",
         nats_server.url)
    try:
        deadline_logs = ""
        for _ in range(600):
            deadline_logs = _run("logs", name).stderr + _run("logs", name).stdout
            if '"ready"' in deadline_logs:
                break
            subprocess.run(["sleep", "0.1"], check=False)
        assert '"ready"' in deadline_logs, deadline_logs
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        lg = subprocess.run([sys.executable, "-m", "lowlat", "loadgen", "--transport", nats_server.url, "--count",
                             "500", "--rate", "2000", "--no-progress", "--json"], capture_output=True, text=True,
                            timeout=120, env=env, check=False)
        assert lg.returncode == 0, lg.stdout + lg.stderr
        res = json.loads(lg.stdout)
        assert res["answered"] == res["sent"] == 500, res
        _run("stop", "-t", "20", name)
        state = _run("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip()
        logs = _run("logs", name)
        assert state == "0", logs.stdout + logs.stderr
        assert '"shutdown complete"' in logs.stdout + logs.stderr
    finally:
        _run("rm", "-f", name, check=False)
