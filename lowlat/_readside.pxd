# lowlat._readside: the matcher's query-side store of order states, in C (no Python object per order).
from libc.stdint cimport int32_t, int64_t, uint64_t
cimport cython


cdef struct OState:               # the last known state of one order; 64 bytes
    uint64_t oid
    int64_t status                # lowlat.enums.ExecStatus
    int64_t side
    int64_t price                 # ticks
    int64_t leaves                # lots open
    int64_t cum                   # lots filled so far
    uint64_t account
    int64_t reason                # lowlat.enums.Reject code of the last reject/cancel
    int32_t older                 # recency list: previous (older) slot, -1 = oldest
    int32_t newer                 # next (newer) slot, -1 = newest; free-list link when free


cdef struct OBucket:              # order id -> slot (open addressing, linear probing)
    uint64_t key
    int64_t slot                  # -1 = empty


@cython.final
cdef class OrderStates:
    cdef OState* _pool
    cdef OBucket* _map
    cdef uint64_t _mask
    cdef int _shift
    cdef int32_t _free
    cdef int32_t _oldest
    cdef int32_t _newest
    cdef readonly Py_ssize_t max_orders
    cdef Py_ssize_t _n

    cdef uint64_t _home(self, uint64_t key) noexcept
    cdef void _erase(self, uint64_t oid) noexcept
    cdef void _unlink(self, int32_t s) noexcept
    cdef void _link_newest(self, int32_t s) noexcept
    cdef int64_t find_c(self, uint64_t oid) noexcept
    cdef void touch_c(self, int64_t slot) noexcept
    cdef int64_t put_c(self, uint64_t oid, int64_t status, int64_t side, int64_t price, int64_t leaves,
                       int64_t cum, uint64_t account, int64_t reason) noexcept
    cdef inline OState* at_c(self, int64_t slot) noexcept:
        return &self._pool[slot]
