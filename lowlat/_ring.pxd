# Preallocated lock-free rings (SPSC, MPSC, broadcast), on the heap or in POSIX shared memory.
# The shared layout and the record protocol are documented at the top of _ring.pyx; idle strategies are
# lowlat._idle.
from libc.stdint cimport int64_t, uint32_t, uint64_t


cdef extern from "_ring_atomic.h" nogil:
    uint64_t ll_load_acquire(const void* p) noexcept
    uint64_t ll_load_relaxed(const void* p) noexcept
    void ll_store_release(void* p, uint64_t v) noexcept
    void ll_store_relaxed(void* p, uint64_t v) noexcept
    int ll_cas(void* p, uint64_t* expected, uint64_t desired) noexcept
    uint64_t ll_fetch_add(void* p, uint64_t v) noexcept
    void ll_fence_acquire() noexcept
    void ll_fence_release() noexcept
    void ll_pid_init() noexcept
    uint32_t ll_pid() noexcept
    int ll_pid_alive(uint32_t pid) noexcept


# Process-local view of one SPSC/MPSC ring; the shared state lives in the mapping at `base`.
cdef struct RingC:
    char* base                 # start of the mapping (shared header)
    char* data                 # first data byte (base + RING_HDR_SIZE)
    uint64_t cap               # data bytes, a power of two
    uint64_t mask              # cap - 1
    uint64_t stride            # fixed frame bytes per record (slot mode), 0 = variable-length records
    uint64_t max_frame         # largest frame one record may occupy, bytes
    uint64_t max_payload       # largest payload, bytes
    bint multi                 # MPSC: claim with CAS on the shared tail; SPSC: plain store
    bint closed                # close() was called; memory may still be mapped for live views
    bint hdr_only_zero         # slot mode with stride | cap: only header words need zeroing on release
    uint64_t p_tail            # SPSC: next write position (published to the shared tail per call)
    uint64_t p_head            # producer's cached consumer position (refreshed when it looks full)
    uint64_t c_head            # consumer position (the shared head mirrors it)
    uint64_t c_tail            # SPSC: consumer's cached copy of the shared tail
    uint64_t c_peek_end        # end of the span handed out by try_peek/peek_batch, 0 = none
    uint64_t c_peek_n          # records in that span
    uint64_t claim_pos         # position of the record handed out by claim(), valid if claim_len >= 0
    int64_t claim_len          # claimed payload bytes, -1 = no outstanding claim
    uint64_t claim_frame       # frame reserved by the outstanding claim
    uint64_t stall_pos         # consumer position where the current stall started
    uint64_t stall_tail        # shared tail seen when that stall started
    int64_t stall_since        # ll_now_ns() when that stall started, 0 = not stalled
    int64_t stall_pid_check    # last ll_now_ns() the writer's pid was checked
    int64_t dead_timeout_ns    # zero-header skip after this long, < 0 = never


cdef class _Mem:
    cdef char* base            # start of the (page- or 128-byte-aligned) ring memory
    cdef size_t size           # bytes mapped / allocated
    cdef void* heap            # PyMem_RawCalloc block for heap rings (base points inside), else NULL
    cdef bint mapped           # base is valid
    cdef bint closing          # close requested while memoryviews are still exported
    cdef Py_ssize_t exports    # live memoryviews into this memory
    cdef char* view_ptr        # range the next __getbuffer__ exports (set by view_c)
    cdef Py_ssize_t view_len   # bytes
    cdef bint view_readonly    # export read-only
    cdef object view_c(self, char* p, Py_ssize_t n, bint readonly)
    cdef void unmap_c(self) noexcept
    cdef void close_c(self) noexcept


cdef class _Ring:
    cdef RingC r               # hot state, passed by pointer to the nogil helpers
    cdef _Mem mem              # owner of the memory; memoryviews keep it alive
    cdef readonly object name  # shared-memory name, None for heap rings
    cdef bint owner            # this object created the memory
    cdef int kind              # RING_KIND_SPSC / RING_KIND_MPSC
    cdef void** bufs           # push_batch scratch: payload pointers
    cdef uint64_t* lens        # push_batch scratch: payload lengths
    cdef Py_ssize_t nbufs      # scratch capacity, entries
    cdef int check_open_c(self) except -1
    cdef int wait_readable_c(self, object timeout, object idle) except -1
    cdef object try_pop_c(self)
    cdef list take_batch_c(self, Py_ssize_t max_n, bint copy)  # pop_batch / peek_batch body
    cdef int grow_scratch_c(self, Py_ssize_t n) except -1
    cdef Py_ssize_t gather_c(self, object items, list held, str what) except -1  # bufs/lens of items
    cdef uint64_t* span_off    # peek scratch: record offsets from the data area start, bytes
    cdef uint64_t* span_len    # peek scratch: payload lengths, bytes
    cdef Py_ssize_t nspans     # peek scratch capacity, entries
    cdef int grow_spans_c(self, Py_ssize_t n) except -1
    # Up to max_n readable records as (offset from `r.data`, payload length) in offs/lens, not consumed:
    # commit() consumes them.  peek_batch without a Python object per record; 0 when nothing is readable.
    cdef Py_ssize_t peek_spans_c(self, Py_ssize_t max_n, uint64_t* offs, uint64_t* lens) except -1
    # Push the leading records of n that fit; record j is the concatenation of parts[j*k .. j*k+k-1]
    # (lens likewise).  Sizes are checked before anything is written.  Returns how many were pushed.
    cdef Py_ssize_t push_gather_c(self, void** parts, const uint64_t* lens, Py_ssize_t n, Py_ssize_t k) except -1


cdef class BroadcastRing:
    cdef char* base            # mapping start
    cdef bint is_closed        # close() was called
    cdef char* data            # first data byte
    cdef readonly uint64_t capacity   # data bytes, power of two
    cdef uint64_t mask         # capacity - 1
    cdef _Mem mem              # owner of the memory
    cdef readonly object name  # shared-memory name, None for heap rings
    cdef bint owner            # this object created the memory


cdef class BroadcastReceiver:
    cdef BroadcastRing ring    # keeps the memory mapped
    cdef uint64_t cursor       # next record position to read
    cdef readonly uint64_t lapped_count  # times the producer overwrote unread records
    cdef bint raise_on_lap     # raise LappedError (True) or resync silently (False)
    cdef uint64_t lap_tail     # shared tail at the last lap (a second lap at the same tail = corrupt intent)
    cdef bint lapped_once      # lap_tail is set
