# lowlat._encode: fixed-layout FlatBuffer encoders for what the services emit (ValidationResult,
# ExecutionReport, Trade, L2Update), writing into memory the caller owns.  No allocation, no GIL.
#
# Every table has one canonical layout, like _core's Order encoder: [0:4] root u32 | vtable | zero pad to 8 |
# table (every scalar written, 8-byte fields 8-aligned) | strings (4-aligned, [u32 len][bytes][NUL][pad]).
# Offsets below are from the buffer start; the layouts are flatc-compatible (tests/property/test_encode_compat.py
# reads them with the official `flatbuffers` package and checks alignment).
#
# Contract of every fb_build_*(out, ...): `out` has at least fb_*_size(symbol_len[, coid_len]) bytes; a NULL
# string pointer means "absent" (pass its length as -1 to the size function); lengths < 2**31 (caller checks).
# Returns the bytes written.
from libc.stdint cimport int8_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memset

from lowlat._core cimport (ll_store_u16, ll_store_i32, ll_store_u32, ll_store_u64, ll_store_f64, fb_put_string)

include "_fbs_slots.pxi"

cdef enum:
    FB_VR_TABLE = 24            # ValidationResult: table offset; fixed part ends at 52
    FB_VR_FIXED = 52
    FB_ER_TABLE = 40            # ExecutionReport
    FB_ER_FIXED = 124
    FB_TR_TABLE = 32            # Trade
    FB_TR_FIXED = 96
    FB_L2_TABLE = 24            # L2Update
    FB_L2_FIXED = 72


cdef inline Py_ssize_t fb_str_size(Py_ssize_t n) noexcept nogil:
    # Bytes a string takes (0 when absent, n < 0).
    return 0 if n < 0 else (4 + n + 1 + 3) & ~(<Py_ssize_t>3)


cdef inline void fb_head(char* out, Py_ssize_t fixed, Py_ssize_t table, uint16_t vsize,
                         uint16_t inline_size) noexcept nogil:
    memset(out, 0, fixed)
    ll_store_u32(out, <uint32_t>table)
    ll_store_u16(out + 4, vsize)
    ll_store_u16(out + 6, inline_size)
    ll_store_i32(out + table, <int>(table - 4))   # soffset: vtable at 4


cdef inline Py_ssize_t fb_tail_string(char* out, Py_ssize_t pos, Py_ssize_t field_at, const char* s,
                                      Py_ssize_t n) noexcept nogil:
    # Write the string at pos and point the u32 field at field_at to it; returns the new end.
    ll_store_u32(out + field_at, <uint32_t>(pos - field_at))
    return fb_put_string(out, pos, s, n)


# ---------------------------------------------------------------- ValidationResult
# table at 24: soffset | symbol +4 | order_id +8 | timestamp +16 | accepted +24 | reason +25   (inline 26)
cdef inline Py_ssize_t fb_validation_result_size(Py_ssize_t symbol_len) noexcept nogil:
    return FB_VR_FIXED + fb_str_size(symbol_len)


cdef inline Py_ssize_t fb_build_validation_result(char* out, uint64_t order_id, bint accepted, uint8_t reason,
                                                  uint64_t timestamp, const char* symbol,
                                                  Py_ssize_t symbol_len) noexcept nogil:
    cdef Py_ssize_t t = FB_VR_TABLE
    fb_head(out, FB_VR_FIXED, t, FB_VALIDATION_RESULT_VTABLE_SIZE, 26)
    ll_store_u16(out + 4 + FB_VALIDATION_RESULT_ORDER_ID, 8)
    ll_store_u16(out + 4 + FB_VALIDATION_RESULT_ACCEPTED, 24)
    ll_store_u16(out + 4 + FB_VALIDATION_RESULT_REASON, 25)
    ll_store_u16(out + 4 + FB_VALIDATION_RESULT_TIMESTAMP, 16)
    ll_store_u64(out + t + 8, order_id)
    ll_store_u64(out + t + 16, timestamp)
    out[t + 24] = <char>(1 if accepted else 0)
    out[t + 25] = <char>reason
    if symbol == NULL:
        return FB_VR_FIXED
    ll_store_u16(out + 4 + FB_VALIDATION_RESULT_SYMBOL, 4)
    return fb_tail_string(out, FB_VR_FIXED, t + 4, symbol, symbol_len)


# ---------------------------------------------------------------- ExecutionReport
# table at 40: soffset | symbol +4 | order_id +8 | account +16 | trade_id +24 | maker +32 | taker +40 |
# last_price +48 | timestamp +56 | last_qty +64 | leaves +68 | cum +72 | client_order_id +76 | side +80 |
# status +81 | reason +82 | is_maker +83   (inline 84)
cdef inline Py_ssize_t fb_execution_report_size(Py_ssize_t symbol_len, Py_ssize_t coid_len) noexcept nogil:
    return FB_ER_FIXED + fb_str_size(symbol_len) + fb_str_size(coid_len)


cdef inline Py_ssize_t fb_build_execution_report(
        char* out, uint64_t order_id, const char* symbol, Py_ssize_t symbol_len, uint64_t account, int8_t side,
        uint8_t status, uint8_t reason, uint64_t trade_id, uint64_t maker_order_id, uint64_t taker_order_id,
        bint is_maker, double last_price, uint32_t last_quantity, uint32_t leaves_quantity, uint32_t cum_quantity,
        uint64_t timestamp, const char* coid, Py_ssize_t coid_len) noexcept nogil:
    cdef Py_ssize_t t = FB_ER_TABLE, pos = FB_ER_FIXED
    cdef char* v = out + 4
    fb_head(out, FB_ER_FIXED, t, FB_EXECUTION_REPORT_VTABLE_SIZE, 84)
    ll_store_u16(v + FB_EXECUTION_REPORT_ORDER_ID, 8)
    ll_store_u16(v + FB_EXECUTION_REPORT_ACCOUNT, 16)
    ll_store_u16(v + FB_EXECUTION_REPORT_SIDE, 80)
    ll_store_u16(v + FB_EXECUTION_REPORT_STATUS, 81)
    ll_store_u16(v + FB_EXECUTION_REPORT_REASON, 82)
    ll_store_u16(v + FB_EXECUTION_REPORT_TRADE_ID, 24)
    ll_store_u16(v + FB_EXECUTION_REPORT_MAKER_ORDER_ID, 32)
    ll_store_u16(v + FB_EXECUTION_REPORT_TAKER_ORDER_ID, 40)
    ll_store_u16(v + FB_EXECUTION_REPORT_IS_MAKER, 83)
    ll_store_u16(v + FB_EXECUTION_REPORT_LAST_PRICE, 48)
    ll_store_u16(v + FB_EXECUTION_REPORT_LAST_QUANTITY, 64)
    ll_store_u16(v + FB_EXECUTION_REPORT_LEAVES_QUANTITY, 68)
    ll_store_u16(v + FB_EXECUTION_REPORT_CUM_QUANTITY, 72)
    ll_store_u16(v + FB_EXECUTION_REPORT_TIMESTAMP, 56)
    ll_store_u64(out + t + 8, order_id)
    ll_store_u64(out + t + 16, account)
    ll_store_u64(out + t + 24, trade_id)
    ll_store_u64(out + t + 32, maker_order_id)
    ll_store_u64(out + t + 40, taker_order_id)
    ll_store_f64(out + t + 48, last_price)
    ll_store_u64(out + t + 56, timestamp)
    ll_store_u32(out + t + 64, last_quantity)
    ll_store_u32(out + t + 68, leaves_quantity)
    ll_store_u32(out + t + 72, cum_quantity)
    out[t + 80] = <char>side
    out[t + 81] = <char>status
    out[t + 82] = <char>reason
    out[t + 83] = <char>(1 if is_maker else 0)
    if symbol != NULL:
        ll_store_u16(v + FB_EXECUTION_REPORT_SYMBOL, 4)
        pos = fb_tail_string(out, pos, t + 4, symbol, symbol_len)
    if coid != NULL:
        ll_store_u16(v + FB_EXECUTION_REPORT_CLIENT_ORDER_ID, 76)
        pos = fb_tail_string(out, pos, t + 76, coid, coid_len)
    return pos


# ---------------------------------------------------------------- Trade
# table at 32: soffset | symbol +4 | trade_id +8 | price +16 | maker +24 | taker +32 | timestamp +40 |
# sequence +48 | quantity +56 | aggressor_side +60   (inline 61)
cdef inline Py_ssize_t fb_trade_size(Py_ssize_t symbol_len) noexcept nogil:
    return FB_TR_FIXED + fb_str_size(symbol_len)


cdef inline Py_ssize_t fb_build_trade(char* out, uint64_t trade_id, const char* symbol, Py_ssize_t symbol_len,
                                      double price, uint32_t quantity, int8_t aggressor_side,
                                      uint64_t maker_order_id, uint64_t taker_order_id, uint64_t timestamp,
                                      uint64_t sequence) noexcept nogil:
    cdef Py_ssize_t t = FB_TR_TABLE
    cdef char* v = out + 4
    fb_head(out, FB_TR_FIXED, t, FB_TRADE_VTABLE_SIZE, 61)
    ll_store_u16(v + FB_TRADE_TRADE_ID, 8)
    ll_store_u16(v + FB_TRADE_PRICE, 16)
    ll_store_u16(v + FB_TRADE_QUANTITY, 56)
    ll_store_u16(v + FB_TRADE_AGGRESSOR_SIDE, 60)
    ll_store_u16(v + FB_TRADE_MAKER_ORDER_ID, 24)
    ll_store_u16(v + FB_TRADE_TAKER_ORDER_ID, 32)
    ll_store_u16(v + FB_TRADE_TIMESTAMP, 40)
    ll_store_u16(v + FB_TRADE_SEQUENCE, 48)
    ll_store_u64(out + t + 8, trade_id)
    ll_store_f64(out + t + 16, price)
    ll_store_u64(out + t + 24, maker_order_id)
    ll_store_u64(out + t + 32, taker_order_id)
    ll_store_u64(out + t + 40, timestamp)
    ll_store_u64(out + t + 48, sequence)
    ll_store_u32(out + t + 56, quantity)
    out[t + 60] = <char>aggressor_side
    if symbol == NULL:
        return FB_TR_FIXED
    ll_store_u16(v + FB_TRADE_SYMBOL, 4)
    return fb_tail_string(out, FB_TR_FIXED, t + 4, symbol, symbol_len)


# ---------------------------------------------------------------- L2Update
# table at 24: soffset | symbol +4 | sequence +8 | price +16 | quantity +24 | timestamp +32 | order_count +40 |
# side +44   (inline 45)
cdef inline Py_ssize_t fb_l2_update_size(Py_ssize_t symbol_len) noexcept nogil:
    return FB_L2_FIXED + fb_str_size(symbol_len)


cdef inline Py_ssize_t fb_build_l2_update(char* out, const char* symbol, Py_ssize_t symbol_len, uint64_t sequence,
                                          int8_t side, double price, uint64_t quantity, uint32_t order_count,
                                          uint64_t timestamp) noexcept nogil:
    cdef Py_ssize_t t = FB_L2_TABLE
    cdef char* v = out + 4
    fb_head(out, FB_L2_FIXED, t, FB_L2_UPDATE_VTABLE_SIZE, 45)
    ll_store_u16(v + FB_L2_UPDATE_SEQUENCE, 8)
    ll_store_u16(v + FB_L2_UPDATE_SIDE, 44)
    ll_store_u16(v + FB_L2_UPDATE_PRICE, 16)
    ll_store_u16(v + FB_L2_UPDATE_QUANTITY, 24)
    ll_store_u16(v + FB_L2_UPDATE_ORDER_COUNT, 40)
    ll_store_u16(v + FB_L2_UPDATE_TIMESTAMP, 32)
    ll_store_u64(out + t + 8, sequence)
    ll_store_f64(out + t + 16, price)
    ll_store_u64(out + t + 24, quantity)
    ll_store_u64(out + t + 32, timestamp)
    ll_store_u32(out + t + 40, order_count)
    out[t + 44] = <char>side
    if symbol == NULL:
        return FB_L2_FIXED
    ll_store_u16(v + FB_L2_UPDATE_SYMBOL, 4)
    return fb_tail_string(out, FB_L2_FIXED, t + 4, symbol, symbol_len)
