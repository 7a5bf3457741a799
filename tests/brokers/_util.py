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
