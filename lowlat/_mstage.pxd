# lowlat._mstage: the matching service's per-message work (engine + event encoding + read side) as one compiled
# call over a MessageBatch.
from libc.stdint cimport int64_t, uint64_t

from lowlat._batch cimport MessageBatch
from lowlat._book cimport BookCore, Engine
cimport cython


cdef struct BookOut:              # what the stage needs per engine book (index = book index)
    BookCore* core
    const char* sym               # UTF-8 symbol (bytes kept alive by MatchStage._keep)
    Py_ssize_t sym_len
    const char* subj[3]           # destination subjects: execution reports, trades, L2 updates
    Py_ssize_t subj_len[3]
    Py_ssize_t max_msg            # largest output message of this book plus its subject (bytes)
    double tick                   # quote currency per tick
    int64_t md_seq                # the read side's last L2 sequence / trade count, while a run holds them
    int64_t trades
    bint loaded                   # md_seq/trades were read from the ReadModel in this run


@cython.final
cdef class MatchStage:
    cdef Engine _engine
    cdef BookOut* _books          # PyMem_RawCalloc'd, one per book
    cdef Py_ssize_t _n_books
    cdef list _rm                 # per book: (ReadModel, bid levels, ask levels, OrderStates)
    cdef list _keep               # bytes the BookOut pointers point into
    cdef char* _scratch           # one encoded message (PyMem_RawMalloc)
    cdef Py_ssize_t _scratch_len
    cdef readonly Py_ssize_t max_payload
    cdef readonly int64_t n_in, applied, malformed, oversized, unknown_symbol, early_rejects, events
    cdef readonly int64_t exec_reports, trades, l2_updates, rejects, need_slots, need_bytes
    cdef int64_t[::1] _reasons
    cdef object _reasons_arr

    cdef Py_ssize_t run_c(self, MessageBatch inb, Py_ssize_t start, MessageBatch out,
                          int64_t now_ns) except -1
    cdef int _events_c(self, Py_ssize_t k, MessageBatch out, uint64_t now) except -1
    cdef int _put(self, Py_ssize_t k, int which, MessageBatch out, Py_ssize_t size) except -1
    cdef int _load(self, Py_ssize_t k) except -1
    cdef int _store(self) except -1
