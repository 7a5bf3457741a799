"""Preallocated lock-free rings: SPSC, MPSC and broadcast, on the heap or in POSIX shared memory.

Shared layout (every ring; all words native-endian uint64 unless noted; offsets in bytes)::

    0    magic "LLRING01" (0x4C4C52494E473031), written last with a release store
    8    u32 layout version (1)      12  u32 kind (1 SPSC, 2 MPSC, 3 broadcast)
    16   capacity (data bytes)       24  slot_size (0 = variable-length records)
    32   header size (512)           40  creator pid
    128  tail      136 records pushed         -- producer cache line(s)   [broadcast: 128 tail intent,
    256  head      264 records popped   272 records skipped (dead)   -- consumer     136 tail, 144 latest]
    512  data: `capacity` bytes

Records (SPSC/MPSC) start at 8-byte aligned positions; positions are monotonic byte counters and the
offset in the data area is ``pos & (capacity - 1)``.  Each record is an 8-byte header then the payload,
padded to 8 bytes (variable mode) or to the slot stride ``align8(8 + slot_size)`` (slot mode)::

    bits  0..29  frame length (bytes from this header to the next one)
    bit   30     PAD: filler up to the end of the data area (a record never wraps)
    bit   31     COMMITTED
    bits 32..63  payload length when committed; the writer's pid while pending

SPSC protocol: the producer writes header and payload below its private tail, then release-stores the
shared tail (once per call, so a batch is published with one store); the consumer acquire-loads the tail
and reads only below it, then release-stores the head.  A producer killed mid-write never moved the tail:
the partial record is invisible, and the next producer object continues from the shared tail.

MPSC protocol: a producer reserves ``frame`` bytes with a CAS on the tail, writes a *pending* header
carrying its pid, copies the payload, then release-stores the committed header.  The consumer
acquire-loads the header at its head: a zero or pending header means "not yet", so a half-written record
is never visible.  After reading, the consumer zeroes the consumed bytes (so stale bytes never look like
a header on the next lap) and release-stores the head; producers acquire-load the head before reusing
the space.

A MPSC producer that dies between claim and publish leaves a pending (or, in a window of a few
instructions right after the CAS, still zero) header.  The consumer stalls there.  While stalled it
checks the pid in a pending header every 10 ms; if that process is gone (or a zombie) the record is
turned into padding and skipped, and ``dead_records`` counts it.  A zero header is skipped after
``dead_producer_timeout`` seconds (a live producer descheduled that long between its CAS and its
next store would be skipped too; pass None to never do that).

Broadcast: see BroadcastRing (Agrona's BroadcastTransmitter/Receiver scheme: tail intent, seqlock-style
validation after copying).

Hostile shared memory: every header word read at attach is range-checked before any arithmetic on it
(capacity, slot_size, header size, version, kind); positions are only ever used masked, record headers
are validated before use, an impossible shared tail (more than a ring ahead of the head) or a tail-intent
word that laps a receiver twice at the same tail raises RingError, and no scan runs past one ring.  What
this cannot cover: a segment truncated (ftruncate) by another process under a live mapping makes the next
access to the lost pages raise SIGBUS; that is the POSIX shared-memory contract, so only let processes you
trust hold a ring's name.
"""

cimport cython
from cpython.buffer cimport PyBuffer_FillInfo, PyBuffer_Release, PyObject_GetBuffer, PyBUF_SIMPLE
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_CheckExact, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.exc cimport PyErr_CheckSignals
from cpython.mem cimport PyMem_RawCalloc, PyMem_RawFree, PyMem_RawRealloc
from cpython.memoryview cimport PyMemoryView_FromObject
from libc.errno cimport EEXIST, ENOENT, errno
from libc.stdint cimport int64_t, uint32_t, uint64_t, uintptr_t
from libc.string cimport memcpy, memset
from posix.fcntl cimport O_CREAT, O_EXCL, O_RDWR
from posix.mman cimport (
    MAP_FAILED, MAP_POPULATE, MAP_SHARED, PROT_READ, PROT_WRITE, mmap, munmap, shm_open, shm_unlink,
)
from posix.stat cimport fstat, struct_stat
from posix.unistd cimport close as c_close, ftruncate

import os

from lowlat.errors import LappedError, RingError, RingFullError

cdef extern from *:
    """
    #define LL_RING_MAGIC 0x4C4C52494E473031ULL
    #define LL_NO_POS 0xFFFFFFFFFFFFFFFFULL
    #define LL_HDR_FRAME_MASK 0x3FFFFFFFULL
    #define LL_HDR_PAD 0x40000000ULL
    #define LL_HDR_COMMITTED 0x80000000ULL
    #define LL_HDR_CORRUPT 1ULL
    """
    uint64_t LL_RING_MAGIC
    uint64_t LL_NO_POS
    uint64_t LL_HDR_FRAME_MASK
    uint64_t LL_HDR_PAD
    uint64_t LL_HDR_COMMITTED
    uint64_t LL_HDR_CORRUPT

cdef enum:
    RING_VERSION = 1
    RING_HDR_SIZE = 512
    OFF_MAGIC = 0
    OFF_VERSION = 8
    OFF_KIND = 12
    OFF_CAPACITY = 16
    OFF_SLOT = 24
    OFF_HDR_SIZE = 32
    OFF_CREATOR_PID = 40
    OFF_TAIL = 128
    OFF_PUSHED = 136
    OFF_HEAD = 256
    OFF_POPPED = 264
    OFF_DEAD = 272
    OFF_BC_INTENT = 128
    OFF_BC_TAIL = 136
    OFF_BC_LATEST = 144
    RING_KIND_SPSC = 1
    RING_KIND_MPSC = 2
    RING_KIND_BROADCAST = 3
    MIN_CAPACITY = 64
    MAX_CAPACITY = 1 << 29
    PID_CHECK_NS = 10000000          # 10 ms between liveness checks of a stalled writer
    WAIT_CHUNK_NS = 50000000         # blocking calls come back for signals every 50 ms
    GIL_SPIN_POLLS = 128             # BusySpinIdle: polls before releasing the GIL (a few µs at most)

RING_LAYOUT_VERSION = RING_VERSION
HEADER_SIZE = RING_HDR_SIZE
RECORD_HEADER_SIZE = 8

ll_pid_init()

_KIND_NAMES = {RING_KIND_SPSC: "SpscRing", RING_KIND_MPSC: "MpscRing", RING_KIND_BROADCAST: "BroadcastRing"}


# ------------------------------------------------------------------------------------------------
# memory: heap block or shared-memory mapping, exported as memoryviews that keep it alive
# ------------------------------------------------------------------------------------------------

@cython.final
cdef class _Mem:
    """Owner of a ring's memory.  Memoryviews handed out by the rings reference it, so the memory
    stays mapped until the last view is released even if the ring was closed."""

    def __cinit__(self):
        self.base = NULL
        self.heap = NULL
        self.view_ptr = NULL

    def __dealloc__(self):
        self.unmap_c()

    cdef object view_c(self, char* p, Py_ssize_t n, bint readonly):
        # One memoryview of [p, p + n); __getbuffer__ exports exactly this range.
        self.view_ptr = p
        self.view_len = n
        self.view_readonly = readonly
        try:
            return PyMemoryView_FromObject(self)
        finally:
            self.view_ptr = NULL

    def __getbuffer__(self, Py_buffer* buf, int flags):
        if self.view_ptr == NULL:
            raise BufferError("lowlat ring memory is only exported through the ring's methods")
        PyBuffer_FillInfo(buf, self, self.view_ptr, self.view_len, self.view_readonly, flags)
        self.exports += 1

    def __releasebuffer__(self, Py_buffer* buf):
        self.exports -= 1
        if self.closing and self.exports == 0:
            self.unmap_c()

    cdef void unmap_c(self) noexcept:
        if not self.mapped:
            return
        self.mapped = False
        if self.heap != NULL:
            PyMem_RawFree(self.heap)
            self.heap = NULL
        else:
            munmap(self.base, self.size)
        self.base = NULL

    cdef void close_c(self) noexcept:
        # Unmap now, or when the last exported view / in-flight blocking call lets go.
        if self.exports == 0:
            self.unmap_c()
        else:
            self.closing = True


cdef _Mem _heap_mem(size_t size):
    cdef _Mem m = _Mem.__new__(_Mem)
    # +128 to align the header to a cache-line pair, so head and tail never share a line.
    m.heap = PyMem_RawCalloc(1, size + 128)
    if m.heap == NULL:
        raise MemoryError()
    m.base = <char*>((<uintptr_t>m.heap + 127) & ~(<uintptr_t>127))
    # Touch every page now (calloc'd pages are mapped lazily) so the first lap has no page faults.
    memset(m.base, 0, size)
    m.size = size
    m.mapped = True
    return m


cdef bytes _shm_path(object name):
    if not isinstance(name, str):
        raise TypeError(f"ring name must be a str, not {type(name).__name__}")
    cdef str s = name[1:] if name.startswith("/") else name
    if not s or "/" in s or "\0" in s or len(s) > 200:
        raise ValueError(f"invalid shared-memory ring name {name!r} (1-200 chars, no '/')")
    return ("/" + s).encode()


cdef _Mem _shm_create(object name, size_t size):
    cdef bytes path = _shm_path(name)
    cdef int fd = shm_open(path, O_CREAT | O_EXCL | O_RDWR, 0o600)
    cdef int err
    cdef void* p
    if fd < 0:
        err = errno
        if err == EEXIST:
            raise RingError(f"shared memory {name!r} already exists: attach with create=False "
                            f"(or unlink it if it is stale)")
        raise RingError(f"cannot create shared memory {name!r}: {os.strerror(err)}")
    if ftruncate(fd, size) != 0:
        err = errno
        c_close(fd)
        shm_unlink(path)
        raise RingError(f"cannot size shared memory {name!r} to {size} bytes: {os.strerror(err)}")
    p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0)
    err = errno
    c_close(fd)
    if p == MAP_FAILED:
        shm_unlink(path)
        raise RingError(f"cannot map shared memory {name!r}: {os.strerror(err)}")
    cdef _Mem m = _Mem.__new__(_Mem)
    m.base = <char*>p
    m.size = size
    m.mapped = True
    return m


cdef _Mem _shm_attach(object name, int kind):
    # Open an existing ring and validate its header.  The creator writes the magic last, so wait a
    # little for a ring that is being created right now.
    cdef bytes path = _shm_path(name)
    cdef int fd, err
    cdef struct_stat st
    cdef void* p
    cdef _Mem m
    cdef uint64_t magic, cap, hdr
    cdef uint32_t version, got_kind
    cdef int64_t give_up = ll_now_ns() + 500000000
    while True:
        fd = shm_open(path, O_RDWR, 0)
        if fd < 0:
            err = errno
            if err == ENOENT:
                raise RingError(f"no ring named {name!r} (shared memory /dev/shm{path.decode()} does not exist)")
            raise RingError(f"cannot open shared memory {name!r}: {os.strerror(err)}")
        if fstat(fd, &st) != 0:
            err = errno
            c_close(fd)
            raise RingError(f"cannot stat shared memory {name!r}: {os.strerror(err)}")
        if st.st_size >= RING_HDR_SIZE:
            p = mmap(NULL, <size_t>st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0)
            err = errno
            c_close(fd)
            if p == MAP_FAILED:
                raise RingError(f"cannot map shared memory {name!r}: {os.strerror(err)}")
            m = _Mem.__new__(_Mem)
            m.base = <char*>p
            m.size = <size_t>st.st_size
            m.mapped = True
            magic = ll_load_acquire(m.base + OFF_MAGIC)
            if magic == LL_RING_MAGIC:
                break
            m.unmap_c()
            if magic != 0:
                raise RingError(f"{name!r} is not a lowlat ring (magic 0x{magic:016x}, "
                                f"expected 0x{LL_RING_MAGIC:016x})")
        else:
            c_close(fd)
        if ll_now_ns() > give_up:
            raise RingError(f"{name!r} exists but was never initialised as a lowlat ring "
                            f"(creator died during creation, or it is not a ring)")
        ll_sleep_ns(1000000)
    version = (<uint32_t*>(m.base + OFF_VERSION))[0]
    got_kind = (<uint32_t*>(m.base + OFF_KIND))[0]
    cap = (<uint64_t*>(m.base + OFF_CAPACITY))[0]
    hdr = (<uint64_t*>(m.base + OFF_HDR_SIZE))[0]
    if version != RING_VERSION:
        raise RingError(f"{name!r} has ring layout version {version}; this lowlat uses {RING_VERSION}")
    if got_kind != <uint32_t>kind:
        raise RingError(f"{name!r} is a {_KIND_NAMES.get(got_kind, f'ring of kind {got_kind}')}, "
                        f"not a {_KIND_NAMES[kind]}")
    if hdr != RING_HDR_SIZE or cap < MIN_CAPACITY or cap > MAX_CAPACITY or cap & (cap - 1) \
            or m.size < RING_HDR_SIZE + cap:
        raise RingError(f"{name!r} has an inconsistent header (capacity {cap}, header {hdr}, "
                        f"{m.size} bytes mapped)")
    return m


cdef void _init_header(char* base, int kind, uint64_t cap, uint64_t slot) noexcept:
    (<uint32_t*>(base + OFF_VERSION))[0] = RING_VERSION
    (<uint32_t*>(base + OFF_KIND))[0] = <uint32_t>kind
    (<uint64_t*>(base + OFF_CAPACITY))[0] = cap
    (<uint64_t*>(base + OFF_SLOT))[0] = slot
    (<uint64_t*>(base + OFF_HDR_SIZE))[0] = RING_HDR_SIZE
    (<uint64_t*>(base + OFF_CREATOR_PID))[0] = ll_pid()
    # Publish: an attacher that sees the magic sees the fields above.
    ll_store_release(base + OFF_MAGIC, LL_RING_MAGIC)


cdef inline uint64_t _max_slot(uint64_t cap) noexcept nogil:
    # largest slot_size of a ring of `cap` data bytes: two strides align8(8 + slot) must fit (cap is a power
    # of two >= 64, so cap / 2 is a multiple of 8)
    return cap // 2 - 8


cdef inline uint64_t _stride(uint64_t slot) noexcept nogil:
    # frame bytes per record in slot mode; precondition slot <= _max_slot(cap) (no overflow)
    return (slot + 15) & ~(<uint64_t>7) if slot else 0


cdef uint64_t _check_capacity(object capacity) except 0:
    if not isinstance(capacity, int) or isinstance(capacity, bool):
        raise TypeError(f"capacity must be an int, not {type(capacity).__name__}")
    if capacity < MIN_CAPACITY or capacity > MAX_CAPACITY or capacity & (capacity - 1):
        raise ValueError(f"capacity must be a power of two between {MIN_CAPACITY} and {MAX_CAPACITY} "
                         f"bytes, got {capacity}")
    return <uint64_t>capacity


cdef int64_t _deadline(object timeout) except? -2:
    # Absolute ll_now_ns() deadline, -1 = wait forever.
    if timeout is None:
        return -1
    cdef double t = timeout
    if t != t:
        raise ValueError("timeout must not be NaN")
    if t <= 0:
        return ll_now_ns()
    if t > 1e9:
        return -1
    return ll_now_ns() + <int64_t>(t * 1e9)


cdef inline int64_t _chunk_end(int64_t deadline) noexcept nogil:
    cdef int64_t end = ll_now_ns() + WAIT_CHUNK_NS
    if deadline >= 0 and deadline < end:
        return deadline
    return end


# ------------------------------------------------------------------------------------------------
# idle strategies
# ------------------------------------------------------------------------------------------------

cdef class IdleStrategy:
    """How a blocking ring call waits (GIL released).  Use one of the subclasses."""

    def __cinit__(self):
        self.cfg.kind = LL_IDLE_BACKOFF
        self.cfg.max_spins = 10
        self.cfg.max_yields = 5
        self.cfg.min_park_ns = 1000
        self.cfg.max_park_ns = 1000000


@cython.final
cdef class BusySpinIdle(IdleStrategy):
    """Spin with the CPU's pause instruction: lowest latency, burns a whole core.

    On a machine with few cores let at most one side of a ring busy-spin."""

    def __init__(self):
        self.cfg.kind = LL_IDLE_BUSY

    def __repr__(self):
        return "BusySpinIdle()"


@cython.final
cdef class YieldingIdle(IdleStrategy):
    """Call ``sched_yield()`` between polls: low latency, lets other runnable threads use the core."""

    def __init__(self):
        self.cfg.kind = LL_IDLE_YIELD

    def __repr__(self):
        return "YieldingIdle()"


@cython.final
cdef class BackoffIdle(IdleStrategy):
    """Aeron's BackoffIdleStrategy: spin ``max_spins`` times, yield ``max_yields`` times, then sleep
    from ``min_park_ns`` doubling up to ``max_park_ns`` (ns).  The default for blocking calls.

    Note that Linux sleeps at least the thread's timer slack (50 µs by default) once it parks."""

    def __init__(self, *, int max_spins=10, int max_yields=5, int64_t min_park_ns=1000,
                 int64_t max_park_ns=1000000):
        if max_spins < 0 or max_yields < 0 or min_park_ns < 1 or max_park_ns < min_park_ns:
            raise ValueError("BackoffIdle: need max_spins >= 0, max_yields >= 0, "
                             "1 <= min_park_ns <= max_park_ns")
        self.cfg.kind = LL_IDLE_BACKOFF
        self.cfg.max_spins = max_spins
        self.cfg.max_yields = max_yields
        self.cfg.min_park_ns = min_park_ns
        self.cfg.max_park_ns = max_park_ns

    @property
    def max_spins(self):
        return self.cfg.max_spins

    @property
    def max_yields(self):
        return self.cfg.max_yields

    @property
    def min_park_ns(self):
        return self.cfg.min_park_ns

    @property
    def max_park_ns(self):
        return self.cfg.max_park_ns

    def __repr__(self):
        return (f"BackoffIdle(max_spins={self.cfg.max_spins}, max_yields={self.cfg.max_yields}, "
                f"min_park_ns={self.cfg.min_park_ns}, max_park_ns={self.cfg.max_park_ns})")


cdef IdleStrategy _DEFAULT_IDLE = BackoffIdle()


cdef inline ll_idle_t _idle_cfg(object idle) except *:
    cdef ll_idle_t cfg
    if idle is None:
        cfg = _DEFAULT_IDLE.cfg
    elif isinstance(idle, IdleStrategy):
        cfg = (<IdleStrategy>idle).cfg
    else:
        raise TypeError(f"idle must be a lowlat IdleStrategy (BusySpinIdle, YieldingIdle, BackoffIdle), "
                        f"not {type(idle).__name__}")
    ll_idle_reset(&cfg)
    return cfg


# ------------------------------------------------------------------------------------------------
# SPSC / MPSC core (nogil helpers over RingC)
# ------------------------------------------------------------------------------------------------

cdef inline uint64_t ring_frame(const RingC* r, uint64_t n) noexcept nogil:
    if r.stride != 0:
        return r.stride
    return (n + 15) & ~(<uint64_t>7)


cdef inline void ring_psync(RingC* r) noexcept nogil:
    # SPSC: take the write position from the shared tail (a line only the producer writes, so this
    # is a cache hit); lets a new producer object (e.g. after a restart) continue where the last stopped.
    if not r.multi:
        r.p_tail = ll_load_relaxed(r.base + OFF_TAIL)


cdef inline uint64_t ring_claim(RingC* r, uint64_t frame) noexcept nogil:
    # Reserve `frame` bytes (plus filler if they would cross the end of the data area).  Returns the
    # record's position, or LL_NO_POS when the consumer has not freed enough room.
    # Precondition: frame <= r.max_frame (so frame + filler < capacity); SPSC: ring_psync() done.
    # MPSC: CAS on the shared tail, then a *pending* header with our pid, so a consumer stalled here
    #       knows whose slot it is and how long it is.
    # SPSC: nothing is shared until ring_spsc_publish() moves the tail.
    cdef uint64_t tail, off, pad, need
    cdef char* tail_p = r.base + OFF_TAIL
    if r.multi:
        tail = ll_load_relaxed(tail_p)
        while True:
            off = tail & r.mask
            pad = r.cap - off
            if pad >= frame:
                pad = 0
            need = pad + frame
            # Signed: our `tail` may be older than the head another producer's record let the
            # consumer reach; then the CAS below fails and we retry with a fresh tail.
            if <int64_t>(tail + need - r.p_head) > <int64_t>r.cap:
                r.p_head = ll_load_acquire(r.base + OFF_HEAD)
                if <int64_t>(tail + need - r.p_head) > <int64_t>r.cap:
                    return LL_NO_POS
            if ll_cas(tail_p, &tail, tail + need):
                break
        if pad:
            ll_store_release(r.data + off, pad | LL_HDR_PAD | LL_HDR_COMMITTED)
            tail += pad
        ll_store_relaxed(r.data + (tail & r.mask), frame | (<uint64_t>ll_pid() << 32))
        return tail
    tail = r.p_tail
    off = tail & r.mask
    pad = r.cap - off
    if pad >= frame:
        pad = 0
    need = pad + frame
    if tail + need - r.p_head > r.cap:
        r.p_head = ll_load_acquire(r.base + OFF_HEAD)
        if tail + need - r.p_head > r.cap:
            return LL_NO_POS
    if pad:
        ll_store_relaxed(r.data + off, pad | LL_HDR_PAD | LL_HDR_COMMITTED)
        tail += pad
    r.p_tail = tail + frame
    return tail


cdef inline void ring_commit(RingC* r, uint64_t pos, uint64_t frame, uint64_t n) noexcept nogil:
    # MPSC: the release store makes the payload visible before the header says "committed".
    # SPSC: a plain header; ring_spsc_publish()'s release store of the tail publishes it.
    if r.multi:
        ll_store_release(r.data + (pos & r.mask), frame | LL_HDR_COMMITTED | (n << 32))
    else:
        ll_store_relaxed(r.data + (pos & r.mask), frame | LL_HDR_COMMITTED | (n << 32))


cdef inline void ring_spsc_publish(RingC* r, uint64_t k) noexcept nogil:
    # SPSC: everything written below p_tail becomes visible at once (one tail store per batch).
    ll_store_relaxed(r.base + OFF_PUSHED, ll_load_relaxed(r.base + OFF_PUSHED) + k)
    ll_store_release(r.base + OFF_TAIL, r.p_tail)


cdef inline void ring_count_pushed(RingC* r, uint64_t k) noexcept nogil:
    if r.multi:
        ll_fetch_add(r.base + OFF_PUSHED, k)
    else:
        ring_spsc_publish(r, k)


cdef inline bint ring_write(RingC* r, const char* src, uint64_t n) noexcept nogil:
    # Precondition: n <= r.max_payload; SPSC: ring_psync() done.
    cdef uint64_t frame = ring_frame(r, n)
    cdef uint64_t pos = ring_claim(r, frame)
    if pos == LL_NO_POS:
        return False
    memcpy(r.data + (pos & r.mask) + 8, src, n)
    ring_commit(r, pos, frame, n)
    ring_count_pushed(r, 1)
    return True


cdef Py_ssize_t ring_write_batch(RingC* r, void** bufs, uint64_t* lens, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    cdef uint64_t frame, pos
    for i in range(n):
        frame = ring_frame(r, lens[i])
        pos = ring_claim(r, frame)
        if pos == LL_NO_POS:
            break
        memcpy(r.data + (pos & r.mask) + 8, bufs[i], lens[i])
        ring_commit(r, pos, frame, lens[i])
    else:
        i = n
    if i:
        ring_count_pushed(r, <uint64_t>i)
    return i


cdef inline uint64_t ring_next(RingC* r, uint64_t head, uint64_t* pos) noexcept nogil:
    # From *pos (head = where this read started), skip committed filler and stop at the first record
    # (returns its header, *pos = its position) or where nothing is readable yet (returns 0, *pos =
    # that slot).  Returns LL_HDR_CORRUPT for a header no lowlat producer writes, so torn or hostile
    # shared memory never makes us read out of bounds.
    cdef uint64_t p = pos[0], h, frame, n, off
    while True:
        if p - head >= r.cap:
            # A batch read a whole ring ahead of the (not yet released) head: what lies here is
            # this batch's own first records.  Producers cannot be past this point.
            pos[0] = p
            return 0
        off = p & r.mask
        if r.multi:
            h = ll_load_acquire(r.data + off)
            if not (h & LL_HDR_COMMITTED):
                pos[0] = p
                return 0
        else:
            # SPSC: the tail says what is published; reload it only when we caught up with it.
            if <int64_t>(r.c_tail - p) <= 0:
                r.c_tail = ll_load_acquire(r.base + OFF_TAIL)
                if <int64_t>(r.c_tail - p) <= 0:
                    pos[0] = p
                    return 0
                if r.c_tail - head > r.cap:
                    # the producer is never more than a ring ahead of the head: a foreign tail
                    pos[0] = p
                    return LL_HDR_CORRUPT
            h = ll_load_relaxed(r.data + off)
            if not (h & LL_HDR_COMMITTED):
                pos[0] = p
                return LL_HDR_CORRUPT
        frame = h & LL_HDR_FRAME_MASK
        if h & LL_HDR_PAD:
            if frame == 0 or frame & 7 or frame > r.cap or p + frame - head > r.cap:
                pos[0] = p
                return LL_HDR_CORRUPT
            p += frame
            continue
        n = h >> 32
        if n > r.max_payload or frame < n + 8 or frame > r.max_frame or frame & 7 or off + frame > r.cap:
            pos[0] = p
            return LL_HDR_CORRUPT
        pos[0] = p
        return h


cdef inline void ring_csync(RingC* r) noexcept nogil:
    # Take the consumer position from the shared head (a line only the consumer writes, so this is
    # a cache hit) unless a peek is outstanding: lets another object take over consuming.
    if r.c_peek_end == 0:
        r.c_head = ll_load_relaxed(r.base + OFF_HEAD)


cdef inline void ring_release(RingC* r, uint64_t end, uint64_t nrec) noexcept nogil:
    # Zero [c_head, end) -- stale bytes must never look like a header on the next lap -- then hand
    # the space back to producers with a release store of the head.
    cdef uint64_t p = r.c_head, off, n, first
    if end == p:
        return
    if not r.multi:
        pass                        # SPSC reads only below the tail: stale bytes are never looked at
    elif r.hdr_only_zero:
        # Slot mode with stride | capacity: headers only ever sit at multiples of the stride.  Counted (end - p
        # <= capacity), not compared, so positions near 2**64 (a foreign head) cannot make it run long.
        for first in range((end - p) // r.stride):
            ll_store_relaxed(r.data + (p & r.mask), 0)
            p += r.stride
    else:
        off = p & r.mask
        n = end - p
        first = r.cap - off
        if first >= n:
            memset(r.data + off, 0, n)
        else:
            memset(r.data + off, 0, first)
            memset(r.data, 0, n - first)
    r.c_head = end
    if nrec:
        ll_store_relaxed(r.base + OFF_POPPED, ll_load_relaxed(r.base + OFF_POPPED) + nrec)
    ll_store_release(r.base + OFF_HEAD, end)


cdef int ring_check_stall(RingC* r, uint64_t pos) noexcept nogil:
    # Called when the slot at `pos` is not committed.  Notices a producer that claimed this slot and
    # died before publishing, and turns its slot into filler (see the module docstring).
    # Returns 1 when the shared tail is impossible (more than a ring ahead of `pos`, which is at or after the
    # head: producers never claim past head + capacity), so the caller raises RingError instead of waiting
    # (or scanning) forever; 0 otherwise.
    cdef uint64_t tail, h, frame, q, step
    cdef int64_t now
    if not r.multi:
        return 0                    # SPSC: an unpublished record is simply not there yet
    tail = ll_load_acquire(r.base + OFF_TAIL)
    if <int64_t>(tail - pos) <= 0:
        r.stall_since = 0          # simply empty
        return 0
    if tail - pos > r.cap:
        return 1
    now = ll_now_ns()
    if r.stall_since == 0 or r.stall_pos != pos:
        r.stall_pos = pos
        r.stall_tail = tail
        r.stall_since = now
        r.stall_pid_check = now
        return 0
    h = ll_load_acquire(r.data + (pos & r.mask))
    if h & LL_HDR_COMMITTED:
        return 0
    if h != 0:
        if now - r.stall_pid_check < PID_CHECK_NS:
            return 0
        r.stall_pid_check = now
        if ll_pid_alive(<uint32_t>(h >> 32)):
            return 0
        frame = h & LL_HDR_FRAME_MASK
        if frame == 0 or frame & 7 or frame > r.cap:
            return 0
    else:
        if r.dead_timeout_ns < 0 or now - r.stall_since < r.dead_timeout_ns:
            return 0
        # The header was never written.  Everything between here and the tail seen when the stall
        # began was claimed before then; the first non-zero word is the next claim's header.  The scan
        # is at most capacity / step words: stall_tail - pos <= capacity was checked when it was taken.
        step = r.stride if r.hdr_only_zero else 8
        q = pos + step
        while <int64_t>(r.stall_tail - q) > 0:
            if ll_load_acquire(r.data + (q & r.mask)) != 0:
                break
            q += step
        frame = q - pos
    ll_store_release(r.data + (pos & r.mask), frame | LL_HDR_PAD | LL_HDR_COMMITTED)
    ll_fetch_add(r.base + OFF_DEAD, 1)
    r.stall_since = 0
    return 0


cdef int ring_wait_readable(RingC* r, int64_t until, ll_idle_t* idle) noexcept nogil:
    # 1 when a record (or a corrupt header, which the caller reports) is at the head, 0 at `until`,
    # -1 if the ring was closed meanwhile, -2 for an impossible shared tail (see ring_check_stall).
    # Does not move the head (safe next to a reader thread).
    cdef uint64_t p
    while True:
        if r.closed:
            return -1
        p = r.c_head if r.c_peek_end else ll_load_relaxed(r.base + OFF_HEAD)
        if ring_next(r, p, &p) != 0:
            return 1
        if ring_check_stall(r, p):
            return -2
        if ll_now_ns() >= until:
            return 0
        ll_idle(idle)


cdef int ring_push_wait(RingC* r, const char* src, uint64_t n, int64_t until,
                        ll_idle_t* idle) noexcept nogil:
    while True:
        if r.closed:
            return -1
        if ring_write(r, src, n):
            return 1
        if ll_now_ns() >= until:
            return 0
        ll_idle(idle)


cdef inline int _get_buf(object data, Py_buffer* view, const char** p, uint64_t* n) except -1:
    # bytes fast path (no buffer export); returns 1 if `view` must be released.
    if PyBytes_CheckExact(data):
        p[0] = PyBytes_AS_STRING(data)
        n[0] = <uint64_t>PyBytes_GET_SIZE(data)
        return 0
    PyObject_GetBuffer(data, view, PyBUF_SIMPLE)
    p[0] = <const char*>view.buf
    n[0] = <uint64_t>view.len
    return 1


cdef object _corrupt_tail(RingC* r):
    return RingError(f"corrupt shared tail {ll_load_relaxed(r.base + OFF_TAIL)} (head {r.c_head}, capacity "
                     f"{r.cap}): shared memory was written by something other than a lowlat producer")


cdef object _corrupt(RingC* r, uint64_t pos):
    return RingError(f"corrupt record header 0x{ll_load_relaxed(r.data + (pos & r.mask)):016x} "
                     f"at position {pos}: shared memory was written by something other than a lowlat producer")


cdef class _Ring:
    """Shared implementation of SpscRing and MpscRing (use those)."""

    def __cinit__(self, capacity, *, name=None, bint create=True, slot_size=0,
                  dead_producer_timeout=1.0):
        cdef uint64_t cap, slot, stride
        cdef int kind = RING_KIND_MPSC if isinstance(self, MpscRing) else RING_KIND_SPSC
        self.kind = kind
        self.r.claim_len = -1
        self.name = None
        if not isinstance(slot_size, int) or slot_size < 0:
            raise ValueError(f"slot_size must be an int >= 0, got {slot_size!r}")
        if dead_producer_timeout is None:
            self.r.dead_timeout_ns = -1
        else:
            if not dead_producer_timeout >= 0:
                raise ValueError("dead_producer_timeout must be >= 0 seconds or None")
            self.r.dead_timeout_ns = <int64_t>(float(dead_producer_timeout) * 1e9)
        if name is None or create:
            cap = _check_capacity(capacity)
            if slot_size > _max_slot(cap):
                raise ValueError(f"slot_size {slot_size} too large for capacity {capacity}: two slots of "
                                 f"8-byte header + payload, 8-aligned, must fit (at most {_max_slot(cap)})")
            slot = <uint64_t>slot_size
            stride = _stride(slot)
            if name is None:
                if not create:
                    raise ValueError("create=False needs a name to attach to")
                self.mem = _heap_mem(RING_HDR_SIZE + cap)
            else:
                self.mem = _shm_create(name, RING_HDR_SIZE + cap)
            _init_header(self.mem.base, kind, cap, slot)
            self.owner = True
        else:
            self.mem = _shm_attach(name, kind)
            cap = (<uint64_t*>(self.mem.base + OFF_CAPACITY))[0]
            slot = (<uint64_t*>(self.mem.base + OFF_SLOT))[0]
            # range-check before any arithmetic on it: a hostile slot_size near 2**64 would wrap the stride
            if slot > _max_slot(cap):
                raise RingError(f"{name!r} has an inconsistent header (slot_size {slot}, capacity {cap}: "
                                f"at most {_max_slot(cap)})")
            stride = _stride(slot)
            if capacity and (capacity != cap or slot_size != slot):
                raise RingError(f"{name!r} has capacity {cap} and slot_size {slot}, "
                                f"not {capacity} and {slot_size}")
        if name is not None:
            self.name = name[1:] if name.startswith("/") else name
        self.r.base = self.mem.base
        self.r.data = self.mem.base + RING_HDR_SIZE
        self.r.cap = cap
        self.r.mask = cap - 1
        self.r.stride = stride
        self.r.multi = kind == RING_KIND_MPSC
        if stride:
            self.r.max_frame = stride
            self.r.max_payload = slot
            self.r.hdr_only_zero = self.r.multi and cap % stride == 0
        else:
            self.r.max_frame = cap // 2
            self.r.max_payload = cap // 2 - 8
        self.r.c_head = ll_load_acquire(self.r.base + OFF_HEAD)
        self.r.p_head = self.r.c_head

    def __dealloc__(self):
        PyMem_RawFree(self.bufs)
        PyMem_RawFree(self.lens)

    @classmethod
    def attach(cls, name, **kwargs):
        """Attach to an existing shared-memory ring created by another object/process.

        Raises
        ------
        RingError
            No ring of that name, or it is not a ring of this class / layout version.
        """
        return cls(0, name=name, create=False, **kwargs)

    def __reduce__(self):
        # Named rings pickle as "attach by name" (multiprocessing spawn/forkserver arguments).
        if self.name is None:
            raise TypeError(f"a heap {type(self).__name__} cannot be sent to another process; "
                            f"create it with name=... to share it")
        return (type(self).attach, (self.name,))

    # ---- properties ---------------------------------------------------------------------------
    @property
    def capacity(self):
        """Data area size in bytes (a power of two)."""
        return self.r.cap

    @property
    def slot_size(self):
        """Payload bytes per fixed slot, 0 for variable-length records."""
        return self.r.max_payload if self.r.stride else 0

    @property
    def max_record_size(self):
        """Largest payload a single record may carry, bytes."""
        return self.r.max_payload

    @property
    def closed(self):
        return self.r.closed

    @property
    def available(self):
        """Bytes currently claimed and not yet consumed (approximate; includes framing)."""
        self.check_open_c()
        cdef uint64_t t = ll_load_acquire(self.r.base + OFF_TAIL)
        cdef uint64_t h = ll_load_acquire(self.r.base + OFF_HEAD)
        # clamped to [0, capacity]: foreign writes to the shared words must not give a nonsense size
        return min(t - h, self.r.cap) if t > h else 0

    @property
    def dead_records(self):
        """Records skipped because their producer died between claim and publish."""
        self.check_open_c()
        return ll_load_relaxed(self.r.base + OFF_DEAD)

    def __len__(self):
        """Records published and not yet consumed (a snapshot; other sides keep moving)."""
        if self.r.closed:
            return 0
        cdef uint64_t popped = ll_load_acquire(self.r.base + OFF_POPPED)
        cdef uint64_t pushed = ll_load_acquire(self.r.base + OFF_PUSHED)
        # Clamped to what can fit (a record takes >= 8 bytes): corrupted counters would otherwise give a
        # length that len() cannot return (SystemError / OverflowError)
        if pushed <= popped:
            return 0
        return min(pushed - popped, self.r.cap // 8)

    def __repr__(self):
        where = f"name={self.name!r}" if self.name is not None else "heap"
        state = "closed" if self.r.closed else f"{len(self)} records"
        return (f"<{type(self).__name__} capacity={self.r.cap} slot_size={self.slot_size} "
                f"{where} {state}>")

    # ---- lifecycle ----------------------------------------------------------------------------
    cdef int check_open_c(self) except -1:
        if self.r.closed:
            raise RingError(f"{type(self).__name__} is closed")
        return 0

    def close(self):
        """Stop using the ring and unmap it (after the last exported memoryview is released).

        Does not remove the shared-memory name: the creator calls ``unlink()``.  Idempotent."""
        if self.r.closed:
            return
        self.r.closed = True
        self.mem.close_c()

    def unlink(self):
        """Remove the shared-memory name (the memory lives on until every process unmaps it).

        Call it once, in the process that created the ring, when no new process needs to attach;
        names otherwise outlive the processes in /dev/shm.  No-op for heap rings and missing names."""
        if self.name is not None:
            shm_unlink(_shm_path(self.name))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- producer -----------------------------------------------------------------------------
    def try_push(self, data):
        """Copy one record into the ring if there is room.  Cost: one claim + memcpy, no allocation.

        Parameters
        ----------
        data : bytes-like
            Payload, at most ``max_record_size`` bytes.

        Returns
        -------
        bool
            False when the ring is full (nothing was written; retry later).
        """
        cdef Py_buffer view
        cdef const char* p
        cdef uint64_t n
        cdef bint ok
        self.check_open_c()
        if self.r.claim_len >= 0:
            raise RingError("publish() or abort() the outstanding claim() first")
        ring_psync(&self.r)
        cdef int rel = _get_buf(data, &view, &p, &n)
        try:
            if n > self.r.max_payload:
                raise ValueError(f"record of {n} bytes exceeds max_record_size {self.r.max_payload}")
            ok = ring_write(&self.r, p, n)
        finally:
            if rel:
                PyBuffer_Release(&view)
        return ok

    def push(self, data, timeout=None, idle=None):
        """Copy one record into the ring, waiting (GIL released) while it is full.

        Parameters
        ----------
        data : bytes-like
            Payload, at most ``max_record_size`` bytes.
        timeout : float or None
            Seconds to wait for room; None waits forever.
        idle : IdleStrategy or None
            How to wait; default ``BackoffIdle()``.

        Raises
        ------
        RingFullError
            No room appeared within ``timeout``.
        """
        cdef Py_buffer view
        cdef const char* p
        cdef uint64_t n
        cdef int rc
        cdef ll_idle_t cfg
        cdef int64_t deadline, until
        self.check_open_c()
        if self.r.claim_len >= 0:
            raise RingError("publish() or abort() the outstanding claim() first")
        ring_psync(&self.r)
        cdef int rel = _get_buf(data, &view, &p, &n)
        try:
            if n > self.r.max_payload:
                raise ValueError(f"record of {n} bytes exceeds max_record_size {self.r.max_payload}")
            if ring_write(&self.r, p, n):
                return
            cfg = _idle_cfg(idle)
            deadline = _deadline(timeout)
            self.mem.exports += 1          # keep the memory mapped if another thread closes us
            try:
                while True:
                    until = _chunk_end(deadline)
                    with nogil:
                        rc = ring_push_wait(&self.r, p, n, until, &cfg)
                    if rc == 1:
                        return
                    if rc < 0:
                        raise RingError(f"{type(self).__name__} was closed while pushing")
                    if deadline >= 0 and ll_now_ns() >= deadline:
                        raise RingFullError(f"ring still full after {timeout} s")
                    PyErr_CheckSignals()
            finally:
                self.mem.exports -= 1
                if self.mem.closing and self.mem.exports == 0:
                    self.mem.unmap_c()
        finally:
            if rel:
                PyBuffer_Release(&view)

    cdef int grow_scratch_c(self, Py_ssize_t n) except -1:
        cdef void** b
        cdef uint64_t* l
        if n <= self.nbufs:
            return 0
        b = <void**>PyMem_RawRealloc(self.bufs, n * sizeof(void*))
        if b == NULL:
            raise MemoryError()
        self.bufs = b
        l = <uint64_t*>PyMem_RawRealloc(self.lens, n * sizeof(uint64_t))
        if l == NULL:
            raise MemoryError()
        self.lens = l
        self.nbufs = n
        return 0

    cdef Py_ssize_t gather_c(self, object items, list held, str what) except -1:
        # Point self.bufs/self.lens at each buffer of `items` (bytes directly; anything else through a
        # memoryview appended to `held`, which keeps the export alive until the caller's copy is done).
        cdef Py_ssize_t i, n
        cdef Py_buffer view
        cdef memoryview mv
        seq = items if isinstance(items, (list, tuple)) else list(items)
        n = len(seq)
        self.grow_scratch_c(n if n > 0 else 1)
        for i in range(n):
            item = seq[i]
            if PyBytes_CheckExact(item):
                self.bufs[i] = <void*>PyBytes_AS_STRING(item)
                self.lens[i] = <uint64_t>PyBytes_GET_SIZE(item)
            else:
                mv = memoryview(item)
                if not mv.c_contiguous:
                    raise ValueError(f"{what}: buffers must be C-contiguous")
                held.append(mv)
                PyObject_GetBuffer(mv, &view, PyBUF_SIMPLE)
                self.bufs[i] = view.buf
                self.lens[i] = <uint64_t>view.len
                PyBuffer_Release(&view)     # mv still holds the underlying export
        return n

    def push_batch(self, buffers):
        """Copy as many records of ``buffers`` as fit, in order, with the GIL released for the copy.

        Parameters
        ----------
        buffers : sequence of bytes-like
            Payloads, each at most ``max_record_size`` bytes (checked before anything is written).

        Returns
        -------
        int
            How many leading records were pushed (``len(buffers)`` unless the ring filled up).
        """
        cdef Py_ssize_t i, n, done = 0
        cdef list held = []
        self.check_open_c()
        if self.r.claim_len >= 0:
            raise RingError("publish() or abort() the outstanding claim() first")
        ring_psync(&self.r)
        n = self.gather_c(buffers, held, "push_batch")
        if n == 0:
            return 0
        for i in range(n):
            if self.lens[i] > self.r.max_payload:
                raise ValueError(f"record {i} of {self.lens[i]} bytes exceeds max_record_size "
                                 f"{self.r.max_payload}")
        with nogil:
            done = ring_write_batch(&self.r, self.bufs, self.lens, n)
        return done

    def try_push_parts(self, parts):
        """Copy one record made of several buffers (e.g. header + subject + payload) if there is room,
        without concatenating them in Python first.  Cost: one claim + one memcpy per part.

        Parameters
        ----------
        parts : sequence of bytes-like
            The record is their concatenation; at most ``max_record_size`` bytes in total.

        Returns
        -------
        bool
            False when the ring is full (nothing was written).
        """
        cdef Py_ssize_t i, n
        cdef uint64_t total = 0, frame, pos
        cdef char* dst
        cdef list held = []
        self.check_open_c()
        if self.r.claim_len >= 0:
            raise RingError("publish() or abort() the outstanding claim() first")
        n = self.gather_c(parts, held, "try_push_parts")
        for i in range(n):
            total += self.lens[i]
        if total > self.r.max_payload:
            raise ValueError(f"record of {total} bytes exceeds max_record_size {self.r.max_payload}")
        ring_psync(&self.r)
        frame = ring_frame(&self.r, total)
        pos = ring_claim(&self.r, frame)
        if pos == LL_NO_POS:
            return False
        dst = self.r.data + (pos & self.r.mask) + 8
        for i in range(n):
            memcpy(dst, self.bufs[i], self.lens[i])
            dst += self.lens[i]
        ring_commit(&self.r, pos, frame, total)
        ring_count_pushed(&self.r, 1)
        return True

    def claim(self, Py_ssize_t size):
        """Reserve room for one record of ``size`` bytes and return a writable memoryview of it.

        Write the payload into the view (e.g. ``lowlat.encode_order_into``), then ``publish()``
        (optionally with a smaller final size) or ``abort()``.  Zero-copy; no allocation besides the view.

        Returns
        -------
        memoryview or None
            None when the ring is full.

        Notes
        -----
        In an MpscRing the consumer waits at a claimed slot until it is published or aborted, so
        always pair ``claim`` with ``publish``/``abort`` (try/except).
        """
        cdef uint64_t frame, pos
        self.check_open_c()
        if self.r.claim_len >= 0:
            raise RingError("claim(): the previous claim was not published or aborted")
        ring_psync(&self.r)
        if size < 0 or <uint64_t>size > self.r.max_payload:
            raise ValueError(f"claim of {size} bytes: must be 0..max_record_size ({self.r.max_payload})")
        frame = ring_frame(&self.r, <uint64_t>size)
        pos = ring_claim(&self.r, frame)
        if pos == LL_NO_POS:
            return None
        self.r.claim_pos = pos
        self.r.claim_len = size
        self.r.claim_frame = frame
        return self.mem.view_c(self.r.data + (pos & self.r.mask) + 8, size, False)

    def publish(self, Py_ssize_t size=-1):
        """Make the claimed record visible to the consumer.

        Parameters
        ----------
        size : int
            Final payload length, ``0 <= size <=`` the claimed size; -1 (default) = the claimed size.
        """
        cdef uint64_t frame
        self.check_open_c()
        if self.r.claim_len < 0:
            raise RingError("publish() without claim()")
        if size < 0:
            size = self.r.claim_len
        elif size > self.r.claim_len:
            raise ValueError(f"publish({size}) is larger than the claimed {self.r.claim_len} bytes")
        frame = self.r.claim_frame
        if not self.r.multi and not self.r.stride:
            # SPSC owns the tail: publish only the frame the final size needs.
            frame = ring_frame(&self.r, <uint64_t>size)
            self.r.p_tail = self.r.claim_pos + frame
        ring_commit(&self.r, self.r.claim_pos, frame, <uint64_t>size)
        ring_count_pushed(&self.r, 1)
        self.r.claim_len = -1

    def abort(self):
        """Give up the outstanding claim; nothing is delivered (MPSC: the slot becomes filler)."""
        self.check_open_c()
        if self.r.claim_len < 0:
            return
        if not self.r.multi:
            pass        # SPSC: the tail never moved; the next producer call re-reads it (ring_psync)
        else:
            ll_store_release(self.r.data + (self.r.claim_pos & self.r.mask),
                             self.r.claim_frame | LL_HDR_PAD | LL_HDR_COMMITTED)
        self.r.claim_len = -1

    # ---- consumer -----------------------------------------------------------------------------
    cdef int wait_readable_c(self, object timeout, object idle) except -1:
        # 1 readable, 0 timed out.  GIL released while waiting, signals checked every 50 ms.
        cdef uint64_t p
        cdef int rc
        cdef uint32_t spins, k
        cdef ll_idle_t cfg
        cdef int64_t deadline, until
        ring_csync(&self.r)
        p = self.r.c_head
        if ring_next(&self.r, self.r.c_head, &p) != 0:
            return 1
        if ring_check_stall(&self.r, p):
            raise _corrupt_tail(&self.r)
        cfg = _idle_cfg(idle)
        if cfg.kind == LL_IDLE_BUSY and timeout != 0:
            # The spinning side: poll a little with the GIL held before paying for the GIL hand-off
            # (~0.1-0.2 µs each way), which would otherwise dominate a sub-µs wait.  Only for
            # BusySpinIdle: BackoffIdle's spin phase is short (10 pauses ~ 0.3 µs here), and the GIL
            # hand-off in front of it usefully lengthens it before the first sched_yield.
            spins = GIL_SPIN_POLLS
            for k in range(spins):
                ll_cpu_relax()
                p = self.r.c_head
                if ring_next(&self.r, self.r.c_head, &p) != 0:
                    return 1
        deadline = _deadline(timeout)
        self.mem.exports += 1
        try:
            while True:
                until = _chunk_end(deadline)
                with nogil:
                    rc = ring_wait_readable(&self.r, until, &cfg)
                if rc == 1:
                    return 1
                if rc == -2:
                    raise _corrupt_tail(&self.r)
                if rc < 0:
                    raise RingError(f"{type(self).__name__} was closed while waiting")
                if deadline >= 0 and ll_now_ns() >= deadline:
                    return 0
                PyErr_CheckSignals()
        finally:
            self.mem.exports -= 1
            if self.mem.closing and self.mem.exports == 0:
                self.mem.unmap_c()

    def wait_readable(self, timeout=None, idle=None):
        """Wait (GIL released) until a record can be read.  Safe to call from a worker thread while
        another thread consumes: it never moves the head.

        Parameters
        ----------
        timeout : float or None
            Seconds; None waits forever, 0 polls once.
        idle : IdleStrategy or None
            How to wait; default ``BackoffIdle()``.

        Returns
        -------
        bool
            True if a record is readable, False on timeout.
        """
        self.check_open_c()
        return self.wait_readable_c(timeout, idle) == 1

    def try_peek(self):
        """Return the next record as a read-only memoryview without copying, or None if empty.

        The view stays valid until ``commit()``; calling ``try_peek`` again before that returns the
        same record."""
        cdef uint64_t p, h
        self.check_open_c()
        ring_csync(&self.r)
        p = self.r.c_head
        h = ring_next(&self.r, self.r.c_head, &p)
        if h == 0:
            if p != self.r.c_head and self.r.c_peek_end == 0:
                ring_release(&self.r, p, 0)      # hand skipped filler back to producers early
            if ring_check_stall(&self.r, p):
                raise _corrupt_tail(&self.r)
            return None
        if h == LL_HDR_CORRUPT:
            raise _corrupt(&self.r, p)
        if self.r.c_peek_end == 0:
            self.r.c_peek_end = p + (h & LL_HDR_FRAME_MASK)
            self.r.c_peek_n = 1
        return self.mem.view_c(self.r.data + (p & self.r.mask) + 8, <Py_ssize_t>(h >> 32), True)

    def peek_batch(self, Py_ssize_t max_n):
        """Return up to ``max_n`` next records as read-only memoryviews (zero-copy), valid until
        ``commit()``, which consumes all of them.  An empty list when nothing is readable."""
        return self.take_batch_c(max_n, False)

    def commit(self):
        """Consume the record(s) returned by ``try_peek``/``peek_batch``; their views become invalid."""
        self.check_open_c()
        if self.r.c_peek_end == 0:
            raise RingError("commit() without a preceding try_peek()/peek_batch()")
        ring_release(&self.r, self.r.c_peek_end, self.r.c_peek_n)
        self.r.c_peek_end = 0
        self.r.c_peek_n = 0

    def try_pop(self):
        """Copy out and consume the next record; None if nothing is readable.  Cost: one bytes object."""
        return self.try_pop_c()

    cdef object try_pop_c(self):
        cdef uint64_t p, h
        cdef object out
        self.check_open_c()
        ring_csync(&self.r)
        if self.r.c_peek_end != 0:
            raise RingError("commit() the outstanding peek before popping")
        p = self.r.c_head
        h = ring_next(&self.r, self.r.c_head, &p)
        if h == 0:
            if p != self.r.c_head:
                ring_release(&self.r, p, 0)
            if ring_check_stall(&self.r, p):
                raise _corrupt_tail(&self.r)
            return None
        if h == LL_HDR_CORRUPT:
            raise _corrupt(&self.r, p)
        out = PyBytes_FromStringAndSize(self.r.data + (p & self.r.mask) + 8, <Py_ssize_t>(h >> 32))
        ring_release(&self.r, p + (h & LL_HDR_FRAME_MASK), 1)
        return out

    def pop(self, timeout=None, idle=None):
        """Copy out and consume the next record, waiting (GIL released) while the ring is empty.

        Parameters
        ----------
        timeout : float or None
            Seconds; None waits forever.
        idle : IdleStrategy or None
            How to wait; default ``BackoffIdle()``.

        Raises
        ------
        TimeoutError
            Nothing arrived within ``timeout`` (the builtin TimeoutError, as ``queue``/nats-py).
        """
        cdef object out = self.try_pop_c()
        while out is None:
            if self.wait_readable_c(timeout, idle) == 0:
                raise TimeoutError(f"no record within {timeout} s")
            out = self.try_pop_c()
        return out

    def pop_batch(self, Py_ssize_t max_n):
        """Copy out and consume up to ``max_n`` records (one head update); an empty list if none."""
        return self.take_batch_c(max_n, True)

    cdef list take_batch_c(self, Py_ssize_t max_n, bint copy):
        # Shared body of pop_batch (copy=True: bytes, consumed with one head update) and peek_batch
        # (copy=False: zero-copy views, consumed later by commit()).
        cdef uint64_t p, h
        cdef Py_ssize_t k = 0
        cdef list out = []
        cdef char* rec
        self.check_open_c()
        ring_csync(&self.r)
        if self.r.c_peek_end != 0:
            raise RingError("commit() the outstanding peek before popping" if copy
                            else "commit() the previous peek first")
        p = self.r.c_head
        while k < max_n:
            h = ring_next(&self.r, self.r.c_head, &p)
            if h == 0:
                if k == 0:
                    if p != self.r.c_head:
                        ring_release(&self.r, p, 0)
                    if ring_check_stall(&self.r, p):
                        raise _corrupt_tail(&self.r)
                break
            if h == LL_HDR_CORRUPT:
                if k == 0:
                    raise _corrupt(&self.r, p)
                break
            rec = self.r.data + (p & self.r.mask) + 8
            if copy:
                out.append(PyBytes_FromStringAndSize(rec, <Py_ssize_t>(h >> 32)))
            else:
                out.append(self.mem.view_c(rec, <Py_ssize_t>(h >> 32), True))
            p += h & LL_HDR_FRAME_MASK
            k += 1
        if k:
            if copy:
                ring_release(&self.r, p, <uint64_t>k)
            else:
                self.r.c_peek_end = p
                self.r.c_peek_n = k
        return out

@cython.final
cdef class SpscRing(_Ring):
    """Single-producer single-consumer ring of records over preallocated memory.

    ``SpscRing(capacity, *, name=None, create=True, slot_size=0, dead_producer_timeout=1.0)``

    capacity is the data area in bytes (a power of two, 64 B .. 512 MiB).  ``slot_size=0`` stores
    variable-length records (8-byte header, payload padded to 8 bytes, at most ``capacity/2 - 8``
    bytes each); ``slot_size>0`` gives every record a fixed slot of ``align8(8 + slot_size)`` bytes.
    ``name=None`` allocates on the heap (threads of one process); a name creates (``create=True``)
    or attaches to (``create=False`` / ``attach(name)``) POSIX shared memory ``/dev/shm/<name>``.

    Exactly one thread/process may produce and one may consume at a time.  A producer killed mid-write
    never published (the tail moves after the record), so nothing is skipped and ``dead_producer_timeout``
    has no effect here (it is accepted so both classes take the same arguments)."""


@cython.final
cdef class MpscRing(_Ring):
    """Multi-producer single-consumer ring: like SpscRing, but any number of threads/processes may
    push concurrently (claims are a CAS on the shared tail; each record has its own commit word).

    A producer killed between claim and publish stalls the consumer at that record until it is
    skipped: at once when its pid is found dead (checked every 10 ms while stalled), or after
    ``dead_producer_timeout`` seconds if it died before writing even the pending header."""


# ------------------------------------------------------------------------------------------------
# broadcast
# ------------------------------------------------------------------------------------------------

@cython.final
cdef class BroadcastRing:
    """One producer, any number of independent receivers (market-data fan-out), Agrona-style.

    ``publish`` never blocks: it overwrites the oldest records.  Each ``receiver()`` has its own
    cursor; a receiver that falls a whole ring behind is *lapped*: ``try_recv`` raises LappedError
    (or counts it, see ``receiver``) and resynchronises to the newest record.  Receivers in other
    processes use ``BroadcastRing.attach(name).receiver()``.  Records are at most ``capacity/8 - 8``
    bytes."""

    def __cinit__(self, capacity, *, name=None, bint create=True):
        cdef uint64_t cap
        self.name = None
        if name is None or create:
            cap = _check_capacity(capacity)
            if name is None:
                if not create:
                    raise ValueError("create=False needs a name to attach to")
                self.mem = _heap_mem(RING_HDR_SIZE + cap)
            else:
                self.mem = _shm_create(name, RING_HDR_SIZE + cap)
            _init_header(self.mem.base, RING_KIND_BROADCAST, cap, 0)
            self.owner = True
        else:
            self.mem = _shm_attach(name, RING_KIND_BROADCAST)
            cap = (<uint64_t*>(self.mem.base + OFF_CAPACITY))[0]
            if capacity and capacity != cap:
                raise RingError(f"{name!r} has capacity {cap}, not {capacity}")
        if name is not None:
            self.name = name[1:] if name.startswith("/") else name
        self.base = self.mem.base
        self.data = self.mem.base + RING_HDR_SIZE
        self.capacity = cap
        self.mask = cap - 1

    @classmethod
    def attach(cls, name):
        """Attach to an existing shared-memory BroadcastRing (to make receivers in this process)."""
        return cls(0, name=name, create=False)

    def __reduce__(self):
        if self.name is None:
            raise TypeError("a heap BroadcastRing cannot be sent to another process; create it with name=...")
        return (BroadcastRing.attach, (self.name,))

    @property
    def max_record_size(self):
        """Largest payload, bytes (capacity/8 - 8, so a receiver has room to keep up)."""
        return self.capacity // 8 - 8

    @property
    def closed(self):
        return self.is_closed

    def close(self):
        """Unmap (after receivers/views let go).  Does not remove the name; see ``unlink``."""
        if self.is_closed:
            return
        self.is_closed = True
        self.mem.close_c()

    def unlink(self):
        """Remove the shared-memory name (creator, once).  No-op for heap rings and missing names."""
        if self.name is not None:
            shm_unlink(_shm_path(self.name))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        where = f"name={self.name!r}" if self.name is not None else "heap"
        return f"<BroadcastRing capacity={self.capacity} {where}{' closed' if self.is_closed else ''}>"

    def publish(self, data):
        """Append one record, overwriting the oldest ones if needed.  Never blocks.  Single producer.

        Raises
        ------
        ValueError
            ``data`` is larger than ``max_record_size``.
        """
        cdef Py_buffer view
        cdef const char* src
        cdef uint64_t n, frame, tail, off, pad
        if self.is_closed:
            raise RingError("BroadcastRing is closed")
        cdef int rel = _get_buf(data, &view, &src, &n)
        try:
            if n > self.capacity // 8 - 8:
                raise ValueError(f"record of {n} bytes exceeds max_record_size {self.capacity // 8 - 8}")
            frame = (n + 15) & ~(<uint64_t>7)
            # From the shared tail (a line only the producer writes): another object may have published.
            tail = ll_load_relaxed(self.base + OFF_BC_TAIL)
            off = tail & self.mask
            pad = self.capacity - off
            if pad >= frame:
                pad = 0
            # Announce the bytes we are about to overwrite before touching them (seqlock order):
            # a receiver that read any of them re-checks the intent after an acquire fence.
            ll_store_relaxed(self.base + OFF_BC_INTENT, tail + pad + frame)
            ll_fence_release()
            if pad:
                ll_store_relaxed(self.data + off, pad | LL_HDR_PAD)
                tail += pad
                off = 0
            ll_store_relaxed(self.data + off, frame | (n << 32))
            memcpy(self.data + off + 8, src, n)
            ll_store_relaxed(self.base + OFF_BC_LATEST, tail)
            ll_store_release(self.base + OFF_BC_TAIL, tail + frame)
        finally:
            if rel:
                PyBuffer_Release(&view)

    def receiver(self, *, bint raise_on_lap=True):
        """A new independent consumer starting at the next record published.

        Parameters
        ----------
        raise_on_lap : bool
            True: ``try_recv`` raises LappedError once per lap (after resynchronising).  False: it
            silently resynchronises; check ``lapped_count``.
        """
        if self.is_closed:
            raise RingError("BroadcastRing is closed")
        cdef BroadcastReceiver rx = BroadcastReceiver.__new__(BroadcastReceiver)
        rx.ring = self
        rx.cursor = ll_load_acquire(self.base + OFF_BC_TAIL)
        rx.raise_on_lap = raise_on_lap
        return rx


cdef int _lapped(BroadcastReceiver rx) except -1:
    # After a resync to the newest record, a real lap needs the producer to publish more (the tail moves):
    # the intent of a publish in flight is < 3/8 ring past `latest`.  A second lap at the same tail means the
    # intent word is foreign; without this check try_recv(raise_on_lap=False) would resync forever.
    cdef uint64_t tail = ll_load_acquire(rx.ring.base + OFF_BC_TAIL)
    if rx.lapped_once and tail == rx.lap_tail:
        raise RingError(f"corrupt broadcast tail intent {ll_load_relaxed(rx.ring.base + OFF_BC_INTENT)} "
                        f"(tail {tail}): shared memory was written by something other than a lowlat producer")
    rx.lap_tail = tail
    rx.lapped_once = True
    rx.lapped_count += 1
    rx.cursor = ll_load_acquire(rx.ring.base + OFF_BC_LATEST)
    if rx.raise_on_lap:
        raise LappedError(f"broadcast receiver lapped: the producer overwrote records it had not read "
                          f"(lapped_count={rx.lapped_count}); resumed at the newest record")
    return 0


@cython.final
cdef class BroadcastReceiver:
    """One consumer's cursor into a BroadcastRing (make it with ``BroadcastRing.receiver()``)."""

    def __init__(self):
        raise TypeError("use BroadcastRing.receiver()")

    @property
    def position(self):
        """Position (byte counter) of the next record this receiver reads."""
        return self.cursor

    def try_recv(self):
        """Copy out the next record, or None if there is none yet.

        The copy is validated after it is taken, so a record overwritten while being read is never
        returned.  Raises LappedError when lapped (see ``BroadcastRing.receiver``)."""
        cdef BroadcastRing ring = self.ring
        cdef uint64_t tail, h, frame, n, off, cap
        cdef object out
        if ring.is_closed:
            raise RingError("BroadcastRing is closed")
        cap = ring.capacity
        while True:
            tail = ll_load_acquire(ring.base + OFF_BC_TAIL)
            if <int64_t>(tail - self.cursor) <= 0:
                return None
            off = self.cursor & ring.mask
            h = ll_load_relaxed(ring.data + off)
            frame = h & LL_HDR_FRAME_MASK
            n = h >> 32
            if h & LL_HDR_PAD:
                ll_fence_acquire()
                if ll_load_relaxed(ring.base + OFF_BC_INTENT) > self.cursor + cap:
                    _lapped(self)
                    continue
                # the producer pads only from a non-zero offset to the end: a filler at 0 is foreign (and
                # would let a loop of fillers run up to a foreign tail)
                if frame == 0 or frame & 7 or off == 0 or off + frame != cap:
                    raise RingError(f"corrupt broadcast filler header 0x{h:016x}")
                self.cursor += frame
                continue
            if n > cap // 8 - 8 or frame < n + 8 or frame & 7 or off + frame > cap:
                ll_fence_acquire()
                if ll_load_relaxed(ring.base + OFF_BC_INTENT) > self.cursor + cap:
                    _lapped(self)
                    continue
                raise RingError(f"corrupt broadcast record header 0x{h:016x}")
            out = PyBytes_FromStringAndSize(ring.data + off + 8, <Py_ssize_t>n)
            ll_fence_acquire()
            if ll_load_relaxed(ring.base + OFF_BC_INTENT) > self.cursor + cap:
                _lapped(self)
                continue
            self.cursor += frame
            return out

    def recv(self, timeout=None, idle=None):
        """Like ``try_recv`` but waits (GIL released) for a record.

        Raises
        ------
        TimeoutError
            Nothing arrived within ``timeout`` seconds.
        """
        cdef BroadcastRing ring = self.ring
        cdef ll_idle_t cfg
        cdef int64_t deadline, until
        cdef char* tail_p
        cdef uint64_t cur
        cdef int got
        out = self.try_recv()
        if out is not None:
            return out
        cfg = _idle_cfg(idle)
        deadline = _deadline(timeout)
        tail_p = ring.base + OFF_BC_TAIL
        ring.mem.exports += 1
        try:
            while True:
                until = _chunk_end(deadline)
                cur = self.cursor
                got = 0
                with nogil:
                    while True:
                        if <int64_t>(ll_load_acquire(tail_p) - cur) > 0:
                            got = 1
                            break
                        if ring.is_closed or ll_now_ns() >= until:
                            break
                        ll_idle(&cfg)
                if got:
                    out = self.try_recv()
                    if out is not None:
                        return out
                    continue
                if ring.is_closed:
                    raise RingError("BroadcastRing was closed while waiting")
                if deadline >= 0 and ll_now_ns() >= deadline:
                    raise TimeoutError(f"no broadcast record within {timeout} s")
                PyErr_CheckSignals()
        finally:
            ring.mem.exports -= 1
            if ring.mem.closing and ring.mem.exports == 0:
                ring.mem.unmap_c()
