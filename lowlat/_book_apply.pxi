# Included by _book.pyx.  The apply loops: the one place where commands (COMMAND_DTYPE rows or framed
# FlatBuffer CommandMsg) are applied to one Book or routed across an Engine's books, with the event-room
# check, the overflow error and the debug check shared by all four batch entry points.

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


cdef struct FrameRun:             # state of one batch call (apply_batch or apply_frames, Book or Engine)
    BookCore** cores              # books (one for a Book)
    const char** syms             # symbol bytes per book (Engine.apply_frames routing), NULL otherwise
    Py_ssize_t* sym_lens
    Py_ssize_t n_books
    bint by_index                 # apply_batch of an Engine: route each command by its book field
    BookEvent* out
    int64_t cap
    int64_t n_ev                  # events written so far
    int64_t* lat                  # per-command / per-frame ns, or NULL
    Py_ssize_t lat_n
    Py_ssize_t pos                # apply_frames: bytes consumed (complete frames handled)
    Py_ssize_t n_frames           # commands / frames done (the caller resumes there)
    int64_t need                  # bound that did not fit (when stopping early)
    int rc                        # 0 ok, -1 first command/frame does not fit, -2 overflow


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
    # True when the next command's `need` events may not fit: record the bound and stop before it (the caller
    # resumes there); when nothing was written yet, out can never hold it (rc -1 -> ValueError).
    if need <= fr.cap - fr.n_ev:
        return False
    fr.need = need
    if fr.n_ev == 0:
        fr.rc = -1
    return True


cdef inline void _fr_bind(FrameRun* fr, BookCore* b) noexcept nogil:
    # point b's event writer at the free tail of out (events of all books interleave in command order)
    b.ev = fr.out + fr.n_ev
    b.ev_cap = fr.cap - fr.n_ev
    b.ev_n = 0


cdef inline int _fr_apply(FrameRun* fr, BookCore* b, const BookCommand* c, int64_t* lat_ns) except -1 nogil:
    # Apply one command whose worst-case events fit (the caller checked) to b, writing at the free tail of out.
    # The one place every batch path counts events, turns an overflow of the bound into rc -2 (RuntimeError
    # after the nogil block) and runs the debug invariant scan.  Returns 1 to go on, 0 to stop.
    _fr_bind(fr, b)
    _apply_timed(b, c, lat_ns)
    fr.n_ev += b.ev_n
    if b.overflow:
        fr.rc = -2
        return 0
    if LOWLAT_DEBUG:
        book_check_c(b)
    return 1


cdef int _run_commands(FrameRun* fr, const BookCommand* cmds, Py_ssize_t n) except -1 nogil:
    # Apply cmds[0:n] in order until the end, or until the next command's worst-case events may not fit in out
    # (fr.n_frames counts the commands done).  A Book applies every command to cores[0]; an Engine (by_index)
    # routes by the command's book field and answers an unknown index with one REJECTED/UNKNOWN_SYMBOL event.
    cdef Py_ssize_t i
    cdef const BookCommand* c
    cdef BookCore* b
    cdef BookEvent* e
    cdef int64_t* lat = NULL
    cdef uint64_t nb = <uint64_t>fr.n_books
    for i in range(n):
        c = &cmds[i]
        if fr.lat != NULL:
            lat = &fr.lat[i]
        if fr.by_index and c.book >= nb:
            if fr.n_ev >= fr.cap:
                break
            e = &fr.out[fr.n_ev]
            _raw_reject(e, c.book, c.oid, c.account, REJ_UNKNOWN_SYMBOL)
            e.price = c.price
            e.qty = c.qty
            e.side = c.side
            fr.n_ev += 1
            if lat != NULL:
                lat[0] = 0
            fr.n_frames = i + 1
            continue
        if i + 24 < n and (not fr.by_index or cmds[i + 24].book < nb):
            _prefetch_id(fr.cores[cmds[i + 24].book if fr.by_index else 0], &cmds[i + 24])
        if i + 10 < n and (not fr.by_index or cmds[i + 10].book < nb):
            _prefetch_order(fr.cores[cmds[i + 10].book if fr.by_index else 0], &cmds[i + 10])
        b = fr.cores[c.book if fr.by_index else 0]
        # cheap sufficient test first (any command writes <= 3 * live orders + 8 events)
        if fr.cap - fr.n_ev < 3 * b.n_live + 16 and _fr_no_room(fr, book_event_bound_c(b, c)):
            break
        if not _fr_apply(fr, b, c, lat):
            break
        fr.n_frames = i + 1
    return 0


cdef int _run_frames(FrameRun* fr, const char* buf, Py_ssize_t n) except -1 nogil:
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
                    if not _fr_apply(fr, fr.cores[k], &c, NULL):
                        return 0
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
                    if r != REJ_ACCEPTED:
                        _fr_bind(fr, b)
                        _emit(b, EV_REJECTED, c.side if c.op == CMD_NEW else -1, r, c.oid, 0, 0, c.account,
                              0, c.qty, 0, 0)
                        fr.n_ev += b.ev_n
                    elif not _fr_apply(fr, b, &c, NULL):
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


cdef int _fr_raise(const FrameRun* fr, bint commands) except -1:
    # turn a run's status into the caller-facing error (after the nogil block)
    if fr.rc == -1:
        if commands:
            raise ValueError(f"events_out is too small for command {fr.n_frames} (needs up to {fr.need} rows)")
        raise ValueError(f"events_out is too small for the next frame (needs up to {fr.need} rows)")
    if fr.rc == -2:
        _raise_overflow()
    return 0


cdef int _raise_overflow() except -1:
    # A command wrote more events than book_event_bound_c promised: a bug in the bound, never an input error.
    raise RuntimeError("order book event buffer overflow (bug: bound was too small)")
