# lowlat._vstage: the validator service's per-message work as one compiled call over a MessageBatch.
from libc.stdint cimport int64_t

from lowlat._batch cimport MessageBatch
from lowlat._core cimport Validator
cimport cython


@cython.final
cdef class ValidateStage:
    cdef Validator _v
    cdef bytes _validated          # subject of accepted results
    cdef bytes _rejected           # subject of rejected results
    cdef bytes _prefix             # "<match_prefix>." for forwarded orders
    cdef char* _scratch            # one encoded result / one forward subject (PyMem_RawMalloc)
    cdef Py_ssize_t _scratch_len
    cdef readonly bint publish_results
    cdef readonly bint forward
    cdef readonly Py_ssize_t max_payload
    cdef readonly int64_t n_in, accepted, rejected, replies, published, forwarded, malformed, oversized, dropped
    cdef readonly int64_t first_timestamp
    cdef int64_t[::1] _reasons
    cdef object _reasons_arr

    cdef Py_ssize_t run_c(self, MessageBatch inb, Py_ssize_t start, MessageBatch out,
                          int64_t now_ns) except -1
