# lowlat._core: verified zero-copy FlatBuffers reads, the Order encoder, framing and the order Validator.
# The C-level readers/encoder live in _core.pxd (inline, cimportable); this file and its includes are the Python
# boundary, one concept per file (uvloop handles/ style), compiled into this one extension.
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

include "_core_order.pxi"
include "_core_framing.pxi"
include "_core_validator.pxi"
include "_core_messages.pxi"


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
