# lowlat._histogram: an HDR-style (log-linear) latency histogram with a nogil record path.
#
# Index of a value v >= 0: values below 2**sub_bits are exact (index = v); above, v is kept to sub_bits
# significant bits: shift = msb(v) - (sub_bits - 1), index = shift * half + (v >> shift), half = 2**(sub_bits-1).
# Relative error of a bucket: at most 2**-(sub_bits-1) (sub_bits 11: 0.1 %, HdrHistogram's "3 digits").
from libc.stdint cimport int64_t, uint64_t
cimport cython

cdef extern from *:
    int __builtin_clzll(unsigned long long x) noexcept nogil


@cython.final
cdef class Histogram:
    cdef int64_t* _counts          # one count per index (PyMem_RawCalloc)
    cdef readonly Py_ssize_t n_buckets
    cdef readonly int sub_bits     # significant bits kept per value
    cdef readonly int64_t highest  # values above are recorded as `highest` and counted in `clamped`
    cdef int64_t _half             # 2**(sub_bits - 1)
    cdef int64_t _total
    cdef int64_t _clamped
    cdef double _sum               # sum of recorded (clamped) values, for Prometheus `_sum` and the mean
    cdef int64_t _min
    cdef int64_t _max

    cdef inline Py_ssize_t index_c(self, int64_t v) noexcept nogil:
        cdef int msb
        cdef int64_t shift
        if v < (self._half << 1):
            return <Py_ssize_t>v
        msb = 63 - __builtin_clzll(<unsigned long long>v)
        shift = msb - (self.sub_bits - 1)
        return <Py_ssize_t>(shift * self._half + (v >> shift))

    cdef inline void record_n_c(self, int64_t v, int64_t count) noexcept nogil:
        # v in ns (negative -> 0, above `highest` -> highest and counted as clamped).  A few ns.
        if v < 0:
            v = 0
        elif v > self.highest:
            v = self.highest
            self._clamped += count
        self._counts[self.index_c(v)] += count
        self._total += count
        self._sum += <double>v * <double>count
        if v < self._min:
            self._min = v
        if v > self._max:
            self._max = v

    cdef inline void record_c(self, int64_t v) noexcept nogil:
        self.record_n_c(v, 1)

    cdef int64_t lowest_c(self, Py_ssize_t idx) noexcept nogil
    cdef int64_t highest_equivalent_c(self, Py_ssize_t idx) noexcept nogil
    cdef int64_t percentile_c(self, double q) noexcept nogil
    cdef void _reset(self) noexcept

