# lowlat._l2batch: the L2Update messages of a received MessageBatch as columns (the market-data consumer's decode).
from libc.stdint cimport int8_t, uint32_t, uint64_t

from lowlat._core cimport (FB_E_FIELD, FB_L2_UPDATE_ORDER_COUNT, FB_L2_UPDATE_PRICE, FB_L2_UPDATE_QUANTITY,
                           FB_L2_UPDATE_SEQUENCE, FB_L2_UPDATE_SIDE, FB_L2_UPDATE_SYMBOL, FB_L2_UPDATE_TIMESTAMP,
                           FB_E_STRING, FbTable, fb_get, fb_root, fb_string)
from lowlat._utf8 cimport utf8_ok


# Decoded finance.L2Update (absent fields read as 0 / NULL).  symbol points INTO the buffer.
cdef struct FbL2Update:
    const char* symbol         # NULL when absent
    Py_ssize_t symbol_len
    uint64_t sequence          # per-symbol market-data sequence, 1, 2, 3, ...
    int8_t side                # 0 = bids, otherwise asks
    double price               # quote currency
    uint64_t quantity          # the level's new total, lots (0 = level removed)
    uint32_t order_count       # orders at the level
    uint64_t timestamp         # ns since the epoch


cdef inline int fb_read_l2_update(const char* buf, Py_ssize_t n, FbL2Update* o) noexcept nogil:
    # Verify the root table and every field, the symbol as UTF-8 too (what lowlat.decode_l2_update accepts);
    # 0 or a negative FB_E_* code.
    cdef FbTable t
    cdef uint32_t p = 0
    cdef int rc = fb_root(buf, n, &t)
    if rc:
        return rc
    if (fb_get(&t, FB_L2_UPDATE_SEQUENCE, &o.sequence, &p)
            or fb_get(&t, FB_L2_UPDATE_SIDE, &o.side, &p)
            or fb_get(&t, FB_L2_UPDATE_PRICE, &o.price, &p)
            or fb_get(&t, FB_L2_UPDATE_QUANTITY, &o.quantity, &p)
            or fb_get(&t, FB_L2_UPDATE_ORDER_COUNT, &o.order_count, &p)
            or fb_get(&t, FB_L2_UPDATE_TIMESTAMP, &o.timestamp, &p)):
        return FB_E_FIELD
    rc = fb_string(&t, FB_L2_UPDATE_SYMBOL, &o.symbol, &o.symbol_len)
    if rc == 0 and o.symbol != NULL and not utf8_ok(<const unsigned char*>o.symbol, o.symbol_len):
        return FB_E_STRING
    return rc
