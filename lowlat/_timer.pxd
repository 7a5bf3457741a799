# lowlat._timer: an absolute-deadline wake-up for event loops, a Linux timerfd on CLOCK_MONOTONIC.
#
# Why a timerfd: asyncio's epoll selector and libuv round every timeout up to whole milliseconds, and poll/epoll
# timeouts also get the thread's timer slack (50 µs by default).  A timerfd's expiry is an hrtimer with ns
# resolution and no slack; the loop only watches its fd (add_reader), so it works on any selector loop.
from libc.stdint cimport int64_t
cimport cython


@cython.final
cdef class DeadlineTimer:
    cdef int _fd                   # the timerfd, -1 once closed
    cdef readonly int64_t deadline_ns  # armed deadline, CLOCK_MONOTONIC ns (time.perf_counter_ns); 0 = disarmed
    cdef int _set_c(self, int64_t deadline_ns) except -1
