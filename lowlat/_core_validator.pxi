# Included by _core.pyx.  Order validation: per-instrument rules, the symbol table and the nogil check
# (one price rule, lowlat._price), with scalar and batch paths.

@cython.final
cdef class InstrumentRules:
    """Validation rules of one instrument.

    Parameters
    ----------
    symbol : str
        Exact symbol (compared as UTF-8 bytes).
    tick_size : float
        Price increment, finite and > 0; a limit price must be a whole number >= 1 of ticks (tolerance 1e-6
        tick) below 2**63 ticks (see :class:`Validator`).
    lot_size, min_qty, max_qty : int
        Quantity must be a multiple of ``lot_size`` and within [min_qty, max_qty] (lots).
    ref_price, band : float
        Collar: limit prices outside ``[ref_price * (1 - band), ref_price * (1 + band)]`` are rejected;
        ``ref_price=0`` disables the collar.
    max_notional : float
        ``price * quantity`` upper bound for limit orders (quote currency).
    """

    def __init__(self, str symbol not None, *, double tick_size=0.01, uint32_t lot_size=1, uint32_t min_qty=1,
                 uint32_t max_qty=0xFFFF_FFFF, double ref_price=0.0, double band=0.1,
                 double max_notional=INFINITY):
        if not (tick_size > 0 and isfinite(tick_size)):
            raise ValueError(f"tick_size must be finite and > 0, got {tick_size}")
        if lot_size < 1:
            raise ValueError("lot_size must be >= 1")
        if min_qty > max_qty:
            raise ValueError(f"min_qty {min_qty} > max_qty {max_qty}")
        if not (ref_price >= 0 and isfinite(ref_price)) or not (band >= 0 and isfinite(band)):
            raise ValueError("ref_price and band must be finite and >= 0")
        if not (max_notional > 0):
            raise ValueError("max_notional must be > 0")
        self.symbol = symbol
        self.tick_size = tick_size
        self.lot_size = lot_size
        self.min_qty = min_qty
        self.max_qty = max_qty
        self.ref_price = ref_price
        self.band = band
        self.max_notional = max_notional

    @property
    def band_lo(self) -> float:
        """Lowest accepted limit price (``-inf`` without a collar)."""
        return self.ref_price * (1.0 - self.band) if self.ref_price > 0 else -INFINITY

    @property
    def band_hi(self) -> float:
        """Highest accepted limit price (``inf`` without a collar)."""
        return self.ref_price * (1.0 + self.band) if self.ref_price > 0 else INFINITY

    def __repr__(self) -> str:
        return (f"InstrumentRules({self.symbol!r}, tick_size={self.tick_size!r}, lot_size={self.lot_size}, "
                f"min_qty={self.min_qty}, max_qty={self.max_qty}, ref_price={self.ref_price!r}, "
                f"band={self.band!r}, max_notional={self.max_notional!r})")


cdef inline Py_ssize_t _v_lookup(const VSlot* slots, Py_ssize_t mask, const char* sym,
                                 Py_ssize_t n) noexcept nogil:
    # Rule index of the symbol, -1 when unknown.  At most half the slots are used, so the probe ends.
    cdef uint64_t key
    cdef Py_ssize_t i
    cdef const VSlot* s
    if sym == NULL:
        return -1
    key = v_key(sym, n)
    i = v_slot(key, n, mask)
    while True:
        s = &slots[i]
        if s.rule < 0:
            return -1
        if s.key == key and s.len == n and (n <= 8 or v_eq(s.sym, sym, n)):
            return s.rule
        i = (i + 1) & mask


cdef inline reject_t _v_check(const VRule* rules, const VSlot* slots, Py_ssize_t mask, uint32_t present,
                              const char* sym, Py_ssize_t sym_len, int8_t side, int8_t order_type, int8_t tif,
                              uint32_t q, double px) noexcept nogil:
    # The rules, in the documented order (Validator docstring; tests/reference/ref_validator.py mirrors it).
    cdef Py_ssize_t ri
    cdef const VRule* r
    cdef reject_t rc
    cdef price_t ticks
    if (present & (FBP_ORDER_ID | FBP_ORDER_SYMBOL | FBP_ORDER_QUANTITY)) != \
            (FBP_ORDER_ID | FBP_ORDER_SYMBOL | FBP_ORDER_QUANTITY):
        return REJ_MISSING_FIELD
    if order_type != OT_MARKET and not (present & FBP_ORDER_PRICE):
        return REJ_MISSING_FIELD
    ri = _v_lookup(slots, mask, sym, sym_len)
    if ri < 0:
        return REJ_UNKNOWN_SYMBOL
    r = &rules[ri]
    if <uint8_t>side > 1:                        # as unsigned: -1 -> 255
        return REJ_BAD_SIDE
    if <uint8_t>order_type > OT_MARKET:
        return REJ_BAD_ORDER_TYPE
    if <uint8_t>tif > TIF_FOK:
        return REJ_BAD_TIME_IN_FORCE
    if q == 0:
        return REJ_BAD_QUANTITY
    if <uint64_t>q * r.lot_m > r.lot_m - 1:      # q % lot != 0, see VRule.lot_m
        return REJ_OFF_LOT
    if q < r.min_qty:
        return REJ_QTY_BELOW_MIN
    if q > r.max_qty:
        return REJ_QTY_ABOVE_MAX
    if order_type == OT_MARKET:
        return REJ_ACCEPTED
    # the one price -> ticks rule (lowlat/_price.pxd), shared with the book's FlatBuffer path
    rc = price_to_ticks(px, r.tick_size, &ticks)
    if rc != REJ_ACCEPTED:
        return rc
    if px < r.band_lo or px > r.band_hi:
        return REJ_PRICE_OUT_OF_BAND
    if px * <double>q > r.max_notional:
        return REJ_NOTIONAL_TOO_LARGE
    return REJ_ACCEPTED


@cython.final
cdef class Validator:
    """Checks orders against per-instrument :class:`InstrumentRules`; rejects are data (``Reject`` codes).

    Check order (the first failing check gives the code): MALFORMED (buffer fails verification),
    MISSING_FIELD (id, symbol, quantity absent; price absent on a non-MARKET order), UNKNOWN_SYMBOL, BAD_SIDE,
    BAD_ORDER_TYPE, BAD_TIME_IN_FORCE, BAD_QUANTITY (0), OFF_LOT, QTY_BELOW_MIN, QTY_ABOVE_MAX; then, for
    non-MARKET orders only: BAD_PRICE (not finite or <= 0, or ``price / tick_size`` not below 2**63, the int64
    tick range), OFF_TICK (``price / tick_size`` not within 1e-6 of a whole number >= 1 of ticks),
    PRICE_OUT_OF_BAND, NOTIONAL_TOO_LARGE.  The price rule is the one of :func:`lowlat.to_ticks` and of the
    book's FlatBuffer path (``Book.apply_frames``): the same price gets the same code everywhere.
    The object is immutable after construction and safe to share between threads.
    """

    def __cinit__(self):
        self._rules = NULL
        self._slots = NULL
        self._arena = NULL
        self._n_rules = 0
        self._mask = 0

    def __init__(self, rules):
        cdef Py_ssize_t i, nslots = 4, total = 0, off = 0
        cdef VRule* r
        cdef VSlot* s
        cdef const char* p
        cdef Py_ssize_t ln
        cdef uint64_t h
        rules = tuple(rules)
        for x in rules:
            if not isinstance(x, InstrumentRules):
                raise TypeError(f"Validator expects InstrumentRules, got {type(x).__name__}")
        syms = [(<InstrumentRules>x).symbol.encode() for x in rules]
        if len(set(syms)) != len(syms):
            raise ValueError("Validator: duplicate symbol in rules")
        if self._rules != NULL:
            raise RuntimeError("Validator.__init__ called twice")
        while nslots < 2 * len(rules):
            nslots *= 2
        for sb in syms:
            total += len(sb)
        self._rules = <VRule*>PyMem_RawCalloc(max(1, len(rules)), sizeof(VRule))
        self._slots = <VSlot*>PyMem_RawCalloc(nslots, sizeof(VSlot))
        self._arena = <char*>PyMem_RawCalloc(max(1, total), 1)
        if self._rules == NULL or self._slots == NULL or self._arena == NULL:
            raise MemoryError()
        self._mask = nslots - 1
        for i in range(nslots):
            self._slots[i].rule = -1
        for i, x in enumerate(rules):
            ir = <InstrumentRules>x
            r = &self._rules[i]
            r.inv_tick = 1.0 / ir.tick_size
            r.tick_size = ir.tick_size
            r.band_lo = ir.band_lo
            r.band_hi = ir.band_hi
            r.max_notional = ir.max_notional
            r.lot_m = (0xFFFF_FFFF_FFFF_FFFF // ir.lot_size + 1) & 0xFFFF_FFFF_FFFF_FFFF
            r.min_qty = ir.min_qty
            r.max_qty = ir.max_qty
            sb = syms[i]
            ln = len(sb)
            p = sb
            memcpy(self._arena + off, p, ln)
            h = v_key(self._arena + off, ln)
            j = v_slot(h, ln, self._mask)
            while self._slots[j].rule >= 0:
                j = (j + 1) & self._mask
            s = &self._slots[j]
            s.key = h
            s.sym = self._arena + off
            s.len = ln
            s.rule = i
            off += ln
        self._n_rules = len(rules)
        self.rules = rules

    def __dealloc__(self):
        PyMem_RawFree(self._rules)
        PyMem_RawFree(self._slots)
        PyMem_RawFree(self._arena)

    cdef Py_ssize_t _lookup_c(self, const char* sym, Py_ssize_t n) noexcept nogil:
        return _v_lookup(self._slots, self._mask, sym, n)

    cdef reject_t validate_order_c(self, const FbOrder* o) noexcept nogil:
        return _v_check(self._rules, self._slots, self._mask, o.present, o.symbol, o.symbol_len, o.side,
                        o.order_type, o.time_in_force, o.quantity, o.price)

    cdef reject_t validate_buf_c(self, const char* buf, Py_ssize_t n) noexcept nogil:
        cdef FbOrder o
        cdef Py_ssize_t ln, p, ln2
        cdef uint16_t coid
        # Fast path for the layout fb_build_order writes (what lowlat producers send): one comparison of the
        # root offset, the 28-byte vtable (as 3 words + 2 halves), the soffset and the symbol offset proves
        # every scalar sits at its canonical place inside buf[0:n] (n >= 93 > 85 = end of the table); then only
        # the strings need their length/NUL checks.  Anything else (flatc output, hostile bytes) takes the
        # generic verifier, so both paths give the same code for every input (property-tested).
        if (n >= 93 and ll_load_u32(buf) == 32 and ll_load_u64(buf + 4) == 0x000400080035001CULL
                and ll_load_u64(buf + 12) == 0x0018003000280010ULL and ll_load_u64(buf + 20) == 0x0020003300320031ULL
                and ll_load_u16(buf + 30) == 52 and ll_load_i32(buf + 32) == 28 and ll_load_u32(buf + 36) == 52):
            coid = ll_load_u16(buf + 28)
            if coid == 0 or coid == 44:
                ln = ll_load_u32(buf + 88)
                if ln > n - 93 or buf[92 + ln] != 0:
                    return REJ_MALFORMED
                if coid:
                    p = 76 + <Py_ssize_t>ll_load_u32(buf + 76)
                    if p > n - 4:
                        return REJ_MALFORMED
                    ln2 = ll_load_u32(buf + p)
                    if ln2 > n - p - 5 or buf[p + 4 + ln2] != 0:
                        return REJ_MALFORMED
                return _v_check(self._rules, self._slots, self._mask, 0xFFF, buf + 92, ln, ll_load_i8(buf + 80),
                                ll_load_i8(buf + 81), ll_load_i8(buf + 82), ll_load_u32(buf + 72),
                                ll_load_f64(buf + 48))
        if fb_read_order(buf, n, &o):
            return REJ_MALFORMED
        return self.validate_order_c(&o)

    def validate(self, buf) -> int:
        """Validate one Order buffer; return its ``Reject`` code (0 = accepted, MALFORMED if it fails
        verification).  Never raises for bad bytes.  Cost: ~60-100 ns."""
        cdef Py_buffer view
        cdef const char* p
        cdef Py_ssize_t n
        cdef int held = _acquire(buf, &view, &p, &n)
        cdef reject_t code = self.validate_buf_c(p, n)
        if held:
            PyBuffer_Release(&view)
        return code

    def validate_frames(self, buf, uint8_t[::1] out_codes not None) -> int:
        """Validate every frame of a frame buffer (see :func:`frame`) in one ``nogil`` loop.

        Parameters
        ----------
        buf : bytes-like frame buffer
        out_codes : numpy.ndarray[uint8]
            Receives one ``Reject`` code per frame; must hold at least :func:`count_frames` entries.

        Returns
        -------
        int
            Number of frames validated.  Cost: ~10-20 ns/order.

        Raises
        ------
        DecodeError
            The last frame is truncated; checked BEFORE the loop, so nothing is written.
        ValueError
            ``out_codes`` is too short.
        """
        cdef Py_buffer view
        cdef const char* p
        cdef Py_ssize_t n, bad = 0, count, i, pos = 0, ln
        cdef int held = _acquire(buf, &view, &p, &n)
        try:
            count = fb_scan_frames(p, n, &bad)
            if count < 0:
                raise DecodeError(f"truncated frame at byte offset {bad} of a {n}-byte frame buffer")
            if out_codes.shape[0] < count:
                raise ValueError(f"out_codes has {out_codes.shape[0]} entries, the buffer {count} frames")
            with nogil:
                for i in range(count):
                    ln = ll_load_u32(p + pos)
                    out_codes[i] = self.validate_buf_c(p + pos + 4, ln)
                    pos += 4 + ln
            return count
        finally:
            if held:
                PyBuffer_Release(&view)

    def validate_many(self, buffers, uint8_t[::1] out_codes not None) -> int:
        """Validate a sequence of separate Order buffers (e.g. NATS payloads) in one ``nogil`` loop.

        Pointers to every buffer are collected first (bytes directly, other exporters through the buffer
        protocol, released afterwards), then validated without the GIL.  Returns ``len(buffers)``.
        """
        cdef Py_ssize_t n, i, held = 0
        cdef const char** ptrs = NULL
        cdef Py_ssize_t* lens = NULL
        cdef Py_buffer* views = NULL
        if not isinstance(buffers, (list, tuple)):
            buffers = list(buffers)
        n = len(buffers)
        if out_codes.shape[0] < n:
            raise ValueError(f"out_codes has {out_codes.shape[0]} entries for {n} buffers")
        if n == 0:
            return 0
        ptrs = <const char**>PyMem_RawMalloc(n * sizeof(char*))
        lens = <Py_ssize_t*>PyMem_RawMalloc(n * sizeof(Py_ssize_t))
        try:
            if ptrs == NULL or lens == NULL:
                raise MemoryError()
            for i in range(n):
                b = buffers[i]
                if PyBytes_CheckExact(b):
                    ptrs[i] = PyBytes_AS_STRING(b)
                    lens[i] = PyBytes_GET_SIZE(b)
                else:
                    if views == NULL:
                        views = <Py_buffer*>PyMem_RawCalloc(n, sizeof(Py_buffer))
                        if views == NULL:
                            raise MemoryError()
                    PyObject_GetBuffer(b, &views[held], PyBUF_SIMPLE)
                    ptrs[i] = <const char*>views[held].buf
                    lens[i] = views[held].len
                    held += 1
            with nogil:
                for i in range(n):
                    out_codes[i] = self.validate_buf_c(ptrs[i], lens[i])
            return n
        finally:
            for i in range(held):
                PyBuffer_Release(&views[i])
            PyMem_RawFree(views)
            PyMem_RawFree(ptrs)
            PyMem_RawFree(lens)

    def __repr__(self) -> str:
        return f"Validator({list(self.rules)!r})"


def _validate_generic(Validator v, buf) -> int:
    """Test hook: validate through the generic verifier only (skipping validate_buf_c's canonical fast path)."""
    cdef Py_buffer view
    cdef const char* p
    cdef Py_ssize_t n
    cdef FbOrder o
    cdef int held = _acquire(buf, &view, &p, &n)
    cdef reject_t code = REJ_MALFORMED if fb_read_order(p, n, &o) else v.validate_order_c(&o)
    if held:
        PyBuffer_Release(&view)
    return code
