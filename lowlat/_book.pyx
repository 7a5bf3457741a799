"""Limit order book and price-time matching engine (compiled core of ``lowlat.Book`` / ``lowlat.Engine``).

Units: prices are integer ticks, quantities integer lots.  A book covers a preallocated band of
``n_ticks`` prices starting at ``lo`` (one level per tick and side) and a pool of ``max_orders`` order
slots; nothing allocates after construction.  See the README section "Matching engine" for the semantics
(STP modes, FOK, modify priority) and the event layout.
"""
cimport cython
from libc.math cimport isfinite
from libc.stdint cimport int8_t, uint8_t, int32_t, uint32_t, int64_t, uint64_t
from cpython.mem cimport PyMem_RawRealloc, PyMem_RawFree
from cpython.long cimport PyLong_Check
from cpython.number cimport PyNumber_Index
from libc.stdint cimport INT64_MAX
from libc.string cimport memset, memcmp
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC

from lowlat._core cimport (FbCommand, fb_read_command, ll_load_u32, FB_COMMAND_ORDER, FB_COMMAND_CANCEL,
                           FB_COMMAND_MODIFY, FB_COMMAND_MASS_CANCEL, FBP_ORDER_ID, FBP_ORDER_PRICE,
                           FBP_ORDER_QUANTITY)
from lowlat._price cimport price_to_ticks
from lowlat._types cimport (price_t, qty_t, side_t, reject_t, oid_t, BID, ASK, OT_LIMIT, OT_MARKET,
                            TIF_GTC, TIF_IOC, TIF_FOK, STP_NONE, STP_CANCEL_NEWEST, STP_CANCEL_OLDEST,
                            STP_CANCEL_BOTH, STP_DECREMENT_AND_CANCEL, REJ_ACCEPTED, REJ_MALFORMED, REJ_MISSING_FIELD,
                            REJ_UNKNOWN_SYMBOL, REJ_BAD_SIDE, REJ_BAD_PRICE, REJ_BAD_QUANTITY, REJ_OFF_TICK,
                            REJ_BAD_ORDER_TYPE, REJ_BAD_TIME_IN_FORCE, REJ_BOOK_FULL, REJ_DUPLICATE_ORDER_ID,
                            REJ_UNKNOWN_ORDER, REJ_POST_ONLY_WOULD_CROSS, REJ_FOK_NOT_FILLABLE,
                            REJ_NO_LIQUIDITY, REJ_SELF_TRADE_PREVENTED, REJ_BAD_STP_MODE, REJ_OUT_OF_RANGE,
                            REJ_MARKET_POST_ONLY, LOWLAT_DEBUG)

from enum import IntEnum

import numpy as np

cdef extern from *:
    """
    static inline int ll_ctz64(unsigned long long x) { return __builtin_ctzll(x); }
    static inline int ll_clz64(unsigned long long x) { return __builtin_clzll(x); }
    """
    int ll_ctz64(unsigned long long x) noexcept nogil
    int ll_clz64(unsigned long long x) noexcept nogil
    void ll_prefetch "__builtin_prefetch"(const void* p) noexcept nogil

DEBUG = bool(LOWLAT_DEBUG)
MAX_QTY = BOOK_MAX_QTY    # largest order quantity in lots (2**32 - 1); larger ones get Reject.BAD_QUANTITY


class EventKind(IntEnum):
    """``EVENT_DTYPE['kind']`` values."""

    ACCEPTED = EV_ACCEPTED        # new order accepted (qty = order qty)
    REJECTED = EV_REJECTED        # command rejected, reason = Reject code; nothing changed
    FILL = EV_FILL                # a trade: taker oid, maker_oid, price, qty, leaves, aux = maker leaves
    CANCELED = EV_CANCELED        # qty lots of oid cancelled (user, mass cancel, or STP with reason 70)
    EXPIRED = EV_EXPIRED          # IOC / FOK / MARKET remainder that did not rest
    MODIFIED = EV_MODIFIED        # modify accepted: price/qty = new, aux = previous leaves
    L2 = EV_L2                    # level changed: side, price, qty = level total, aux = order count
    MASS_CANCELED = EV_MASS_CANCELED  # end of a mass cancel: account, qty = lots, aux = orders


class Command(IntEnum):
    """``COMMAND_DTYPE['op']`` values."""

    NEW = CMD_NEW
    CANCEL = CMD_CANCEL
    MODIFY = CMD_MODIFY
    MASS_CANCEL = CMD_MASS_CANCEL


# numpy layouts of the C structs in _book.pxd (align=True reproduces C's natural alignment; checked below)
COMMAND_DTYPE = np.dtype([
    ("oid", "<u8"), ("account", "<u8"), ("price", "<i8"), ("qty", "<i8"), ("book", "<u4"),
    ("op", "u1"), ("side", "i1"), ("order_type", "u1"), ("tif", "u1"), ("stp", "i1"),
    ("post_only", "u1"), ("_pad0", "u1"), ("_pad1", "u1")], align=True)
EVENT_DTYPE = np.dtype([
    ("seq", "<u8"), ("oid", "<u8"), ("maker_oid", "<u8"), ("trade_id", "<u8"), ("account", "<u8"),
    ("price", "<i8"), ("qty", "<i8"), ("leaves", "<i8"), ("aux", "<i8"), ("book", "<u4"),
    ("kind", "u1"), ("side", "i1"), ("reason", "u1"), ("_pad", "u1")], align=True)
LEVEL_DTYPE = np.dtype([("head", "<i4"), ("tail", "<i4"), ("qty", "<i8"), ("count", "<i8")], align=True)
ORDER_DTYPE = np.dtype([
    ("oid", "<u8"), ("account", "<u8"), ("price", "<i8"), ("qty", "<i8"), ("prev", "<i4"), ("next", "<i4"),
    ("side", "i1"), ("stp", "i1"), ("post_only", "u1"), ("live", "u1")], align=True)
MAP_DTYPE = np.dtype([("key", "<u8"), ("slot", "<i8")], align=True)
DEPTH_DTYPE = np.dtype([("price", "<i8"), ("qty", "<i8"), ("count", "<i8")])
L3_DTYPE = np.dtype([("oid", "<u8"), ("account", "<u8"), ("qty", "<i8")])
RESTING_DTYPE = np.dtype([
    ("oid", "<u8"), ("account", "<u8"), ("price", "<i8"), ("qty", "<i8"), ("side", "i1"), ("stp", "i1"),
    ("post_only", "u1"), ("_pad", "u1"), ("_pad2", "<u4")], align=True)

if (COMMAND_DTYPE.itemsize != sizeof(BookCommand) or EVENT_DTYPE.itemsize != sizeof(BookEvent)
        or LEVEL_DTYPE.itemsize != sizeof(Level) or MAP_DTYPE.itemsize != sizeof(MapEntry) or ORDER_DTYPE.itemsize != sizeof(Order)):
    raise ImportError("lowlat._book: numpy dtypes do not match the C struct layouts")
if RESTING_DTYPE.itemsize != sizeof(RestingOrder):
    raise ImportError("lowlat._book: RESTING_DTYPE does not match the C struct layout")


# ----------------------------------------------------------------------------------------------------
# small helpers
# ----------------------------------------------------------------------------------------------------

cdef inline int64_t _lvl_up(const uint64_t* bits, int64_t nwords, int64_t idx) noexcept nogil:
    # lowest non-empty level index >= idx, or -1
    if idx < 0:
        idx = 0
    cdef int64_t w = idx >> 6
    if w >= nwords:
        return -1
    cdef uint64_t m = bits[w] & ((<uint64_t>0xFFFFFFFFFFFFFFFF) << (idx & 63))
    while True:
        if m:
            return (w << 6) + ll_ctz64(m)
        w += 1
        if w >= nwords:
            return -1
        m = bits[w]


cdef inline int64_t _lvl_down(const uint64_t* bits, int64_t nwords, int64_t idx) noexcept nogil:
    # highest non-empty level index <= idx, or -1
    if idx < 0:
        return -1
    cdef int64_t w = idx >> 6
    if w >= nwords:
        w = nwords - 1
        idx = (w << 6) + 63
    cdef uint64_t m = bits[w] & ((<uint64_t>0xFFFFFFFFFFFFFFFF) >> (63 - (idx & 63)))
    while True:
        if m:
            return (w << 6) + 63 - ll_clz64(m)
        w -= 1
        if w < 0:
            return -1
        m = bits[w]


cdef inline uint64_t _hash(const BookCore* b, uint64_t key) noexcept nogil:
    # Home bucket.  Ids are usually sequential: keep runs of 64 consecutive ids in 64 consecutive buckets
    # (one 1 KiB block: new orders hit warm cache lines / TLB entries) and scatter the blocks with
    # Fibonacci hashing, so structured ids degrade to plain multiplicative hashing, not to clustering.
    return ((((key >> 6) * <uint64_t>0x9E3779B97F4A7C15) >> b.map_shift) << 6) | (key & 63)


cdef inline uint64_t _dist(const BookCore* b, uint64_t pos) noexcept nogil:
    # probe distance of the entry stored at pos from its home bucket
    return (pos - _hash(b, b.map[pos].key)) & b.map_mask


cdef inline int32_t _map_find(const BookCore* b, uint64_t key) noexcept nogil:
    # Robin Hood lookup: stop at an empty bucket or at an entry closer to its home than we are to ours.
    cdef uint64_t i = _hash(b, key), d = 0
    while b.map[i].slot >= 0:
        if b.map[i].key == key:
            return <int32_t>b.map[i].slot
        if _dist(b, i) < d:
            return -1
        i = (i + 1) & b.map_mask
        d += 1
    return -1


cdef inline void _map_insert(BookCore* b, uint64_t key, int32_t slot) noexcept nogil:
    # Robin Hood insert.  Precondition: key absent; the table has >= 2x max_orders buckets.
    cdef uint64_t i = _hash(b, key), d = 0, de
    cdef MapEntry cur, tmp
    cur.key = key
    cur.slot = slot
    while b.map[i].slot >= 0:
        de = _dist(b, i)
        if de < d:  # the resident is richer (closer to home): it moves on, we take its bucket
            tmp = b.map[i]
            b.map[i] = cur
            cur = tmp
            d = de
        i = (i + 1) & b.map_mask
        d += 1
    b.map[i] = cur


cdef inline void _map_erase(BookCore* b, uint64_t key) noexcept nogil:
    # Backward-shift deletion: pull the following entries one bucket back until an empty bucket or an
    # entry already at its home.  No tombstones, so lookups stay short however long add/cancel churn runs.
    cdef uint64_t i = _hash(b, key), d = 0, j
    while True:
        if b.map[i].slot < 0 or _dist(b, i) < d:
            return  # absent
        if b.map[i].key == key:
            break
        i = (i + 1) & b.map_mask
        d += 1
    j = (i + 1) & b.map_mask
    while b.map[j].slot >= 0 and _dist(b, j) != 0:
        b.map[i] = b.map[j]
        i = j
        j = (j + 1) & b.map_mask
    b.map[i].slot = -1


cdef inline void _prefetch_id(const BookCore* b, const BookCommand* c) noexcept nogil:
    # Batch look-ahead, stage 1: pull the id-map bucket of a command a few rows ahead into cache.  Random
    # cancels of a deep book are otherwise dominated by this one cache miss.
    if c.op <= CMD_MODIFY:
        ll_prefetch(&b.map[_hash(b, c.oid)])


cdef inline void _prefetch_order(const BookCore* b, const BookCommand* c) noexcept nogil:
    # stage 2 (its bucket is cached by now): pull the resting order a cancel/modify will unlink
    cdef int32_t s
    if c.op == CMD_CANCEL or c.op == CMD_MODIFY:
        s = _map_find(b, c.oid)
        if s >= 0:
            ll_prefetch(&b.orders[s])


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


cdef reject_t ticks_from_double_c(double price, double tick_size, price_t* out) noexcept nogil:
    # FlatBuffer price (double, quote currency) -> integer ticks: the one rule of lowlat/_price.pxd, which the
    # Validator uses too (kept as a cimportable name for other compiled modules)
    return price_to_ticks(price, tick_size, out)


cdef inline int64_t _now_ns() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec * 1000000000 + ts.tv_nsec


def to_ticks(double price, double tick_size) -> tuple:
    """Convert a price in quote currency to integer ticks.

    Returns ``(reject_code, ticks)`` (ticks 0 unless accepted).  The rule, shared by the Validator and the
    book's FlatBuffer path (``apply_frames``): ``Reject.BAD_PRICE`` for a price that is not a finite number
    > 0, a tick size that is not finite and > 0, or ``price / tick_size`` not below 2**63 (out of the int64
    tick range); ``Reject.OFF_TICK`` when ``price / tick_size`` is not within 1e-6 of a whole number >= 1
    (so a positive price under half a tick is OFF_TICK); else the nearest whole number of ticks.
    Cost: O(1), one division.
    """
    cdef price_t t = 0
    cdef reject_t r = ticks_from_double_c(price, tick_size, &t)
    return r, (t if r == 0 else 0)


# ----------------------------------------------------------------------------------------------------
# framed FlatBuffer commands (finance.CommandMsg, see fbs/order.fbs; reader from lowlat._core)
# ----------------------------------------------------------------------------------------------------

cdef enum:
    FBP_ORDER_STP = 1 << 11       # Order field id 11 (stp) present

cdef reject_t _cmd_from_fb(const FbCommand* fc, double tick_size, BookCommand* c) noexcept nogil:
    # Decoded CommandMsg -> BookCommand.  Returns a reject for what only the FlatBuffer path can get wrong:
    # MISSING_FIELD (Order without id / quantity / a LIMIT price), BAD_PRICE / OFF_TICK (price -> ticks).
    # An absent or NONE stp means "the book's default": FlatBuffers cannot tell the two apart.
    cdef price_t ticks = 0
    cdef reject_t r = REJ_ACCEPTED
    memset(c, 0, sizeof(BookCommand))
    c.stp = -1
    if fc.type == FB_COMMAND_ORDER:
        c.op = CMD_NEW
        c.oid = fc.order.id
        c.account = fc.order.account
        c.qty = fc.order.quantity
        c.side = fc.order.side
        c.order_type = <uint8_t>fc.order.order_type
        c.tif = <uint8_t>fc.order.time_in_force
        c.post_only = fc.order.post_only
        if (fc.order.present & FBP_ORDER_STP) and fc.order.stp != STP_NONE:
            c.stp = fc.order.stp
        if (fc.order.present & (FBP_ORDER_ID | FBP_ORDER_QUANTITY)) != (FBP_ORDER_ID | FBP_ORDER_QUANTITY):
            return REJ_MISSING_FIELD
        r = ticks_from_double_c(fc.order.price, tick_size, &ticks)
        c.price = ticks
        if fc.order.order_type == OT_MARKET:
            return REJ_ACCEPTED  # the price of a MARKET order is ignored (echoed in a reject if it converts)
        if not (fc.order.present & FBP_ORDER_PRICE):
            return REJ_MISSING_FIELD
        return r
    if fc.type == FB_COMMAND_CANCEL:
        c.op = CMD_CANCEL
        c.oid = fc.cancel.order_id
        c.account = fc.cancel.account
        return REJ_ACCEPTED
    if fc.type == FB_COMMAND_MODIFY:
        c.op = CMD_MODIFY
        c.oid = fc.modify.order_id
        c.account = fc.modify.account
        c.qty = fc.modify.quantity
        r = ticks_from_double_c(fc.modify.price, tick_size, &ticks)
        c.price = ticks
        return r
    c.op = CMD_MASS_CANCEL
    c.account = fc.mass_cancel.account
    return REJ_ACCEPTED


cdef inline void _raw_reject(BookEvent* e, uint32_t book, oid_t oid, uint64_t account, reject_t reason) noexcept nogil:
    # a reject that belongs to no book's history (undecodable frame, unknown symbol): seq 0
    memset(e, 0, sizeof(BookEvent))
    e.oid = oid
    e.account = account
    e.book = book
    e.kind = EV_REJECTED
    e.side = -1
    e.reason = reason


cdef inline void _apply_timed(BookCore* b, const BookCommand* c, int64_t* lat_ns) noexcept nogil:
    # apply one command; when lat_ns is not NULL also store its match time there (clock_gettime pair, ns)
    cdef qty_t filled
    cdef int64_t t0
    if lat_ns != NULL:
        t0 = _now_ns()
        book_apply_c(b, c, &filled)
        lat_ns[0] = _now_ns() - t0
    else:
        book_apply_c(b, c, &filled)


cdef struct FrameRun:             # state of one apply_frames call
    BookCore** cores              # books (one for Book.apply_frames)
    const char** syms             # symbol bytes per book (Engine routing), NULL for a lone Book
    Py_ssize_t* sym_lens
    Py_ssize_t n_books
    BookEvent* out
    int64_t cap
    int64_t n_ev                  # events written so far
    int64_t* lat                  # per-frame ns, or NULL
    Py_ssize_t lat_n
    Py_ssize_t pos                # bytes consumed (complete frames handled)
    Py_ssize_t n_frames
    int64_t need                  # bound that did not fit (when stopping early)
    int rc                        # 0 ok, -1 first frame does not fit, -2 overflow


cdef inline Py_ssize_t _route(FrameRun* fr, const char* sym, Py_ssize_t n) noexcept nogil:
    # book index for a symbol (linear scan: engines hold tens of symbols); -1 unknown / absent
    cdef Py_ssize_t k
    if fr.syms == NULL:
        return 0
    if sym == NULL:
        return -1
    for k in range(fr.n_books):
        if fr.sym_lens[k] == n and memcmp(fr.syms[k], sym, n) == 0:
            return k
    return -1


cdef inline bint _fr_no_room(FrameRun* fr, int64_t need) noexcept nogil:
    # True when the next frame's `need` events may not fit: record the bound and stop before the frame (the
    # caller resumes at fr.pos); when nothing was written yet, out can never hold it (rc -1 -> ValueError).
    if need <= fr.cap - fr.n_ev:
        return False
    fr.need = need
    if fr.n_ev == 0:
        fr.rc = -1
    return True


cdef inline void _fr_bind(FrameRun* fr, BookCore* b) noexcept nogil:
    # point b's event writer at the free tail of out (events of all books interleave in frame order)
    b.ev = fr.out + fr.n_ev
    b.ev_cap = fr.cap - fr.n_ev
    b.ev_n = 0


cdef int _run_frames(FrameRun* fr, const char* buf, Py_ssize_t n) noexcept nogil:
    # Apply complete [u32 LE length][CommandMsg] frames from buf[fr.pos:n] until the input ends, a frame is
    # truncated (left unconsumed), or the next frame's worst-case events do not fit in out.
    cdef Py_ssize_t flen, k, bk
    cdef const char* p
    cdef FbCommand fc
    cdef BookCommand c
    cdef BookCore* b
    cdef reject_t r
    cdef int rc
    cdef int64_t need, t0 = 0
    cdef qty_t filled
    cdef const char* sym
    cdef Py_ssize_t sym_len
    while fr.pos <= n - 4:
        flen = <Py_ssize_t>ll_load_u32(buf + fr.pos)
        if flen > n - fr.pos - 4:
            break  # truncated trailing frame: the caller keeps buf[pos:] for the next call
        p = buf + fr.pos + 4
        if fr.lat != NULL:
            t0 = _now_ns()
        rc = fb_read_command(p, flen, &fc)
        if rc != 0 or fc.type < FB_COMMAND_ORDER or fc.type > FB_COMMAND_MASS_CANCEL:
            if _fr_no_room(fr, 1):
                return 0
            _raw_reject(&fr.out[fr.n_ev], 0, 0, 0, REJ_MALFORMED)
            fr.n_ev += 1
        else:
            r = _cmd_from_fb(&fc, 1.0, &c)  # ticks re-derived per book below (tick size is per book)
            sym = NULL
            sym_len = 0
            if fc.type == FB_COMMAND_ORDER:
                sym, sym_len = fc.order.symbol, fc.order.symbol_len
            elif fc.type == FB_COMMAND_CANCEL:
                sym, sym_len = fc.cancel.symbol, fc.cancel.symbol_len
            elif fc.type == FB_COMMAND_MODIFY:
                sym, sym_len = fc.modify.symbol, fc.modify.symbol_len
            else:
                sym, sym_len = fc.mass_cancel.symbol, fc.mass_cancel.symbol_len
            if fc.type == FB_COMMAND_MASS_CANCEL and fr.syms != NULL and sym == NULL:
                # every book
                need = 0
                for k in range(fr.n_books):
                    need += book_event_bound_c(fr.cores[k], &c)
                if _fr_no_room(fr, need):
                    return 0
                for k in range(fr.n_books):
                    b = fr.cores[k]
                    _fr_bind(fr, b)
                    book_apply_c(b, &c, &filled)
                    fr.n_ev += b.ev_n
            else:
                bk = _route(fr, sym, sym_len)
                if bk < 0:
                    if _fr_no_room(fr, 1):
                        return 0
                    _raw_reject(&fr.out[fr.n_ev], 0xFFFFFFFF, c.oid, c.account, REJ_UNKNOWN_SYMBOL)
                    fr.n_ev += 1
                else:
                    b = fr.cores[bk]
                    r = _cmd_from_fb(&fc, b.tick_size, &c)
                    need = 1 if r != REJ_ACCEPTED else book_event_bound_c(b, &c)
                    if _fr_no_room(fr, need):
                        return 0
                    _fr_bind(fr, b)
                    if r != REJ_ACCEPTED:
                        _emit(b, EV_REJECTED, c.side if c.op == CMD_NEW else -1, r, c.oid, 0, 0, c.account,
                              0, c.qty, 0, 0)
                    else:
                        book_apply_c(b, &c, &filled)
                    fr.n_ev += b.ev_n
                    if b.overflow:
                        fr.rc = -2
                        return 0
        if fr.lat != NULL and fr.n_frames < fr.lat_n:
            fr.lat[fr.n_frames] = _now_ns() - t0
        fr.pos += 4 + flen
        fr.n_frames += 1
    return 0


cdef int _fr_outputs(FrameRun* fr, BookEvent[::1] events_out, int64_t[::1] latency_ns) except -1:
    # events_out is non-empty (checked by the caller); latency_ns is optional
    fr.out = &events_out[0]
    fr.cap = events_out.shape[0]
    if latency_ns is not None and latency_ns.shape[0] > 0:
        fr.lat = &latency_ns[0]
        fr.lat_n = latency_ns.shape[0]
    return 0


cdef int _fr_raise(const FrameRun* fr) except -1:
    # turn _run_frames' status into the caller-facing error (after the nogil block)
    if fr.rc == -1:
        raise ValueError(f"events_out is too small for the next frame (needs up to {fr.need} rows)")
    if fr.rc == -2:
        raise RuntimeError("order book event buffer overflow (bug: bound was too small)")
    return 0


# ----------------------------------------------------------------------------------------------------
# Python classes
# ----------------------------------------------------------------------------------------------------

cdef uint64_t _pow2_at_least(uint64_t n) noexcept:
    cdef uint64_t p = 128  # >= two 64-bucket blocks
    while p < n:
        p <<= 1
    return p


def _book_bytes(n_ticks: int, max_orders: int, event_capacity: int) -> int:
    # what Book.__cinit__ allocates, in bytes (Python ints: no overflow for any argument)
    if event_capacity < 0:
        event_capacity = 3 * max_orders + 16
    return (2 * n_ticks * sizeof(Level) + 2 * ((n_ticks + 63) >> 6) * 8 + max_orders * sizeof(Order)
            + _pow2_at_least(2 * max_orders) * sizeof(MapEntry) + event_capacity * sizeof(BookEvent))


def _memory_available():
    # Bytes this process may still allocate: MemAvailable + SwapFree, capped by the cgroup limit (v2 or v1).
    # None when nothing can be read (non-Linux): then allocation failure is the only check.
    best = None
    try:
        with open("/proc/meminfo") as f:
            info = {k: int(v.split()[0]) * 1024 for k, v in (ln.split(":", 1) for ln in f if ":" in ln)}
        best = info["MemAvailable"] + info.get("SwapFree", 0)
    except (OSError, KeyError, ValueError):
        pass
    for lim_p, cur_p in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                         ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            with open(lim_p) as f:
                lim = f.read().strip()
            with open(cur_p) as f:
                cur = int(f.read().strip())
            if lim != "max" and int(lim) < (1 << 62):
                left = max(0, int(lim) - cur)
                best = left if best is None else min(best, left)
        except (OSError, ValueError):
            pass
    return best


cdef int _check_memory(int64_t n_ticks, int64_t max_orders, int64_t event_capacity) except -1:
    # Refuse a book the machine cannot hold, before allocating: numpy maps lazily and __cinit__ touches every
    # page, so an oversized book would otherwise end in the OOM killer, not in a MemoryError.  Books below
    # 64 MiB skip the /proc reads.
    need = _book_bytes(n_ticks, max_orders, event_capacity)
    if need < (64 << 20):
        return 0
    avail = _memory_available()
    if avail is not None and need > avail:
        raise MemoryError(f"Book(n_ticks={n_ticks}, max_orders={max_orders}, event_capacity={event_capacity}) "
                          f"needs {need / 2**20:,.0f} MiB; {avail / 2**20:,.0f} MiB are available "
                          f"(see Book.memory_bytes)")
    return 0


cdef inline object _int(object x):
    # The per-call API's integer contract: int, bool and numpy integers (anything with __index__).  Cython's
    # C-integer conversion alone would take a float through __int__ and silently truncate it.
    if PyLong_Check(x):
        return x
    return PyNumber_Index(x)  # TypeError for float, Decimal, str, ...


@cython.final
cdef class Book:
    """One instrument's limit order book with price-time matching.

    Parameters
    ----------
    lo : int
        Lowest price of the band, in ticks.
    n_ticks : int
        Band width: prices ``lo .. lo + n_ticks - 1`` are accepted (others: ``Reject.OUT_OF_RANGE``).
        ``lo + n_ticks - 1`` must fit in int64.  Memory: 48 bytes per tick (both sides) plus a 2-bit bitmap.
    max_orders : int
        Resting-order capacity (pool + id map); a full pool rejects with ``Reject.BOOK_FULL``.
        Memory: 48 bytes per order for the pool and 32-64 bytes for the id map (a power of two >= 2 *
        max_orders buckets of 16 bytes), plus the event buffer (below).
    default_stp : int
        ``StpMode`` for orders that give none (stp = -1).
    tick_size : float
        Quote currency per tick, used by :func:`to_ticks` style conversion of FlatBuffer prices.
    event_capacity : int
        Rows of the per-call event buffer (``Book.events``); default ``3 * max_orders + 16``, enough for any
        single command.  A command that could need more raises ``ValueError`` before running.
        Memory: 80 bytes per row, so 240 bytes per order with the default.

    Memory: with the default event buffer about 320-350 bytes per order plus 48 bytes per tick (1M orders
    and a 1M-tick band: about 350 MiB), all allocated and touched at construction.
    :meth:`memory_bytes` gives the exact figure and :attr:`nbytes` what a book holds; a size larger than
    the memory available to the process (MemAvailable + free swap, and the cgroup limit) raises
    ``MemoryError`` before anything is allocated.

    Quantities are 1 .. ``MAX_QTY`` (2**32 - 1, the FlatBuffer quantity range) lots; other quantities get
    ``Reject.BAD_QUANTITY``.  With at most 2**30 orders no level total or sum of open quantities can wrap.
    Prices and quantities are integers: the per-call methods refuse floats (``TypeError``) rather than
    truncating them; ``int``, ``bool`` and numpy integers are accepted.
    """

    def __cinit__(self, price_t lo, int64_t n_ticks, int64_t max_orders, int default_stp=STP_NONE,
                  double tick_size=1.0, int64_t event_capacity=-1, symbol=None, uint32_t book_index=0):
        cdef int side
        cdef uint64_t buckets
        cdef Level[::1] lv0, lv1
        cdef Order[::1] ords
        cdef uint64_t[::1] bits
        cdef MapEntry[::1] mp
        cdef BookEvent[::1] evs
        cdef int64_t i
        if n_ticks <= 0 or n_ticks > (1 << 31):
            raise ValueError("n_ticks must be in 1 .. 2**31")
        if lo > INT64_MAX - (n_ticks - 1):
            raise ValueError(f"the band lo .. lo + n_ticks - 1 must fit in int64 (lo={lo}, n_ticks={n_ticks})")
        if max_orders <= 0 or max_orders > (1 << 30):
            raise ValueError("max_orders must be in 1 .. 2**30")
        if default_stp < STP_NONE or default_stp > STP_DECREMENT_AND_CANCEL:
            raise ValueError("default_stp must be a StpMode value")
        if not (tick_size > 0 and isfinite(tick_size)):
            raise ValueError(f"tick_size must be finite and > 0, got {tick_size}")
        if event_capacity < 0:
            event_capacity = 3 * max_orders + 16
        if event_capacity < 16:
            raise ValueError("event_capacity must be >= 16")
        _check_memory(n_ticks, max_orders, event_capacity)
        memset(&self.core, 0, sizeof(BookCore))
        self.symbol = symbol
        b = &self.core
        b.lo = lo
        b.n_ticks = n_ticks
        b.nwords = (n_ticks + 63) >> 6
        self._levels_arr = (np.zeros(n_ticks, LEVEL_DTYPE), np.zeros(n_ticks, LEVEL_DTYPE))
        for side in range(2):
            self._levels_arr[side]["head"] = -1
            self._levels_arr[side]["tail"] = -1
        lv0 = self._levels_arr[0]
        lv1 = self._levels_arr[1]
        b.levels[0] = &lv0[0]
        b.levels[1] = &lv1[0]
        self._bits_arr = np.zeros(2 * b.nwords, np.uint64)
        bits = self._bits_arr
        b.bits[0] = &bits[0]
        b.bits[1] = &bits[b.nwords]
        b.best[0] = -1
        b.best[1] = -1
        self._orders_arr = np.zeros(max_orders, ORDER_DTYPE)
        ords = self._orders_arr
        b.orders = &ords[0]
        b.max_orders = <int32_t>max_orders
        for i in range(max_orders):
            b.orders[i].next = <int32_t>(i + 1) if i + 1 < max_orders else -1
            b.orders[i].prev = -1
        b.free_head = 0
        buckets = _pow2_at_least(2 * <uint64_t>max_orders)
        self._map_arr = np.zeros(buckets, MAP_DTYPE)
        self._map_arr["slot"] = -1
        mp = self._map_arr
        b.map = &mp[0]
        b.map_mask = buckets - 1
        b.map_shift = 64 + 6  # block index = top (log2(buckets) - 6) bits of the product
        while buckets > 1:
            buckets >>= 1
            b.map_shift -= 1
        self._events_arr = np.zeros(event_capacity, EVENT_DTYPE)
        # np.zeros maps pages lazily; touch them now so no command pays a page fault later
        self._events_arr.view(np.uint8)[:] = 0
        self._bits_arr.view(np.uint8)[:] = 0
        evs = self._events_arr
        b.ev = &evs[0]
        b.ev_cap = event_capacity
        b.book_index = book_index
        b.default_stp = <int8_t>default_stp
        b.tick_size = tick_size

    # --- per-call API -----------------------------------------------------------------------------

    cdef reject_t _check_bound_c(self, const BookCommand* c) except 255:
        # per-call commands write from row 0 of the book's own event buffer
        if book_event_bound_c(&self.core, c) > self.core.ev_cap:
            raise ValueError("Book.events is too small for this command (raise event_capacity)")
        self.core.ev_n = 0
        return 0

    cdef int _idle_c(self) except -1:
        # a nogil batch on this book is running in another thread: refuse instead of racing it
        if self.core.busy:
            raise RuntimeError("this Book is being used by a batch running in another thread")
        return 0

    cdef int _after_c(self) except -1:
        if self.core.overflow:
            self.core.overflow = 0
            raise RuntimeError("order book event buffer overflow (bug: bound was too small)")
        if LOWLAT_DEBUG:
            book_check_c(&self.core)
        return 0

    def submit(self, oid, side, price, qty, account=0, order_type=OT_LIMIT, tif=TIF_GTC, bint post_only=False,
               stp=-1) -> tuple:
        """Submit a new order.

        Parameters
        ----------
        oid : int
            Order id (unique among resting orders).
        side : int
            ``Side.BUY`` (0) or ``Side.SELL`` (1).
        price : int
            Limit price in ticks (ignored for MARKET).
        qty : int
            Quantity in lots.
        account, order_type, tif, post_only, stp
            Owner id (self-trade prevention), ``OrderType``, ``TimeInForce``, post-only flag and
            ``StpMode`` override (-1 = the book's default).

        Returns
        -------
        (reject_code, filled_qty, n_events)
            ``reject_code`` is a ``Reject`` value (0 = accepted); the command's events are
            ``self.events[:n_events]`` until the next call.  Cost: O(1) plus O(1) per maker touched.

        Raises
        ------
        TypeError
            An argument is not an integer (a float is refused, not truncated).
        """
        cdef oid_t oid_c = _int(oid)
        cdef int side_c = _int(side)
        cdef price_t price_c = _int(price)
        cdef qty_t qty_c = _int(qty)
        cdef uint64_t account_c = _int(account)
        cdef int order_type_c = _int(order_type)
        cdef int tif_c = _int(tif)
        cdef int stp_c = _int(stp)
        self._idle_c()
        cdef BookCommand c
        cdef qty_t filled = 0
        cdef reject_t r
        c.op = CMD_NEW
        c.side = <int8_t>side_c if -128 <= side_c <= 127 else -1
        c.qty = qty_c
        c.stp = <int8_t>stp_c if -128 <= stp_c <= 127 else -128
        self._check_bound_c(&c)
        r = book_new_c(&self.core, oid_c, account_c, side_c, order_type_c, tif_c, stp_c, post_only, price_c, qty_c,
                       &filled)
        self._after_c()
        return r, filled, self.core.ev_n

    def cancel(self, oid) -> tuple:
        """Cancel a resting order.  Returns ``(reject_code, 0, n_events)``; cost O(1).  ``TypeError`` for a
        non-integer id."""
        cdef oid_t oid_c = _int(oid)
        self._idle_c()
        self.core.ev_n = 0
        cdef reject_t r = book_cancel_c(&self.core, oid_c)
        self._after_c()
        return r, 0, self.core.ev_n

    def modify(self, oid, price, qty) -> tuple:
        """Replace a resting order's price (ticks) and open quantity (lots).

        Only a quantity decrease at the same price keeps time priority.  A new price that crosses trades
        immediately.  Returns ``(reject_code, filled_qty, n_events)``; ``TypeError`` for a non-integer argument.
        """
        cdef oid_t oid_c = _int(oid)
        cdef price_t price_c = _int(price)
        cdef qty_t qty_c = _int(qty)
        self._idle_c()
        cdef BookCommand c
        cdef qty_t filled = 0
        c.op = CMD_MODIFY
        c.oid = oid_c
        c.qty = qty_c
        self._check_bound_c(&c)
        cdef reject_t r = book_modify_c(&self.core, oid_c, price_c, qty_c, &filled)
        self._after_c()
        return r, filled, self.core.ev_n

    def mass_cancel(self, account) -> tuple:
        """Cancel every resting order of ``account``.  Returns ``(0, n_cancelled, n_events)``; O(levels + orders)."""
        cdef uint64_t account_c = _int(account)
        self._idle_c()
        cdef BookCommand c
        c.op = CMD_MASS_CANCEL
        self._check_bound_c(&c)
        cdef int64_t n = book_mass_cancel_c(&self.core, account_c)
        self._after_c()
        return 0, n, self.core.ev_n

    @property
    def events(self):
        """The per-call event buffer (``EVENT_DTYPE``); the last call wrote rows ``[:n_events]``.  No copy."""
        return self._events_arr

    def last_events(self):
        """``events[:n]`` of the last per-call command (a numpy view, no copy)."""
        self._idle_c()
        return self._events_arr[:self.core.ev_n]

    # --- batch API ----------------------------------------------------------------------------------

    def apply_batch(self, const BookCommand[::1] commands not None, BookEvent[::1] events_out not None,
                    int64_t[::1] latency_ns=None) -> tuple:
        """Apply ``commands`` (``COMMAND_DTYPE``) in one nogil loop, writing events into ``events_out``.

        Stops early, before a command whose worst-case event count does not fit in the rest of
        ``events_out``; call again with ``commands[n_done:]`` after reading the events.  When
        ``latency_ns`` (int64, len >= len(commands)) is given, the wall time of each command in ns
        (``clock_gettime`` pair, ~20-40 ns overhead included) is written to it.

        Returns
        -------
        (n_done, n_events)
        """
        self._idle_c()
        cdef Py_ssize_t n = commands.shape[0], i = 0
        cdef BookCore* b = &self.core
        cdef BookEvent* own_ev = b.ev
        cdef int64_t own_cap = b.ev_cap, need
        cdef bint timed = latency_ns is not None
        cdef int rc = 0
        if timed and latency_ns.shape[0] < n:
            raise ValueError("latency_ns is shorter than commands")
        if n == 0:
            return 0, 0
        if events_out.shape[0] == 0:
            raise ValueError("events_out is empty")
        b.ev = &events_out[0]
        b.ev_cap = events_out.shape[0]
        b.ev_n = 0
        b.busy = 1
        try:
            with nogil:
                while i < n:
                    if i + 24 < n:
                        _prefetch_id(b, &commands[i + 24])
                    if i + 10 < n:
                        _prefetch_order(b, &commands[i + 10])
                    # cheap sufficient test first (any command writes <= 3 * live orders + 8 events)
                    if b.ev_cap - b.ev_n < 3 * b.n_live + 16:
                        need = book_event_bound_c(b, &commands[i])
                        if need > b.ev_cap - b.ev_n:
                            if b.ev_n == 0:
                                rc = -1
                            break
                    _apply_timed(b, &commands[i], &latency_ns[i] if timed else NULL)
                    if LOWLAT_DEBUG:
                        book_check_c(b)
                    i += 1
            if rc < 0:
                raise ValueError(f"events_out is too small for command {i} (needs up to {need} rows)")
            if b.overflow:
                b.overflow = 0
                raise RuntimeError("order book event buffer overflow (bug: bound was too small)")
            return i, b.ev_n
        finally:
            b.ev = own_ev
            b.ev_cap = own_cap
            b.ev_n = 0
            b.busy = 0

    def apply_frames(self, const unsigned char[::1] frames not None, BookEvent[::1] events_out not None,
                     int64_t[::1] latency_ns=None) -> tuple:
        """Apply framed FlatBuffer commands (``[u32 LE length][finance.CommandMsg]`` repeated, as
        ``lowlat._core.frame`` builds them) in one nogil loop: verify + decode each frame (zero-copy reader of
        ``lowlat._core``), convert the price to ticks with ``tick_size``, match, write events.

        The symbol in the commands is not checked (a Book is one instrument; see ``Engine.apply_frames``).
        An undecodable frame gives one REJECTED/MALFORMED event with seq 0 and is skipped; an off-tick price
        gives REJECTED/OFF_TICK, a missing id/quantity/limit price REJECTED/MISSING_FIELD.  Stops before a
        truncated trailing frame (left unconsumed) and, like :meth:`apply_batch`, before a frame whose
        events may not fit.  ``latency_ns[i]`` gets frame i's decode+match time (first len(latency_ns)).

        Returns
        -------
        (n_frames, bytes_consumed, n_events)
        """
        self._idle_c()
        cdef FrameRun fr
        cdef BookCore* b = &self.core
        cdef BookCore* cores[1]
        cdef BookEvent* own_ev = b.ev
        cdef int64_t own_cap = b.ev_cap
        cdef Py_ssize_t n = frames.shape[0]
        if events_out.shape[0] == 0:
            raise ValueError("events_out is empty")
        if n == 0:
            return 0, 0, 0
        memset(&fr, 0, sizeof(FrameRun))
        cores[0] = b
        fr.cores = cores
        fr.n_books = 1
        _fr_outputs(&fr, events_out, latency_ns)
        b.busy = 1
        try:
            with nogil:
                _run_frames(&fr, <const char*>&frames[0], n)
            _fr_raise(&fr)
            if LOWLAT_DEBUG:
                book_check_c(b)
            return fr.n_frames, fr.pos, fr.n_ev
        finally:
            b.ev = own_ev
            b.ev_cap = own_cap
            b.ev_n = 0
            b.busy = 0
            b.overflow = 0

    # --- reads ----------------------------------------------------------------------------------------

    @property
    def lo(self) -> int:
        """Lowest price of the band (ticks)."""
        return self.core.lo

    @property
    def n_ticks(self) -> int:
        """Band width (levels per side)."""
        return self.core.n_ticks

    @property
    def max_orders(self) -> int:
        return self.core.max_orders

    @property
    def nbytes(self) -> int:
        """Bytes of memory this book holds (ladder, bitmaps, order pool, id map, event buffer)."""
        return (self._levels_arr[0].nbytes + self._levels_arr[1].nbytes + self._bits_arr.nbytes
                + self._orders_arr.nbytes + self._map_arr.nbytes + self._events_arr.nbytes)

    @staticmethod
    def memory_bytes(int64_t n_ticks, int64_t max_orders, int64_t event_capacity=-1) -> int:
        """Bytes a ``Book(lo, n_ticks, max_orders, event_capacity=...)`` allocates (and touches) at
        construction: 48 per tick, 48 + 32..64 per order, 80 per event row.  Cost: O(1)."""
        return _book_bytes(n_ticks, max_orders, event_capacity)

    @property
    def tick_size(self) -> float:
        return self.core.tick_size

    @property
    def default_stp(self) -> int:
        return self.core.default_stp

    @property
    def n_orders(self) -> int:
        """Resting orders."""
        return self.core.n_live

    @property
    def seq(self) -> int:
        """Sequence number of the last event written."""
        return self.core.seq

    @property
    def trade_id(self) -> int:
        """Last trade id."""
        return self.core.trade_id

    def best_bid(self):
        """Best bid price in ticks, or None.  O(1)."""
        self._idle_c()
        return None if self.core.best[BID] < 0 else self.core.lo + self.core.best[BID]

    def best_ask(self):
        """Best ask price in ticks, or None.  O(1)."""
        self._idle_c()
        return None if self.core.best[ASK] < 0 else self.core.lo + self.core.best[ASK]

    def levels(self, int side):
        """Zero-copy read-only numpy view (``LEVEL_DTYPE``: head, tail, qty, count) of every level of a side,
        indexed by ``price - lo``."""
        self._idle_c()
        if side != BID and side != ASK:
            raise ValueError("side must be 0 (BID) or 1 (ASK)")
        v = self._levels_arr[side].view()
        v.flags.writeable = False
        return v

    def depth(self, int side, Py_ssize_t n):
        """The best ``n`` levels of ``side`` as a ``DEPTH_DTYPE`` array (price, qty, count), best first."""
        self._idle_c()
        cdef Py_ssize_t k = 0
        cdef int64_t lv
        if side != BID and side != ASK:
            raise ValueError("side must be 0 (BID) or 1 (ASK)")
        if n < 0:
            raise ValueError("n must be >= 0")
        if n > self.core.n_side[side]:
            n = self.core.n_side[side]  # a side has at most one non-empty level per resting order
        out = np.empty(n, DEPTH_DTYPE)
        cdef int64_t[:, ::1] o = out.view(np.int64).reshape(n, 3)
        lv = self.core.best[side]
        while lv >= 0 and k < n:
            o[k, 0] = self.core.lo + lv
            o[k, 1] = self.core.levels[side][lv].qty
            o[k, 2] = self.core.levels[side][lv].count
            k += 1
            lv = _next_opp(&self.core, side, lv)
        return out[:k]

    def queue(self, int side, price_t price):
        """The L3 FIFO at one level as an ``L3_DTYPE`` array (oid, account, qty), oldest first."""
        self._idle_c()
        cdef int64_t idx
        cdef Py_ssize_t k = 0
        cdef int32_t s
        if side != BID and side != ASK:
            raise ValueError("side must be 0 (BID) or 1 (ASK)")
        if not _in_band(&self.core, price):
            return np.empty(0, L3_DTYPE)
        idx = <int64_t>(<uint64_t>price - <uint64_t>self.core.lo)
        out = np.empty(self.core.levels[side][idx].count, L3_DTYPE)
        cdef uint64_t[:, ::1] o = out.view(np.uint64).reshape(-1, 3)
        s = self.core.levels[side][idx].head
        while s >= 0:
            o[k, 0] = self.core.orders[s].oid
            o[k, 1] = self.core.orders[s].account
            o[k, 2] = <uint64_t>self.core.orders[s].qty
            k += 1
            s = self.core.orders[s].next
        return out

    def order(self, oid_t oid):
        """``(side, price, qty, account)`` of a resting order, or None.  O(1)."""
        self._idle_c()
        cdef int32_t s = _map_find(&self.core, oid)
        if s < 0:
            return None
        o = &self.core.orders[s]
        return o.side, o.price, o.qty, o.account

    def check(self) -> None:
        """Run the full invariant scan (only in a ``LOWLAT_DEBUG`` build; a no-op otherwise)."""
        self._idle_c()
        book_check_c(&self.core)

    # --- snapshot / restore (recovery) ------------------------------------------------------

    def resting_orders(self):
        """Every resting order in priority order, as a ``RESTING_DTYPE`` array (oid, account, price, qty, side,
        stp, post_only): bids best price first, then asks best price first; FIFO (oldest first) inside a level.
        With ``seq`` and ``trade_id`` this is the book's whole state (see :meth:`restore`).  O(orders + levels)."""
        cdef BookCore* b = &self.core
        cdef int side
        cdef int64_t lv
        cdef int32_t s
        cdef Py_ssize_t k = 0
        self._idle_c()
        out = np.zeros(b.n_live, RESTING_DTYPE)
        if b.n_live == 0:
            return out
        cdef RestingOrder[::1] o = out
        with nogil:
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
        return out

    def restore(self, const unsigned char[::1] orders not None, uint64_t seq, uint64_t trade_id) -> None:
        """Load a saved state into this empty, unused book: resting orders (``RESTING_DTYPE`` rows as bytes, in
        priority order as :meth:`resting_orders` returns them) and the event sequence / trade-id counters.

        No events are written.  Raises ``ValueError`` (book not empty, row size, more rows than slots, a side,
        price, quantity or STP mode out of range, a duplicate id, or a crossed result) and then leaves the book
        empty.  Cost: O(rows), one nogil loop (~30-60 ns per order).
        """
        cdef BookCore* b = &self.core
        cdef Py_ssize_t n, i
        cdef const RestingOrder* r
        cdef int32_t slot
        cdef Order* o
        cdef int rc = 0
        self._idle_c()
        if b.n_live or b.seq or b.trade_id:
            raise ValueError("restore needs an empty, unused book")
        if orders.shape[0] % sizeof(RestingOrder):
            raise ValueError(f"orders: {orders.shape[0]} bytes is not a whole number of RESTING_DTYPE rows")
        n = orders.shape[0] // sizeof(RestingOrder)
        if n > b.max_orders:
            raise ValueError(f"{n} orders do not fit in max_orders={b.max_orders}")
        with nogil:
            for i in range(n):
                r = <const RestingOrder*>&orders[i * sizeof(RestingOrder)]
                if ((r.side != BID and r.side != ASK) or not _qty_ok(r.qty) or not _in_band(b, r.price)
                        or r.stp < -1 or r.stp > STP_DECREMENT_AND_CANCEL
                        or r.post_only > 1):
                    rc = -1
                    break
                if _map_find(b, r.oid) >= 0:
                    rc = -2
                    break
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
            if rc == 0 and b.best[BID] >= 0 and b.best[ASK] >= 0 and b.best[BID] >= b.best[ASK]:
                rc = -3
            if rc == 0:
                b.seq = seq
                b.trade_id = trade_id
        if rc != 0:
            self._reset_arrays()  # back to the empty book it was (every live order is from this call)
        if rc == -1:
            raise ValueError(f"restore: row {i} has a side, price, quantity, STP mode or post_only out of range")
        if rc == -2:
            raise ValueError(f"restore: row {i} repeats an order id")
        if rc == -3:
            raise ValueError("restore: the orders cross (best bid >= best ask)")
        if LOWLAT_DEBUG:
            book_check_c(b)

    def _reset_arrays(self) -> None:
        # the state __cinit__ builds, for an error path of restore (not a hot path: numpy over every array)
        cdef BookCore* b = &self.core
        for side in range(2):
            lv = self._levels_arr[side]
            lv["head"] = -1
            lv["tail"] = -1
            lv["qty"] = 0
            lv["count"] = 0
        self._bits_arr[:] = 0
        self._map_arr["key"] = 0
        self._map_arr["slot"] = -1
        ords = self._orders_arr
        ords.view(np.uint8)[:] = 0
        ords["next"] = np.arange(1, b.max_orders + 1, dtype=np.int32)
        ords["next"][b.max_orders - 1] = -1
        ords["prev"] = -1
        b.free_head = 0
        b.best[0] = -1
        b.best[1] = -1
        b.n_live = 0
        b.n_side[0] = 0
        b.n_side[1] = 0


@cython.final
cdef class Engine:
    """Many books, one per symbol, driven by one batch loop.

    Books are added with :meth:`add_book` (allocation happens there, never per command).  A batch row's
    ``book`` field is the book's index (``Engine.index(symbol)``); an unknown index gives a REJECTED
    event with ``Reject.UNKNOWN_SYMBOL`` and seq 0.
    """

    def __cinit__(self, int default_stp=STP_NONE):
        if default_stp < STP_NONE or default_stp > STP_DECREMENT_AND_CANCEL:
            raise ValueError("default_stp must be a StpMode value")
        self.default_stp = default_stp
        self._books = []
        self._by_symbol = {}
        self._cores = NULL
        self._syms = NULL
        self._sym_lens = NULL
        self._sym_bytes = []
        self._n = 0
        self._cap = 0

    def __dealloc__(self):
        PyMem_RawFree(self._cores)
        PyMem_RawFree(self._syms)
        PyMem_RawFree(self._sym_lens)

    def add_book(self, str symbol, price_t lo, int64_t n_ticks, int64_t max_orders, double tick_size=1.0,
                 default_stp=None, int64_t event_capacity=-1) -> Book:
        """Create the book for ``symbol`` (see :class:`Book` for the parameters); returns it."""
        cdef BookCore** grown
        cdef const char** grown_s
        cdef Py_ssize_t* grown_l
        if symbol in self._by_symbol:
            raise ValueError(f"book {symbol!r} already exists")
        if self._n >= 0xFFFFFFFF:
            raise ValueError("too many books")
        bk = Book(lo, n_ticks, max_orders, self.default_stp if default_stp is None else default_stp,
                  tick_size, event_capacity, symbol, <uint32_t>self._n)
        sym_b = symbol.encode()
        if self._n == self._cap:
            grown = <BookCore**>PyMem_RawRealloc(self._cores, (self._cap * 2 + 4) * sizeof(BookCore*))
            if grown == NULL:
                raise MemoryError()
            self._cores = grown
            grown_s = <const char**>PyMem_RawRealloc(self._syms, (self._cap * 2 + 4) * sizeof(const char*))
            if grown_s == NULL:
                raise MemoryError()
            self._syms = grown_s
            grown_l = <Py_ssize_t*>PyMem_RawRealloc(self._sym_lens, (self._cap * 2 + 4) * sizeof(Py_ssize_t))
            if grown_l == NULL:
                raise MemoryError()
            self._sym_lens = grown_l
            self._cap = self._cap * 2 + 4
        self._cores[self._n] = &(<Book>bk).core
        self._sym_bytes.append(sym_b)
        self._syms[self._n] = <const char*>sym_b
        self._sym_lens[self._n] = len(sym_b)
        self._n += 1
        self._books.append(bk)
        self._by_symbol[symbol] = bk
        return bk

    cdef int _acquire_c(self) except -1:
        # mark every book busy for a nogil batch (checked and set under the GIL, so it cannot race)
        cdef Py_ssize_t k
        for k in range(self._n):
            if self._cores[k].busy:
                raise RuntimeError("a book of this Engine is being used by a batch in another thread")
        for k in range(self._n):
            self._cores[k].busy = 1
        return 0

    def __getitem__(self, symbol) -> Book:
        return self._by_symbol[symbol]

    def __contains__(self, symbol) -> bool:
        return symbol in self._by_symbol

    def __len__(self) -> int:
        return self._n

    def index(self, symbol) -> int:
        """Book index of ``symbol`` (the ``book`` field of batch rows and events)."""
        return (<Book>self._by_symbol[symbol]).core.book_index

    @property
    def books(self) -> list:
        """Books in index order (a new list)."""
        return list(self._books)

    def apply_batch(self, const BookCommand[::1] commands not None, BookEvent[::1] events_out not None,
                    int64_t[::1] latency_ns=None) -> tuple:
        """Apply ``commands`` across books in one nogil loop; same contract as :meth:`Book.apply_batch`
        (events of all books interleaved in command order, each carrying its ``book`` index and that
        book's own sequence number).  Returns ``(n_done, n_events)``."""
        cdef Py_ssize_t n = commands.shape[0], i = 0, k
        cdef int64_t cap = events_out.shape[0], n_ev = 0, need
        cdef BookEvent* out
        cdef BookCore* b
        cdef BookEvent* e
        cdef bint timed = latency_ns is not None
        cdef int rc = 0
        if timed and latency_ns.shape[0] < n:
            raise ValueError("latency_ns is shorter than commands")
        if n == 0:
            return 0, 0
        if cap == 0:
            raise ValueError("events_out is empty")
        out = &events_out[0]
        # each book writes straight into events_out at the running offset; its own buffer is restored after
        self._acquire_c()
        for k in range(self._n):
            self._cores[k].ev_n = 0
        try:
            with nogil:
                while i < n:
                    if commands[i].book >= <uint64_t>self._n:
                        if n_ev >= cap:
                            break
                        e = &out[n_ev]
                        _raw_reject(e, commands[i].book, commands[i].oid, commands[i].account,
                                    REJ_UNKNOWN_SYMBOL)
                        e.price = commands[i].price
                        e.qty = commands[i].qty
                        e.side = commands[i].side
                        n_ev += 1
                        if timed:
                            latency_ns[i] = 0
                        i += 1
                        continue
                    if i + 24 < n and commands[i + 24].book < <uint64_t>self._n:
                        _prefetch_id(self._cores[commands[i + 24].book], &commands[i + 24])
                    if i + 10 < n and commands[i + 10].book < <uint64_t>self._n:
                        _prefetch_order(self._cores[commands[i + 10].book], &commands[i + 10])
                    b = self._cores[commands[i].book]
                    if cap - n_ev < 3 * b.n_live + 16:
                        need = book_event_bound_c(b, &commands[i])
                        if need > cap - n_ev:
                            if n_ev == 0:
                                rc = -1
                            break
                    b.ev = out + n_ev
                    b.ev_cap = cap - n_ev
                    b.ev_n = 0
                    _apply_timed(b, &commands[i], &latency_ns[i] if timed else NULL)
                    n_ev += b.ev_n
                    if b.overflow:
                        rc = -2
                        break
                    if LOWLAT_DEBUG:
                        book_check_c(b)
                    i += 1
            if rc == -1:
                raise ValueError(f"events_out is too small for command {i} (needs up to {need} rows)")
            if rc == -2:
                raise RuntimeError("order book event buffer overflow (bug: bound was too small)")
            return i, n_ev
        finally:
            for k in range(self._n):
                _restore_events(<Book>self._books[k])

    def apply_frames(self, const unsigned char[::1] frames not None, BookEvent[::1] events_out not None,
                     int64_t[::1] latency_ns=None) -> tuple:
        """Apply framed FlatBuffer commands across books, routed by the command's ``symbol`` (UTF-8, exact
        match); a MassCancel without symbol cancels the account in every book.  An unknown or absent symbol
        gives REJECTED/UNKNOWN_SYMBOL with seq 0 and book 0xFFFFFFFF.  Otherwise as
        :meth:`Book.apply_frames`.  Returns ``(n_frames, bytes_consumed, n_events)``."""
        cdef FrameRun fr
        cdef Py_ssize_t n = frames.shape[0]
        if events_out.shape[0] == 0:
            raise ValueError("events_out is empty")
        if n == 0 or self._n == 0:
            if n and not self._n:
                raise ValueError("the engine has no books")
            return 0, 0, 0
        memset(&fr, 0, sizeof(FrameRun))
        fr.cores = self._cores
        fr.syms = self._syms
        fr.sym_lens = self._sym_lens
        fr.n_books = self._n
        _fr_outputs(&fr, events_out, latency_ns)
        self._acquire_c()
        try:
            with nogil:
                _run_frames(&fr, <const char*>&frames[0], n)
            _fr_raise(&fr)
            return fr.n_frames, fr.pos, fr.n_ev
        finally:
            for k in range(self._n):
                _restore_events(<Book>self._books[k])


cdef int _restore_events(Book bk) except -1:
    cdef BookEvent[::1] evs = bk._events_arr
    bk.core.ev = &evs[0]
    bk.core.ev_cap = evs.shape[0]
    bk.core.ev_n = 0
    bk.core.overflow = 0
    bk.core.busy = 0
    return 0
