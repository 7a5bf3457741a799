# A batch of received (or to-be-published) messages as offsets into one buffer: the transport contract's
# zero-copy batch path.  Compiled consumers cimport this and read payloads/subjects/replies as pointers.
from libc.stdint cimport int32_t, int64_t


cdef class MessageBatch:
    cdef readonly Py_ssize_t n            # messages in the batch
    cdef readonly Py_ssize_t capacity     # most messages it can hold
    cdef readonly Py_ssize_t arena_bytes  # size of the owned arena (copying mode)
    cdef readonly Py_ssize_t used         # arena bytes used (copying mode)
    cdef bint _external                   # offsets point into an adapter-owned buffer, not the arena
    cdef object _owner                    # keeps the buffer the offsets point into alive
    cdef const unsigned char[::1] _view   # that buffer, as bytes
    cdef int64_t[::1] _poff
    cdef int64_t[::1] _plen
    cdef int64_t[::1] _soff
    cdef int64_t[::1] _slen
    cdef int64_t[::1] _roff
    cdef int64_t[::1] _rlen
    # the numpy rows behind the views above, for Python callers
    cdef readonly object payload_off, payload_len, subject_off, subject_len, reply_off, reply_len
    cdef object _ro                       # read-only byte view of the buffer (payload(i) slices it)
    cdef bytearray _arena

    cdef int append_c(self, const unsigned char* payload, Py_ssize_t plen,
                      const unsigned char* subject, Py_ssize_t slen,
                      const unsigned char* reply, Py_ssize_t rlen) except -1
    cdef int add_ref_c(self, int64_t poff, int64_t plen, int64_t soff, int64_t slen,
                       int64_t roff, int64_t rlen) except -1
    cdef Py_ssize_t extend_c(self, MessageBatch src, Py_ssize_t start, Py_ssize_t stop) except -1
    cdef int _check(self, Py_ssize_t i) except -1
    cdef inline const unsigned char* base_c(self) noexcept:
        return &self._view[0] if self._view.shape[0] > 0 else NULL


cdef class FanoutPlan:
    cdef MessageBatch src
    cdef readonly Py_ssize_t n             # messages in the source batch
    cdef readonly Py_ssize_t d             # distinct destinations
    cdef int kind                          # where delivered subjects come from (PLAN_* in _batch.pyx)
    cdef bytes fixed                       # the one subject (UTF-8) when there is one
    cdef int32_t* sid                      # destination index per message (-1: none), reply mode only
    cdef int32_t* ordv                     # rank of the message among those to its destination, reply mode
    cdef int64_t* sel                      # rows x d x (mode, member, base): mode -1 none, 0 all, m > 0 group
    cdef Py_ssize_t rows                   # receiver rows in use
    cdef Py_ssize_t rows_cap               # rows allocated
    cdef readonly list subjects            # destination subjects (str), first-appearance order
    cdef readonly list counts              # messages per destination
    cdef readonly int64_t bytes_upper      # bytes a copy of every message (payload + subject) takes at most

    cdef int _index_replies(self) except -1
    cdef bint _picked(self, const int64_t* row, Py_ssize_t i) noexcept
    cdef int _row_ok(self, Py_ssize_t row) except -1


# The argument checks every compiled stage's ``run(inb, start, out, now)`` makes before its nogil loop.
cdef int check_stage_args(MessageBatch inb, Py_ssize_t start, MessageBatch out) except -1
