# Shared C types and constants of lowlat's compiled modules.  Mirrored by lowlat/enums.py (tested).
from libc.stdint cimport int8_t, uint8_t, int64_t, uint64_t

ctypedef int64_t price_t     # price in ticks (instrument tick size units)
ctypedef int64_t qty_t       # quantity in lots
ctypedef int8_t side_t       # BID/BUY = 0, ASK/SELL = 1
ctypedef uint8_t reject_t    # lowlat.enums.Reject
ctypedef uint64_t oid_t      # order id
ctypedef int64_t ts_t        # ns since the epoch

cdef enum:
    BID = 0
    ASK = 1

cdef enum:
    OT_LIMIT = 0
    OT_MARKET = 1

cdef enum:
    TIF_GTC = 0
    TIF_IOC = 1
    TIF_FOK = 2

cdef enum:
    STP_NONE = 0
    STP_CANCEL_NEWEST = 1
    STP_CANCEL_OLDEST = 2
    STP_CANCEL_BOTH = 3
    STP_DECREMENT_AND_CANCEL = 4

cdef enum:
    REJ_ACCEPTED = 0
    REJ_MALFORMED = 1
    REJ_MISSING_FIELD = 2
    REJ_UNKNOWN_SYMBOL = 3
    REJ_BAD_SIDE = 4
    REJ_BAD_PRICE = 5
    REJ_BAD_QUANTITY = 6
    REJ_OFF_TICK = 7
    REJ_OFF_LOT = 8
    REJ_QTY_BELOW_MIN = 9
    REJ_QTY_ABOVE_MAX = 10
    REJ_PRICE_OUT_OF_BAND = 11
    REJ_NOTIONAL_TOO_LARGE = 12
    REJ_BAD_ORDER_TYPE = 13
    REJ_BAD_TIME_IN_FORCE = 14
    REJ_BOOK_FULL = 64
    REJ_DUPLICATE_ORDER_ID = 65
    REJ_UNKNOWN_ORDER = 66
    REJ_POST_ONLY_WOULD_CROSS = 67
    REJ_FOK_NOT_FILLABLE = 68
    REJ_NO_LIQUIDITY = 69
    REJ_SELF_TRADE_PREVENTED = 70
    REJ_BAD_STP_MODE = 71
    REJ_OUT_OF_RANGE = 72
    REJ_MARKET_POST_ONLY = 73

cdef extern from "_debug.h":
    const int LOWLAT_DEBUG
