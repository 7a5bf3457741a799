"""Helpers for the services/examples tests: start real processes, wait until they are ready, stop them."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


class Proc:
    """A child process whose stdout+stderr lines are collected by a reader thread."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        e = dict(os.environ)
        e["PYTHONPATH"] = os.pathsep.join([str(ROOT), e.get("PYTHONPATH", "")])
        e["PYTHONUNBUFFERED"] = "1"
        e.update(env or {})
        self.args = args
        self.p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                  text=True, cwd=str(ROOT), env=e)
        self.lines: list[str] = []
        self._q: queue.Queue[str] = queue.Queue()
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()

    def _read(self) -> None:
        assert self.p.stdout is not None
        for line in self.p.stdout:
            self.lines.append(line)
            self._q.put(line)

    def wait_for(self, needle: str, timeout: float = 30.0, *, line: bool = False) -> str:
        """Block until a line containing ``needle`` appears (``line=True``: a line that is exactly ``needle``, so
        "ready" is not matched by "Address already in use"); raise with the output so far otherwise."""
        deadline = time.monotonic() + timeout
        found = (lambda s: s.rstrip("\r\n") == needle) if line else (lambda s: needle in s)
        for seen in list(self.lines):
            if found(seen):
                return seen
        while time.monotonic() < deadline:
            try:
                line = self._q.get(timeout=0.1)
            except queue.Empty:
                if self.p.poll() is not None and self._q.empty():
                    break
                continue
            if found(line):
                return line
        raise AssertionError(f"{needle!r} not seen from {self.args}; rc={self.p.poll()}; output:\n{self.output}")

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait(self, timeout: float = 60.0) -> int:
        try:
            rc = self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"{self.args} did not exit in {timeout}s; output:\n{self.output}") from None
        self._t.join(5)
        return rc

    def terminate(self) -> None:
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait(10)


def stop_all(procs: list[Proc], timeout: float = 30.0) -> None:
    """SIGTERM every process, then wait for each (``Proc.wait`` SIGKILLs one that does not exit in time)."""
    for p in procs:
        p.terminate()
    for p in procs:
        if p.p.poll() is None:
            try:
                p.wait(timeout)
            except AssertionError:
                pass  # already killed by wait(); teardown must not mask the test's own failure


def example(name: str, *args: str) -> Proc:
    return Proc([sys.executable, str(EXAMPLES / name), *args])


def service(*args: str, env: dict[str, str] | None = None) -> Proc:
    """``python -m lowlat.services ...`` (the same commands as ``lowlat ...``)."""
    return Proc([sys.executable, "-m", "lowlat.services", *args], env=env)
