# Included by _ring.pyx.  The SPSC/MPSC record protocol as nogil helpers over RingC: claim, commit and
# publish on the producer side; next, release and dead-producer stall recovery on the consumer side; the
# blocking waits (deadline in 50 ms chunks so signals are seen) and the corrupt-memory errors.

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
