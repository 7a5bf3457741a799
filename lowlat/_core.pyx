# lowlat._core: verified zero-copy FlatBuffers reads, the Order encoder, framing and the order Validator.
# The C-level readers/encoder live in _core.pxd (inline, cimportable); this file is the Python boundary.
import struct as _struct
from collections import namedtuple as _namedtuple

from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE, PyBUF_WRITABLE
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_CheckExact, PyBytes_FromStringAndSize
from cpython.mem cimport PyMem_RawCalloc, PyMem_RawMalloc, PyMem_RawFree
from cpython.unicode cimport PyUnicode_DecodeUTF8, PyUnicode_Check
from libc.math cimport INFINITY, fabs, isfinite
from libc.string cimport memcmp, memcpy
cimport cython

cimport lowlat._types as _t
from lowlat._price cimport price_to_ticks
from lowlat._types cimport price_t
from lowlat._types cimport (LOWLAT_DEBUG, OT_LIMIT, OT_MARKET, TIF_FOK, REJ_ACCEPTED, REJ_MALFORMED,
                            REJ_MISSING_FIELD, REJ_UNKNOWN_SYMBOL, REJ_BAD_SIDE, REJ_BAD_PRICE,
                            REJ_BAD_QUANTITY, REJ_OFF_TICK, REJ_OFF_LOT, REJ_QTY_BELOW_MIN, REJ_QTY_ABOVE_MAX,
                            REJ_PRICE_OUT_OF_BAND, REJ_NOTIONAL_TOO_LARGE, REJ_BAD_ORDER_TYPE,
                            REJ_BAD_TIME_IN_FORCE)

from lowlat.enums import CommandType, OrderType, Side, StpMode, TimeInForce
from lowlat.errors import DecodeError

include "_fbs_specs.pxi"

cdef extern from "Python.h":
    const char* PyUnicode_AsUTF8AndSize(object s, Py_ssize_t* size) except NULL

DEBUG = bool(LOWLAT_DEBUG)
FRAME_HEADER_SIZE = 4

# Field ids of finance.Order, for OrderView.present.
ORDER_FIELDS = tuple(f[0] for f in _FB_TABLES["Order"])

cdef tuple _SIDES = (Side.BUY, Side.SELL)
cdef tuple _OTYPES = (OrderType.LIMIT, OrderType.MARKET)
cdef tuple _TIFS = (TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK)
cdef tuple _STPS = tuple(StpMode)


cdef inline object _enum_or_int(tuple members, int v):
    return members[v] if 0 <= v < len(members) else v


cdef object _raise_decode(int rc, str what, Py_ssize_t n):
    raise DecodeError(f"invalid {what} buffer ({n} bytes): {fb_strerror(rc).decode()}")


# ---------------------------------------------------------------------------------------------------------
# Buffers.  bytes is the common case (NATS/ZeroMQ payloads) and is read without the buffer protocol.

cdef int _acquire(object obj, Py_buffer* view, const char** p, Py_ssize_t* n) except -1:
    # Returns 1 when `view` must be released, 0 for bytes (no view taken).
    if PyBytes_CheckExact(obj):
        p[0] = PyBytes_AS_STRING(obj)
        n[0] = PyBytes_GET_SIZE(obj)
        return 0
    PyObject_GetBuffer(obj, view, PyBUF_SIMPLE)
    p[0] = <const char*>view.buf
    n[0] = view.len
    return 1


cdef int _utf8(object s, const char** p, Py_ssize_t* n, str what) except -1:
    # str/bytes -> pointer + length (str: CPython's cached UTF-8, no copy for ASCII); None -> NULL.
    if s is None:
        p[0] = NULL
        n[0] = -1
    elif PyUnicode_Check(s):
        p[0] = PyUnicode_AsUTF8AndSize(s, n)
    elif PyBytes_CheckExact(s):
        p[0] = PyBytes_AS_STRING(s)
        n[0] = PyBytes_GET_SIZE(s)
    else:
        raise TypeError(f"{what} must be str, bytes or None, not {type(s).__name__}")
    if n[0] > 0xFFFF_FFF0:
        raise ValueError(f"{what} too long for a FlatBuffers string")
    return 0


# A one-entry cache of the last decoded symbol: a stream of orders mostly repeats symbols, and returning the
# same str object saves the UTF-8 decode and an allocation per read.
cdef char _sym_cache[32]
cdef Py_ssize_t _sym_cache_len = -1
cdef object _sym_cache_obj = None


cdef inline object _str(const char* s, Py_ssize_t n, bint cache):
    global _sym_cache_len, _sym_cache_obj
    if s == NULL:
        return None
    if cache and n == _sym_cache_len and v_eq(s, _sym_cache, n):
        return _sym_cache_obj
    try:
        r = PyUnicode_DecodeUTF8(s, n, NULL)
    except UnicodeDecodeError as e:
        raise DecodeError(f"string field is not valid UTF-8: {e}") from None
    if cache and n <= 32:
        memcpy(_sym_cache, s, n)
        _sym_cache_len = n
        _sym_cache_obj = r
    return r


# ---------------------------------------------------------------------------------------------------------
# Order: read, view, encode.

def read_order(object buf, /):
    """Verify ``buf`` as a ``finance.Order`` and return its six seed fields.

    Parameters
    ----------
    buf : bytes-like (bytes, bytearray, memoryview, numpy array, ...), C-contiguous

    Returns
    -------
    tuple
        ``(id, symbol, price, quantity, side, timestamp)`` as plain ``int``/``str``/``float`` (``side`` is the
        raw int, not :class:`~lowlat.Side`); ``symbol`` is ``None`` when absent.  Cost: ~50-80 ns for bytes.

    Raises
    ------
    DecodeError
        The buffer is truncated/hostile (offsets outside the buffer) or the symbol is not UTF-8.
    """
    cdef Py_buffer view
    cdef FbOrder o
    cdef int rc
    if PyBytes_CheckExact(buf):          # the common case: no buffer export, no try/finally
        rc = fb_read_order(PyBytes_AS_STRING(buf), PyBytes_GET_SIZE(buf), &o)
        if rc:
            _raise_decode(rc, "Order", PyBytes_GET_SIZE(buf))
        return (o.id, _str(o.symbol, o.symbol_len, True), o.price, o.quantity, o.side, o.timestamp)
    PyObject_GetBuffer(buf, &view, PyBUF_SIMPLE)
    try:
        rc = fb_read_order(<const char*>view.buf, view.len, &o)
        if rc:
            _raise_decode(rc, "Order", view.len)
        return (o.id, _str(o.symbol, o.symbol_len, True), o.price, o.quantity, o.side, o.timestamp)
    finally:
        PyBuffer_Release(&view)


def decode_order(object buf, /):
    """Verify ``buf`` as a ``finance.Order`` and return a zero-copy :class:`OrderView` over it.

    The view keeps ``buf`` alive (and, for non-bytes exporters, holds its buffer export, so a bytearray cannot be
    resized meanwhile).  Attribute reads decode lazily from the buffer.  Cost: ~100 ns.

    Raises
    ------
    DecodeError
        The buffer is truncated or hostile.
    """
    cdef OrderView v = OrderView.__new__(OrderView)
    cdef int rc
    v._held = _acquire(buf, &v._view, &v._buf, &v._n)
    v._owner = buf
    rc = fb_read_order(v._buf, v._n, &v._o)
    if rc:
        _raise_decode(rc, "Order", v._n)
    return v


@cython.final
cdef class OrderView:
    """A verified, zero-copy view of one ``finance.Order`` (see :func:`decode_order`).

    Enum fields come back as :mod:`lowlat.enums` members when the value is valid, else as the raw int (the
    validator rejects those).  Strings are decoded on each access; absent strings are ``None``.
    """

    def __cinit__(self):
        self._held = False

    def __dealloc__(self):
        if self._held:
            PyBuffer_Release(&self._view)
            self._held = False

    @property
    def id(self) -> int:
        return self._o.id

    @property
    def symbol(self):
        return _str(self._o.symbol, self._o.symbol_len, True)

    @property
    def price(self) -> float:
        return self._o.price

    @property
    def quantity(self) -> int:
        return self._o.quantity

    @property
    def side(self):
        return _enum_or_int(_SIDES, self._o.side)

    @property
    def timestamp(self) -> int:
        return self._o.timestamp

    @property
    def order_type(self):
        return _enum_or_int(_OTYPES, self._o.order_type)

    @property
    def time_in_force(self):
        return _enum_or_int(_TIFS, self._o.time_in_force)

    @property
    def post_only(self) -> bool:
        return bool(self._o.post_only)

    @property
    def account(self) -> int:
        return self._o.account

    @property
    def client_order_id(self):
        return _str(self._o.client_order_id, self._o.client_order_id_len, False)

    @property
    def stp(self):
        return _enum_or_int(_STPS, self._o.stp)

    @property
    def present(self) -> frozenset:
        """Names of the fields present in the buffer (absent fields read as the schema default)."""
        return frozenset(name for i, name in enumerate(ORDER_FIELDS) if self._o.present & (1 << i))

    def to_tuple(self) -> tuple:
        """The six seed fields, as :func:`read_order` returns them."""
        return (self._o.id, self.symbol, self._o.price, self._o.quantity, self._o.side, self._o.timestamp)

    def to_dict(self) -> dict:
        """Every field by name (enums as :mod:`lowlat.enums` members where valid)."""
        return {name: getattr(self, name) for name in ORDER_FIELDS}

    def __repr__(self) -> str:
        return "OrderView(" + ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items()) + ")"


def encode_order(uint64_t id, symbol, double price, uint32_t quantity, int8_t side, uint64_t timestamp, *,
                 int8_t order_type=0, int8_t time_in_force=0, bint post_only=False, uint64_t account=0,
                 client_order_id=None, int8_t stp=0):
    """Build a ``finance.Order`` FlatBuffer and return it as new ``bytes``.

    Parameters
    ----------
    id : int
        Order id (u64).
    symbol : str | bytes | None
        Instrument; ``None`` leaves the field absent.
    price : float
        Limit price in quote currency (ignored by the validator for MARKET orders).
    quantity : int
        Lots (u32).
    side, order_type, time_in_force, stp : int or :mod:`lowlat.enums` member
        Written as given (i8); the validator checks the ranges.
    timestamp : int
        ns since the epoch (u64).
    post_only : bool
    account : int
        Owner id (u64) used for self-trade prevention.
    client_order_id : str | bytes | None

    Returns
    -------
    bytes
        88 bytes + the strings (4-byte length, bytes, NUL, padded to 4).  Cost: ~100 ns.
    """
    cdef const char* sp
    cdef const char* cp
    cdef Py_ssize_t sn, cn
    _utf8(symbol, &sp, &sn, "symbol")
    _utf8(client_order_id, &cp, &cn, "client_order_id")
    out = PyBytes_FromStringAndSize(NULL, fb_order_size(sn, cn))
    fb_build_order(PyBytes_AS_STRING(out), id, sp, sn, price, quantity, side, timestamp, order_type,
                   time_in_force, post_only, account, cp, cn, stp)
    return out


def encode_order_into(buf, Py_ssize_t offset, uint64_t id, symbol, double price, uint32_t quantity,
                      int8_t side, uint64_t timestamp, *, int8_t order_type=0, int8_t time_in_force=0,
                      bint post_only=False, uint64_t account=0, client_order_id=None, int8_t stp=0) -> int:
    """Build a ``finance.Order`` into the writable buffer ``buf`` at ``offset``; no allocation.

    Same fields as :func:`encode_order`.  Returns the number of bytes written (the message occupies
    ``buf[offset:offset + n]``).  To build a frame, write the u32 length at ``offset`` yourself or use
    :func:`frame_order_into`.

    Raises
    ------
    ValueError
        ``offset`` is negative or the message does not fit.
    """
    return _order_into("encode_order_into", 0, buf, offset, id, symbol, price, quantity, side, timestamp,
                       order_type, time_in_force, post_only, account, client_order_id, stp)


def frame_order_into(buf, Py_ssize_t offset, uint64_t id, symbol, double price, uint32_t quantity,
                     int8_t side, uint64_t timestamp, *, int8_t order_type=0, int8_t time_in_force=0,
                     bint post_only=False, uint64_t account=0, client_order_id=None, int8_t stp=0) -> int:
    """Like :func:`encode_order_into` but writes a whole frame (u32 LE length + Order); returns 4 + length."""
    return _order_into("frame_order_into", 4, buf, offset, id, symbol, price, quantity, side, timestamp,
                       order_type, time_in_force, post_only, account, client_order_id, stp)


cdef Py_ssize_t _order_into(str fn, Py_ssize_t hdr, buf, Py_ssize_t offset, uint64_t id, symbol, double price,
                            uint32_t quantity, int8_t side, uint64_t timestamp, int8_t order_type,
                            int8_t time_in_force, bint post_only, uint64_t account, client_order_id,
                            int8_t stp) except -1:
    # Shared body of encode_order_into (hdr 0) and frame_order_into (hdr 4: a u32 LE length goes first).
    cdef const char* sp
    cdef const char* cp
    cdef Py_ssize_t sn, cn, size
    cdef Py_buffer view
    _utf8(symbol, &sp, &sn, "symbol")
    _utf8(client_order_id, &cp, &cn, "client_order_id")
    size = fb_order_size(sn, cn)
    PyObject_GetBuffer(buf, &view, PyBUF_WRITABLE)
    try:
        if offset < 0 or offset > view.len - size - hdr:
            raise ValueError(f"{fn}: {size + hdr} bytes do not fit at offset {offset} of a "
                             f"{view.len}-byte buffer")
        if hdr:
            ll_store_u32(<char*>view.buf + offset, <uint32_t>size)
        return hdr + fb_build_order(<char*>view.buf + offset + hdr, id, sp, sn, price, quantity, side,
                                    timestamp, order_type, time_in_force, post_only, account, cp, cn, stp)
    finally:
        PyBuffer_Release(&view)


# ---------------------------------------------------------------------------------------------------------
# Framing: [u32 little-endian payload length][payload], repeated, no padding, no trailer.

def frame(buffers) -> bytes:
    """Concatenate bytes-like messages into one frame buffer: each is prefixed by its u32 LE length."""
    parts = []
    for b in buffers:
        mv = memoryview(b).cast("B")
        if mv.nbytes > 0xFFFF_FFFF:
            raise ValueError("frame: a message is longer than 2**32 - 1 bytes")
        parts.append(_struct.pack("<I", mv.nbytes))
        parts.append(mv)
    return b"".join(parts)


def count_frames(buf) -> int:
    """Number of frames in a frame buffer.  Raises DecodeError if the last frame is truncated."""
    cdef Py_buffer view
    cdef const char* p
    cdef Py_ssize_t n, bad = 0, count
    cdef int held = _acquire(buf, &view, &p, &n)
    try:
        count = fb_scan_frames(p, n, &bad)
    finally:
        if held:
            PyBuffer_Release(&view)
    if count < 0:
        raise DecodeError(f"truncated frame at byte offset {bad} of a {n}-byte frame buffer")
    return count


def iter_frames(buf):
    """Yield each frame's payload as a zero-copy ``memoryview`` slice of ``buf``.

    Frames before a truncated tail are yielded; then :class:`DecodeError` is raised (nothing is skipped silently).
    """
    mv = memoryview(buf).cast("B")
    cdef Py_ssize_t n = mv.nbytes, pos = 0, ln
    while pos < n:
        if pos > n - 4:
            raise DecodeError(f"truncated frame header at byte offset {pos} of a {n}-byte frame buffer")
        ln = mv[pos] | (mv[pos + 1] << 8) | (mv[pos + 2] << 16) | (<Py_ssize_t>mv[pos + 3] << 24)
        if ln > n - pos - 4:
            raise DecodeError(f"truncated frame at byte offset {pos}: {ln}-byte payload, "
                              f"{n - pos - 4} bytes left")
        yield mv[pos + 4:pos + 4 + ln]
        pos += 4 + ln


# ---------------------------------------------------------------------------------------------------------
# Validation.

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


# ---------------------------------------------------------------------------------------------------------
# The other messages: a spec-driven codec (generated specs in _fbs_specs.pxi).  Not the hot path (~3-6 us per
# message); each message decodes to a named tuple whose fields are the schema's, in schema order.

cdef dict _SCALAR_FMT = {"u8": ("<B", 1), "i8": ("<b", 1), "bool": ("<?", 1), "u16": ("<H", 2),
                         "i16": ("<h", 2), "u32": ("<I", 4), "i32": ("<i", 4), "u64": ("<Q", 8),
                         "i64": ("<q", 8), "f32": ("<f", 4), "f64": ("<d", 8), "utype:Command": ("<B", 1)}


def _fields(tname):
    return [f for f in _FB_TABLES[tname] if not f[1].startswith("utype:")]


Level = _namedtuple("Level", [f[0] for f in _FB_STRUCTS["Level"][2]])
Level.__doc__ = "One price level of a BookSnapshot: price (quote currency), quantity (lots), order_count."
OrderMsg = _namedtuple("OrderMsg", [f[0] for f in _fields("Order")],
                       defaults=[f[3] for f in _fields("Order")][1:])
OrderMsg.__doc__ = "A finance.Order as a plain named tuple (for encode_command / decode_command)."
ValidationResult = _namedtuple("ValidationResult", [f[0] for f in _fields("ValidationResult")],
                               defaults=[f[3] for f in _fields("ValidationResult")][1:])
Cancel = _namedtuple("Cancel", [f[0] for f in _fields("Cancel")], defaults=[f[3] for f in _fields("Cancel")][1:])
Modify = _namedtuple("Modify", [f[0] for f in _fields("Modify")], defaults=[f[3] for f in _fields("Modify")][1:])
MassCancel = _namedtuple("MassCancel", [f[0] for f in _fields("MassCancel")],
                         defaults=[f[3] for f in _fields("MassCancel")][1:])
CommandMsg = _namedtuple("CommandMsg", ["cmd_type", "cmd", "sequence"])
ExecutionReport = _namedtuple("ExecutionReport", [f[0] for f in _fields("ExecutionReport")],
                              defaults=[f[3] for f in _fields("ExecutionReport")][1:])
Trade = _namedtuple("Trade", [f[0] for f in _fields("Trade")], defaults=[f[3] for f in _fields("Trade")][1:])
L2Update = _namedtuple("L2Update", [f[0] for f in _fields("L2Update")],
                       defaults=[f[3] for f in _fields("L2Update")][1:])
BookSnapshot = _namedtuple("BookSnapshot", [f[0] for f in _fields("BookSnapshot")],
                           defaults=[f[3] for f in _fields("BookSnapshot")][1:])

cdef dict _TUPLES = {"Order": OrderMsg, "ValidationResult": ValidationResult, "Cancel": Cancel,
                     "Modify": Modify, "MassCancel": MassCancel, "ExecutionReport": ExecutionReport,
                     "Trade": Trade, "L2Update": L2Update, "BookSnapshot": BookSnapshot}
cdef dict _COMMAND_OF = {OrderMsg: CommandType.ORDER, Cancel: CommandType.CANCEL, Modify: CommandType.MODIFY,
                         MassCancel: CommandType.MASS_CANCEL}
cdef tuple _COMMAND_TABLES = (None,) + _FB_UNIONS["Command"]


# Encoding plan per (table, which optional strings/vectors/union are present), computed once: the vtable bytes,
# the table's inline size and one struct.Struct that packs the whole table (soffset, scalars, offset
# placeholders) in one call.  Inline layout as flatc's builders align it: soffset at 0, one 4-byte field at 4 (if
# any), 8-byte fields from 8, then 4/2/1-byte fields; tables start 8-aligned, strings 4-aligned, struct vector
# elements aligned to the struct.  Every scalar is written (so readers never fall back to defaults); absent
# strings/vectors/union values are left out of the vtable.
cdef dict _PLANS = {}


cdef tuple _plan(str tname, tuple present):
    cdef Py_ssize_t ri = 0, maxslot = 2, cur, off
    spec = _FB_TABLES[tname]
    scal = []       # (slot, size, struct code, key): key = field name, or ref index (int)
    refs = []       # (slot, kind, name)
    for name, kind, slot, dflt in spec:
        if kind in _SCALAR_FMT:
            fmt, size = _SCALAR_FMT[kind]
            scal.append((slot, size, fmt[1], name))
        else:
            ri += 1
            if not present[ri - 1]:
                continue
            scal.append((slot, 4, "I", len(refs)))
            refs.append((slot, kind, name))
        maxslot = max(maxslot, slot)
    place = {}
    fours = [f for f in scal if f[1] == 4]
    if fours:
        place[fours[0][0]] = 4
    cur = 8
    for size in (8, 4, 2, 1):
        for f in scal:
            if f[1] == size and f[0] not in place:
                place[f[0]] = cur
                cur += size
    tsize = cur
    vsize = maxslot + 2
    vtab = bytearray(vsize)
    _struct.pack_into("<HH", vtab, 0, vsize, tsize)
    for slot, o in place.items():
        _struct.pack_into("<H", vtab, slot, o)
    fmt = "<i"
    cur = 4
    keys = []
    for slot, size, code, key in sorted(scal, key=lambda f: place[f[0]]):
        off = place[slot]
        if off > cur:
            fmt += f"{off - cur}x"
        fmt += code
        keys.append(key)
        cur = off + size
    if tsize > cur:
        fmt += f"{tsize - cur}x"
    return (bytes(vtab), tsize, _struct.Struct(fmt), tuple(keys),
            tuple((place[slot], kind, name) for slot, kind, name in refs))


cdef tuple _emit(str tname, dict values, Py_ssize_t base):
    # Bytes of [vtable][pad][table][referenced objects] to be placed at absolute offset `base` (4-aligned);
    # returns (chunk, absolute table position).
    cdef Py_ssize_t tpos, pos, k
    present = tuple(values.get(name) is not None for name, kind, slot, d in _FB_TABLES[tname]
                    if kind not in _SCALAR_FMT)
    plan = _PLANS.get((tname, present))
    if plan is None:
        plan = _PLANS[(tname, present)] = _plan(tname, present)
    vtab, tsize, st, keys, refs = plan
    tpos = base + len(vtab)
    tpos += (8 - tpos % 8) % 8
    parts = [vtab, bytes(tpos - base - len(vtab)), None]
    pos = tpos + tsize
    ref_off = []
    for off, kind, name in refs:
        v = values[name]
        if kind == "str":
            data = v.encode() if isinstance(v, str) else bytes(v)
            k = (4 - pos % 4) % 4
            parts.append(bytes(k))
            pos += k
            ref_off.append(pos - (tpos + off))
            ln = len(data)
            parts.append(_struct.pack("<I", ln) + data + bytes(1 + (4 - (ln + 1) % 4) % 4))
            pos += 4 + ln + 1 + (4 - (ln + 1) % 4) % 4
        elif kind.startswith("vec:"):
            ssize, salign, sfields = _FB_STRUCTS[kind[4:]]
            k = (salign - (pos + 4) % salign) % salign
            parts.append(bytes(k))
            pos += k
            ref_off.append(pos - (tpos + off))
            sst = _struct_packer(kind[4:])
            items = list(v)
            parts.append(_struct.pack("<I", len(items)) + b"".join(sst.pack(*item) for item in items))
            pos += 4 + ssize * len(items)
        else:   # union member table
            sub, sub_tpos = _emit(_COMMAND_TABLES[values["cmd_type_value"]], dict(zip(v._fields, v)), pos)
            ref_off.append(sub_tpos - (tpos + off))
            parts.append(sub)
            pos += len(sub)
    args = [values[key] if isinstance(key, str) else ref_off[key] for key in keys]
    try:
        parts[2] = st.pack(tpos - base, *args)
    except _struct.error as e:
        raise ValueError(f"{tname}: a field value does not fit its schema type: {e}") from None
    return b"".join(parts), tpos


cdef dict _STRUCT_PACKERS = {}


cdef object _struct_packer(str sname):
    st = _STRUCT_PACKERS.get(sname)
    if st is None:
        ssize, salign, sfields = _FB_STRUCTS[sname]
        fmt, cur = "<", 0
        for fname, fkind, foff in sfields:
            if foff > cur:
                fmt += f"{foff - cur}x"
            fmt += _SCALAR_FMT[fkind][0][1]
            cur = foff + _SCALAR_FMT[fkind][1]
        if ssize > cur:
            fmt += f"{ssize - cur}x"
        st = _STRUCT_PACKERS[sname] = _struct.Struct(fmt)
    return st


cdef bytes _encode_root(str tname, dict values):
    chunk, tpos = _emit(tname, values, 4)
    return _struct.pack("<I", tpos) + chunk


cdef object _load(const char* p, str kind):
    if kind == "u64":
        return ll_load_u64(p)
    if kind == "f64":
        return ll_load_f64(p)
    if kind == "u32":
        return ll_load_u32(p)
    if kind == "i8":
        return ll_load_i8(p)
    if kind == "u8" or kind.startswith("utype:"):
        return ll_load_u8(p)
    if kind == "bool":
        return ll_load_u8(p) != 0
    return _struct.unpack_from(_SCALAR_FMT[kind][0], (<char*>p)[:_SCALAR_FMT[kind][1]])[0]


cdef object _decode_table(str tname, const char* buf, Py_ssize_t n, Py_ssize_t pos):
    cdef FbTable t
    cdef Py_ssize_t f, start, count, i
    cdef const char* s
    cdef Py_ssize_t sl
    cdef int rc = fb_table_at(buf, n, pos, &t)
    if rc:
        _raise_decode(rc, tname, n)
    vals = []
    ctype = 0
    for name, kind, slot, dflt in _FB_TABLES[tname]:
        if kind == "str":
            rc = fb_string(&t, slot, &s, &sl)
            if rc:
                _raise_decode(rc, tname, n)
            vals.append(_str(s, sl, False))
        elif kind.startswith("vec:"):
            ssize, salign, sfields = _FB_STRUCTS[kind[4:]]
            rc = fb_vector(&t, slot, ssize, &start, &count)
            if rc:
                _raise_decode(rc, tname, n)
            levels = []
            for i in range(count):
                item = []
                for _, fkind, foff in sfields:
                    item.append(_load(buf + start + i * <Py_ssize_t>ssize + <Py_ssize_t>foff, fkind))
                levels.append(Level(*item))
            vals.append(tuple(levels))
        elif kind.startswith("union:"):
            if ctype == 0:
                vals.append(None)
                continue
            if ctype >= len(_COMMAND_TABLES):
                _raise_decode(FB_E_UNION, tname, n)
            f = fb_field(&t, slot, 4)
            if f <= 0:
                _raise_decode(FB_E_UNION if f == 0 else FB_E_FIELD, tname, n)
            vals.append(_decode_table(_COMMAND_TABLES[ctype], buf, n, f + <Py_ssize_t>ll_load_u32(buf + f)))
        else:
            f = fb_field(&t, slot, _SCALAR_FMT[kind][1])
            if f < 0:
                _raise_decode(FB_E_FIELD, tname, n)
            v = _load(buf + f, kind) if f else dflt
            if kind.startswith("utype:"):
                ctype = v
                continue
            vals.append(v)
    if tname == "CommandMsg":
        return CommandMsg(_enum_or_int(tuple(CommandType), ctype), vals[0], vals[1])
    return _TUPLES[tname](*vals)


cdef object _decode_root(str tname, buf):
    cdef Py_buffer view
    cdef const char* p
    cdef Py_ssize_t n
    cdef int held = _acquire(buf, &view, &p, &n)
    try:
        if n < 4:
            _raise_decode(FB_E_SHORT, tname, n)
        return _decode_table(tname, p, n, ll_load_u32(p))
    finally:
        if held:
            PyBuffer_Release(&view)


def encode_message(msg) -> bytes:
    """Encode any of the named tuples (``OrderMsg``, ``Cancel``, ``Modify``, ``MassCancel``,
    ``ValidationResult``, ``ExecutionReport``, ``Trade``, ``L2Update``, ``BookSnapshot``) as its FlatBuffer."""
    for tname, cls in _TUPLES.items():
        if type(msg) is cls:
            return _encode_root(tname, dict(zip(msg._fields, msg)))
    raise TypeError(f"encode_message: not a lowlat message tuple: {type(msg).__name__}")


def encode_command(cmd, *, uint64_t sequence=0) -> bytes:
    """Wrap an ``OrderMsg``/``Cancel``/``Modify``/``MassCancel`` in a ``finance.CommandMsg`` (the union's type
    byte tells the matching engine which command a frame holds).  ``sequence`` is the producer's counter."""
    ctype = _COMMAND_OF.get(type(cmd))
    if ctype is None:
        raise TypeError(f"encode_command: expected OrderMsg, Cancel, Modify or MassCancel, not "
                        f"{type(cmd).__name__}")
    return _encode_root("CommandMsg", {"cmd": cmd, "cmd_type": int(ctype), "cmd_type_value": int(ctype),
                                       "sequence": sequence})


def decode_command(buf):
    """Verify and decode a ``finance.CommandMsg`` -> ``CommandMsg(cmd_type: CommandType, cmd, sequence)`` where
    ``cmd`` is an ``OrderMsg``/``Cancel``/``Modify``/``MassCancel`` (``None`` for type NONE).
    Raises DecodeError on bad bytes or an unknown union type."""
    return _decode_root("CommandMsg", buf)


def command_type(buf) -> int:
    """Verify a CommandMsg root and return its union type byte (a ``CommandType`` value); DecodeError if bad."""
    cdef Py_buffer view
    cdef const char* p
    cdef Py_ssize_t n
    cdef uint8_t ct = 0
    cdef uint64_t seq = 0
    cdef FbTable sub
    cdef int rc
    cdef int held = _acquire(buf, &view, &p, &n)
    rc = fb_command_table(p, n, &ct, &seq, &sub)
    if held:
        PyBuffer_Release(&view)
    if rc:
        _raise_decode(rc, "CommandMsg", n)
    return ct


def encode_validation_result(uint64_t order_id, bint accepted, uint8_t reason, uint64_t timestamp=0,
                             symbol=None) -> bytes:
    """Build a ``finance.ValidationResult`` (reason: a ``Reject`` code; timestamp: ns)."""
    return encode_message(ValidationResult(order_id, accepted, reason, timestamp, symbol))


def encode_cancel(uint64_t order_id, symbol=None, uint64_t account=0, uint64_t timestamp=0) -> bytes:
    """Build a ``finance.Cancel``."""
    return encode_message(Cancel(order_id, symbol, account, timestamp))


def encode_modify(uint64_t order_id, symbol=None, double price=0.0, uint32_t quantity=0, uint64_t timestamp=0,
                  uint64_t account=0) -> bytes:
    """Build a ``finance.Modify`` (new price in quote currency, new quantity in lots)."""
    return encode_message(Modify(order_id, symbol, price, quantity, timestamp, account))


def encode_mass_cancel(uint64_t account, symbol=None, uint64_t timestamp=0) -> bytes:
    """Build a ``finance.MassCancel`` (symbol None = every symbol)."""
    return encode_message(MassCancel(account, symbol, timestamp))


def encode_execution_report(*args, **kwargs) -> bytes:
    """Build a ``finance.ExecutionReport``; arguments as the ``ExecutionReport`` named tuple's fields."""
    return encode_message(ExecutionReport(*args, **kwargs))


def encode_trade(*args, **kwargs) -> bytes:
    """Build a ``finance.Trade``; arguments as the ``Trade`` named tuple's fields."""
    return encode_message(Trade(*args, **kwargs))


def encode_l2_update(*args, **kwargs) -> bytes:
    """Build a ``finance.L2Update``; arguments as the ``L2Update`` named tuple's fields."""
    return encode_message(L2Update(*args, **kwargs))


def encode_book_snapshot(*args, **kwargs) -> bytes:
    """Build a ``finance.BookSnapshot``; ``bids``/``asks`` are sequences of ``Level`` (or 3-tuples)."""
    return encode_message(BookSnapshot(*args, **kwargs))


def decode_validation_result(buf):
    """Verify and decode a ``finance.ValidationResult``; DecodeError on bad bytes."""
    return _decode_root("ValidationResult", buf)


def decode_cancel(buf):
    """Verify and decode a ``finance.Cancel``; DecodeError on bad bytes."""
    return _decode_root("Cancel", buf)


def decode_modify(buf):
    """Verify and decode a ``finance.Modify``; DecodeError on bad bytes."""
    return _decode_root("Modify", buf)


def decode_mass_cancel(buf):
    """Verify and decode a ``finance.MassCancel``; DecodeError on bad bytes."""
    return _decode_root("MassCancel", buf)


def decode_execution_report(buf):
    """Verify and decode a ``finance.ExecutionReport``; DecodeError on bad bytes."""
    return _decode_root("ExecutionReport", buf)


def decode_trade(buf):
    """Verify and decode a ``finance.Trade``; DecodeError on bad bytes."""
    return _decode_root("Trade", buf)


def decode_l2_update(buf):
    """Verify and decode a ``finance.L2Update``; DecodeError on bad bytes."""
    return _decode_root("L2Update", buf)


def decode_book_snapshot(buf):
    """Verify and decode a ``finance.BookSnapshot`` (levels as ``Level`` tuples); DecodeError on bad bytes."""
    return _decode_root("BookSnapshot", buf)


def decode_order_msg(buf):
    """Verify and decode a ``finance.Order`` into an ``OrderMsg`` named tuple (a copy; see decode_order)."""
    return _decode_root("Order", buf)


def _c_constants() -> dict:
    """The C enum constants of lowlat/_types.pxd and the generated slot file, for the enum-mirror test."""
    return {
        "BID": _t.BID,
        "ASK": _t.ASK,
        "OT_LIMIT": _t.OT_LIMIT,
        "OT_MARKET": _t.OT_MARKET,
        "TIF_GTC": _t.TIF_GTC,
        "TIF_IOC": _t.TIF_IOC,
        "TIF_FOK": _t.TIF_FOK,
        "STP_NONE": _t.STP_NONE,
        "STP_CANCEL_NEWEST": _t.STP_CANCEL_NEWEST,
        "STP_CANCEL_OLDEST": _t.STP_CANCEL_OLDEST,
        "STP_CANCEL_BOTH": _t.STP_CANCEL_BOTH,
        "STP_DECREMENT_AND_CANCEL": _t.STP_DECREMENT_AND_CANCEL,
        "REJ_ACCEPTED": _t.REJ_ACCEPTED,
        "REJ_MALFORMED": _t.REJ_MALFORMED,
        "REJ_MISSING_FIELD": _t.REJ_MISSING_FIELD,
        "REJ_UNKNOWN_SYMBOL": _t.REJ_UNKNOWN_SYMBOL,
        "REJ_BAD_SIDE": _t.REJ_BAD_SIDE,
        "REJ_BAD_PRICE": _t.REJ_BAD_PRICE,
        "REJ_BAD_QUANTITY": _t.REJ_BAD_QUANTITY,
        "REJ_OFF_TICK": _t.REJ_OFF_TICK,
        "REJ_OFF_LOT": _t.REJ_OFF_LOT,
        "REJ_QTY_BELOW_MIN": _t.REJ_QTY_BELOW_MIN,
        "REJ_QTY_ABOVE_MAX": _t.REJ_QTY_ABOVE_MAX,
        "REJ_PRICE_OUT_OF_BAND": _t.REJ_PRICE_OUT_OF_BAND,
        "REJ_NOTIONAL_TOO_LARGE": _t.REJ_NOTIONAL_TOO_LARGE,
        "REJ_BAD_ORDER_TYPE": _t.REJ_BAD_ORDER_TYPE,
        "REJ_BAD_TIME_IN_FORCE": _t.REJ_BAD_TIME_IN_FORCE,
        "REJ_BOOK_FULL": _t.REJ_BOOK_FULL,
        "REJ_DUPLICATE_ORDER_ID": _t.REJ_DUPLICATE_ORDER_ID,
        "REJ_UNKNOWN_ORDER": _t.REJ_UNKNOWN_ORDER,
        "REJ_POST_ONLY_WOULD_CROSS": _t.REJ_POST_ONLY_WOULD_CROSS,
        "REJ_FOK_NOT_FILLABLE": _t.REJ_FOK_NOT_FILLABLE,
        "REJ_NO_LIQUIDITY": _t.REJ_NO_LIQUIDITY,
        "REJ_SELF_TRADE_PREVENTED": _t.REJ_SELF_TRADE_PREVENTED,
        "REJ_BAD_STP_MODE": _t.REJ_BAD_STP_MODE,
        "REJ_OUT_OF_RANGE": _t.REJ_OUT_OF_RANGE,
        "REJ_MARKET_POST_ONLY": _t.REJ_MARKET_POST_ONLY,
        "FB_COMMAND_NONE": FB_COMMAND_NONE,
        "FB_COMMAND_ORDER": FB_COMMAND_ORDER,
        "FB_COMMAND_CANCEL": FB_COMMAND_CANCEL,
        "FB_COMMAND_MODIFY": FB_COMMAND_MODIFY,
        "FB_COMMAND_MASS_CANCEL": FB_COMMAND_MASS_CANCEL,
    }


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
