"""A precise wake-up for event loops: ``DeadlineTimer``, a Linux timerfd armed with absolute deadlines.

Deadlines are CLOCK_MONOTONIC ns, the clock of ``time.perf_counter_ns()`` and ``time.monotonic_ns()`` on Linux.
The fd becomes readable when the deadline passes (an hrtimer: ns resolution, no timer slack), so an event
loop watching it with ``add_reader`` wakes within the scheduler's wake-up latency of the deadline instead of
at the next whole millisecond.  Cost: ``arm`` and ``consume`` are one syscall each (~0.5-1 µs).
"""

cimport cython
from libc.errno cimport EAGAIN, EINTR, errno
from libc.stdint cimport int64_t, uint64_t
from posix.time cimport itimerspec
from posix.unistd cimport close, read


cdef extern from "<sys/timerfd.h>" nogil:
    enum:
        CLOCK_MONOTONIC
        TFD_NONBLOCK
        TFD_CLOEXEC
        TFD_TIMER_ABSTIME
    int timerfd_create(int clockid, int flags)
    int timerfd_settime(int fd, int flags, const itimerspec* new_value, itimerspec* old_value)


@cython.final
cdef class DeadlineTimer:
    """A one-shot timer fd: ``arm(deadline_ns)``, watch ``fileno()`` for readability, then ``consume()``.

    Not thread-safe; one waiter at a time (re-arming replaces the deadline).  Close it, or let it be
    collected, to free the fd."""

    def __cinit__(self):
        self._fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)
        if self._fd < 0:
            raise OSError(errno, "timerfd_create failed")
        self.deadline_ns = 0

    def __dealloc__(self):
        if self._fd >= 0:
            close(self._fd)
            self._fd = -1

    cdef int _set_c(self, int64_t deadline_ns) except -1:
        # deadline_ns 0 disarms (an all-zero it_value means "disarm" to timerfd_settime)
        cdef itimerspec spec
        if self._fd < 0:
            raise ValueError("DeadlineTimer is closed")  # as for a closed file
        spec.it_interval.tv_sec = 0
        spec.it_interval.tv_nsec = 0
        spec.it_value.tv_sec = deadline_ns // 1_000_000_000
        spec.it_value.tv_nsec = deadline_ns % 1_000_000_000
        if timerfd_settime(self._fd, TFD_TIMER_ABSTIME, &spec, NULL) != 0:
            raise OSError(errno, "timerfd_settime failed")
        self.deadline_ns = deadline_ns
        return 0

    def fileno(self) -> int:
        """The timerfd, for ``loop.add_reader``; -1 once closed."""
        return self._fd

    def arm(self, int64_t deadline_ns) -> None:
        """Make the fd readable at ``deadline_ns`` (CLOCK_MONOTONIC ns); at once if that has passed.

        Replaces any earlier deadline and does not clear an expiry that was not consumed yet.  One syscall.

        Raises
        ------
        ValueError : ``deadline_ns`` < 1, or the timer is closed.
        """
        if deadline_ns < 1:
            raise ValueError(f"DeadlineTimer.arm: need deadline_ns >= 1, got {deadline_ns}")
        self._set_c(deadline_ns)

    def disarm(self) -> None:
        """Cancel the pending deadline (an expiry already signalled stays readable until ``consume``)."""
        self._set_c(0)

    def consume(self) -> int:
        """Clear the readable state: 1 if the deadline had passed (the fd was readable), else 0.  One syscall."""
        cdef uint64_t n = 0
        cdef Py_ssize_t r
        if self._fd < 0:
            raise ValueError("DeadlineTimer is closed")  # as for a closed file
        while True:
            r = read(self._fd, &n, sizeof(n))
            if r == sizeof(n):
                self.deadline_ns = 0
                return 1 if n else 0
            if r < 0 and errno == EINTR:
                continue
            if r < 0 and errno == EAGAIN:
                return 0
            raise OSError(errno, "read(timerfd) failed")

    def close(self) -> None:
        """Free the fd (idempotent).  Remove it from any loop first (``remove_reader``)."""
        if self._fd >= 0:
            close(self._fd)
            self._fd = -1

    @property
    def closed(self) -> bool:
        return self._fd < 0
