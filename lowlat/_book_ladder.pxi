# Included by _book.pyx.  The price ladder: one level per tick and side in a preallocated band, a bitmap of
# non-empty levels per side (next better/worse level in O(words)), FIFO queues of order slots per level, and
# the best-price bookkeeping.

cdef inline void _level_push(BookCore* b, int side, int64_t idx, int32_t slot) noexcept nogil:
    # append an order (already filled in) at the tail of its level: newest, lowest priority
    cdef Level* lv = &b.levels[side][idx]
    cdef Order* o = &b.orders[slot]
    o.next = -1
    o.prev = lv.tail
    if lv.tail >= 0:
        b.orders[lv.tail].next = slot
    else:
        lv.head = slot
        b.bits[side][idx >> 6] |= (<uint64_t>1) << (idx & 63)
        if side == BID:
            if idx > b.best[BID]:
                b.best[BID] = idx
        elif b.best[ASK] < 0 or idx < b.best[ASK]:
            b.best[ASK] = idx
    lv.tail = slot
    lv.qty += o.qty
    lv.count += 1
    o.live = 1
    b.n_live += 1
    b.n_side[side] += 1


cdef inline void _level_unlink(BookCore* b, int32_t slot) noexcept nogil:
    # take a resting order off its level (its open qty leaves the level total); the slot stays allocated
    cdef Order* o = &b.orders[slot]
    cdef int side = o.side
    cdef int64_t idx = o.price - b.lo
    cdef Level* lv = &b.levels[side][idx]
    if o.prev >= 0:
        b.orders[o.prev].next = o.next
    else:
        lv.head = o.next
    if o.next >= 0:
        b.orders[o.next].prev = o.prev
    else:
        lv.tail = o.prev
    lv.qty -= o.qty
    lv.count -= 1
    o.live = 0
    b.n_live -= 1
    b.n_side[side] -= 1
    if lv.count == 0:
        b.bits[side][idx >> 6] &= ~((<uint64_t>1) << (idx & 63))
        if b.best[side] == idx:
            if side == BID:
                b.best[BID] = _lvl_down(b.bits[BID], b.nwords, idx - 1)
            else:
                b.best[ASK] = _lvl_up(b.bits[ASK], b.nwords, idx + 1)


cdef inline void _free_slot(BookCore* b, int32_t slot) noexcept nogil:
    # precondition: unlinked (or never linked); drops the id from the map
    _map_erase(b, b.orders[slot].oid)
    b.orders[slot].next = b.free_head
    b.orders[slot].live = 0
    b.free_head = slot


cdef inline bint _crosses(const BookCore* b, int side, bint market, int64_t idx) noexcept nogil:
    # would an order of `side` at level index idx (any price if market) trade against the best opposite level
    cdef int64_t ob = b.best[1 - side]
    if ob < 0:
        return False
    if market:
        return True
    if side == BID:
        return ob <= idx
    return ob >= idx


cdef inline int64_t _next_opp(const BookCore* b, int opp, int64_t idx) noexcept nogil:
    # the next worse level after idx on the resting side `opp`
    if opp == ASK:
        return _lvl_up(b.bits[ASK], b.nwords, idx + 1)
    return _lvl_down(b.bits[BID], b.nwords, idx - 1)
