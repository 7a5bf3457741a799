"""Circuit breakers for downstream request/reply calls (a risk check, a reference-data lookup).

A dependency that is down or slow must not make every caller wait its full timeout: after ``failures`` failed
calls in a row (an error, a timeout, no responder, or a reply slower than ``slow_call_s``) the target's breaker
*opens* and calls fail at once with ``CircuitOpenError``; after ``reset_s`` it is *half-open* and lets
``half_open_calls`` trial calls through: a trial that succeeds *closes* it, one that fails opens it again.
State is per target (by default the request subject), and every transition is one log line (logger
``lowlat.breaker``: WARNING when opening, INFO otherwise) and counted in the metrics that ``/metrics`` exports
(``lowlat_breaker_state``, ``lowlat_breaker_transitions_total``, ``lowlat_breaker_rejected_total``,
``lowlat_breaker_failures_total``, ``lowlat_breaker_calls_total``).

Cost: a closed breaker adds two ``time.monotonic()`` calls and a few attribute updates to a call, no extra await:
0.5-1.2 µs per call on the loaded benchmark VM, about 40 % of purgatory's overhead in the same runs
(``benchmarks/bench_ops.py``).  Why not a library: purgatory (the maintained asyncio breaker) counts only
exceptions, so a slow but successful reply cannot count as a failure without throwing the reply away, and its
asynchronous unit of work costs 1.4-2.6 µs and several awaits per call; aiobreaker has had no release since 2021.

    breakers = Breakers(transport, failures=5, slow_call_s=0.05, reset_s=1.0)
    reply = await breakers.request("risk.check", payload, timeout=0.2)   # CircuitOpenError while open
"""

from __future__ import annotations

import enum
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

from .errors import CircuitOpenError, MaxPayloadError, NoRespondersError, TransportClosedError, TransportError

__all__ = ["Breaker", "Breakers", "CircuitOpenError", "State", "breaker_families"]

log = logging.getLogger("lowlat.breaker")
T = TypeVar("T")


class State(enum.IntEnum):
    """Exported as the value of ``lowlat_breaker_state``."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


class Breaker:
    """The breaker of one target.  ``call(fn)`` runs ``await fn()`` through it.

    Parameters
    ----------
    target : name in logs, metrics and ``CircuitOpenError.target``.
    failures : consecutive failed calls that open the breaker (>= 1).
    slow_call_s : a call that succeeds but takes longer counts as a failure (``None``: only errors count).
    reset_s : seconds the breaker stays open before letting trial calls through.
    half_open_calls : trial calls let through at once while half-open (the others fail fast).
    counts / ignores : exception types that count as a failure of the target / that do not (a message too
        large or our own closed transport is not the target's fault).  Other exceptions pass through uncounted.
    clock : ``time.monotonic`` (a test or a simulation may pass its own).
    """

    def __init__(self, target: str, *, failures: int = 5, slow_call_s: float | None = None, reset_s: float = 1.0,
                 half_open_calls: int = 1, counts: tuple[type[BaseException], ...] = (TransportError,),
                 ignores: tuple[type[BaseException], ...] = (MaxPayloadError, TransportClosedError,
                                                             CircuitOpenError),
                 clock: Callable[[], float] = time.monotonic) -> None:
        if failures < 1:
            raise ValueError(f"failures must be >= 1, got {failures}")
        if reset_s <= 0 or (slow_call_s is not None and slow_call_s <= 0):
            raise ValueError("reset_s and slow_call_s must be > 0")
        if half_open_calls < 1:
            raise ValueError(f"half_open_calls must be >= 1, got {half_open_calls}")
        self.target = target
        self.failures = failures
        self.slow_call_s = slow_call_s
        self.reset_s = reset_s
        self.half_open_calls = half_open_calls
        self.counts = counts
        self.ignores = ignores
        self.clock = clock
        self.state = State.CLOSED
        self.consecutive = 0           # failed calls in a row (closed)
        self.opened_at = 0.0
        self.trials = 0                # trial calls in flight (half-open)
        self.epoch = 0                 # bumped on every transition: outcomes of calls admitted before are ignored
        self.calls = 0
        self.rejected = 0              # fast failures while open / half-open and full
        self.failed = {"error": 0, "timeout": 0, "no_responders": 0, "slow": 0}
        self.transitions: dict[str, int] = {s.name.lower(): 0 for s in State}
        self.last_reason = ""

    # --- state machine ---
    def _move(self, to: State, reason: str) -> None:
        frm = self.state
        self.state = to
        self.epoch += 1
        self.transitions[to.name.lower()] += 1
        self.last_reason = reason
        if to is State.OPEN:
            self.opened_at = self.clock()
            self.trials = 0
        elif to is State.CLOSED:
            self.consecutive = 0
        log.log(logging.WARNING if to is State.OPEN else logging.INFO, "circuit breaker %s: %s -> %s (%s)",
                self.target, frm.name.lower(), to.name.lower(), reason,
                extra={"target": self.target, "from": frm.name.lower(), "to": to.name.lower(), "reason": reason,
                       "consecutive_failures": self.consecutive})

    def retry_in(self) -> float:
        """Seconds until an open breaker lets a trial call through (0 when it would now)."""
        if self.state is not State.OPEN:
            return 0.0
        return max(0.0, self.opened_at + self.reset_s - self.clock())

    def _admit(self) -> tuple[int, bool]:
        """(epoch, is_trial) of a call let through, or ``CircuitOpenError``."""
        if self.state is State.OPEN:
            wait = self.retry_in()
            if wait > 0:
                self.rejected += 1
                raise CircuitOpenError(f"circuit open for {self.target!r} ({self.last_reason}); next trial in "
                                       f"{wait * 1e3:.0f} ms", self.target, wait)
            self._move(State.HALF_OPEN, f"open for {self.reset_s:g} s")
        if self.state is State.HALF_OPEN:
            if self.trials >= self.half_open_calls:
                self.rejected += 1
                raise CircuitOpenError(f"circuit half-open for {self.target!r}: {self.trials} trial call(s) in "
                                       "flight", self.target, 0.0)
            self.trials += 1
            return self.epoch, True
        return self.epoch, False

    def _failure(self, epoch: int, trial: bool, kind: str, reason: str) -> None:
        self.failed[kind] += 1
        if epoch != self.epoch:      # admitted before the last transition: its outcome is old news
            return
        if trial:
            self.trials -= 1
            self._move(State.OPEN, f"trial call failed: {reason}")
            return
        self.consecutive += 1
        if self.consecutive >= self.failures:
            self._move(State.OPEN, f"{self.consecutive} failed calls in a row, last: {reason}")

    def _success(self, epoch: int, trial: bool) -> None:
        if epoch != self.epoch:
            return
        if trial:
            self.trials -= 1
            self._move(State.CLOSED, "trial call succeeded")
        else:
            self.consecutive = 0

    async def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        """``await fn()`` through the breaker: ``CircuitOpenError`` at once while open; its result otherwise."""
        epoch, trial = self._admit()
        self.calls += 1
        t0 = self.clock()
        try:
            out = await fn()
        except self.ignores:
            if trial and epoch == self.epoch:
                self.trials -= 1
            raise
        except self.counts as e:
            kind = ("no_responders" if isinstance(e, NoRespondersError) else
                    "timeout" if isinstance(e, TimeoutError) else "error")
            self._failure(epoch, trial, kind, f"{type(e).__name__}: {str(e)[:120]}")
            raise
        except BaseException:        # cancelled, or not the target's fault: no verdict, free the trial slot
            if trial and epoch == self.epoch:
                self.trials -= 1
            raise
        took = self.clock() - t0
        if self.slow_call_s is not None and took > self.slow_call_s:
            self._failure(epoch, trial, "slow", f"reply took {took * 1e3:.1f} ms > {self.slow_call_s * 1e3:g} ms")
        else:
            self._success(epoch, trial)
        return out

    def snapshot(self) -> dict[str, Any]:
        return {"target": self.target, "state": self.state.name.lower(), "calls": self.calls,
                "rejected": self.rejected, "failed": dict(self.failed), "transitions": dict(self.transitions),
                "consecutive_failures": self.consecutive, "retry_in_s": self.retry_in()}


class Breakers:
    """Per-target breakers around one transport's ``request()`` (target = subject unless ``target=`` is given).

    ``name`` labels this group in the metrics (e.g. the calling service); the keyword options are those of
    ``Breaker`` and apply to every target created here.
    """

    def __init__(self, transport: Any = None, *, name: str = "default", **options: Any) -> None:
        self.transport = transport
        self.name = name
        self.options = options
        Breaker("_check", **options)  # a bad option fails here, not on the first call
        self.breakers: dict[str, Breaker] = {}
        _GROUPS.add(self)

    def breaker(self, target: str) -> Breaker:
        b = self.breakers.get(target)
        if b is None:
            b = self.breakers[target] = Breaker(target, **self.options)
        return b

    async def call(self, target: str, fn: Callable[[], Awaitable[T]]) -> T:
        return await self.breaker(target).call(fn)

    async def request(self, subject: str, payload: Any, *, timeout: float = 1.0, target: str | None = None,
                      **kw: Any) -> Any:
        """``transport.request(subject, payload, timeout=...)`` through the target's breaker."""
        t = self.transport
        if t is None:
            raise ValueError("Breakers(transport=None) has no transport to request through: use call()")
        return await self.breaker(target or subject).call(lambda: t.request(subject, payload, timeout=timeout,
                                                                             **kw))


_GROUPS: weakref.WeakSet[Breakers] = weakref.WeakSet()


def breaker_families() -> Iterator[Any]:
    """Prometheus metric families of every live ``Breakers`` group (``lowlat.services.metrics`` exports them)."""
    groups = [g for g in list(_GROUPS) if g.breakers]
    if not groups:
        return
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    state = GaugeMetricFamily("lowlat_breaker_state", "Circuit breaker state: 0 closed, 1 half-open, 2 open",
                              labels=["group", "target"])
    trans = CounterMetricFamily("lowlat_breaker_transitions", "Circuit breaker transitions, by the state entered",
                                labels=["group", "target", "to"])
    rej = CounterMetricFamily("lowlat_breaker_rejected", "Calls failed fast because the breaker was open",
                              labels=["group", "target"])
    fail = CounterMetricFamily("lowlat_breaker_failures", "Calls that counted as failures, by kind (error, "
                               "timeout, no_responders, slow)", labels=["group", "target", "kind"])
    calls = CounterMetricFamily("lowlat_breaker_calls", "Calls let through the breaker", labels=["group", "target"])
    for g in groups:
        for target, b in list(g.breakers.items()):
            state.add_metric([g.name, target], int(b.state))
            for to, n in b.transitions.items():
                trans.add_metric([g.name, target, to], n)
            rej.add_metric([g.name, target], b.rejected)
            for kind, n in b.failed.items():
                fail.add_metric([g.name, target, kind], n)
            calls.add_metric([g.name, target], b.calls)
    yield from (state, trans, rej, fail, calls)
