# Included by _ring.pyx.  A ring's memory and its shared-memory lifecycle: heap block or POSIX shm mapping
# (create, attach with header validation, unmap/unlink), exported as memoryviews that keep it alive, and the
# header layout checks (capacity, slot stride).

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
