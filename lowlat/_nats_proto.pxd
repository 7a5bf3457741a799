# The core-NATS wire protocol: a parser over one receive buffer and a writer into one preallocated buffer.
# Received messages go into per-subscription sinks (copying batches, bounded by pending limits).
from libc.stdint cimport int64_t

from lowlat._batch cimport MessageBatch


cdef class _Chunk:
    cdef MessageBatch b                   # the messages
    cdef dict hdrs                        # slot -> raw header block (bytes), only for HMSG slots


cdef class MsgSink:
    cdef readonly int64_t sid
    cdef public Py_ssize_t max_pending          # messages
    cdef public Py_ssize_t max_pending_bytes    # payload bytes
    cdef readonly Py_ssize_t pending
    cdef readonly Py_ssize_t pending_bytes
    cdef readonly int64_t dropped               # slow-consumer drops
    cdef readonly int64_t delivered             # messages accepted
    cdef public bint closed                     # no new deliveries
    cdef public bint notify                     # queued on the parser's ready list this pass
    cdef public bint slow                       # dropped at least one message this pass
    cdef public object owner                    # the Python subscription (for the adapter)
    cdef object _chunks                         # deque of _Chunk with pending messages (the last is _fill)
    cdef _Chunk _fill
    cdef _Chunk _out                            # the chunk handed out by take_batch (lifetime rule)
    cdef list _pool
    cdef Py_ssize_t _cursor                     # messages already popped from the head chunk
    cdef Py_ssize_t _batch_capacity
    cdef Py_ssize_t _arena_bytes

    cdef _Chunk _new_chunk(self, Py_ssize_t need)
    cdef int deliver_c(self, const unsigned char* payload, Py_ssize_t plen, const unsigned char* subject,
                       Py_ssize_t slen, const unsigned char* reply, Py_ssize_t rlen,
                       const unsigned char* hdr, Py_ssize_t hlen) except -1
    cdef void _recycle(self, _Chunk c) noexcept


cdef class NatsParser:
    cdef bytearray _buf
    cdef unsigned char* _p
    cdef Py_ssize_t _cap
    cdef Py_ssize_t _start
    cdef Py_ssize_t _end
    cdef Py_ssize_t _need                       # bytes the frame at _start needs in total (0 = unknown)
    cdef Py_ssize_t _min_cap
    cdef readonly Py_ssize_t max_payload
    cdef readonly Py_ssize_t max_control
    cdef public dict sinks                      # sid -> MsgSink
    cdef readonly list ready                    # sinks that got messages since the adapter last looked
    cdef readonly list events                   # ("INFO", bytes) / ("-ERR", str) in arrival order
    cdef readonly int64_t pings
    cdef readonly int64_t pongs
    cdef readonly int64_t oks
    cdef readonly int64_t msgs
    cdef readonly int64_t unknown_sid
    cdef int64_t _last_sid
    cdef MsgSink _last_sink

    cdef int _ensure_free(self, Py_ssize_t want) except -1
    cdef Py_ssize_t _parse_c(self) except -1
    cdef MsgSink _sink_c(self, int64_t sid)


cdef class NatsWriter:
    cdef char* _b
    cdef Py_ssize_t _len
    cdef Py_ssize_t _cap
    cdef public Py_ssize_t max_payload
    cdef readonly int64_t commands

    cdef int _reserve(self, Py_ssize_t n) except -1
    cdef int _put(self, const char* p, Py_ssize_t n) except -1
    cdef int _put_subject(self, const char* p, Py_ssize_t n, bint wildcards) except -1
    cdef int _put_words(self, const char* a, Py_ssize_t alen, const char* b, Py_ssize_t blen) except -1
    cdef int _put_int(self, int64_t v) except -1
    cdef int pub_c(self, const char* subj, Py_ssize_t slen, const char* reply, Py_ssize_t rlen,
                   const char* hdr, Py_ssize_t hlen, const char* payload, Py_ssize_t plen) except -1
