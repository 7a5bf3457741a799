# lowlat._core: verified zero-copy FlatBuffers access, the Order encoder and the order Validator.
#
# What other modules may cimport.  The readers below are `cdef inline` so a cimporting module (lowlat._book)
# compiles them into itself: no capsule, no call through a pointer, and they work inside its own nogil loops.
#
# Contract of every fb_read_*(buf, n, out): verify, then decode.  Return 0 (FB_OK) and fill `out`, or a
# negative FB_E_* code and leave `out` partially written.  They never raise, never take the GIL and never
# read outside buf[0:n] whatever the bytes are (tests/property/test_fb_hostile.py).  Strings in the output
# structs point INTO buf: keep the buffer alive (and unmodified) while you use them.
#
# Wire format reminders (FlatBuffers, little-endian): buf[0:4] = u32 offset of the root table; a table starts
# with an i32 soffset, vtable = table - soffset; vtable = u16 vtable size, u16 table inline size, then one u16
# per field id: the field's offset inside the table (0 = absent -> schema default).  A string field holds a u32
# offset (relative to the field) to [u32 length][bytes][NUL].
from libc.stdint cimport int8_t, uint8_t, uint16_t, int32_t, uint32_t, int64_t, uint64_t
from libc.string cimport memcmp, memcpy, memset
cimport cython

from lowlat._types cimport price_t, qty_t, side_t, reject_t, oid_t, ts_t

include "_fbs_slots.pxi"

cdef extern from "_endian.h":
    uint8_t ll_load_u8(const char* p) noexcept nogil
    int8_t ll_load_i8(const char* p) noexcept nogil
    uint16_t ll_load_u16(const char* p) noexcept nogil
    int32_t ll_load_i32(const char* p) noexcept nogil
    uint32_t ll_load_u32(const char* p) noexcept nogil
    uint64_t ll_load_u64(const char* p) noexcept nogil
    int64_t ll_load_i64(const char* p) noexcept nogil
    double ll_load_f64(const char* p) noexcept nogil
    void ll_store_u8(char* p, uint8_t v) noexcept nogil
    void ll_store_u16(char* p, uint16_t v) noexcept nogil
    void ll_store_i32(char* p, int32_t v) noexcept nogil
    void ll_store_u32(char* p, uint32_t v) noexcept nogil
    void ll_store_u64(char* p, uint64_t v) noexcept nogil
    void ll_store_i64(char* p, int64_t v) noexcept nogil
    void ll_store_f64(char* p, double v) noexcept nogil

# Error codes of the fb_* functions (0 = OK).  fb_strerror() gives each one's sentence (ll_fb_errors).
cdef enum:
    FB_OK = 0
    FB_E_SHORT = -1
    FB_E_ROOT = -2
    FB_E_VTABLE = -3
    FB_E_FIELD = -4
    FB_E_STRING = -5
    FB_E_VECTOR = -6
    FB_E_UNION = -7
    FB_E_WRONG_COMMAND = -8  # the last one: ll_fb_errors below has a sentence for each

cdef struct FbTable:
    const char* buf         # start of the whole buffer
    Py_ssize_t n            # buffer length in bytes
    Py_ssize_t pos          # offset of the table (its soffset) in buf
    Py_ssize_t vt           # offset of its vtable in buf
    uint16_t vsize          # vtable size in bytes (4 + 2 * number of field ids it covers)

# Decoded finance.Order.  `present` has bit i set when field id i was in the buffer (absent -> default 0);
# FBP_ORDER_* below name the bits the validator's required-field check uses.
cdef struct FbOrder:
    uint64_t id             # order id
    const char* symbol      # UTF-8, points into the buffer; NULL when absent
    Py_ssize_t symbol_len   # bytes
    double price            # quote currency per unit (the validator maps it to integer ticks)
    uint32_t quantity       # lots
    int8_t side             # lowlat.enums.Side (unchecked: the validator rejects values other than 0/1)
    uint64_t timestamp      # ns since the epoch
    int8_t order_type       # lowlat.enums.OrderType (unchecked)
    int8_t time_in_force    # lowlat.enums.TimeInForce (unchecked)
    uint8_t post_only       # 0/1 (any nonzero byte reads as 1)
    uint64_t account        # owner id for self-trade prevention
    const char* client_order_id   # UTF-8 into the buffer; NULL when absent
    Py_ssize_t client_order_id_len
    int8_t stp              # lowlat.enums.StpMode (unchecked)
    uint32_t present        # bit i = field id i present

cdef enum:
    FBP_ORDER_ID = 1 << 0
    FBP_ORDER_SYMBOL = 1 << 1
    FBP_ORDER_PRICE = 1 << 2
    FBP_ORDER_QUANTITY = 1 << 3
    FBP_ORDER_SIDE = 1 << 4

cdef struct FbCancel:
    uint64_t order_id
    const char* symbol      # into the buffer; NULL when absent
    Py_ssize_t symbol_len
    uint64_t account
    uint64_t timestamp      # ns since the epoch

cdef struct FbModify:
    uint64_t order_id
    const char* symbol      # into the buffer; NULL when absent
    Py_ssize_t symbol_len
    double price            # new price, quote currency
    uint32_t quantity       # new quantity, lots
    uint64_t timestamp      # ns since the epoch
    uint64_t account

cdef struct FbMassCancel:
    uint64_t account
    const char* symbol      # into the buffer; NULL = every symbol
    Py_ssize_t symbol_len
    uint64_t timestamp      # ns since the epoch

# Decoded CommandMsg: `type` (FB_COMMAND_ORDER/CANCEL/MODIFY/MASS_CANCEL from _fbs_slots.pxi) says which
# member is filled; the others are left untouched.
cdef struct FbCommand:
    uint8_t type
    uint64_t sequence
    FbOrder order
    FbCancel cancel
    FbModify modify
    FbMassCancel mass_cancel


# ---------------------------------------------------------------------------------------------------------
# Verified table access.  Every offset is checked against n in Py_ssize_t (64-bit) arithmetic, so no
# sum can overflow: offsets read from the buffer are at most 2**32.

cdef inline int fb_table_at(const char* buf, Py_ssize_t n, Py_ssize_t pos, FbTable* t) noexcept nogil:
    # Verify the table header at buf+pos and its vtable; fill t.
    cdef Py_ssize_t vt
    cdef uint16_t vsize
    if pos < 0 or pos > n - 4:
        return FB_E_ROOT
    vt = pos - <Py_ssize_t>ll_load_i32(buf + pos)
    if vt < 0 or vt > n - 4:
        return FB_E_VTABLE
    vsize = ll_load_u16(buf + vt)
    if vsize < 4 or (vsize & 1) or vt > n - vsize:
        return FB_E_VTABLE
    if pos > n - <Py_ssize_t>ll_load_u16(buf + vt + 2):   # the table's inline bytes
        return FB_E_VTABLE
    t.buf = buf
    t.n = n
    t.pos = pos
    t.vt = vt
    t.vsize = vsize
    return FB_OK


cdef inline int fb_root(const char* buf, Py_ssize_t n, FbTable* t) noexcept nogil:
    # Verify the root table of a size-prefix-free buffer (what flatbuffers.Builder.Output() returns).
    if n < 4:
        return FB_E_SHORT
    return fb_table_at(buf, n, <Py_ssize_t>ll_load_u32(buf), t)


cdef inline Py_ssize_t fb_field(const FbTable* t, uint16_t slot, Py_ssize_t size) noexcept nogil:
    # Absolute offset of the field at vtable offset `slot` whose value has `size` bytes: 0 when absent
    # (no field can sit at buffer offset 0, the root offset is there), -1 when it would leave the buffer.
    cdef Py_ssize_t off
    if slot >= t.vsize:
        return 0
    off = ll_load_u16(t.buf + t.vt + slot)
    if off == 0:
        return 0
    if t.pos > t.n - size - off:
        return -1
    return t.pos + off


cdef inline int fb_ref(const FbTable* t, uint16_t slot, int err, Py_ssize_t* ref) noexcept nogil:
    # Offset field (string, vector): ref = buffer offset of the object it points to, whose u32 length is
    # inside the buffer; 0 when absent (the object of a present field is past the field, so never at 0).
    # err: the code for an object outside the buffer (FB_E_STRING / FB_E_VECTOR).
    cdef Py_ssize_t f = fb_field(t, slot, 4)
    ref[0] = 0
    if f <= 0:
        return FB_OK if f == 0 else FB_E_FIELD
    ref[0] = f + <Py_ssize_t>ll_load_u32(t.buf + f)
    return err if ref[0] > t.n - 4 else FB_OK


cdef inline int fb_string(const FbTable* t, uint16_t slot, const char** s, Py_ssize_t* slen) noexcept nogil:
    # Verified string field: s/slen point into the buffer (NULL/0 when absent).
    cdef Py_ssize_t p, ln
    cdef int rc = fb_ref(t, slot, FB_E_STRING, &p)
    s[0] = NULL
    slen[0] = 0
    if rc or p == 0:
        return rc
    ln = ll_load_u32(t.buf + p)
    if ln > t.n - p - 5:                    # 4 length bytes + ln bytes + NUL
        return FB_E_STRING
    if t.buf[p + 4 + ln] != 0:
        return FB_E_STRING
    s[0] = t.buf + p + 4
    slen[0] = ln
    return FB_OK


cdef inline int fb_vector(const FbTable* t, uint16_t slot, Py_ssize_t elem_size,
                          Py_ssize_t* start, Py_ssize_t* count) noexcept nogil:
    # Verified vector field: start = buffer offset of element 0, count = elements (0/0 when absent).
    cdef Py_ssize_t p, cnt
    cdef int rc = fb_ref(t, slot, FB_E_VECTOR, &p)
    start[0] = 0
    count[0] = 0
    if rc or p == 0:
        return rc
    cnt = ll_load_u32(t.buf + p)
    if cnt * elem_size > t.n - p - 4:
        return FB_E_VECTOR
    start[0] = p + 4
    count[0] = cnt
    return FB_OK


ctypedef fused fb_scalar_t:    # the scalar field types the readers below use
    uint8_t
    int8_t
    uint32_t
    uint64_t
    double


cdef inline int fb_get(const FbTable* t, uint16_t slot, fb_scalar_t* out, uint32_t* present) noexcept nogil:
    # One scalar field of a verified table: the value (0 when absent) and its presence bit (field index =
    # (slot - 4) / 2).  A field whose offset runs past the buffer is FB_E_FIELD.  Little-endian memcpy load as
    # in _endian.h (which refuses big-endian hosts).
    cdef Py_ssize_t f = fb_field(t, slot, sizeof(fb_scalar_t))
    if f > 0:
        memcpy(out, t.buf + f, sizeof(fb_scalar_t))
        present[0] |= (<uint32_t>1) << ((slot - 4) >> 1)
        return FB_OK
    out[0] = 0
    return FB_E_FIELD if f else FB_OK


# ---------------------------------------------------------------------------------------------------------
# Table decoders (table already verified by fb_table_at) and root readers.

cdef inline int fb_order_from(const FbTable* t, FbOrder* o) noexcept nogil:
    cdef uint32_t p = 0
    cdef uint8_t po = 0
    cdef const char* vt = t.buf + t.vt
    cdef const char* tb = t.buf + t.pos
    cdef int rc
    # Fast path: the vtable is the one fb_build_order writes (every scalar present, symbol present, at fixed
    # offsets; client_order_id may be either).  fb_table_at verified pos + 53 (the inline size) <= n, and the
    # largest canonical offset is 52 (1 byte), so every scalar load below is inside the buffer.  Any other
    # layout (flatc builders, old producers) takes the generic per-field path.
    if (t.vsize == FB_ORDER_VTABLE_SIZE
            and ll_load_u64(vt + 2) == 0x0010000400080035ULL
            and ll_load_u64(vt + 10) == 0x0031001800300028ULL
            and (ll_load_u64(vt + 18) & 0xFFFFFFFFFFFFULL) == 0x0000002000330032ULL
            and ll_load_u16(vt + 26) == 52):
        o.id = ll_load_u64(tb + 8)
        o.price = ll_load_f64(tb + 16)
        o.timestamp = ll_load_u64(tb + 24)
        o.account = ll_load_u64(tb + 32)
        o.quantity = ll_load_u32(tb + 40)
        o.side = ll_load_i8(tb + 48)
        o.order_type = ll_load_i8(tb + 49)
        o.time_in_force = ll_load_i8(tb + 50)
        o.post_only = tb[51] != 0
        o.stp = ll_load_i8(tb + 52)
        p = 0xFFF & ~((<uint32_t>1) << ((FB_ORDER_CLIENT_ORDER_ID - 4) >> 1))
    elif (fb_get(t, FB_ORDER_ID, &o.id, &p)
            or fb_get(t, FB_ORDER_PRICE, &o.price, &p)
            or fb_get(t, FB_ORDER_QUANTITY, &o.quantity, &p)
            or fb_get(t, FB_ORDER_SIDE, &o.side, &p)
            or fb_get(t, FB_ORDER_TIMESTAMP, &o.timestamp, &p)
            or fb_get(t, FB_ORDER_ORDER_TYPE, &o.order_type, &p)
            or fb_get(t, FB_ORDER_TIME_IN_FORCE, &o.time_in_force, &p)
            or fb_get(t, FB_ORDER_POST_ONLY, &po, &p)
            or fb_get(t, FB_ORDER_ACCOUNT, &o.account, &p)
            or fb_get(t, FB_ORDER_STP, &o.stp, &p)):
        return FB_E_FIELD
    else:
        o.post_only = po != 0
    rc = fb_string(t, FB_ORDER_SYMBOL, &o.symbol, &o.symbol_len)
    if rc:
        return rc
    if o.symbol != NULL:
        p |= FBP_ORDER_SYMBOL
    rc = fb_string(t, FB_ORDER_CLIENT_ORDER_ID, &o.client_order_id, &o.client_order_id_len)
    if rc:
        return rc
    if o.client_order_id != NULL:
        p |= (<uint32_t>1) << ((FB_ORDER_CLIENT_ORDER_ID - 4) >> 1)
    o.present = p
    return FB_OK


cdef inline int fb_cancel_from(const FbTable* t, FbCancel* o) noexcept nogil:
    cdef uint32_t p = 0
    if (fb_get(t, FB_CANCEL_ORDER_ID, &o.order_id, &p)
            or fb_get(t, FB_CANCEL_ACCOUNT, &o.account, &p)
            or fb_get(t, FB_CANCEL_TIMESTAMP, &o.timestamp, &p)):
        return FB_E_FIELD
    return fb_string(t, FB_CANCEL_SYMBOL, &o.symbol, &o.symbol_len)


cdef inline int fb_modify_from(const FbTable* t, FbModify* o) noexcept nogil:
    cdef uint32_t p = 0
    if (fb_get(t, FB_MODIFY_ORDER_ID, &o.order_id, &p)
            or fb_get(t, FB_MODIFY_PRICE, &o.price, &p)
            or fb_get(t, FB_MODIFY_QUANTITY, &o.quantity, &p)
            or fb_get(t, FB_MODIFY_TIMESTAMP, &o.timestamp, &p)
            or fb_get(t, FB_MODIFY_ACCOUNT, &o.account, &p)):
        return FB_E_FIELD
    return fb_string(t, FB_MODIFY_SYMBOL, &o.symbol, &o.symbol_len)


cdef inline int fb_mass_cancel_from(const FbTable* t, FbMassCancel* o) noexcept nogil:
    cdef uint32_t p = 0
    if (fb_get(t, FB_MASS_CANCEL_ACCOUNT, &o.account, &p)
            or fb_get(t, FB_MASS_CANCEL_TIMESTAMP, &o.timestamp, &p)):
        return FB_E_FIELD
    return fb_string(t, FB_MASS_CANCEL_SYMBOL, &o.symbol, &o.symbol_len)


cdef inline int fb_read_order(const char* buf, Py_ssize_t n, FbOrder* out) noexcept nogil:
    cdef FbTable t
    cdef int rc = fb_root(buf, n, &t)
    return rc if rc else fb_order_from(&t, out)


cdef inline int fb_command_table(const char* buf, Py_ssize_t n, uint8_t* ctype, uint64_t* seq,
                                 FbTable* sub) noexcept nogil:
    # Verify a CommandMsg root and its union member's table header; ctype = FB_COMMAND_* (NONE allowed).
    cdef FbTable t
    cdef uint32_t p = 0
    cdef Py_ssize_t f
    cdef int rc = fb_root(buf, n, &t)
    if rc:
        return rc
    if (fb_get(&t, FB_COMMAND_MSG_CMD_TYPE, ctype, &p)
            or fb_get(&t, FB_COMMAND_MSG_SEQUENCE, seq, &p)):
        return FB_E_FIELD
    if ctype[0] == FB_COMMAND_NONE:
        return FB_OK
    if ctype[0] > FB_COMMAND_MASS_CANCEL:
        return FB_E_UNION
    f = fb_field(&t, FB_COMMAND_MSG_CMD, 4)
    if f == 0:
        return FB_E_UNION
    if f < 0:
        return FB_E_FIELD
    return fb_table_at(buf, n, f + <Py_ssize_t>ll_load_u32(buf + f), sub)


cdef inline int fb_read_command(const char* buf, Py_ssize_t n, FbCommand* out) noexcept nogil:
    # Verify + decode one CommandMsg; out.type says which member was filled (FB_COMMAND_NONE: none).
    cdef FbTable sub
    cdef int rc = fb_command_table(buf, n, &out.type, &out.sequence, &sub)
    if rc or out.type == FB_COMMAND_NONE:
        return rc
    if out.type == FB_COMMAND_ORDER:
        return fb_order_from(&sub, &out.order)
    if out.type == FB_COMMAND_CANCEL:
        return fb_cancel_from(&sub, &out.cancel)
    if out.type == FB_COMMAND_MODIFY:
        return fb_modify_from(&sub, &out.modify)
    return fb_mass_cancel_from(&sub, &out.mass_cancel)


# The sentence for each error code, indexed by -rc (DecodeError's text).
cdef extern from *:
    """
    static const char *const ll_fb_errors[] = {
        "ok",
        "buffer shorter than the 4-byte root offset",
        "table offset points outside the buffer",
        "vtable offset or size outside the buffer",
        "a field lies outside the buffer",
        "string offset/length outside the buffer or not NUL-terminated",
        "vector offset/length outside the buffer",
        "unknown union type or union value missing",
        "CommandMsg holds another command type",
    };
    """
    const char* ll_fb_errors[9]


cdef inline const char* fb_strerror(int rc) noexcept nogil:
    if FB_E_WRONG_COMMAND <= rc <= FB_OK:
        return ll_fb_errors[-rc]
    return b"unknown error"


# ---------------------------------------------------------------------------------------------------------
# Order encoder.  One canonical layout (every scalar written, so reads never fall back to defaults):
#   [0:4] root u32 = 32 | [4:32] vtable (28 bytes) | [32:85] table | pad to 88 | symbol | client_order_id
# Table (offsets from its start at 32): soffset 0, symbol 4, id 8, price 16, timestamp 24, account 32,
# quantity 40, client_order_id 44, side 48, order_type 49, time_in_force 50, post_only 51, stp 52.
# 8-byte fields are 8-aligned and strings 4-aligned, as flatc's builders do (the C++ verifier checks it).

cdef enum:
    FB_ORDER_FIXED_SIZE = 88    # bytes before the first string


cdef inline Py_ssize_t fb_order_size(Py_ssize_t symbol_len, Py_ssize_t coid_len) noexcept nogil:
    # Encoded size; a negative length means the string is absent.
    cdef Py_ssize_t n = FB_ORDER_FIXED_SIZE
    if symbol_len >= 0:
        n += (4 + symbol_len + 1 + 3) & ~(<Py_ssize_t>3)
    if coid_len >= 0:
        n += (4 + coid_len + 1 + 3) & ~(<Py_ssize_t>3)
    return n


cdef inline Py_ssize_t fb_put_string(char* out, Py_ssize_t pos, const char* s, Py_ssize_t n) noexcept nogil:
    # [u32 n][bytes][NUL][zero pad to 4] at out+pos; returns the position after it.
    cdef Py_ssize_t end = pos + ((4 + n + 1 + 3) & ~(<Py_ssize_t>3))
    ll_store_u32(out + pos, <uint32_t>n)
    memcpy(out + pos + 4, s, n)
    memset(out + pos + 4 + n, 0, end - (pos + 4 + n))
    return end


cdef inline Py_ssize_t fb_build_order(char* out, uint64_t id, const char* symbol, Py_ssize_t symbol_len,
                                      double price, uint32_t quantity, int8_t side, uint64_t timestamp,
                                      int8_t order_type, int8_t time_in_force, uint8_t post_only,
                                      uint64_t account, const char* coid, Py_ssize_t coid_len,
                                      int8_t stp) noexcept nogil:
    # Write one Order at out; out must have fb_order_size(symbol_len or -1, coid_len or -1) bytes.
    # symbol / coid NULL = absent.  Returns the bytes written.  Lengths must be < 2**32 (caller checks).
    cdef Py_ssize_t pos = FB_ORDER_FIXED_SIZE
    memset(out, 0, FB_ORDER_FIXED_SIZE)
    ll_store_u32(out, 32)
    ll_store_u16(out + 4, FB_ORDER_VTABLE_SIZE)
    ll_store_u16(out + 6, 53)                       # table inline size
    ll_store_u16(out + 4 + FB_ORDER_ID, 8)
    ll_store_u16(out + 4 + FB_ORDER_SYMBOL, 4 if symbol != NULL else 0)
    ll_store_u16(out + 4 + FB_ORDER_PRICE, 16)
    ll_store_u16(out + 4 + FB_ORDER_QUANTITY, 40)
    ll_store_u16(out + 4 + FB_ORDER_SIDE, 48)
    ll_store_u16(out + 4 + FB_ORDER_TIMESTAMP, 24)
    ll_store_u16(out + 4 + FB_ORDER_ORDER_TYPE, 49)
    ll_store_u16(out + 4 + FB_ORDER_TIME_IN_FORCE, 50)
    ll_store_u16(out + 4 + FB_ORDER_POST_ONLY, 51)
    ll_store_u16(out + 4 + FB_ORDER_ACCOUNT, 32)
    ll_store_u16(out + 4 + FB_ORDER_CLIENT_ORDER_ID, 44 if coid != NULL else 0)
    ll_store_u16(out + 4 + FB_ORDER_STP, 52)
    ll_store_i32(out + 32, 28)                      # soffset: vtable = 32 - 28 = 4
    ll_store_u64(out + 40, id)
    ll_store_f64(out + 48, price)
    ll_store_u64(out + 56, timestamp)
    ll_store_u64(out + 64, account)
    ll_store_u32(out + 72, quantity)
    out[80] = <char>side
    out[81] = <char>order_type
    out[82] = <char>time_in_force
    out[83] = <char>(1 if post_only else 0)
    out[84] = <char>stp
    if symbol != NULL:
        ll_store_u32(out + 36, <uint32_t>(pos - 36))
        pos = fb_put_string(out, pos, symbol, symbol_len)
    if coid != NULL:
        ll_store_u32(out + 76, <uint32_t>(pos - 76))
        pos = fb_put_string(out, pos, coid, coid_len)
    return pos


# ---------------------------------------------------------------------------------------------------------
# Framing: a frame buffer is a concatenation of [u32 little-endian payload length][payload], no padding.

cdef inline Py_ssize_t fb_scan_frames(const char* buf, Py_ssize_t n, Py_ssize_t* bad_at) noexcept nogil:
    # Number of complete frames in buf[0:n]; -1 when the last frame is truncated (bad_at = its offset).
    cdef Py_ssize_t pos = 0, count = 0
    while pos < n:
        if pos > n - 4 or <Py_ssize_t>ll_load_u32(buf + pos) > n - pos - 4:
            bad_at[0] = pos
            return -1
        pos += 4 + <Py_ssize_t>ll_load_u32(buf + pos)
        count += 1
    return count


# ---------------------------------------------------------------------------------------------------------
# Validation.

cdef struct VRule:
    double inv_tick         # 1 / tick size (price * inv_tick = price in ticks)
    double band_lo          # lowest accepted limit price (-inf: no collar)
    double band_hi          # highest accepted limit price (+inf: no collar)
    double max_notional     # price * quantity upper bound, quote currency (+inf: none)
    uint64_t lot_m          # ceil(2**64 / lot): q % lot == 0  <=>  q * lot_m (mod 2**64) <= lot_m - 1
                            # (Lemire-Kaser-Kurz divisibility test; no division in the loop; lot 1 -> 0)
    uint32_t min_qty        # lots, inclusive
    uint32_t max_qty        # lots, inclusive
    double tick_size        # quote currency per tick (lowlat/_price.pxd price_to_ticks divides by it)

cdef struct VSlot:          # one open-addressing slot of the symbol table
    uint64_t key            # v_key(): the symbol's bytes themselves (zero-padded) when <= 8 bytes, else a hash
    const char* sym         # symbol bytes inside Validator._arena
    Py_ssize_t len
    Py_ssize_t rule         # index into Validator._rules, -1 = empty slot

cdef inline uint64_t v_hash(const char* s, Py_ssize_t n) noexcept nogil:
    # Cheap hash of a symbol with no loop for <= 16 bytes: two overlapping loads cover the bytes (never
    # reading outside s[0:n]).  Not DoS-hardened: the table is fixed at construction and a collision only
    # costs a probe (every hit is confirmed with memcmp).
    cdef uint64_t w, h
    cdef Py_ssize_t i
    if n >= 8:
        w = ll_load_u64(s)
        i = 8
        while i + 8 < n:
            w = (w ^ ll_load_u64(s + i)) * 0xFF51AFD7ED558CCDULL
            i += 8
        w ^= ll_load_u64(s + n - 8) * 0xC4CEB9FE1A85EC53ULL
    elif n >= 4:
        w = ll_load_u32(s) | (<uint64_t>ll_load_u32(s + n - 4) << 32)
    elif n > 0:
        w = (<uint64_t><uint8_t>s[0]) | ((<uint64_t><uint8_t>s[n >> 1]) << 8) | ((<uint64_t><uint8_t>s[n - 1]) << 16)
    else:
        w = 0
    h = (w ^ (<uint64_t>n * 0x9E3779B97F4A7C15ULL)) * 0xFF51AFD7ED558CCDULL
    return h ^ (h >> 32)


cdef inline bint v_eq(const char* a, const char* b, Py_ssize_t n) noexcept nogil:
    # a[0:n] == b[0:n] without a libc call for the usual short symbols (overlapping loads, in bounds).
    if n >= 8:
        if n <= 16:
            return ll_load_u64(a) == ll_load_u64(b) and ll_load_u64(a + n - 8) == ll_load_u64(b + n - 8)
        return memcmp(a, b, n) == 0
    if n >= 4:
        return ll_load_u32(a) == ll_load_u32(b) and ll_load_u32(a + n - 4) == ll_load_u32(b + n - 4)
    if n > 0:
        return a[0] == b[0] and a[n >> 1] == b[n >> 1] and a[n - 1] == b[n - 1]
    return True


cdef inline uint64_t v_key(const char* s, Py_ssize_t n) noexcept nogil:
    # Symbols of <= 8 bytes (nearly all tickers) ARE their key: the bytes as a zero-padded little-endian
    # word, built with two overlapping loads inside s[0:n] (the overlapping bytes are equal, so OR is exact).
    # Equal key + equal length then means equal symbol, and the lookup needs no byte compare.
    if n > 8:
        return v_hash(s, n)
    if n >= 4:
        return ll_load_u32(s) | (<uint64_t>ll_load_u32(s + n - 4) << (8 * (n - 4)))
    if n > 0:
        return ((<uint64_t><uint8_t>s[0]) | ((<uint64_t><uint8_t>s[n >> 1]) << (8 * (n >> 1)))
                | ((<uint64_t><uint8_t>s[n - 1]) << (8 * (n - 1))))
    return 0


cdef inline Py_ssize_t v_slot(uint64_t key, Py_ssize_t n, Py_ssize_t mask) noexcept nogil:
    # Start slot: multiplicative (Fibonacci) hashing of the key, high bits.
    return <Py_ssize_t>(((key ^ <uint64_t>n) * 0x9E3779B97F4A7C15ULL) >> 40) & mask


@cython.final
cdef class Validator:
    cdef VRule* _rules          # one per instrument (PyMem_RawCalloc, freed in __dealloc__)
    cdef VSlot* _slots          # power-of-two open-addressing table, symbol -> rule index
    cdef Py_ssize_t _mask       # slots - 1
    cdef char* _arena           # concatenated symbol bytes the slots point to
    cdef Py_ssize_t _n_rules
    cdef readonly tuple rules   # the InstrumentRules this validator was built from
    cdef Py_ssize_t _lookup_c(self, const char* sym, Py_ssize_t n) noexcept nogil
    cdef reject_t validate_order_c(self, const FbOrder* o) noexcept nogil
    cdef reject_t validate_buf_c(self, const char* buf, Py_ssize_t n) noexcept nogil


@cython.final
cdef class OrderView:
    cdef object _owner          # keeps the buffer's exporter alive
    cdef const char* _buf
    cdef Py_ssize_t _n
    cdef FbOrder _o
    cdef Py_buffer _view        # held while _held is set (non-bytes exporters)
    cdef bint _held


@cython.final
cdef class InstrumentRules:
    cdef readonly str symbol
    cdef readonly double tick_size      # price increment, quote currency
    cdef readonly uint32_t lot_size     # quantity increment, lots
    cdef readonly uint32_t min_qty      # lots, inclusive
    cdef readonly uint32_t max_qty      # lots, inclusive
    cdef readonly double ref_price      # collar centre, quote currency; 0 = no collar
    cdef readonly double band           # collar half-width as a fraction of ref_price (0.1 = +-10 %)
    cdef readonly double max_notional   # price * quantity upper bound, quote currency
