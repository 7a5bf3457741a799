# The shm bus's compiled data path (record intake into a MessageBatch, batch publish into rings); the record
# format is lowlat/transport/shm/_codec.py's.
from libc.stdint cimport int64_t, uint64_t

from lowlat._batch cimport MessageBatch
from lowlat._ring cimport _Ring

cdef enum:
    SHM_HEADER = 10             # record header bytes: u32 sid, u16 subject length, u32 meta length
    SHM_SID_ALL = 0             # sid: every plain subscription of the member that matches the subject
    SHM_SID_INBOX = 1           # sid: the member's request inbox


cdef Py_ssize_t shm_reply_len(const unsigned char* m, Py_ssize_t n) noexcept nogil


cdef class ShmIntake:
    cdef _Ring _ring                   # the member's inbound ring (records are peeked, consumed by the next take)
    cdef object _view                  # read-only memoryview of the ring's whole data area: the batches' buffer
    cdef Py_ssize_t _cap               # most records per take
    cdef uint64_t* _offs               # peek scratch: record offsets into the data area, bytes
    cdef uint64_t* _lens               # peek scratch: record lengths, bytes
    cdef readonly int64_t taken        # records consumed (ours, handed back and malformed)
    cdef readonly int64_t malformed    # records skipped: not a well-formed bus record
    cdef readonly int64_t handed_back  # records for other subscriptions, returned as bytes


cdef class BatchRoutes:
    cdef MessageBatch _out             # the batch scanned last (push reads it)
    cdef object _subject               # the fixed destination subject (bytes) of the last scan, or None
    cdef readonly Py_ssize_t n_keys    # distinct destination keys of the last scan
    cdef readonly Py_ssize_t too_long  # messages of the last scan skipped: destination longer than 65535 bytes
    cdef Py_ssize_t _cap               # messages the scratch holds
    cdef Py_ssize_t _tmask             # key hash table size - 1 (a power of two >= 2 * _cap)
    cdef int64_t* _kidx                # per message: its key, -1 = no destination
    cdef int64_t* _order               # message indices grouped by key, batch order inside a key
    cdef int64_t* _start               # per key: first position in _order
    cdef int64_t* _count               # per key: messages
    cdef int64_t* _koff                # per key: offset of its bytes in the batch buffer
    cdef int64_t* _klen                # per key: its length, bytes
    cdef uint64_t* _khash              # per key: FNV-1a hash
    cdef int64_t* _table               # open-addressing table of key indices, -1 = empty
    cdef void** _parts                 # push scratch: 3 parts (header, subject, payload) per record
    cdef uint64_t* _plens              # push scratch: their lengths, bytes
    cdef char* _hdrs                   # push scratch: 16 bytes per record for its header
    cdef int grow_c(self, Py_ssize_t n) except -1
    cdef Py_ssize_t key_c(self, const unsigned char* s, Py_ssize_t n) noexcept
    cdef int _check_key(self, Py_ssize_t key) except -1
