"""Idle strategies: what a waiting loop does when a poll found no work (Aeron's IdleStrategy family).

One family for every waiting loop of lowlat: blocking ring calls (``SpscRing.pop(idle=...)``, GIL released),
the Aeron binding's ``offer_wait``/``poll_wait`` and the asyncio pollers of the transports (which call
``step`` and await what it asks for).  Wherever a strategy is accepted, its kind name is accepted too
(``"busy_spin"``, ``"yield"``, ``"sleep"``, ``"backoff"``: a fresh strategy with the default parameters),
and ``None`` means ``BackoffIdle()``.

Defaults (the one set): ``BackoffIdle(max_spins=10, max_yields=5, min_park_ns=1000, max_park_ns=1000000)``;
``SleepingIdle(park_ns=1000)``.  Linux sleeps at least the thread's timer slack (50 µs by default) once
a strategy parks.
"""

cimport cython
from cpython.exc cimport PyErr_CheckSignals
from libc.stdint cimport int64_t, uint32_t

DEFAULT_MAX_SPINS = 10
DEFAULT_MAX_YIELDS = 5
DEFAULT_MIN_PARK_NS = 1_000
DEFAULT_MAX_PARK_NS = 1_000_000
SPIN = LL_IDLE_ACT_SPIN
YIELD = LL_IDLE_ACT_YIELD

_NAMES = {LL_IDLE_BUSY: "busy_spin", LL_IDLE_YIELD: "yield", LL_IDLE_SLEEP: "sleep", LL_IDLE_BACKOFF: "backoff"}


cdef void _configure(ll_idle_t* c, int kind, uint32_t max_spins, uint32_t max_yields, int64_t min_park_ns,
                     int64_t max_park_ns) noexcept:
    # Every parameter at once, then fresh state; a kind ignores the parameters it has no use for (sleep: the
    # spin/yield counts; busy spin and yield: all of them).
    c.kind = kind
    c.max_spins = max_spins
    c.max_yields = max_yields
    c.min_park_ns = min_park_ns
    c.max_park_ns = max_park_ns
    ll_idle_reset(c)


cdef class IdleStrategy:
    """How a waiting loop idles.  Use one of the subclasses (or its kind name, see ``idle_strategy``).

    A blocking ring call copies the parameters and keeps its own state, so one strategy object can serve
    many calls and threads.  ``idle()`` and ``step()`` advance the state held by this object: use one
    object per waiting loop for those."""

    def __cinit__(self):
        _configure(&self.cfg, LL_IDLE_BACKOFF, DEFAULT_MAX_SPINS, DEFAULT_MAX_YIELDS, DEFAULT_MIN_PARK_NS,
                   DEFAULT_MAX_PARK_NS)

    @property
    def name(self) -> str:
        """Kind name: ``"busy_spin"``, ``"yield"``, ``"sleep"`` or ``"backoff"``."""
        return _NAMES[self.cfg.kind]

    def __repr__(self):
        # the constructor call that makes an equal strategy
        cdef ll_idle_t* c = &self.cfg
        if c.kind == LL_IDLE_SLEEP:
            args = f"park_ns={c.min_park_ns}"
        elif c.kind == LL_IDLE_BACKOFF:
            args = (f"max_spins={c.max_spins}, max_yields={c.max_yields}, min_park_ns={c.min_park_ns}, "
                    f"max_park_ns={c.max_park_ns}")
        else:
            args = ""
        return f"{type(self).__name__}({args})"

    cdef int idle_c(self, int work_count) except -1:
        cdef int64_t action
        if work_count > 0:
            ll_idle_reset(&self.cfg)
            return 0
        action = ll_idle_step(&self.cfg)
        if action == LL_IDLE_ACT_SPIN:
            ll_cpu_relax()          # releasing the GIL would cost more than the pause
            return 0
        with nogil:
            ll_idle_act(action)
        PyErr_CheckSignals()        # a waiting loop must stay interruptible (Ctrl-C)
        return 0

    def idle(self, int work_count=0) -> None:
        """Idle once after a duty cycle that did ``work_count`` units of work (0 = nothing happened).

        Work resets the backoff and returns at once; otherwise pause (GIL kept), yield or park (GIL
        released) as the strategy says."""
        self.idle_c(work_count)

    def step(self, int work_count=0) -> int:
        """Advance the state like ``idle`` but do not wait: return what the caller should do.

        Returns ``SPIN`` (0: poll again now), ``YIELD`` (-1: give the core away once, e.g.
        ``os.sched_yield()``) or a positive number of ns to park.  For loops that cannot block, such as
        an asyncio poller (``await asyncio.sleep(ns / 1e9)``)."""
        if work_count > 0:
            ll_idle_reset(&self.cfg)
            return LL_IDLE_ACT_SPIN
        return ll_idle_step(&self.cfg)

    def reset(self) -> None:
        """Forget the backoff state (the next idle period starts spinning again)."""
        ll_idle_reset(&self.cfg)


@cython.final
cdef class BusySpinIdle(IdleStrategy):
    """Spin with the CPU's pause instruction: lowest latency, burns a whole core.

    On a machine with few cores let at most one side of a ring busy-spin."""

    def __init__(self):
        self.cfg.kind = LL_IDLE_BUSY


@cython.final
cdef class YieldingIdle(IdleStrategy):
    """Call ``sched_yield()`` between polls: low latency, lets other runnable threads use the core."""

    def __init__(self):
        self.cfg.kind = LL_IDLE_YIELD


@cython.final
cdef class SleepingIdle(IdleStrategy):
    """Sleep ``park_ns`` (ns) between polls: little CPU, wake-up latency of at least the timer slack."""

    def __init__(self, *, int64_t park_ns=DEFAULT_MIN_PARK_NS):
        if park_ns < 1:
            raise ValueError(f"SleepingIdle: need park_ns >= 1, got {park_ns}")
        _configure(&self.cfg, LL_IDLE_SLEEP, DEFAULT_MAX_SPINS, DEFAULT_MAX_YIELDS, park_ns, park_ns)

    @property
    def park_ns(self):
        return self.cfg.min_park_ns


@cython.final
cdef class BackoffIdle(IdleStrategy):
    """Aeron's BackoffIdleStrategy: spin ``max_spins`` times, yield ``max_yields`` times, then sleep
    from ``min_park_ns`` doubling up to ``max_park_ns`` (ns).  The default wherever a strategy is taken."""

    def __init__(self, *, int max_spins=DEFAULT_MAX_SPINS, int max_yields=DEFAULT_MAX_YIELDS,
                 int64_t min_park_ns=DEFAULT_MIN_PARK_NS, int64_t max_park_ns=DEFAULT_MAX_PARK_NS):
        if max_spins < 0 or max_yields < 0 or min_park_ns < 1 or max_park_ns < min_park_ns:
            raise ValueError("BackoffIdle: need max_spins >= 0, max_yields >= 0, "
                             "1 <= min_park_ns <= max_park_ns")
        _configure(&self.cfg, LL_IDLE_BACKOFF, max_spins, max_yields, min_park_ns, max_park_ns)

    @property
    def max_spins(self):
        return self.cfg.max_spins

    @property
    def max_yields(self):
        return self.cfg.max_yields

    @property
    def min_park_ns(self):
        return self.cfg.min_park_ns

    @property
    def max_park_ns(self):
        return self.cfg.max_park_ns


_KINDS = {"busy_spin": BusySpinIdle, "yield": YieldingIdle, "sleep": SleepingIdle, "backoff": BackoffIdle}


def idle_strategy(idle=None) -> IdleStrategy:
    """The strategy for ``idle``: the object itself, a fresh one with default parameters for a kind name
    (``"busy_spin"``, ``"yield"``, ``"sleep"``, ``"backoff"``), ``BackoffIdle()`` for None.

    Raises ``ValueError`` for an unknown kind name and ``TypeError`` for anything else."""
    if idle is None:
        return BackoffIdle()
    return as_idle(idle, None)


cdef IdleStrategy as_idle(object idle, IdleStrategy dflt):
    if idle is None:
        return dflt if dflt is not None else BackoffIdle()
    if isinstance(idle, IdleStrategy):
        return <IdleStrategy>idle
    if isinstance(idle, str):
        kind = _KINDS.get(idle)
        if kind is None:
            raise ValueError(f"unknown idle strategy {idle!r}; one of {sorted(_KINDS)}")
        return kind()
    raise TypeError(f"idle must be a lowlat IdleStrategy (BusySpinIdle, YieldingIdle, SleepingIdle, "
                    f"BackoffIdle) or its kind name, not {type(idle).__name__}")


cdef ll_idle_t idle_cfg(object idle, IdleStrategy dflt) except *:
    cdef ll_idle_t cfg = as_idle(idle, dflt).cfg
    ll_idle_reset(&cfg)
    return cfg
