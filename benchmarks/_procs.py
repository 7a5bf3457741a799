"""Peer processes for the cross-process benchmarks: start one that prints ``ready``, stop it afterwards."""

from __future__ import annotations

import subprocess


def start_ready(cmd: list[str], what: str, **popen_kw) -> subprocess.Popen:
    """Start ``cmd`` and block until its first stdout line is ``ready`` (RuntimeError otherwise)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, **popen_kw)
    line = proc.stdout.readline()
    if line.strip() != "ready":
        proc.kill()
        raise RuntimeError(f"{what} did not start: {line!r}")
    return proc


def stop_proc(proc: subprocess.Popen, timeout: float = 5.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``timeout`` s."""
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
