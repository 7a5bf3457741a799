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
from lowlat._bitmap cimport _lvl_down, _lvl_up

from enum import IntEnum

import numpy as np

cdef extern from *:
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


# One concept per file (uvloop handles/ style); they compile into this one extension.
include "_book_ladder.pxi"
include "_book_idmap.pxi"
include "_book_match.pxi"
include "_book_apply.pxi"
include "_book_snapshot.pxi"
include "_book_book.pxi"
include "_book_engine.pxi"
