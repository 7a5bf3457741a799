"""``MatchStage``: apply a received ``MessageBatch`` of validated orders to an ``Engine`` and write everything that
happened into an output ``MessageBatch`` in one compiled call (no Python object per message).

Per input message (a ``finance.Order`` FlatBuffer; its subject is not read: the order's symbol routes it), in
order, through the engine's own per-command path (``book_apply_c``, the code ``Engine.apply_batch`` runs):

- ``ExecutionReport``s to ``<exec_prefix>.<SYMBOL>``, ``Trade``s to ``<md_prefix>.<SYMBOL>.trade`` and
  ``L2Update``s to ``<md_prefix>.<SYMBOL>.l2`` (the destination subject is in each output message's ``reply``
  field, so one ``Transport.publish_batch_to(out)`` sends everything), with the read side's per-symbol L2
  sequence (1, 2, 3, ...) and, in each trade, the sequence of the last L2 update before it;
- the read side (``lowlat.services.matcher.ReadModel``: level totals, the last state of recent orders, the
  sequence and trade count) updated from the same events, exactly as the Python service does it.

Bad input never stops the batch: a frame that fails FlatBuffer verification or is longer than ``max_payload``
(MALFORMED), or names no book of the engine (UNKNOWN_SYMBOL), produces no message and is counted; a LIMIT price
that does not convert to ticks gets a REJECTED report without reaching the engine.  A message is applied only
when a bound on its outputs fits in ``out`` (slots and arena): otherwise ``run`` returns its index and the caller
publishes, takes a new ``out`` and calls again from there (nothing lost).  When even an empty ``out`` is too
small, ``run`` returns without progress and ``need_slots``/``need_bytes`` say what one would need.
"""

from cpython.mem cimport PyMem_RawCalloc, PyMem_RawFree, PyMem_RawMalloc
from libc.math cimport fabs, floor, nearbyint
from libc.stdint cimport int8_t, int64_t, uint8_t, uint32_t, uint64_t
from libc.string cimport memcmp, memset

import numpy as np

from lowlat._batch cimport MessageBatch, check_stage_args
from lowlat._book cimport (Book, BookCommand, BookCore, BookEvent, Engine, CMD_NEW, EV_ACCEPTED, EV_REJECTED,
                           EV_FILL, EV_CANCELED, EV_EXPIRED, EV_L2, book_apply_c, book_check_c,
                           book_event_bound_c, ticks_from_double_c)
from lowlat._core cimport FbOrder, fb_read_order
from lowlat._readside cimport OState, OrderStates
from lowlat._encode cimport (fb_build_execution_report, fb_build_l2_update, fb_build_trade,
                             fb_execution_report_size, fb_l2_update_size, fb_trade_size)
from lowlat._types cimport (price_t, qty_t, reject_t, BID, ASK, OT_LIMIT, OT_MARKET, STP_CANCEL_OLDEST, REJ_MALFORMED,
                            REJ_UNKNOWN_SYMBOL, LOWLAT_DEBUG)
from lowlat._bitmap cimport _lvl_down, _lvl_up

from .errors import LowlatError

# ExecutionReport.status values (lowlat.enums.ExecStatus)
cdef enum:
    ST_NEW = 0
    ST_PARTIALLY_FILLED = 1
    ST_FILLED = 2
    ST_CANCELED = 3
    ST_REJECTED = 4
    ST_EXPIRED = 6

# output kinds (index into BookOut.subj)
cdef enum:
    OUT_EXEC = 0
    OUT_TRADE = 1
    OUT_L2 = 2

cdef object _pyround = round

# ExecutionReport.status of a report event, by event kind (EV_ACCEPTED .. EV_EXPIRED)
cdef int _STATUS[6]
_STATUS[:] = [0, ST_NEW, ST_REJECTED, ST_PARTIALLY_FILLED, ST_CANCELED, ST_EXPIRED]


cdef double _round9(double x) except? -1.0:
    # round(x, 9) exactly as Python computes it (correctly rounded decimal, then the nearest double).  When x*1e9
    # is well inside the exact-integer range and not near a half, the integer nearest to the exact product is
    # nearbyint() of the rounded product, and dividing two exact doubles rounds correctly: the same double.
    cdef double y = x * 1e9
    cdef double f
    if fabs(y) < 1125899906842624.0:    # 2**50: the product's rounding error is <= 1/16
        f = y - floor(y)
        if fabs(f - 0.5) > 0.07:
            return nearbyint(y) / 1e9
    return <double>_pyround(x, 9)


cdef int64_t _msg_bound(const BookCore* b, const BookCommand* c) noexcept nogil:
    # Upper bound on the messages one NEW order can produce.  Each resting order it can touch gives <= 3 (a trade
    # and two reports; an STP cancel fewer), each level it touches one L2, plus acceptance, the rest/expiry and a
    # final STP cancel.  Makers are counted per level, walking the opposite side from the best level while the
    # price crosses and the quantity seen is short of the order's (without that stop for CANCEL_OLDEST, where a
    # cancelled maker consumes nothing): a crossing order walks what it is about to trade against anyway.
    cdef int side = c.side, opp
    cdef int64_t lv, idx = 0, touched = 0, levels = 0, seen = 0
    cdef int mode
    cdef bint market = c.order_type == OT_MARKET
    if side != BID and side != ASK:
        return 1
    if not market:
        if c.price < b.lo or <uint64_t>c.price - <uint64_t>b.lo >= <uint64_t>b.n_ticks:
            return 1
        idx = c.price - b.lo
    opp = 1 - side
    mode = b.default_stp if c.stp < 0 else c.stp
    lv = b.best[opp]
    while lv >= 0:
        if not market and ((side == BID and lv > idx) or (side == ASK and lv < idx)):
            break
        touched += b.levels[opp][lv].count
        levels += 1
        seen += b.levels[opp][lv].qty
        if mode != STP_CANCEL_OLDEST and seen >= c.qty:
            break
        if opp == ASK:
            lv = _lvl_up(b.bits[ASK], b.nwords, lv + 1)
        else:
            lv = _lvl_down(b.bits[BID], b.nwords, lv - 1)
    return 3 * touched + levels + 4


cdef inline bint _fits(MessageBatch out, int64_t msgs, int64_t nbytes) noexcept:
    return out.n + msgs <= out.capacity and nbytes <= out.arena_bytes - out.used


cdef inline OState* _filled(OrderStates orders, uint64_t oid, int64_t qty, int64_t leaves, int status,
                            int64_t side, int64_t price, uint64_t account) noexcept:
    # one side of a fill applied to the read side; an order it does not know yet starts with this fill.  The
    # state, or NULL when the read side keeps nothing.
    cdef int64_t slot = orders.find_c(oid)
    cdef OState* o
    if slot >= 0:
        o = orders.at_c(slot)
        o.cum += qty
        o.leaves = leaves
        o.status = status
        orders.touch_c(slot)
        return o
    slot = orders.put_c(oid, status, side, price, leaves, qty, account, 0)
    return orders.at_c(slot) if slot >= 0 else NULL


cdef class MatchStage:
    """The matching service's data plane for one ``Engine`` and its read models.

    ``read_models``: one ``ReadModel`` per book, in book-index order (``Engine.index``).  Books added to the
    engine later are not known to the stage (``run`` refuses).  Cost: ~0.1-0.3 µs per order plus ~0.1 µs per
    read-side update and the copies into ``out`` (benchmarks/bench_mstage.py).  Counters (cumulative): ``n_in``,
    ``applied`` (orders given to the engine), ``malformed`` (oversized included), ``oversized``,
    ``unknown_symbol``, ``early_rejects`` (prices that do not convert), ``events``, ``exec_reports``, ``trades``,
    ``l2_updates``, ``rejects``; ``reject_counts()`` splits ``rejects`` by reason code (engine rejects, early
    rejects and drops).
    """

    def __cinit__(self, Engine engine not None, read_models, *, str exec_prefix="exec", str md_prefix="md",
                  Py_ssize_t max_payload=65536):
        cdef Py_ssize_t k, n = len(engine)
        cdef BookOut* bo
        cdef Book bk
        if max_payload < 1 or max_payload > (1 << 30):
            raise ValueError(f"max_payload must be in 1..2**30, got {max_payload}")
        rms = list(read_models)
        if len(rms) != n:
            raise ValueError(f"{n} books but {len(rms)} read models")
        self._engine = engine
        self.max_payload = max_payload
        self._n_books = n
        self._books = <BookOut*>PyMem_RawCalloc(n if n else 1, sizeof(BookOut))
        if self._books == NULL:
            raise MemoryError()
        self._keep = []
        self._rm = []
        self._scratch_len = 256
        for k in range(n):
            bk = engine.books[k]
            bo = &self._books[k]
            bo.core = &bk.core
            sym = str(bk.symbol).encode()
            subj = [f"{exec_prefix}.{bk.symbol}".encode(), f"{md_prefix}.{bk.symbol}.trade".encode(),
                    f"{md_prefix}.{bk.symbol}.l2".encode()]
            self._keep.append(sym)
            self._keep.extend(subj)
            bo.sym = sym
            bo.sym_len = len(sym)
            for j in range(3):
                bo.subj[j] = subj[j]
                bo.subj_len[j] = len(subj[j])
            bo.max_msg = max(fb_execution_report_size(bo.sym_len, -1) + bo.subj_len[OUT_EXEC],
                             fb_trade_size(bo.sym_len) + bo.subj_len[OUT_TRADE],
                             fb_l2_update_size(bo.sym_len) + bo.subj_len[OUT_L2])
            bo.tick = bk.core.tick_size
            self._scratch_len = max(self._scratch_len, bo.max_msg)
            rm = rms[k]
            if str(rm.symbol) != str(bk.symbol):
                raise ValueError(f"read model {k} is for {rm.symbol!r}, book {k} is {bk.symbol!r}")
            levels = rm.levels
            if not isinstance(rm.orders, OrderStates):
                raise TypeError(f"read model {k}: orders must be an OrderStates")
            self._rm.append((rm, levels[0], levels[1], rm.orders))
        self._scratch = <char*>PyMem_RawMalloc(self._scratch_len)
        if self._scratch == NULL:
            raise MemoryError()
        self._reasons_arr = np.zeros(256, dtype=np.int64)
        self._reasons = self._reasons_arr

    def __init__(self, Engine engine not None, read_models, *, str exec_prefix="exec", str md_prefix="md",
                 Py_ssize_t max_payload=65536):
        pass  # everything happens in __cinit__

    def __dealloc__(self):
        PyMem_RawFree(self._books)
        PyMem_RawFree(self._scratch)

    cdef int _load(self, Py_ssize_t k) except -1:
        # the ReadModel's counters into C for this run (another writer, e.g. a journal restore, may set them)
        cdef BookOut* bo = &self._books[k]
        rm = (<tuple>self._rm[k])[0]
        bo.md_seq = rm.md_seq
        bo.trades = rm.trades
        bo.loaded = True
        return 0

    cdef int _store(self) except -1:
        cdef Py_ssize_t k
        for k in range(self._n_books):
            if self._books[k].loaded:
                rm = (<tuple>self._rm[k])[0]
                rm.md_seq = self._books[k].md_seq
                rm.trades = self._books[k].trades
                self._books[k].loaded = False
        return 0

    cdef int _put(self, Py_ssize_t k, int which, MessageBatch out, Py_ssize_t size) except -1:
        # the message in scratch to book k's subject `which` (room was reserved before the order ran)
        cdef BookOut* bo = &self._books[k]
        if not out.append_c(<const unsigned char*>self._scratch, size, NULL, 0,
                            <const unsigned char*>bo.subj[which], bo.subj_len[which]):
            raise RuntimeError("output batch overflow (bug: bound was too small)")
        if which == OUT_EXEC:
            self.exec_reports += 1
        elif which == OUT_TRADE:
            self.trades += 1
        else:
            self.l2_updates += 1
        return 0

    cdef int _events_c(self, Py_ssize_t k, MessageBatch out, uint64_t now) except -1:
        # Book k's events of the order just applied -> messages + read side, event by event as the Python
        # service's _events_to_messages does (same order of read-side updates, so the same evictions).
        cdef BookOut* bo = &self._books[k]
        cdef const BookEvent* e
        cdef Py_ssize_t i, n = bo.core.ev_n
        cdef char* s = self._scratch
        cdef const char* sym = bo.sym
        cdef Py_ssize_t sl = bo.sym_len
        cdef Py_ssize_t er = fb_execution_report_size(sl, -1)
        cdef double ts = bo.tick, px
        cdef int64_t cum, side_i
        cdef uint64_t acct
        cdef int status
        cdef tuple rmt = <tuple>self._rm[k]
        cdef dict lv_bid = <dict>rmt[1]
        cdef dict lv_ask = <dict>rmt[2]
        cdef dict lv
        cdef OrderStates orders = <OrderStates>rmt[3]
        cdef int64_t slot
        cdef OState* o
        if not bo.loaded:
            self._load(k)
        for i in range(n):
            e = &bo.core.ev[i]
            self.events += 1
            if e.kind == EV_L2:
                lv = lv_bid if e.side == 0 else lv_ask
                if e.qty > 0:
                    lv[e.price] = (e.qty, e.aux)
                else:
                    lv.pop(e.price, None)
                bo.md_seq += 1
                self._put(k, OUT_L2, out, fb_build_l2_update(s, sym, sl, <uint64_t>bo.md_seq, e.side,
                                                             _round9(e.price * ts), <uint64_t>e.qty,
                                                             <uint32_t>e.aux, now))
            elif e.kind == EV_ACCEPTED:
                orders.put_c(e.oid, ST_NEW, e.side, e.price, e.leaves, 0, e.account, 0)
                fb_build_execution_report(s, e.oid, sym, sl, e.account, e.side, ST_NEW, 0, 0, 0, 0, False,
                                          _round9(e.price * ts), 0, <uint32_t>e.leaves, 0, now, NULL, -1)
                self._put(k, OUT_EXEC, out, er)
            elif e.kind == EV_FILL:
                bo.trades += 1
                px = _round9(e.price * ts)
                self._put(k, OUT_TRADE, out, fb_build_trade(s, e.trade_id, sym, sl, px, <uint32_t>e.qty, e.side,
                                                            e.maker_oid, e.oid, now, <uint64_t>bo.md_seq))
                # the taker (a state it does not have yet starts as NEW with no fills)
                status = ST_FILLED if e.leaves == 0 else ST_PARTIALLY_FILLED
                o = _filled(orders, e.oid, e.qty, e.leaves, status, e.side, e.price, e.account)
                cum = o.cum if o != NULL else e.qty
                fb_build_execution_report(s, e.oid, sym, sl, e.account, e.side, status, 0, e.trade_id,
                                          e.maker_oid, e.oid, False, px, <uint32_t>e.qty, <uint32_t>e.leaves,
                                          <uint32_t>cum, now, NULL, -1)
                self._put(k, OUT_EXEC, out, er)
                # the maker (aux = its leaves)
                status = ST_FILLED if e.aux == 0 else ST_PARTIALLY_FILLED
                o = _filled(orders, e.maker_oid, e.qty, e.aux, status, 1 - e.side, e.price, 0)
                if o != NULL:
                    cum, acct, side_i = o.cum, o.account, o.side
                else:  # a read side that keeps nothing (max_orders 0)
                    cum, acct, side_i = e.qty, 0, 1 - e.side
                fb_build_execution_report(s, e.maker_oid, sym, sl, acct, <int8_t>side_i, status, 0, e.trade_id,
                                          e.maker_oid, e.oid, True, px, <uint32_t>e.qty, <uint32_t>e.aux,
                                          <uint32_t>cum, now, NULL, -1)
                self._put(k, OUT_EXEC, out, er)
            elif e.kind == EV_CANCELED or e.kind == EV_EXPIRED:
                status = ST_CANCELED if e.kind == EV_CANCELED else ST_EXPIRED
                slot = orders.find_c(e.oid)
                if slot >= 0:
                    o = orders.at_c(slot)
                    o.status = status
                    o.leaves = e.leaves
                    o.reason = e.reason
                    orders.touch_c(slot)
                    cum = o.cum
                else:
                    cum = 0
                    orders.put_c(e.oid, status, e.side, e.price, e.leaves, 0, e.account, e.reason)
                fb_build_execution_report(s, e.oid, sym, sl, e.account, e.side, status, e.reason, 0, 0, 0, False,
                                          _round9(e.price * ts), 0, <uint32_t>e.leaves, <uint32_t>cum, now,
                                          NULL, -1)
                self._put(k, OUT_EXEC, out, er)
            elif e.kind == EV_REJECTED:
                self._reasons[e.reason] += 1
                self.rejects += 1
                # a rejected command about an id the read side knows (a duplicate NEW of a resting order) does
                # not change that order: the read side describes what the book holds
                if orders.find_c(e.oid) < 0:
                    orders.put_c(e.oid, ST_REJECTED, e.side, e.price, 0, 0, e.account, e.reason)
                fb_build_execution_report(s, e.oid, sym, sl, e.account, e.side, ST_REJECTED, e.reason, 0, 0, 0,
                                          False, _round9(e.price * ts), 0, 0, 0, now, NULL, -1)
                self._put(k, OUT_EXEC, out, er)
        return 0

    cdef Py_ssize_t run_c(self, MessageBatch inb, Py_ssize_t start, MessageBatch out,
                          int64_t now_ns) except -1:
        cdef const unsigned char* base = inb.base_c()
        cdef const char* p
        cdef Py_ssize_t i, n, k, nb = self._n_books
        cdef FbOrder o
        cdef BookCommand c
        cdef BookOut* bo
        cdef BookCore* b
        cdef price_t ticks
        cdef reject_t r
        cdef int64_t msgs, nbytes
        cdef Py_ssize_t er
        cdef uint64_t now = <uint64_t>now_ns
        cdef qty_t filled
        self._engine._acquire_c()
        try:
            for i in range(start, inb.n):
                p = <const char*>(base + inb._poff[i])
                n = inb._plen[i]
                if n > self.max_payload:
                    self.oversized += 1
                    self.malformed += 1
                    self._reasons[REJ_MALFORMED] += 1
                    self.rejects += 1
                    self.n_in += 1
                    continue
                if fb_read_order(p, n, &o):
                    self.malformed += 1
                    self._reasons[REJ_MALFORMED] += 1
                    self.rejects += 1
                    self.n_in += 1
                    continue
                # route by the order's symbol (exact bytes; engines hold tens of symbols)
                k = -1
                if o.symbol != NULL:
                    for k in range(nb):
                        if (self._books[k].sym_len == o.symbol_len
                                and memcmp(self._books[k].sym, o.symbol, o.symbol_len) == 0):
                            break
                    else:
                        k = -1
                if k < 0:
                    self.unknown_symbol += 1
                    self._reasons[REJ_UNKNOWN_SYMBOL] += 1
                    self.rejects += 1
                    self.n_in += 1
                    continue
                bo = &self._books[k]
                b = bo.core
                ticks = 0
                r = 0
                if o.order_type == OT_LIMIT:
                    r = ticks_from_double_c(o.price, b.tick_size, &ticks)
                if r:
                    # a price that does not convert never reaches the engine: one REJECTED report
                    er = fb_execution_report_size(bo.sym_len, -1)
                    if not _fits(out, 1, er + bo.subj_len[OUT_EXEC]):
                        if out.n > 0:
                            return i
                        self.need_slots = 1
                        self.need_bytes = er + bo.subj_len[OUT_EXEC]
                        return i
                    if not bo.loaded:
                        self._load(k)
                    fb_build_execution_report(self._scratch, o.id, bo.sym, bo.sym_len, o.account, 0, ST_REJECTED, r,
                                              0, 0, 0, False, 0.0, 0, 0, 0, now, NULL, -1)
                    self._put(k, OUT_EXEC, out, er)
                    self._reasons[r] += 1
                    self.rejects += 1
                    self.early_rejects += 1
                    self.n_in += 1
                    continue
                memset(&c, 0, sizeof(BookCommand))
                c.oid = o.id
                c.account = o.account
                c.price = ticks
                c.qty = o.quantity
                c.book = <uint32_t>k
                c.op = CMD_NEW
                c.side = o.side
                c.order_type = <uint8_t>o.order_type
                c.tif = <uint8_t>o.time_in_force
                c.stp = -1 if o.stp == 0 else o.stp
                c.post_only = 1 if o.post_only else 0
                msgs = _msg_bound(b, &c)
                nbytes = msgs * bo.max_msg
                if not _fits(out, msgs, nbytes):
                    if out.n > 0:
                        return i
                    self.need_slots = msgs
                    self.need_bytes = nbytes
                    return i
                if book_event_bound_c(b, &c) > b.ev_cap:
                    if out.n > 0:
                        return i
                    raise ValueError(f"book {bo.sym[:bo.sym_len]!r}: its event buffer is too small for order "
                                     f"{o.id} (raise event_capacity)")
                b.ev_n = 0
                book_apply_c(b, &c, &filled)
                if b.overflow:
                    b.overflow = 0
                    raise RuntimeError("order book event buffer overflow (bug: bound was too small)")
                if LOWLAT_DEBUG:
                    book_check_c(b)
                self.applied += 1
                self._events_c(k, out, now)
                b.ev_n = 0
                self.n_in += 1
            return inb.n
        finally:
            for k in range(nb):
                self._books[k].core.busy = 0
            self._store()

    def run(self, MessageBatch inb not None, Py_ssize_t start, MessageBatch out not None, int64_t now_ns) -> int:
        """Process ``inb`` from message ``start``; append outputs to ``out``; return the index of the first message
        not processed (``inb.n`` when done).  ``now_ns`` stamps every output (ns since the epoch)."""
        check_stage_args(inb, start, out)
        if len(self._engine) != self._n_books:
            raise LowlatError(f"the engine has {len(self._engine)} books, the stage was built for {self._n_books}")
        self.need_slots = 0
        self.need_bytes = 0
        return self.run_c(inb, start, out, now_ns)

    def encode_events(self, BookEvent[::1] events not None, Py_ssize_t n, MessageBatch out not None,
                      int64_t now_ns) -> int:
        """Encode ``events[:n]`` (``EVENT_DTYPE``, e.g. from ``Engine.apply_frames``) into ``out`` without a read
        side: the floor of ``run``'s encoding work (benchmarks/bench_mstage.py).  L2 updates carry the event's
        book sequence, reports no cumulative quantity or maker account.  Returns the events encoded (it stops
        before one whose messages do not fit)."""
        cdef Py_ssize_t i, k, size
        cdef const BookEvent* e
        cdef BookOut* bo
        cdef char* s = self._scratch
        cdef uint64_t now = <uint64_t>now_ns
        cdef double px
        if n < 0 or n > events.shape[0]:
            raise IndexError(f"n {n} outside {events.shape[0]} events")
        if out.external:
            raise LowlatError("the output batch is in external-buffer mode: clear() it first")
        for i in range(n):
            e = &events[i]
            if e.book >= <uint32_t>self._n_books:
                continue
            k = e.book
            bo = &self._books[k]
            if not _fits(out, 3, 3 * bo.max_msg):
                return i
            px = _round9(e.price * bo.tick)
            if e.kind == EV_L2:
                self._put(k, OUT_L2, out, fb_build_l2_update(s, bo.sym, bo.sym_len, e.seq, e.side, px,
                                                             <uint64_t>e.qty, <uint32_t>e.aux, now))
                continue
            size = fb_execution_report_size(bo.sym_len, -1)
            if e.kind == EV_FILL:
                self._put(k, OUT_TRADE, out, fb_build_trade(s, e.trade_id, bo.sym, bo.sym_len, px, <uint32_t>e.qty,
                                                            e.side, e.maker_oid, e.oid, now, e.seq))
                fb_build_execution_report(s, e.oid, bo.sym, bo.sym_len, e.account, e.side, ST_PARTIALLY_FILLED, 0,
                                          e.trade_id, e.maker_oid, e.oid, False, px, <uint32_t>e.qty,
                                          <uint32_t>e.leaves, 0, now, NULL, -1)
                self._put(k, OUT_EXEC, out, size)
                fb_build_execution_report(s, e.maker_oid, bo.sym, bo.sym_len, 0, 1 - e.side, ST_PARTIALLY_FILLED,
                                          0, e.trade_id, e.maker_oid, e.oid, True, px, <uint32_t>e.qty,
                                          <uint32_t>e.aux, 0, now, NULL, -1)
                self._put(k, OUT_EXEC, out, size)
            elif (e.kind == EV_ACCEPTED or e.kind == EV_REJECTED or e.kind == EV_CANCELED
                  or e.kind == EV_EXPIRED):
                fb_build_execution_report(s, e.oid, bo.sym, bo.sym_len, e.account, e.side, _STATUS[e.kind],
                                          e.reason, 0, 0, 0, False, px, 0, <uint32_t>e.leaves, 0, now, NULL, -1)
                self._put(k, OUT_EXEC, out, size)
        return n

    def max_message_bytes(self) -> int:
        """The largest output message plus its subject, over all books (for sizing output batches)."""
        cdef Py_ssize_t k, m = 0
        for k in range(self._n_books):
            m = max(m, self._books[k].max_msg)
        return m

    def reject_counts(self):
        """A copy of the reject counts by ``Reject`` code (numpy int64[256], index = code)."""
        return self._reasons_arr.copy()
