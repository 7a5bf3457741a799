# Limit order book and price-time matching engine.  What other compiled modules may cimport.
#
# All state of one book lives in a C struct (BookCore) so that an Engine can drive many books from one
# nogil loop through plain pointers; the Book cdef class only owns the numpy arrays backing that struct.
cimport cython
from libc.stdint cimport int8_t, uint8_t, int32_t, uint32_t, int64_t, uint64_t

from lowlat._types cimport price_t, qty_t, side_t, reject_t, oid_t

cdef extern from *:
    """
    /* Largest order quantity a Book takes (lots): the FlatBuffer Order.quantity range (uint32).  With at most
     * 2**30 resting orders no sum of open quantities can pass 2**62, so level totals cannot wrap. */
    #define LL_BOOK_MAX_QTY ((int64_t)0xFFFFFFFF)
    """
    const int64_t BOOK_MAX_QTY "LL_BOOK_MAX_QTY"

# command ops (BookCommand.op)
cdef enum:
    CMD_NEW = 0
    CMD_CANCEL = 1
    CMD_MODIFY = 2
    CMD_MASS_CANCEL = 3

# event kinds (BookEvent.kind); 0 never appears in a written event
cdef enum:
    EV_ACCEPTED = 1
    EV_REJECTED = 2
    EV_FILL = 3
    EV_CANCELED = 4
    EV_EXPIRED = 5
    EV_MODIFIED = 6
    EV_L2 = 7
    EV_MASS_CANCELED = 8

cdef struct BookCommand:          # one row of COMMAND_DTYPE (numpy, align=True); 48 bytes
    oid_t oid                     # order id (NEW/CANCEL/MODIFY); ignored by MASS_CANCEL
    uint64_t account              # owner id (NEW: STP key; MASS_CANCEL: whose orders)
    price_t price                 # ticks: NEW limit price, MODIFY new price; ignored for MARKET
    qty_t qty                     # lots: NEW quantity, MODIFY new open quantity
    uint32_t book                 # Engine.apply_batch: book index; Book.apply_batch ignores it
    uint8_t op                    # CMD_*
    int8_t side                   # BID/BUY = 0, ASK/SELL = 1
    uint8_t order_type            # OT_LIMIT / OT_MARKET
    uint8_t tif                   # TIF_GTC / TIF_IOC / TIF_FOK
    int8_t stp                    # STP_* override, -1 = the book's default mode
    uint8_t post_only             # 1 = reject instead of taking liquidity
    uint8_t _pad0
    uint8_t _pad1

cdef struct BookEvent:            # one row of EVENT_DTYPE (numpy, align=True); 80 bytes
    uint64_t seq                  # per-book sequence number: 1, 2, 3, ... (0 = no book, Engine reject)
    oid_t oid                     # the order this event is about (FILL: the taker); 0 for L2/MASS
    oid_t maker_oid               # FILL: the resting (maker) order; else 0
    uint64_t trade_id             # FILL: per-book trade id 1, 2, ...; else 0
    uint64_t account              # account of `oid` (FILL: taker's); MASS_CANCELED: the account
    price_t price                 # ticks: FILL trade price, L2 level price, else the order's price
    qty_t qty                     # lots: accepted/filled/cancelled/expired qty; L2 level total
    qty_t leaves                  # lots: open qty of `oid` after this event
    int64_t aux                   # FILL: maker leaves; MODIFIED: previous leaves; L2: order count;
                                  # MASS_CANCELED: number of orders cancelled
    uint32_t book                 # book index inside an Engine (0 for a lone Book)
    uint8_t kind                  # EV_*
    int8_t side                   # side of `oid` (FILL: aggressor side; L2: level side; -1 unknown)
    uint8_t reason                # lowlat.enums.Reject code (REJECTED; CANCELED by STP = 70)
    uint8_t _pad

cdef struct Level:                # one price level (one per tick of the band and side); 24 bytes
    int32_t head                  # first order slot (oldest), -1 when empty
    int32_t tail                  # last order slot (newest), -1 when empty
    qty_t qty                     # lots: sum of open qty of the level's orders
    int64_t count                 # number of orders at the level

cdef struct Order:                # one slot of the preallocated order pool; 48 bytes
    oid_t oid                     # order id
    uint64_t account              # owner id (STP)
    price_t price                 # ticks
    qty_t qty                     # lots still open (leaves)
    int32_t prev                  # previous (older) order at the level, -1 = head
    int32_t next                  # next (newer) order at the level, -1 = tail; free-list link when free
    side_t side                   # BID / ASK
    int8_t stp                    # STP override, -1 = book default
    uint8_t post_only             # kept for modify (a post-only order may not cross when moved)
    uint8_t live                  # 1 while resting in the book

cdef struct MapEntry:             # one bucket of the order-id map; 16 bytes
    uint64_t key                  # order id
    int64_t slot                  # order pool slot, -1 = empty bucket

cdef struct RestingOrder:         # one row of RESTING_DTYPE (Book.resting_orders / Book.restore); 40 bytes
    oid_t oid                     # order id
    uint64_t account              # owner id (STP)
    price_t price                 # ticks
    qty_t qty                     # lots open
    int8_t side                   # BID / ASK
    int8_t stp                    # STP override, -1 = book default
    uint8_t post_only             # 0 / 1
    uint8_t _pad
    uint32_t _pad2

cdef struct BookCore:
    price_t lo                    # ticks: lowest price of the band; level index = price - lo
    int64_t n_ticks               # band width (levels per side)
    Level* levels[2]              # [side][index]
    uint64_t* bits[2]             # [side] bitmap of non-empty levels (fast next-best search)
    int64_t nwords                # words per bitmap
    int64_t best[2]               # best level index per side, -1 when the side is empty
    Order* orders                 # pool of max_orders slots
    int32_t max_orders
    int32_t free_head             # free-list head slot, -1 when the pool is full
    int64_t n_live                # resting orders
    int64_t n_side[2]             # resting orders per side
    MapEntry* map                 # order id -> slot: open addressing, linear probing, backward-shift
                                  # deletion (no tombstones); key and slot share a cache line
    uint64_t map_mask
    int map_shift                 # 70 - log2(buckets): Fibonacci hashing of 64-id blocks (see _hash)
    BookEvent* ev                 # event output of the current command/batch
    int64_t ev_cap
    int64_t ev_n
    int overflow                  # set when an event did not fit (never expected: callers bound first)
    uint64_t seq                  # last event sequence number
    uint64_t trade_id             # last trade id
    uint32_t book_index           # copied into every event
    int8_t default_stp            # STP mode for orders whose stp is -1
    double tick_size              # quote currency per tick (FlatBuffer double -> ticks)
    int busy                      # 1 while a nogil batch runs on the book (other threads get RuntimeError)

# --- the engine, usable from other compiled modules (all nogil, no allocation) ---
cdef reject_t book_new_c(BookCore* b, oid_t oid, uint64_t account, int side, int otype, int tif, int stp,
                         int post_only, price_t price, qty_t qty, qty_t* filled) noexcept nogil
cdef reject_t book_cancel_c(BookCore* b, oid_t oid) noexcept nogil
cdef reject_t book_modify_c(BookCore* b, oid_t oid, price_t price, qty_t qty, qty_t* filled) noexcept nogil
cdef int64_t book_mass_cancel_c(BookCore* b, uint64_t account) noexcept nogil
cdef reject_t book_apply_c(BookCore* b, const BookCommand* c, qty_t* filled) noexcept nogil
cdef int64_t book_event_bound_c(BookCore* b, const BookCommand* c) noexcept nogil
cdef int book_check_c(BookCore* b) except -1 nogil
cdef reject_t ticks_from_double_c(double price, double tick_size, price_t* out) noexcept nogil

@cython.final
cdef class Book:
    cdef BookCore core            # the C state; arrays below own its memory
    cdef object _levels_arr       # numpy LEVEL_REC arrays, one per side
    cdef object _orders_arr       # numpy ORDER_REC array (the pool)
    cdef object _bits_arr
    cdef object _map_arr          # numpy MapEntry array
    cdef object _events_arr       # numpy EVENT_DTYPE array for the per-call API
    cdef BookEvent* _own_ev       # &_events_arr[0]: core.ev outside a batch call (batch calls borrow core.ev)
    cdef int64_t _own_cap         # rows of _events_arr
    cdef readonly object symbol   # name given by the Engine (or None)
    cdef reject_t _check_bound_c(self, const BookCommand* c) except 255
    cdef int _after_c(self) except -1
    cdef int _idle_c(self) except -1


@cython.final
cdef class Engine:
    cdef BookCore** _cores        # book index -> core (borrowed from the Book objects in _books)
    cdef const char** _syms       # book index -> UTF-8 symbol (bytes kept alive by _sym_bytes)
    cdef Py_ssize_t* _sym_lens
    cdef list _sym_bytes
    cdef Py_ssize_t _n
    cdef Py_ssize_t _cap
    cdef list _books
    cdef dict _by_symbol
    cdef readonly int default_stp
    cdef int _acquire_c(self) except -1
