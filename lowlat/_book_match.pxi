# Included by _book.pyx.  Events and matching: the event writer, the matching walk (price-time priority,
# self-trade prevention, FOK pre-check), the four commands (new/cancel/modify/mass cancel), the worst-case
# event bound of a command and the debug invariant scan.

cdef inline void _emit(BookCore* b, uint8_t kind, int8_t side, uint8_t reason, oid_t oid, oid_t maker,
                       uint64_t trade_id, uint64_t account, price_t price, qty_t qty, qty_t leaves,
                       int64_t aux) noexcept nogil:
    cdef BookEvent* e
    if b.ev_n >= b.ev_cap:
        # callers reserve book_event_bound_c() events first; this only guards memory safety
        b.overflow = 1
        return
    e = &b.ev[b.ev_n]
    b.ev_n += 1
    b.seq += 1
    e.seq = b.seq
    e.oid = oid
    e.maker_oid = maker
    e.trade_id = trade_id
    e.account = account
    e.price = price
    e.qty = qty
    e.leaves = leaves
    e.aux = aux
    e.book = b.book_index
    e.kind = kind
    e.side = side
    e.reason = reason
    e._pad = 0


cdef inline void _emit_l2(BookCore* b, int side, int64_t idx) noexcept nogil:
    cdef Level* lv = &b.levels[side][idx]
    _emit(b, EV_L2, <int8_t>side, 0, 0, 0, 0, 0, b.lo + idx, lv.qty, 0, lv.count)


cdef bint _fok_fillable(const BookCore* b, uint64_t account, int side, bint market, int64_t idx, qty_t qty,
                        int mode) noexcept nogil:
    # Can a FOK order be filled entirely *by trades*?  Walk the crossing liquidity in priority order:
    #  - STP NONE: own orders trade, so they count;
    #  - CANCEL_OLDEST: own orders would be cancelled (not traded) -> skipped, do not count;
    #  - CANCEL_NEWEST / CANCEL_BOTH / DECREMENT_AND_CANCEL: reaching an own order ends the taker (or
    #    decrements it without a trade) -> only liquidity strictly before the first own order counts.
    cdef int opp = 1 - side
    cdef int64_t lv = b.best[opp]
    cdef qty_t avail = 0
    cdef int32_t s
    cdef const Order* m
    while lv >= 0:
        if not market and ((side == BID and lv > idx) or (side == ASK and lv < idx)):
            break
        if mode == STP_NONE:
            avail += b.levels[opp][lv].qty
            if avail >= qty:
                return True
        else:
            s = b.levels[opp][lv].head
            while s >= 0:
                m = &b.orders[s]
                if m.account == account:
                    if mode != STP_CANCEL_OLDEST:
                        return avail >= qty
                else:
                    avail += m.qty
                    if avail >= qty:
                        return True
                s = m.next
        lv = _next_opp(b, opp, lv)
    return avail >= qty


cdef qty_t _match(BookCore* b, oid_t oid, uint64_t account, int side, bint market, int64_t idx,
                  price_t px, qty_t leaves, int mode, qty_t* filled) noexcept nogil:
    # Trade a taker against the opposite side in price-time order.  Returns the taker's open qty left
    # (0 if it was filled, decremented to 0, or cancelled by STP).  Events: per maker a FILL or STP
    # CANCELED (DECREMENT_AND_CANCEL: one for the maker and one for the taker), then one L2 per level
    # that changed when the taker leaves that level, then the taker's STP CANCELED if it was stopped.
    cdef int opp = 1 - side
    cdef int64_t lv
    cdef int32_t s, nxt
    cdef Order* m
    cdef Level* L
    cdef qty_t f
    cdef bint changed, stop = False
    cdef price_t lpx
    while leaves > 0:
        lv = b.best[opp]
        if lv < 0:
            break
        if not market and ((side == BID and lv > idx) or (side == ASK and lv < idx)):
            break
        L = &b.levels[opp][lv]
        lpx = b.lo + lv
        s = L.head
        changed = False
        while s >= 0 and leaves > 0:
            m = &b.orders[s]
            nxt = m.next
            # a sweep walks makers in FIFO order: start loading the next one, and this one's id-map
            # bucket (erased if it fills), while the fill below is computed and its event written
            if nxt >= 0:
                ll_prefetch(&b.orders[nxt])
            ll_prefetch(&b.map[_hash(b, m.oid)])
            if mode != STP_NONE and m.account == account:
                if mode == STP_CANCEL_NEWEST:
                    stop = True
                    break
                changed = True
                if mode == STP_DECREMENT_AND_CANCEL:
                    f = m.qty if m.qty < leaves else leaves
                    m.qty -= f
                    L.qty -= f
                    leaves -= f
                    _emit(b, EV_CANCELED, m.side, REJ_SELF_TRADE_PREVENTED, m.oid, 0, 0, m.account, lpx,
                          f, m.qty, 0)
                    _emit(b, EV_CANCELED, <int8_t>side, REJ_SELF_TRADE_PREVENTED, oid, 0, 0, account, px,
                          f, leaves, 0)
                    if m.qty == 0:
                        _level_unlink(b, s)
                        _free_slot(b, s)
                    s = nxt
                    continue
                # CANCEL_OLDEST and CANCEL_BOTH remove the resting order
                _emit(b, EV_CANCELED, m.side, REJ_SELF_TRADE_PREVENTED, m.oid, 0, 0, m.account, lpx,
                      m.qty, 0, 0)
                _level_unlink(b, s)
                _free_slot(b, s)
                if mode == STP_CANCEL_BOTH:
                    stop = True
                    break
                s = nxt
                continue
            f = m.qty if m.qty < leaves else leaves
            m.qty -= f
            L.qty -= f
            leaves -= f
            filled[0] += f
            b.trade_id += 1
            changed = True
            _emit(b, EV_FILL, <int8_t>side, 0, oid, m.oid, b.trade_id, account, lpx, f, leaves, m.qty)
            if m.qty == 0:
                _level_unlink(b, s)
                _free_slot(b, s)
            s = nxt
        if changed:
            _emit_l2(b, opp, lv)
        if stop:
            _emit(b, EV_CANCELED, <int8_t>side, REJ_SELF_TRADE_PREVENTED, oid, 0, 0, account, px, leaves, 0,
                  0)
            return 0
    return leaves


cdef inline int _eff_stp(const BookCore* b, int stp) noexcept nogil:
    return b.default_stp if stp < 0 else stp


cdef inline bint _in_band(const BookCore* b, price_t price) noexcept nogil:
    # lo <= price < lo + n_ticks without signed overflow: price - lo wraps for a negative lo and a price near
    # 2**63 (and the wrapped index would point outside the ladder); once price >= lo the unsigned difference
    # is the true one.  lo + n_ticks - 1 itself fits in int64 (checked in Book.__cinit__).
    return price >= b.lo and <uint64_t>price - <uint64_t>b.lo < <uint64_t>b.n_ticks


cdef inline bint _qty_ok(qty_t qty) noexcept nogil:
    # 1 <= qty <= BOOK_MAX_QTY: with at most 2**30 orders no sum of open quantities (level totals, the FOK
    # walk, mass-cancel totals) can pass 2**62, so no add in the engine can wrap
    return 0 < qty <= BOOK_MAX_QTY


# ----------------------------------------------------------------------------------------------------
# commands
# ----------------------------------------------------------------------------------------------------

cdef reject_t book_new_c(BookCore* b, oid_t oid, uint64_t account, int side, int otype, int tif, int stp,
                         int post_only, price_t price, qty_t qty, qty_t* filled) noexcept nogil:
    # New order.  Checks, in this order: side, order type, TIF, STP mode, qty > 0, price in band (LIMIT),
    # market+post-only, duplicate live id, post-only would cross, market with an empty opposite side,
    # FOK fillability, free slot for a GTC limit that rests without trading.  A reject emits one
    # REJECTED event and changes nothing.
    cdef reject_t r = REJ_ACCEPTED
    cdef bint market = otype == OT_MARKET
    cdef int64_t idx = 0
    cdef int mode
    cdef bint crosses
    cdef qty_t leaves
    cdef int32_t slot
    cdef Order* o
    filled[0] = 0
    if side != BID and side != ASK:
        r = REJ_BAD_SIDE
    elif otype != OT_LIMIT and otype != OT_MARKET:
        r = REJ_BAD_ORDER_TYPE
    elif tif != TIF_GTC and tif != TIF_IOC and tif != TIF_FOK:
        r = REJ_BAD_TIME_IN_FORCE
    elif stp < -1 or stp > STP_DECREMENT_AND_CANCEL:
        r = REJ_BAD_STP_MODE
    elif not _qty_ok(qty):
        r = REJ_BAD_QUANTITY
    elif not market and not _in_band(b, price):
        r = REJ_OUT_OF_RANGE
    elif market and post_only:
        r = REJ_MARKET_POST_ONLY
    elif _map_find(b, oid) >= 0:
        r = REJ_DUPLICATE_ORDER_ID
    if r == REJ_ACCEPTED:
        if market:
            price = 0
        else:
            idx = price - b.lo
        crosses = _crosses(b, side, market, idx)
        mode = _eff_stp(b, stp)
        if post_only and crosses:
            r = REJ_POST_ONLY_WOULD_CROSS
        elif market and not crosses:
            r = REJ_NO_LIQUIDITY
        elif tif == TIF_FOK and not _fok_fillable(b, account, side, market, idx, qty, mode):
            r = REJ_FOK_NOT_FILLABLE
        elif not market and tif == TIF_GTC and not crosses and b.free_head < 0:
            # a crossing order needs no check: if it rests after trading, a maker slot was freed
            r = REJ_BOOK_FULL
    if r != REJ_ACCEPTED:
        _emit(b, EV_REJECTED, <int8_t>side, r, oid, 0, 0, account, price, qty, 0, 0)
        return r
    _emit(b, EV_ACCEPTED, <int8_t>side, 0, oid, 0, 0, account, price, qty, qty, 0)
    leaves = qty
    if crosses:
        leaves = _match(b, oid, account, side, market, idx, price, qty, mode, filled)
    if leaves > 0:
        if not market and tif == TIF_GTC:
            slot = b.free_head
            o = &b.orders[slot]
            b.free_head = o.next
            o.oid = oid
            o.account = account
            o.price = price
            o.qty = leaves
            o.side = <side_t>side
            o.stp = <int8_t>stp
            o.post_only = 1 if post_only else 0
            _map_insert(b, oid, slot)
            _level_push(b, side, idx, slot)
            _emit_l2(b, side, idx)
        else:
            _emit(b, EV_EXPIRED, <int8_t>side, 0, oid, 0, 0, account, price, leaves, 0, 0)
    return REJ_ACCEPTED


cdef reject_t book_cancel_c(BookCore* b, oid_t oid) noexcept nogil:
    # Cancel a resting order: CANCELED (qty = its open qty) then L2; unknown id -> REJECTED.
    cdef int32_t slot = _map_find(b, oid)
    cdef Order* o
    cdef int side
    cdef int64_t idx
    if slot < 0:
        _emit(b, EV_REJECTED, -1, REJ_UNKNOWN_ORDER, oid, 0, 0, 0, 0, 0, 0, 0)
        return REJ_UNKNOWN_ORDER
    o = &b.orders[slot]
    side = o.side
    idx = o.price - b.lo
    _emit(b, EV_CANCELED, o.side, 0, oid, 0, 0, o.account, o.price, o.qty, 0, 0)
    _level_unlink(b, slot)
    _free_slot(b, slot)
    _emit_l2(b, side, idx)
    return REJ_ACCEPTED


cdef reject_t book_modify_c(BookCore* b, oid_t oid, price_t price, qty_t qty, qty_t* filled) noexcept nogil:
    # Replace price and/or open quantity of a resting order.  qty is the NEW OPEN quantity (leaves).
    # Same price and qty <= leaves: in place, keeps time priority.  Otherwise the order goes to the tail
    # of the new level (loses priority); a new price that crosses trades first, as a GTC limit taker with
    # the order's own STP mode; a post-only order that would cross is rejected and left unchanged.
    cdef int32_t slot
    cdef Order* o
    cdef int side
    cdef int64_t idx, old_idx
    cdef qty_t old, leaves
    cdef reject_t r = REJ_ACCEPTED
    cdef bint crosses
    filled[0] = 0
    slot = -1
    if not _qty_ok(qty):
        r = REJ_BAD_QUANTITY
    elif not _in_band(b, price):
        r = REJ_OUT_OF_RANGE
    else:
        slot = _map_find(b, oid)
        if slot < 0:
            r = REJ_UNKNOWN_ORDER
    if r == REJ_ACCEPTED:
        o = &b.orders[slot]
        side = o.side
        idx = price - b.lo
        old_idx = o.price - b.lo
        old = o.qty
        if price == o.price and qty <= old:
            _emit(b, EV_MODIFIED, o.side, 0, oid, 0, 0, o.account, price, qty, qty, old)
            if qty < old:
                o.qty = qty
                b.levels[side][idx].qty -= old - qty
                _emit_l2(b, side, idx)
            return REJ_ACCEPTED
        crosses = idx != old_idx and _crosses(b, side, False, idx)
        if crosses and o.post_only:
            r = REJ_POST_ONLY_WOULD_CROSS
    if r != REJ_ACCEPTED:
        _emit(b, EV_REJECTED, -1, r, oid, 0, 0, 0, price, qty, 0, 0)
        return r
    _emit(b, EV_MODIFIED, o.side, 0, oid, 0, 0, o.account, price, qty, qty, old)
    _level_unlink(b, slot)
    if old_idx != idx:
        _emit_l2(b, side, old_idx)
    leaves = qty
    if crosses:
        leaves = _match(b, oid, o.account, side, False, idx, price, qty, _eff_stp(b, o.stp), filled)
    if leaves > 0:
        o.price = price
        o.qty = leaves
        _level_push(b, side, idx, slot)
        _emit_l2(b, side, idx)
    else:
        _free_slot(b, slot)
    return REJ_ACCEPTED


cdef int64_t book_mass_cancel_c(BookCore* b, uint64_t account) noexcept nogil:
    # Cancel every resting order of `account`: bids best to worst, then asks best to worst, FIFO inside a
    # level; one CANCELED per order, one L2 per changed level, then MASS_CANCELED.  Returns the count.
    cdef int side
    cdef int64_t lv, n = 0
    cdef int32_t s, nxt
    cdef Order* o
    cdef qty_t lots = 0
    cdef bint changed
    for side in range(2):
        lv = b.best[side]
        while lv >= 0:
            s = b.levels[side][lv].head
            changed = False
            while s >= 0:
                o = &b.orders[s]
                nxt = o.next
                if o.account == account:
                    _emit(b, EV_CANCELED, o.side, 0, o.oid, 0, 0, account, o.price, o.qty, 0, 0)
                    lots += o.qty
                    n += 1
                    changed = True
                    _level_unlink(b, s)
                    _free_slot(b, s)
                s = nxt
            if changed:
                _emit_l2(b, side, lv)
            # the bitmap still answers correctly for levels after lv even if lv just emptied
            if side == BID:
                lv = _lvl_down(b.bits[BID], b.nwords, lv - 1)
            else:
                lv = _lvl_up(b.bits[ASK], b.nwords, lv + 1)
    _emit(b, EV_MASS_CANCELED, -1, 0, 0, 0, 0, account, 0, lots, 0, n)
    return n


cdef reject_t book_apply_c(BookCore* b, const BookCommand* c, qty_t* filled) noexcept nogil:
    if c.op == CMD_NEW:
        return book_new_c(b, c.oid, c.account, c.side, c.order_type, c.tif, c.stp, c.post_only, c.price,
                          c.qty, filled)
    filled[0] = 0
    if c.op == CMD_CANCEL:
        return book_cancel_c(b, c.oid)
    if c.op == CMD_MODIFY:
        return book_modify_c(b, c.oid, c.price, c.qty, filled)
    if c.op == CMD_MASS_CANCEL:
        book_mass_cancel_c(b, c.account)
        return REJ_ACCEPTED
    # an unknown op is not part of the book's history: seq 0, the book's sequence does not move
    _emit(b, EV_REJECTED, c.side, REJ_MALFORMED, c.oid, 0, 0, c.account, c.price, c.qty, 0, 0)
    if b.ev_n > 0 and not b.overflow:
        b.ev[b.ev_n - 1].seq = 0
        b.seq -= 1
    return REJ_MALFORMED


cdef int64_t book_event_bound_c(BookCore* b, const BookCommand* c) noexcept nogil:
    # Upper bound on the events one command can write (checked before running it, so a batch never
    # overruns its output).  Each maker the taker touches gives <= 2 events plus <= 1 L2 for its level;
    # every touched maker either consumes >= 1 lot of the taker or (CANCEL_OLDEST) is removed.
    cdef int64_t opp, touched
    cdef int32_t slot
    cdef int mode, side
    if c.op == CMD_NEW:
        if c.side != BID and c.side != ASK:
            return 1
        opp = b.n_side[1 - c.side]
        mode = _eff_stp(b, c.stp)
        touched = opp if (mode == STP_CANCEL_OLDEST or c.qty <= 0 or c.qty > opp) else c.qty
        return 3 * touched + 8
    if c.op == CMD_MODIFY:
        slot = _map_find(b, c.oid)
        if slot < 0:
            return 1
        side = b.orders[slot].side
        opp = b.n_side[1 - side]
        mode = _eff_stp(b, b.orders[slot].stp)
        touched = opp if (mode == STP_CANCEL_OLDEST or c.qty <= 0 or c.qty > opp) else c.qty
        return 3 * touched + 8
    if c.op == CMD_MASS_CANCEL:
        return 2 * b.n_live + 1
    return 2


cdef int book_check_c(BookCore* b) except -1 nogil:
    # LOWLAT_DEBUG only: full invariant scan (O(band + orders)); raises AssertionError.
    cdef int side
    cdef int64_t i, cnt, n_live = 0, n_map = 0, hi_bid = -1, lo_ask = -1
    cdef qty_t tot
    cdef int32_t s, prev
    cdef const char* err = NULL
    if not LOWLAT_DEBUG:
        return 0
    for side in range(2):
        for i in range(b.n_ticks):
            s = b.levels[side][i].head
            prev = -1
            cnt = 0
            tot = 0
            while s >= 0 and err == NULL:
                if b.orders[s].prev != prev or not b.orders[s].live or b.orders[s].side != side:
                    err = "broken level link"
                elif b.orders[s].price != b.lo + i or not _qty_ok(b.orders[s].qty):
                    err = "order price/qty inconsistent with its level"
                elif _map_find(b, b.orders[s].oid) != s:
                    err = "id map does not point at the resting order"
                cnt += 1
                tot += b.orders[s].qty
                prev = s
                s = b.orders[s].next
            if err == NULL and (cnt != b.levels[side][i].count or tot != b.levels[side][i].qty
                                or b.levels[side][i].tail != prev):
                err = "level totals differ from the sum of its orders"
            if err == NULL and (((b.bits[side][i >> 6] >> (i & 63)) & 1) != (cnt > 0)):
                err = "level bitmap out of date"
            if cnt > 0:
                if side == BID:
                    hi_bid = i
                elif lo_ask < 0:
                    lo_ask = i
            n_live += cnt
        if err != NULL:
            break
    if err == NULL and (hi_bid != b.best[BID] or lo_ask != b.best[ASK]):
        err = "best bid/ask out of date"
    if err == NULL and hi_bid >= 0 and lo_ask >= 0 and hi_bid >= lo_ask:
        err = "book is crossed"
    if err == NULL and n_live != b.n_live:
        err = "live order count differs"
    if err == NULL:
        for i in range(<int64_t>b.map_mask + 1):
            if b.map[i].slot >= 0:
                n_map += 1
        if n_map != n_live:
            err = "id map size differs from live orders"
    if err != NULL:
        with gil:
            raise AssertionError(f"order book invariant violated: {err.decode()}")
    return 0
