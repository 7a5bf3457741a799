"""Fixed-layout encoders for the messages the services emit, into memory the caller owns.

``encode_*`` return ``bytes`` (one allocation: the result); ``encode_*_into(buf, offset, ...)`` write into a
writable buffer at ``offset`` and return the bytes written (no allocation; ``ValueError`` when it does not fit).
Compiled stages ``cimport`` the ``fb_build_*`` functions of ``_encode.pxd`` directly.  The output is a standard
FlatBuffer (read it with ``lowlat.decode_*`` or any flatc-generated reader); every scalar is written.
Cost: ~30-60 ns per message from compiled code, ~0.3-0.5 µs through these Python wrappers (argument parsing).
"""

from cpython.buffer cimport PyBUF_WRITABLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.mem cimport PyMem_RawFree, PyMem_RawMalloc
from libc.stdint cimport int8_t, int32_t, uint8_t, uint32_t, uint64_t

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize


cdef bytes _text(object s, const char** p, Py_ssize_t* n):
    # str -> UTF-8, bytes-like as is, None -> absent (NULL, -1); returns the bytes p points into (keep it).
    if s is None:
        p[0] = NULL
        n[0] = -1
        return None
    b = s.encode() if isinstance(s, str) else bytes(s)
    if len(b) >= (1 << 31):
        raise ValueError("string longer than 2**31 bytes")
    p[0] = PyBytes_AS_STRING(b)
    n[0] = len(b)
    return b


cdef char* _out(object buf, Py_ssize_t offset, Py_ssize_t size, Py_buffer* view) except NULL:
    PyObject_GetBuffer(buf, view, PyBUF_WRITABLE)
    if offset < 0 or offset > view.len - size:
        PyBuffer_Release(view)
        raise ValueError(f"{size} bytes at offset {offset} do not fit a {view.len}-byte buffer")
    return <char*>view.buf + offset


def validation_result_size(symbol=None) -> int:
    """Encoded size of a ValidationResult with this symbol (None = absent)."""
    cdef const char* sp
    cdef Py_ssize_t sn
    cdef bytes ks
    ks = _text(symbol, &sp, &sn)
    return fb_validation_result_size(sn)


# Each message has one body, _<message>(o, ...), behind both of its wrappers: encode_<message> (into a new bytes
# object) and encode_<message>_into (into the caller's buffer).  _out_open/_out_close are where the two differ.
cdef struct _Out:
    char* p            # where the message goes
    bint into          # into the caller's buffer (view), else into a new bytes object
    Py_buffer view     # into: the caller's buffer, held from _out_open to _out_close


cdef object _out_open(_Out* o, object buf, Py_ssize_t offset, Py_ssize_t size):
    # Point o.p at `size` writable bytes: of `buf` at `offset` when o.into (returns None), else of a new bytes
    # object, which it returns for _out_close.
    if o.into:
        o.p = _out(buf, offset, size, &o.view)
        return None
    res = PyBytes_FromStringAndSize(NULL, size)
    o.p = PyBytes_AS_STRING(res)
    return res


cdef object _out_close(_Out* o, object res, Py_ssize_t n):
    # What the wrapper returns: the bytes object from _out_open, or (into) the n bytes written.
    if not o.into:
        return res
    PyBuffer_Release(&o.view)
    return n


cdef object _validation_result(_Out* o, object buf, Py_ssize_t offset, uint64_t order_id, bint accepted,
                               uint8_t reason, uint64_t timestamp, object symbol):
    cdef const char* sp
    cdef Py_ssize_t sn
    ks = _text(symbol, &sp, &sn)
    res = _out_open(o, buf, offset, fb_validation_result_size(sn))
    return _out_close(o, res, fb_build_validation_result(o.p, order_id, accepted, reason, timestamp, sp, sn))


def encode_validation_result(uint64_t order_id, bint accepted, uint8_t reason, uint64_t timestamp=0,
                             symbol=None) -> bytes:
    """A ``finance.ValidationResult`` (reason: ``Reject`` code; timestamp: ns; symbol None = absent)."""
    cdef _Out o
    o.into = False
    return _validation_result(&o, None, 0, order_id, accepted, reason, timestamp, symbol)


def encode_validation_result_into(buf, Py_ssize_t offset, uint64_t order_id, bint accepted, uint8_t reason,
                                  uint64_t timestamp=0, symbol=None) -> int:
    """Write a ValidationResult into ``buf`` at ``offset``; returns the bytes written."""
    cdef _Out o
    o.into = True
    return _validation_result(&o, buf, offset, order_id, accepted, reason, timestamp, symbol)


cdef object _execution_report(_Out* o, object buf, Py_ssize_t offset, uint64_t order_id, object symbol,
                              uint64_t account, int8_t side, uint8_t status, uint8_t reason, uint64_t trade_id,
                              uint64_t maker_order_id, uint64_t taker_order_id, bint is_maker, double last_price,
                              uint32_t last_quantity, uint32_t leaves_quantity, uint32_t cum_quantity,
                              uint64_t timestamp, object client_order_id):
    cdef const char* sp
    cdef const char* cp
    cdef Py_ssize_t sn, cn
    ks = _text(symbol, &sp, &sn)
    kc = _text(client_order_id, &cp, &cn)
    res = _out_open(o, buf, offset, fb_execution_report_size(sn, cn))
    return _out_close(o, res, fb_build_execution_report(
        o.p, order_id, sp, sn, account, side, status, reason, trade_id, maker_order_id, taker_order_id, is_maker,
        last_price, last_quantity, leaves_quantity, cum_quantity, timestamp, cp, cn))


def encode_execution_report(uint64_t order_id=0, symbol=None, uint64_t account=0, int8_t side=0,
                            uint8_t status=0, uint8_t reason=0, uint64_t trade_id=0, uint64_t maker_order_id=0,
                            uint64_t taker_order_id=0, bint is_maker=False, double last_price=0.0,
                            uint32_t last_quantity=0, uint32_t leaves_quantity=0, uint32_t cum_quantity=0,
                            uint64_t timestamp=0, client_order_id=None) -> bytes:
    """A ``finance.ExecutionReport``; arguments in schema order (prices quote currency, quantities lots)."""
    cdef _Out o
    o.into = False
    return _execution_report(&o, None, 0, order_id, symbol, account, side, status, reason, trade_id,
                             maker_order_id, taker_order_id, is_maker, last_price, last_quantity, leaves_quantity,
                             cum_quantity, timestamp, client_order_id)


def encode_execution_report_into(buf, Py_ssize_t offset, uint64_t order_id=0, symbol=None, uint64_t account=0,
                                 int8_t side=0, uint8_t status=0, uint8_t reason=0, uint64_t trade_id=0,
                                 uint64_t maker_order_id=0, uint64_t taker_order_id=0, bint is_maker=False,
                                 double last_price=0.0, uint32_t last_quantity=0, uint32_t leaves_quantity=0,
                                 uint32_t cum_quantity=0, uint64_t timestamp=0, client_order_id=None) -> int:
    """Write an ExecutionReport into ``buf`` at ``offset``; returns the bytes written."""
    cdef _Out o
    o.into = True
    return _execution_report(&o, buf, offset, order_id, symbol, account, side, status, reason, trade_id,
                             maker_order_id, taker_order_id, is_maker, last_price, last_quantity, leaves_quantity,
                             cum_quantity, timestamp, client_order_id)


cdef object _trade(_Out* o, object buf, Py_ssize_t offset, uint64_t trade_id, object symbol, double price,
                   uint32_t quantity, int8_t aggressor_side, uint64_t maker_order_id, uint64_t taker_order_id,
                   uint64_t timestamp, uint64_t sequence):
    cdef const char* sp
    cdef Py_ssize_t sn
    ks = _text(symbol, &sp, &sn)
    res = _out_open(o, buf, offset, fb_trade_size(sn))
    return _out_close(o, res, fb_build_trade(o.p, trade_id, sp, sn, price, quantity, aggressor_side,
                                             maker_order_id, taker_order_id, timestamp, sequence))


def encode_trade(uint64_t trade_id=0, symbol=None, double price=0.0, uint32_t quantity=0, int8_t aggressor_side=0,
                 uint64_t maker_order_id=0, uint64_t taker_order_id=0, uint64_t timestamp=0,
                 uint64_t sequence=0) -> bytes:
    """A ``finance.Trade``; arguments in schema order."""
    cdef _Out o
    o.into = False
    return _trade(&o, None, 0, trade_id, symbol, price, quantity, aggressor_side, maker_order_id, taker_order_id,
                  timestamp, sequence)


def encode_trade_into(buf, Py_ssize_t offset, uint64_t trade_id=0, symbol=None, double price=0.0,
                      uint32_t quantity=0, int8_t aggressor_side=0, uint64_t maker_order_id=0,
                      uint64_t taker_order_id=0, uint64_t timestamp=0, uint64_t sequence=0) -> int:
    """Write a Trade into ``buf`` at ``offset``; returns the bytes written."""
    cdef _Out o
    o.into = True
    return _trade(&o, buf, offset, trade_id, symbol, price, quantity, aggressor_side, maker_order_id,
                  taker_order_id, timestamp, sequence)


cdef object _l2_update(_Out* o, object buf, Py_ssize_t offset, object symbol, uint64_t sequence, int8_t side,
                       double price, uint64_t quantity, uint32_t order_count, uint64_t timestamp):
    cdef const char* sp
    cdef Py_ssize_t sn
    ks = _text(symbol, &sp, &sn)
    res = _out_open(o, buf, offset, fb_l2_update_size(sn))
    return _out_close(o, res, fb_build_l2_update(o.p, sp, sn, sequence, side, price, quantity, order_count,
                                                 timestamp))


def encode_l2_update(symbol=None, uint64_t sequence=0, int8_t side=0, double price=0.0, uint64_t quantity=0,
                     uint32_t order_count=0, uint64_t timestamp=0) -> bytes:
    """A ``finance.L2Update``; arguments in schema order."""
    cdef _Out o
    o.into = False
    return _l2_update(&o, None, 0, symbol, sequence, side, price, quantity, order_count, timestamp)


def encode_l2_update_into(buf, Py_ssize_t offset, symbol=None, uint64_t sequence=0, int8_t side=0,
                          double price=0.0, uint64_t quantity=0, uint32_t order_count=0,
                          uint64_t timestamp=0) -> int:
    """Write an L2Update into ``buf`` at ``offset``; returns the bytes written."""
    cdef _Out o
    o.into = True
    return _l2_update(&o, buf, offset, symbol, sequence, side, price, quantity, order_count, timestamp)


def encode_validation_results_into(buf, Py_ssize_t offset, const uint64_t[::1] order_ids not None,
                                   const uint8_t[::1] codes not None, const int32_t[::1] symbol_index not None,
                                   symbols, uint64_t timestamp=0) -> int:
    """Write one ``ValidationResult`` per order into ``buf`` at ``offset``, framed as ``lowlat.frame`` does
    (``[u32 little-endian length][result]`` each); returns the bytes written.

    Result ``i``: ``order_ids[i]``, reason ``codes[i]`` (accepted when 0), ``timestamp`` (ns) and the symbol
    ``symbols[symbol_index[i]]`` (``symbols``: a sequence of str/bytes; index -1 = absent).  Everything is checked
    before anything is written: ``ValueError`` when the arrays' lengths differ, an index is outside ``symbols`` or
    the results do not fit.  The batch path of ``encode_validation_result_into``: one nogil loop, ~20-40 ns per
    result.
    """
    cdef Py_ssize_t n = order_ids.shape[0], ns, i, total = 0, pos = 0, size
    cdef int32_t k
    cdef const char** sp = NULL
    cdef Py_ssize_t* sn = NULL
    cdef Py_buffer view
    cdef char* o
    if codes.shape[0] != n or symbol_index.shape[0] != n:
        raise ValueError(f"order_ids, codes and symbol_index differ in length: {n}, {codes.shape[0]}, "
                         f"{symbol_index.shape[0]}")
    ns = len(symbols)
    sp = <const char**>PyMem_RawMalloc((ns + 1) * sizeof(char*))
    sn = <Py_ssize_t*>PyMem_RawMalloc((ns + 1) * sizeof(Py_ssize_t))
    try:
        if sp == NULL or sn == NULL:
            raise MemoryError()
        keep = []
        for i in range(ns):
            keep.append(_text(symbols[i], &sp[i], &sn[i]))
        for i in range(n):
            k = symbol_index[i]
            if k < -1 or k >= ns:
                raise ValueError(f"symbol_index[{i}] = {k} is outside -1..{ns - 1}")
            total += 4 + fb_validation_result_size(-1 if k < 0 else sn[k])
        o = _out(buf, offset, total, &view)
        with nogil:
            for i in range(n):
                k = symbol_index[i]
                size = fb_build_validation_result(o + pos + 4, order_ids[i], codes[i] == 0, codes[i], timestamp,
                                                  NULL if k < 0 else sp[k], -1 if k < 0 else sn[k])
                ll_store_u32(o + pos, <uint32_t>size)
                pos += 4 + size
        PyBuffer_Release(&view)
        return pos
    finally:
        PyMem_RawFree(sp)
        PyMem_RawFree(sn)
