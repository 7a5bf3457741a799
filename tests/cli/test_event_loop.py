"""``serve`` runs its services on uvloop when it is installed; ``--event-loop asyncio`` / ``LOWLAT_EVENT_LOOP``
opts out; a value that is not a loop kind is a one-line config error."""

from __future__ import annotations

import importlib.util
import json
import uuid

import pytest
from _services_util import service
from test_cli_errors import run_cli

from lowlat.services import _loop


def _ready_loop(*args: str, env: dict[str, str] | None = None) -> str:
    p = service("serve", "validator", "--transport", f"shm://evl-{uuid.uuid4().hex[:8]}", *args, env=env)
    try:
        line = p.wait_for('"ready"', timeout=30)
    finally:
        p.terminate()
    assert p.wait(30) == 0, p.output[-3000:]
    return json.loads(line)["event_loop"]


def test_default_is_uvloop_when_installed():
    want = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    assert _ready_loop() == want == _loop.resolve("auto")


def test_asyncio_opt_out_by_flag_and_by_env():
    assert _ready_loop("--event-loop", "asyncio") == "asyncio"
    assert _ready_loop(env={"LOWLAT_EVENT_LOOP": "asyncio"}) == "asyncio"


def test_unknown_loop_is_a_config_error():
    r = run_cli("serve", "validator", "--transport", "shm://evl-bad", "--event-loop", "tokio")
    assert r.returncode == 2 and "event" in r.stderr and "tokio" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_uvloop_insisted_on_but_missing(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(ValueError, match="uvloop"):
        _loop.resolve("uvloop")
    assert _loop.resolve("auto") == "asyncio"
