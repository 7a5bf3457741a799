# The idle-strategy family of lowlat: what a waiting loop does when a poll found nothing.  Cimported by
# lowlat._ring (blocking ring calls, GIL released) and lowlat._aeron (offer/poll waits); asyncio pollers
# use IdleStrategy.step from Python.  The state machine itself is C (_idle.h).
from libc.stdint cimport int64_t, uint32_t


cdef extern from "_idle.h" nogil:
    ctypedef struct ll_idle_t:
        int kind               # LL_IDLE_BUSY / LL_IDLE_YIELD / LL_IDLE_BACKOFF / LL_IDLE_SLEEP
        uint32_t max_spins     # backoff: pause instructions before yielding
        uint32_t max_yields    # backoff: sched_yield calls before parking
        int64_t min_park_ns    # backoff: first sleep, ns; sleep: every sleep, ns
        int64_t max_park_ns    # backoff: sleep cap, ns
        uint32_t spins         # running state
        uint32_t yields        # running state
        int64_t park_ns        # running state
    enum:
        LL_IDLE_BUSY
        LL_IDLE_YIELD
        LL_IDLE_BACKOFF
        LL_IDLE_SLEEP
    enum:
        LL_IDLE_ACT_SPIN       # step result: poll again at once (after one pause instruction)
        LL_IDLE_ACT_YIELD      # step result: give the core away once (sched_yield)
    void ll_cpu_relax() noexcept
    int64_t ll_now_ns() noexcept
    void ll_sleep_ns(int64_t ns) noexcept
    void ll_idle_reset(ll_idle_t* s) noexcept
    int64_t ll_idle_step(ll_idle_t* s) noexcept   # LL_IDLE_ACT_SPIN, LL_IDLE_ACT_YIELD or ns to park
    void ll_idle_act(int64_t action) noexcept
    void ll_idle(ll_idle_t* s) noexcept


cdef class IdleStrategy:
    cdef ll_idle_t cfg         # parameters + the state of idle()/step() on this object
    # One idle period with the GIL held on entry: released around a yield or a park, kept for a pause;
    # checks signals after giving the GIL away.  work_count > 0 resets the backoff instead of waiting.
    cdef int idle_c(self, int work_count) except -1


# The strategy a blocking call uses: `idle` itself, a fresh one for a kind name, `dflt` for None.
cdef IdleStrategy as_idle(object idle, IdleStrategy dflt)
# Parameters of `idle` (as for as_idle) with fresh state, for one blocking call's private copy.
cdef ll_idle_t idle_cfg(object idle, IdleStrategy dflt) except *
