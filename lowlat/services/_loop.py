"""The services' event loop: uvloop when it is installed (``event_loop="auto"``), else asyncio's own.

Why: uvloop's loop iteration and socket calls are compiled, which took 0-30 µs off a NATS round trip on the
development VM (BENCHMARKS.md, core NATS).  ``event_loop="asyncio"`` (``--event-loop asyncio``,
``LOWLAT_EVENT_LOOP=asyncio``) opts out; ``"uvloop"`` insists and fails with a config error when it is missing.
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Coroutine
from typing import Any, TypeVar

from .config import ConfigError

__all__ = ["loop_name", "resolve", "run"]

T = TypeVar("T")


def resolve(kind: str) -> str:
    """``"uvloop"`` or ``"asyncio"``: what ``run`` uses for ``kind`` (``auto``, ``asyncio``, ``uvloop``)."""
    if kind == "asyncio":
        return "asyncio"
    if importlib.util.find_spec("uvloop") is None:
        if kind == "uvloop":
            raise ConfigError("event_loop 'uvloop' needs the uvloop package: pip install uvloop (or use 'auto')")
        return "asyncio"
    return "uvloop"


def run(main: Coroutine[Any, Any, T], kind: str = "auto") -> T:
    """``asyncio.run(main)`` on the loop ``kind`` resolves to."""
    if resolve(kind) == "uvloop":
        import uvloop

        return uvloop.run(main)
    return asyncio.run(main)


def loop_name() -> str:
    """The running loop's kind, for logs: ``"uvloop"`` or ``"asyncio"``."""
    return type(asyncio.get_running_loop()).__module__.split(".", 1)[0]
