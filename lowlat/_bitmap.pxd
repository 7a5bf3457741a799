# The non-empty-level bitmap of a price ladder, shared by the order book (which writes it) and the matching stage
# (which reads the engine's bitmap to find the levels an order can reach): next set bit up or down in O(words).
from libc.stdint cimport int64_t, uint64_t

cdef extern from *:
    """
    static inline int ll_ctz64(unsigned long long x) { return __builtin_ctzll(x); }
    static inline int ll_clz64(unsigned long long x) { return __builtin_clzll(x); }
    """
    int ll_ctz64(unsigned long long x) noexcept nogil
    int ll_clz64(unsigned long long x) noexcept nogil


cdef inline int64_t _lvl_up(const uint64_t* bits, int64_t nwords, int64_t idx) noexcept nogil:
    # lowest non-empty level index >= idx, or -1
    if idx < 0:
        idx = 0
    cdef int64_t w = idx >> 6
    if w >= nwords:
        return -1
    cdef uint64_t m = bits[w] & ((<uint64_t>0xFFFFFFFFFFFFFFFF) << (idx & 63))
    while True:
        if m:
            return (w << 6) + ll_ctz64(m)
        w += 1
        if w >= nwords:
            return -1
        m = bits[w]


cdef inline int64_t _lvl_down(const uint64_t* bits, int64_t nwords, int64_t idx) noexcept nogil:
    # highest non-empty level index <= idx, or -1
    if idx < 0:
        return -1
    cdef int64_t w = idx >> 6
    if w >= nwords:
        w = nwords - 1
        idx = (w << 6) + 63
    cdef uint64_t m = bits[w] & ((<uint64_t>0xFFFFFFFFFFFFFFFF) >> (63 - (idx & 63)))
    while True:
        if m:
            return (w << 6) + 63 - ll_clz64(m)
        w -= 1
        if w < 0:
            return -1
        m = bits[w]
