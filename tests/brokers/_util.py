"""Shared helpers for broker fixtures: free loopback ports, waiting for a port, the skip-or-fail rule."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time

import pytest

LOOPBACK = "127.0.0.1"  # never bind brokers anywhere else


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def missing(what: str, how: str) -> None:
    """A broker/binary the tests need is absent: a failure in CI, a clear skip for a user."""
    msg = f"{what} is not installed; install it with `{how}` (tests/run.sh does this)"
    if in_ci():
        pytest.fail(msg, pytrace=False)
    pytest.skip(msg)


def require_binary(name: str, how: str, env: str | None = None) -> str:
    """Path of an executable (from $env if given, else PATH), or skip/fail via `missing`."""
    path = os.environ.get(env) if env else None
    path = path or shutil.which(name)
    if not path:
        missing(name, how)
    return path  # type: ignore[return-value]


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def free_port_pair() -> int:
    """A port ``p`` with ``p`` and ``p + 1`` both free right now: a ``zmq+tcp://host:p`` hub binds both (XPUB at
    ``p``, ROUTER at ``p + 1``), and ``free_port`` alone says nothing about ``p + 1``."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as a:
            a.bind((LOOPBACK, 0))
            p = a.getsockname()[1]
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as b:
                    b.bind((LOOPBACK, p + 1))
            except OSError:
                continue
            return p
    raise RuntimeError("no two consecutive free ports on 127.0.0.1")


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 15.0, proc: subprocess.Popen | None = None) -> None:
    """Block until something accepts TCP connections on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection((LOOPBACK, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {LOOPBACK}:{port} after {timeout}s")


def stop(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it does not exit in time."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


# --- transport conformance endpoints ---
from dataclasses import dataclass, field  # noqa: E402
from typing import Any  # noqa: E402


@dataclass
class Endpoint:
    """What the transport conformance suite needs to reach one adapter.

    ``url`` and ``options`` go to ``lowlat.transport.connect(url, **options)`` for the first ("server") transport;
    ``peer_options`` (default: ``options``) for further transports joining the same endpoint (e.g. zmq's
    ``bind=False`` side).  ``caps`` lists what the adapter supports by design; a conformance test needing a
    capability not listed is skipped with the reason in ``missing_caps`` (or a generic one).

    Capability names: ``wildcards``, ``queue_groups``, ``headers``, ``request_reply``, ``no_responders``
    (request with no subscriber fails fast), ``multi_transport`` (two transports on one endpoint see each
    other), ``flow_control`` (max_pending limits, dropped counter), ``jetstream``, ``large_payload``.
    """

    url: str
    options: dict[str, Any] = field(default_factory=dict)
    caps: frozenset[str] = frozenset()
    peer_options: dict[str, Any] | None = None
    missing_caps: dict[str, str] = field(default_factory=dict)  # capability -> why the adapter lacks it
    max_payload: int = 1 << 20  # largest payload the large-payload test sends
    settle: float = 0.0  # seconds to wait after subscribing before a *peer* publishes (0 = not needed)

    def connect(self, peer: bool = False, **extra: Any):
        from lowlat.transport import connect

        opts = dict(self.options if not peer or self.peer_options is None else self.peer_options)
        opts.update(extra)
        return connect(self.url, **opts)

    def require(self, *caps: str) -> None:
        for c in caps:
            if c not in self.caps:
                pytest.skip(self.missing_caps.get(c, f"{self.url.split(':')[0]} has no {c!r} by design"))
