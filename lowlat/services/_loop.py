"""The services' event loop: uvloop when it is installed (``event_loop="auto"``), else asyncio's own.

Why: uvloop's loop iteration and socket calls are compiled, which took 0-30 µs off a NATS round trip on the
development VM (BENCHMARKS.md, core NATS).  ``event_loop="asyncio"`` (``--event-loop asyncio``,
``LOWLAT_EVENT_LOOP=asyncio``) opts out; ``"uvloop"`` insists and fails with a config error when it is missing.

``Pacer`` wakes a task at a deadline with µs precision on either loop: both round timer timeouts to whole
milliseconds (asyncio's epoll selector rounds up, so ``asyncio.sleep(200e-6)`` returns after ~1 ms; libuv
truncates, so on uvloop it returns at once and a waiting loop spins), and a thread-based waker would pay a GIL
hand-off and a self-pipe write per wake-up.
"""

from __future__ import annotations

import asyncio
import importlib.util
import time
from collections.abc import Coroutine
from typing import Any, Self, TypeVar

from .config import ConfigError

__all__ = ["Pacer", "loop_name", "resolve", "run"]

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


class Pacer:
    """Sleep until absolute ``time.perf_counter_ns()`` deadlines with µs precision, without spinning.

    A timerfd (``lowlat._timer.DeadlineTimer``) watched by the running loop (``add_reader``): the loop's wait
    ends when the kernel's hrtimer fires (no ms rounding, no timer slack), so the wake-up lag is the
    scheduler's wake-up latency (tens of µs on a busy 2-vCPU VM).  Cost per wait: two syscalls, one future
    and one extra loop iteration.  On a loop without ``add_reader`` (Windows' proactor) it falls back to
    ``asyncio.sleep`` and ``precise`` is False.

    One waiting task at a time; ``close`` it (or use ``with``) on the loop that made it.
    """

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._waiter: asyncio.Future[None] | None = None
        self._timer: Any = None
        try:
            from .._timer import DeadlineTimer

            timer = DeadlineTimer()
        except (ImportError, OSError):
            return
        try:
            self._loop.add_reader(timer.fileno(), self._fired)
        except NotImplementedError:
            timer.close()
            return
        self._timer = timer

    @property
    def precise(self) -> bool:
        """True when waits use the timerfd, False for the ``asyncio.sleep`` fallback (or once closed)."""
        return self._timer is not None

    def _fired(self) -> None:
        # level-triggered: reading the fd clears it, else the loop would call us again at once
        if self._timer.consume():
            w = self._waiter
            if w is not None and not w.done():
                w.set_result(None)

    async def sleep_until(self, deadline_ns: int) -> None:
        """Return at ``deadline_ns`` (``perf_counter_ns`` clock) or just after; at once if it has passed.

        Raises ``RuntimeError`` if another task is already waiting on this pacer."""
        timer = self._timer
        if timer is None:
            wait = deadline_ns - time.perf_counter_ns()
            if wait > 0:
                await asyncio.sleep(wait / 1e9)
            return
        if self._waiter is not None:
            raise RuntimeError("Pacer.sleep_until: another task is already waiting")
        timer.arm(max(1, deadline_ns))
        w = self._waiter = self._loop.create_future()
        try:
            await w
        finally:
            self._waiter = None
            if w.cancelled() or not w.done():  # do not leave a wake-up armed for the next waiter
                timer.disarm()
                timer.consume()

    def close(self) -> None:
        """Stop watching the timer and free its fd (idempotent)."""
        timer, self._timer = self._timer, None
        if timer is not None:
            if not self._loop.is_closed():
                self._loop.remove_reader(timer.fileno())
            timer.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
