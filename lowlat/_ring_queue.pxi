# Included by _ring.pyx.  The Python-facing SPSC and MPSC rings: one implementation (_Ring) over the record
# helpers of _ring_records.pxi; SpscRing and MpscRing differ only in how a producer claims space.

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
        PyMem_RawFree(self.span_off)
        PyMem_RawFree(self.span_len)

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
            cfg = idle_cfg(idle, _DEFAULT_IDLE)
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
        cdef Py_ssize_t n
        cdef list held = []
        self.check_open_c()
        n = self.gather_c(parts, held, "try_push_parts")
        return self.push_gather_c(self.bufs, self.lens, 1, n) == 1

    cdef Py_ssize_t push_gather_c(self, void** parts, const uint64_t* lens, Py_ssize_t n,
                                  Py_ssize_t k) except -1:
        cdef Py_ssize_t i, j
        cdef uint64_t total, frame, pos
        cdef char* dst
        self.check_open_c()
        if self.r.claim_len >= 0:
            raise RingError("publish() or abort() the outstanding claim() first")
        for i in range(n):
            total = 0
            for j in range(i * k, i * k + k):
                total += lens[j]
            if total > self.r.max_payload:
                raise ValueError(f"record of {total} bytes exceeds max_record_size {self.r.max_payload}")
        ring_psync(&self.r)
        for i in range(n):
            total = 0
            for j in range(i * k, i * k + k):
                total += lens[j]
            frame = ring_frame(&self.r, total)
            pos = ring_claim(&self.r, frame)
            if pos == LL_NO_POS:
                break
            dst = self.r.data + (pos & self.r.mask) + 8
            for j in range(i * k, i * k + k):
                memcpy(dst, parts[j], lens[j])
                dst += lens[j]
            ring_commit(&self.r, pos, frame, total)
        else:
            i = n
        if i:
            ring_count_pushed(&self.r, <uint64_t>i)
        return i

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
        cfg = idle_cfg(idle, _DEFAULT_IDLE)
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
        cdef Py_ssize_t j, k
        cdef list out = []
        cdef char* rec
        self.check_open_c()
        if self.r.c_peek_end != 0:
            raise RingError("commit() the outstanding peek before popping" if copy
                            else "commit() the previous peek first")
        # a record takes at least 8 bytes, so no more than capacity / 8 can be pending
        if max_n > <Py_ssize_t>(self.r.cap >> 3):
            max_n = <Py_ssize_t>(self.r.cap >> 3)
        if max_n > self.nspans:
            self.grow_spans_c(max_n)
        k = self.peek_spans_c(max_n, self.span_off, self.span_len)
        for j in range(k):
            rec = self.r.data + self.span_off[j]
            if copy:
                out.append(PyBytes_FromStringAndSize(rec, <Py_ssize_t>self.span_len[j]))
            else:
                out.append(self.mem.view_c(rec, <Py_ssize_t>self.span_len[j], True))
        if k and copy:
            ring_release(&self.r, self.r.c_peek_end, self.r.c_peek_n)
            self.r.c_peek_end = 0
            self.r.c_peek_n = 0
        return out

    cdef int grow_spans_c(self, Py_ssize_t n) except -1:
        cdef uint64_t* o = <uint64_t*>PyMem_RawRealloc(self.span_off, n * sizeof(uint64_t))
        if o == NULL:
            raise MemoryError()
        self.span_off = o
        o = <uint64_t*>PyMem_RawRealloc(self.span_len, n * sizeof(uint64_t))
        if o == NULL:
            raise MemoryError()
        self.span_len = o
        self.nspans = n
        return 0

    cdef Py_ssize_t peek_spans_c(self, Py_ssize_t max_n, uint64_t* offs, uint64_t* lens) except -1:
        cdef uint64_t p, h
        cdef Py_ssize_t k = 0
        self.check_open_c()
        ring_csync(&self.r)
        if self.r.c_peek_end != 0:
            raise RingError("commit() the previous peek first")
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
            offs[k] = (p & self.r.mask) + 8
            lens[k] = h >> 32
            p += h & LL_HDR_FRAME_MASK
            k += 1
        if k:
            self.r.c_peek_end = p
            self.r.c_peek_n = k
        return k

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
