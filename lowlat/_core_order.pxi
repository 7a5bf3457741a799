# Included by _core.pyx.  The Order message at the Python boundary: verified zero-copy reads (read_order,
# decode_order, OrderView over the caller's buffer) and the encoder into new or caller-allocated buffers.

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
