"""Aeron fixtures: a real C media driver (``aeronmd`` 1.11.3, built by tests/setup/30-aeron.sh) per test session.

``start_aeronmd()`` starts one with its own ``AERON_DIR`` under /dev/shm (unique per session), SHARED threading
mode (conductor, sender and receiver on one thread) and the *sleeping* idle strategy with a 1 ms timer slack, so
an idle driver costs ~1% of a core instead of spinning one of this 2-core machine's cores.  Aeron 1.11.3's C
driver takes its configuration from environment variables only (``AERON_THREADING_MODE=SHARED`` etc.; there
are no ``-D`` arguments).  ``.stop()`` sends SIGINT (the driver's clean shutdown) and removes the directory.

Fixtures: ``aeron_driver`` (session), ``aeron_client`` (a ``lowlat._aeron.Client``), ``aeron_stream`` (a stream
id unused so far in this session), ``aeron_udp_channel`` (a free loopback UDP port), and ``endpoint_aeron_ipc`` /
``endpoint_aeron_udp`` for the transport conformance suite.
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from ._util import LOOPBACK, Endpoint, free_udp_port, missing, stop

__all__ = [
    "AERON_CAPS",
    "AeronDriver",
    "aeron_client",
    "aeron_driver",
    "aeron_stream",
    "aeron_udp_channel",
    "endpoint_aeron_ipc",
    "endpoint_aeron_udp",
    "find_aeronmd",
    "require_aeron_ext",
    "start_aeronmd",
]

HOW = "bash tests/setup/30-aeron.sh && . ~/.cache/lowlat/env.sh && pip install -e .  (builds Aeron 1.11.3)"

# By design: Aeron has no queue groups and cannot tell a requester that nobody serves a subject.
AERON_CAPS = frozenset({"wildcards", "headers", "request_reply", "multi_transport", "flow_control", "large_payload"})
AERON_MISSING = {
    "queue_groups": "aeron: every subscription receives every message (no queue groups)",
    "no_responders": "aeron: a request to an unserved subject times out (the driver cannot tell who consumes it)",
}
# Log buffers per publication: 8 MiB terms (x3) -> max message 1 MiB; sparse files keep /dev/shm use small.
TERM_LENGTH = 8 << 20
MAX_PAYLOAD = 512 << 10

_streams = itertools.count(2001, 2)   # even ids: each transport also uses stream_id + 1 for replies


def find_aeronmd() -> str | None:
    p = os.environ.get("LOWLAT_AERONMD")
    if p and os.access(p, os.X_OK):
        return p
    home = os.environ.get("AERON_HOME")
    if home and os.access(os.path.join(home, "bin", "aeronmd"), os.X_OK):
        return os.path.join(home, "bin", "aeronmd")
    cache = os.environ.get("LOWLAT_CACHE") or os.path.expanduser("~/.cache/lowlat")
    cached = os.path.join(cache, "aeron-1.11.3", "bin", "aeronmd")   # what tests/setup/30-aeron.sh installs
    if os.access(cached, os.X_OK):
        return cached
    return shutil.which("aeronmd")


def require_aeron_ext():
    """The compiled binding, or skip/fail (CI) with how to build it."""
    try:
        from lowlat import _aeron
    except ImportError:
        missing("the lowlat._aeron extension", "AERON_HOME=~/.cache/lowlat/aeron-1.11.3 pip install -e .")
    return _aeron


# Launcher that sets a 1 ms timer slack, then execs the driver (the slack survives exec).  The driver's "sleeping"
# idle strategy sleeps 1 ns, which the kernel stretches by the timer slack: ~1000 duty cycles/s instead of ~20000.
# (A separate process rather than preexec_fn: the test process has threads, and fork + ctypes there can deadlock.)
_SLACK_LAUNCHER = ("import ctypes, os, sys\n"
                   "try:\n    ctypes.CDLL(None, use_errno=True).prctl(29, 1000000, 0, 0, 0)  # PR_SET_TIMERSLACK\n"
                   "except OSError:\n    pass\n"
                   "os.execv(sys.argv[1], sys.argv[1:])\n")


@dataclass
class AeronDriver:
    aeron_dir: str
    proc: subprocess.Popen
    log: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)   # aeronmd's clean shutdown
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                stop(self.proc)
        shutil.rmtree(self.aeron_dir, ignore_errors=True)
        self.log.unlink(missing_ok=True)


def start_aeronmd(binary: str, *, idle: str = "sleeping", slack: bool = True, **env: str) -> AeronDriver:
    """Start ``aeronmd`` with a fresh ``AERON_DIR`` under /dev/shm; wait until its CnC file is ready."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") else "/tmp"
    aeron_dir = f"{base}/lowlat-aeron-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    log = Path(f"{aeron_dir}.log")
    full = dict(os.environ)
    full.update({
        "AERON_DIR": aeron_dir,
        "AERON_DIR_DELETE_ON_START": "1",
        "AERON_THREADING_MODE": "SHARED",
        "AERON_SHARED_IDLE_STRATEGY": idle,
        "AERON_TERM_BUFFER_LENGTH": str(TERM_LENGTH),
        "AERON_IPC_TERM_BUFFER_LENGTH": str(TERM_LENGTH),
        "AERON_TERM_BUFFER_SPARSE_FILE": "1",
        "AERON_PUBLICATION_LINGER_TIMEOUT": "100000000",   # ns: free closed publications after 0.1 s
    })
    full.update(env)
    with open(log, "wb") as out:
        cmd = [sys.executable, "-c", _SLACK_LAUNCHER, binary] if slack else [binary]
        proc = subprocess.Popen(cmd, env=full, stdout=out, stderr=subprocess.STDOUT)
    cnc = Path(aeron_dir) / "cnc.dat"
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"aeronmd exited with {proc.returncode}: {log.read_text(errors='replace')}")
        if cnc.exists() and cnc.stat().st_size > 0:
            return AeronDriver(aeron_dir, proc, log)
        time.sleep(0.02)
    stop(proc)
    raise TimeoutError(f"aeronmd did not create {cnc} within 15 s")


@pytest.fixture(scope="session")
def aeron_driver():
    binary = find_aeronmd()
    if not binary:
        missing("aeronmd (Aeron media driver)", HOW)
    drv = start_aeronmd(binary)
    try:
        yield drv
    finally:
        drv.stop()


@pytest.fixture
def aeron_client(aeron_driver):
    _aeron = require_aeron_ext()
    c = _aeron.Client(aeron_driver.aeron_dir)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def aeron_stream() -> int:
    return next(_streams)


@pytest.fixture
def aeron_udp_channel() -> str:
    return f"aeron:udp?endpoint={LOOPBACK}:{free_udp_port()}"


def _endpoint(url: str, driver: AeronDriver) -> Endpoint:
    require_aeron_ext()
    return Endpoint(url=url, options={"aeron_dir": driver.aeron_dir, "stream_id": next(_streams)},
                    caps=AERON_CAPS, missing_caps=AERON_MISSING, max_payload=MAX_PAYLOAD)


@pytest.fixture
def endpoint_aeron_ipc(aeron_driver) -> Endpoint:
    return _endpoint("aeron:ipc", aeron_driver)


@pytest.fixture
def endpoint_aeron_udp(aeron_driver, aeron_udp_channel) -> Endpoint:
    return _endpoint(aeron_udp_channel, aeron_driver)
