# Included by _book.pyx.  Snapshot and restore of a book's whole state: its resting orders in priority order
# (RESTING_DTYPE rows); the seq / trade-id counters travel with them.  Book.resting_orders / Book.restore are
# the Python boundary (checks and errors); these are their nogil loops.

cdef Py_ssize_t book_resting_c(const BookCore* b, RestingOrder* o) noexcept nogil:
    # Write every resting order to o[0:b.n_live] (the caller sized it) in priority order: bids best price first,
    # then asks best price first; FIFO (oldest first) inside a level.  Returns the count.
    cdef int side
    cdef int64_t lv
    cdef int32_t s
    cdef Py_ssize_t k = 0
    for side in range(2):
        lv = b.best[side]
        while lv >= 0:
            s = b.levels[side][lv].head
            while s >= 0:
                o[k].oid = b.orders[s].oid
                o[k].account = b.orders[s].account
                o[k].price = b.orders[s].price
                o[k].qty = b.orders[s].qty
                o[k].side = b.orders[s].side
                o[k].stp = b.orders[s].stp
                o[k].post_only = b.orders[s].post_only
                k += 1
                s = b.orders[s].next
            lv = _next_opp(b, side, lv)
    return k


cdef int book_restore_c(BookCore* b, const unsigned char* rows, Py_ssize_t n, uint64_t seq, uint64_t trade_id,
                        Py_ssize_t* at) noexcept nogil:
    # Load n RESTING_DTYPE rows into an empty, unused book.  Preconditions (checked by Book.restore): the book
    # is empty, rows holds n whole rows, n <= max_orders.  Returns 0 (counters set), -1 (row at[0] has a field
    # out of range), -2 (row at[0] repeats an order id) or -3 (the result crosses); after an error the book
    # holds the rows before at[0] and the caller resets it.  No events are written.
    cdef Py_ssize_t i
    cdef const RestingOrder* r
    cdef int32_t slot
    cdef Order* o
    for i in range(n):
        at[0] = i
        r = <const RestingOrder*>(rows + i * sizeof(RestingOrder))
        if ((r.side != BID and r.side != ASK) or not _qty_ok(r.qty) or not _in_band(b, r.price)
                or r.stp < -1 or r.stp > STP_DECREMENT_AND_CANCEL
                or r.post_only > 1):
            return -1
        if _map_find(b, r.oid) >= 0:
            return -2
        slot = b.free_head
        o = &b.orders[slot]
        b.free_head = o.next
        o.oid = r.oid
        o.account = r.account
        o.price = r.price
        o.qty = r.qty
        o.side = r.side
        o.stp = r.stp
        o.post_only = r.post_only
        _map_insert(b, r.oid, slot)
        _level_push(b, r.side, r.price - b.lo, slot)
    if b.best[BID] >= 0 and b.best[ASK] >= 0 and b.best[BID] >= b.best[ASK]:
        return -3
    b.seq = seq
    b.trade_id = trade_id
    return 0
