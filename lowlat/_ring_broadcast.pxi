# Included by _ring.pyx.  The broadcast ring: one producer that never blocks, any number of receivers that
# detect being lapped (Agrona's BroadcastTransmitter/Receiver scheme).

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
        cfg = idle_cfg(idle, _DEFAULT_IDLE)
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
