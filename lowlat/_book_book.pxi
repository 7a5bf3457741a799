# Included by _book.pyx.  The Book class (one instrument): allocation and its memory check, the per-call
# API, the batch entry points over _book_apply.pxi, reads, and snapshot/restore over _book_snapshot.pxi.

cdef uint64_t _pow2_at_least(uint64_t n) noexcept:
    cdef uint64_t p = 128  # >= two 64-bucket blocks
    while p < n:
        p <<= 1
    return p


def _book_bytes(n_ticks: int, max_orders: int, event_capacity: int) -> int:
    # what Book.__cinit__ allocates, in bytes (Python ints: no overflow for any argument)
    if event_capacity < 0:
        event_capacity = 3 * max_orders + 16
    return (2 * n_ticks * sizeof(Level) + 2 * ((n_ticks + 63) >> 6) * 8 + max_orders * sizeof(Order)
            + _pow2_at_least(2 * max_orders) * sizeof(MapEntry) + event_capacity * sizeof(BookEvent))


def _memory_available():
    # Bytes this process may still allocate: MemAvailable + SwapFree, capped by the cgroup limit (v2 or v1).
    # None when nothing can be read (non-Linux): then allocation failure is the only check.
    best = None
    try:
        with open("/proc/meminfo") as f:
            info = {k: int(v.split()[0]) * 1024 for k, v in (ln.split(":", 1) for ln in f if ":" in ln)}
        best = info["MemAvailable"] + info.get("SwapFree", 0)
    except (OSError, KeyError, ValueError):
        pass
    for lim_p, cur_p in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                         ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            with open(lim_p) as f:
                lim = f.read().strip()
            with open(cur_p) as f:
                cur = int(f.read().strip())
            if lim != "max" and int(lim) < (1 << 62):
                left = max(0, int(lim) - cur)
                best = left if best is None else min(best, left)
        except (OSError, ValueError):
            pass
    return best


cdef int _check_memory(int64_t n_ticks, int64_t max_orders, int64_t event_capacity) except -1:
    # Refuse a book the machine cannot hold, before allocating: numpy maps lazily and __cinit__ touches every
    # page, so an oversized book would otherwise end in the OOM killer, not in a MemoryError.  Books below
    # 64 MiB skip the /proc reads.
    need = _book_bytes(n_ticks, max_orders, event_capacity)
    if need < (64 << 20):
        return 0
    avail = _memory_available()
    if avail is not None and need > avail:
        raise MemoryError(f"Book(n_ticks={n_ticks}, max_orders={max_orders}, event_capacity={event_capacity}) "
                          f"needs {need / 2**20:,.0f} MiB; {avail / 2**20:,.0f} MiB are available "
                          f"(see Book.memory_bytes)")
    return 0


cdef inline object _int(object x):
    # The per-call API's integer contract: int, bool and numpy integers (anything with __index__).  Cython's
    # C-integer conversion alone would take a float through __int__ and silently truncate it.
    if PyLong_Check(x):
        return x
    return PyNumber_Index(x)  # TypeError for float, Decimal, str, ...


@cython.final
cdef class Book:
    """One instrument's limit order book with price-time matching.

    Parameters
    ----------
    lo : int
        Lowest price of the band, in ticks.
    n_ticks : int
        Band width: prices ``lo .. lo + n_ticks - 1`` are accepted (others: ``Reject.OUT_OF_RANGE``).
        ``lo + n_ticks - 1`` must fit in int64.  Memory: 48 bytes per tick (both sides) plus a 2-bit bitmap.
    max_orders : int
        Resting-order capacity (pool + id map); a full pool rejects with ``Reject.BOOK_FULL``.
        Memory: 48 bytes per order for the pool and 32-64 bytes for the id map (a power of two >= 2 *
        max_orders buckets of 16 bytes), plus the event buffer (below).
    default_stp : int
        ``StpMode`` for orders that give none (stp = -1).
    tick_size : float
        Quote currency per tick, used by :func:`to_ticks` style conversion of FlatBuffer prices.
    event_capacity : int
        Rows of the per-call event buffer (``Book.events``); default ``3 * max_orders + 16``, enough for any
        single command.  A command that could need more raises ``ValueError`` before running.
        Memory: 80 bytes per row, so 240 bytes per order with the default.

    Notes
    -----
    Memory: with the default event buffer about 320-350 bytes per order plus 48 bytes per tick (1M orders
    and a 1M-tick band: about 350 MiB), all allocated and touched at construction.
    :meth:`memory_bytes` gives the exact figure and :attr:`nbytes` what a book holds; a size larger than
    the memory available to the process (MemAvailable + free swap, and the cgroup limit) raises
    ``MemoryError`` before anything is allocated.

    Quantities are 1 .. ``MAX_QTY`` (2**32 - 1, the FlatBuffer quantity range) lots; other quantities get
    ``Reject.BAD_QUANTITY``.  With at most 2**30 orders no level total or sum of open quantities can wrap.
    Prices and quantities are integers: the per-call methods refuse floats (``TypeError``) rather than
    truncating them; ``int``, ``bool`` and numpy integers are accepted.
    """

    def __cinit__(self, price_t lo, int64_t n_ticks, int64_t max_orders, int default_stp=STP_NONE,
                  double tick_size=1.0, int64_t event_capacity=-1, symbol=None, uint32_t book_index=0):
        cdef int side
        cdef uint64_t buckets
        cdef Level[::1] lv0, lv1
        cdef Order[::1] ords
        cdef uint64_t[::1] bits
        cdef MapEntry[::1] mp
        cdef BookEvent[::1] evs
        cdef int64_t i
        if n_ticks <= 0 or n_ticks > (1 << 31):
            raise ValueError("n_ticks must be in 1 .. 2**31")
        if lo > INT64_MAX - (n_ticks - 1):
            raise ValueError(f"the band lo .. lo + n_ticks - 1 must fit in int64 (lo={lo}, n_ticks={n_ticks})")
        if max_orders <= 0 or max_orders > (1 << 30):
            raise ValueError("max_orders must be in 1 .. 2**30")
        if default_stp < STP_NONE or default_stp > STP_DECREMENT_AND_CANCEL:
            raise ValueError("default_stp must be a StpMode value")
        if not (tick_size > 0 and isfinite(tick_size)):
            raise ValueError(f"tick_size must be finite and > 0, got {tick_size}")
        if event_capacity < 0:
            event_capacity = 3 * max_orders + 16
        if event_capacity < 16:
            raise ValueError("event_capacity must be >= 16")
        _check_memory(n_ticks, max_orders, event_capacity)
        memset(&self.core, 0, sizeof(BookCore))
        self.symbol = symbol
        b = &self.core
        b.lo = lo
        b.n_ticks = n_ticks
        b.nwords = (n_ticks + 63) >> 6
        self._levels_arr = (np.zeros(n_ticks, LEVEL_DTYPE), np.zeros(n_ticks, LEVEL_DTYPE))
        for side in range(2):
            self._levels_arr[side]["head"] = -1
            self._levels_arr[side]["tail"] = -1
        lv0 = self._levels_arr[0]
        lv1 = self._levels_arr[1]
        b.levels[0] = &lv0[0]
        b.levels[1] = &lv1[0]
        self._bits_arr = np.zeros(2 * b.nwords, np.uint64)
        bits = self._bits_arr
        b.bits[0] = &bits[0]
        b.bits[1] = &bits[b.nwords]
        b.best[0] = -1
        b.best[1] = -1
        self._orders_arr = np.zeros(max_orders, ORDER_DTYPE)
        ords = self._orders_arr
        b.orders = &ords[0]
        b.max_orders = <int32_t>max_orders
        for i in range(max_orders):
            b.orders[i].next = <int32_t>(i + 1) if i + 1 < max_orders else -1
            b.orders[i].prev = -1
        b.free_head = 0
        buckets = _pow2_at_least(2 * <uint64_t>max_orders)
        self._map_arr = np.zeros(buckets, MAP_DTYPE)
        self._map_arr["slot"] = -1
        mp = self._map_arr
        b.map = &mp[0]
        b.map_mask = buckets - 1
        b.map_shift = 64 + 6  # block index = top (log2(buckets) - 6) bits of the product
        while buckets > 1:
            buckets >>= 1
            b.map_shift -= 1
        self._events_arr = np.zeros(event_capacity, EVENT_DTYPE)
        # np.zeros maps pages lazily; touch them now so no command pays a page fault later
        self._events_arr.view(np.uint8)[:] = 0
        self._bits_arr.view(np.uint8)[:] = 0
        evs = self._events_arr
        self._own_ev = &evs[0]
        self._own_cap = event_capacity
        b.ev = self._own_ev
        b.ev_cap = self._own_cap
        b.book_index = book_index
        b.default_stp = <int8_t>default_stp
        b.tick_size = tick_size

    # --- per-call API -----------------------------------------------------------------------------

    cdef reject_t _check_bound_c(self, const BookCommand* c) except 255:
        # per-call commands write from row 0 of the book's own event buffer
        if book_event_bound_c(&self.core, c) > self.core.ev_cap:
            raise ValueError("Book.events is too small for this command (raise event_capacity)")
        self.core.ev_n = 0
        return 0

    cdef int _idle_c(self) except -1:
        # a nogil batch on this book is running in another thread: refuse instead of racing it
        if self.core.busy:
            raise RuntimeError("this Book is being used by a batch running in another thread")
        return 0

    cdef int _after_c(self) except -1:
        if self.core.overflow:
            self.core.overflow = 0
            _raise_overflow()
        if LOWLAT_DEBUG:
            book_check_c(&self.core)
        return 0

    def submit(self, oid, side, price, qty, account=0, order_type=OT_LIMIT, tif=TIF_GTC, bint post_only=False,
               stp=-1) -> tuple:
        """Submit a new order.

        Parameters
        ----------
        oid : int
            Order id (unique among resting orders).
        side : int
            ``Side.BUY`` (0) or ``Side.SELL`` (1).
        price : int
            Limit price in ticks (ignored for MARKET).
        qty : int
            Quantity in lots.
        account, order_type, tif, post_only, stp
            Owner id (self-trade prevention), ``OrderType``, ``TimeInForce``, post-only flag and
            ``StpMode`` override (-1 = the book's default).

        Returns
        -------
        (reject_code, filled_qty, n_events)
            ``reject_code`` is a ``Reject`` value (0 = accepted); the command's events are
            ``self.events[:n_events]`` until the next call.  Cost: O(1) plus O(1) per maker touched.

        Raises
        ------
        TypeError
            An argument is not an integer (a float is refused, not truncated).
        """
        cdef oid_t oid_c = _int(oid)
        cdef int side_c = _int(side)
        cdef price_t price_c = _int(price)
        cdef qty_t qty_c = _int(qty)
        cdef uint64_t account_c = _int(account)
        cdef int order_type_c = _int(order_type)
        cdef int tif_c = _int(tif)
        cdef int stp_c = _int(stp)
        self._idle_c()
        cdef BookCommand c
        cdef qty_t filled = 0
        cdef reject_t r
        c.op = CMD_NEW
        c.side = <int8_t>side_c if -128 <= side_c <= 127 else -1
        c.qty = qty_c
        c.stp = <int8_t>stp_c if -128 <= stp_c <= 127 else -128
        self._check_bound_c(&c)
        r = book_new_c(&self.core, oid_c, account_c, side_c, order_type_c, tif_c, stp_c, post_only, price_c, qty_c,
                       &filled)
        self._after_c()
        return r, filled, self.core.ev_n

    def cancel(self, oid) -> tuple:
        """Cancel a resting order.  Returns ``(reject_code, 0, n_events)``; cost O(1).  ``TypeError`` for a
        non-integer id."""
        cdef oid_t oid_c = _int(oid)
        self._idle_c()
        self.core.ev_n = 0
        cdef reject_t r = book_cancel_c(&self.core, oid_c)
        self._after_c()
        return r, 0, self.core.ev_n

    def modify(self, oid, price, qty) -> tuple:
        """Replace a resting order's price (ticks) and open quantity (lots).

        Only a quantity decrease at the same price keeps time priority.  A new price that crosses trades
        immediately.  Returns ``(reject_code, filled_qty, n_events)``; ``TypeError`` for a non-integer argument.
        """
        cdef oid_t oid_c = _int(oid)
        cdef price_t price_c = _int(price)
        cdef qty_t qty_c = _int(qty)
        self._idle_c()
        cdef BookCommand c
        cdef qty_t filled = 0
        c.op = CMD_MODIFY
        c.oid = oid_c
        c.qty = qty_c
        self._check_bound_c(&c)
        cdef reject_t r = book_modify_c(&self.core, oid_c, price_c, qty_c, &filled)
        self._after_c()
        return r, filled, self.core.ev_n

    def mass_cancel(self, account) -> tuple:
        """Cancel every resting order of ``account``.  Returns ``(0, n_cancelled, n_events)``; O(levels + orders)."""
        cdef uint64_t account_c = _int(account)
        self._idle_c()
        cdef BookCommand c
        c.op = CMD_MASS_CANCEL
        self._check_bound_c(&c)
        cdef int64_t n = book_mass_cancel_c(&self.core, account_c)
        self._after_c()
        return 0, n, self.core.ev_n

    @property
    def events(self):
        """The per-call event buffer (``EVENT_DTYPE``); the last call wrote rows ``[:n_events]``.  No copy."""
        return self._events_arr

    def last_events(self):
        """``events[:n]`` of the last per-call command (a numpy view, no copy)."""
        self._idle_c()
        return self._events_arr[:self.core.ev_n]

    # --- batch API ----------------------------------------------------------------------------------

    def apply_batch(self, const BookCommand[::1] commands not None, BookEvent[::1] events_out not None,
                    int64_t[::1] latency_ns=None) -> tuple:
        """Apply ``commands`` (``COMMAND_DTYPE``) in one nogil loop, writing events into ``events_out``.

        Stops early, before a command whose worst-case event count does not fit in the rest of
        ``events_out``; call again with ``commands[n_done:]`` after reading the events.  When
        ``latency_ns`` (int64, len >= len(commands)) is given, the wall time of each command in ns
        (``clock_gettime`` pair, ~20-40 ns overhead included) is written to it.

        Returns
        -------
        (n_done, n_events)
        """
        self._idle_c()
        cdef FrameRun fr
        cdef BookCore* cores[1]
        cdef Py_ssize_t n = commands.shape[0]
        if latency_ns is not None and latency_ns.shape[0] < n:
            raise ValueError("latency_ns is shorter than commands")
        if n == 0:
            return 0, 0
        if events_out.shape[0] == 0:
            raise ValueError("events_out is empty")
        memset(&fr, 0, sizeof(FrameRun))
        cores[0] = &self.core
        fr.cores = cores
        fr.n_books = 1
        _fr_outputs(&fr, events_out, latency_ns)
        self.core.busy = 1
        try:
            with nogil:
                _run_commands(&fr, &commands[0], n)
            _fr_raise(&fr, True)
            return fr.n_frames, fr.n_ev
        finally:
            _restore_events(self)

    def apply_frames(self, const unsigned char[::1] frames not None, BookEvent[::1] events_out not None,
                     int64_t[::1] latency_ns=None) -> tuple:
        """Apply framed FlatBuffer commands (``[u32 LE length][finance.CommandMsg]`` repeated, as
        ``lowlat._core.frame`` builds them) in one nogil loop: verify + decode each frame (zero-copy reader of
        ``lowlat._core``), convert the price to ticks with ``tick_size``, match, write events.

        The symbol in the commands is not checked (a Book is one instrument; see ``Engine.apply_frames``).
        An undecodable frame gives one REJECTED/MALFORMED event with seq 0 and is skipped; an off-tick price
        gives REJECTED/OFF_TICK, a missing id/quantity/limit price REJECTED/MISSING_FIELD.  Stops before a
        truncated trailing frame (left unconsumed) and, like :meth:`apply_batch`, before a frame whose
        events may not fit.  ``latency_ns[i]`` gets frame i's decode+match time (first len(latency_ns)).

        Returns
        -------
        (n_frames, bytes_consumed, n_events)
        """
        self._idle_c()
        cdef FrameRun fr
        cdef BookCore* cores[1]
        cdef Py_ssize_t n = frames.shape[0]
        if events_out.shape[0] == 0:
            raise ValueError("events_out is empty")
        if n == 0:
            return 0, 0, 0
        memset(&fr, 0, sizeof(FrameRun))
        cores[0] = &self.core
        fr.cores = cores
        fr.n_books = 1
        _fr_outputs(&fr, events_out, latency_ns)
        self.core.busy = 1
        try:
            with nogil:
                _run_frames(&fr, <const char*>&frames[0], n)
            _fr_raise(&fr, False)
            return fr.n_frames, fr.pos, fr.n_ev
        finally:
            _restore_events(self)

    # --- reads ----------------------------------------------------------------------------------------

    @property
    def lo(self) -> int:
        """Lowest price of the band (ticks)."""
        return self.core.lo

    @property
    def n_ticks(self) -> int:
        """Band width (levels per side)."""
        return self.core.n_ticks

    @property
    def max_orders(self) -> int:
        return self.core.max_orders

    @property
    def nbytes(self) -> int:
        """Bytes of memory this book holds (ladder, bitmaps, order pool, id map, event buffer)."""
        return (self._levels_arr[0].nbytes + self._levels_arr[1].nbytes + self._bits_arr.nbytes
                + self._orders_arr.nbytes + self._map_arr.nbytes + self._events_arr.nbytes)

    @staticmethod
    def memory_bytes(int64_t n_ticks, int64_t max_orders, int64_t event_capacity=-1) -> int:
        """Bytes a ``Book(lo, n_ticks, max_orders, event_capacity=...)`` allocates (and touches) at
        construction: 48 per tick, 48 + 32..64 per order, 80 per event row.  Cost: O(1)."""
        return _book_bytes(n_ticks, max_orders, event_capacity)

    @property
    def tick_size(self) -> float:
        return self.core.tick_size

    @property
    def default_stp(self) -> int:
        return self.core.default_stp

    @property
    def n_orders(self) -> int:
        """Resting orders."""
        return self.core.n_live

    @property
    def seq(self) -> int:
        """Sequence number of the last event written."""
        return self.core.seq

    @property
    def trade_id(self) -> int:
        """Last trade id."""
        return self.core.trade_id

    def best_bid(self):
        """Best bid price in ticks, or None.  O(1)."""
        self._idle_c()
        return None if self.core.best[BID] < 0 else self.core.lo + self.core.best[BID]

    def best_ask(self):
        """Best ask price in ticks, or None.  O(1)."""
        self._idle_c()
        return None if self.core.best[ASK] < 0 else self.core.lo + self.core.best[ASK]

    def levels(self, int side):
        """Zero-copy read-only numpy view (``LEVEL_DTYPE``: head, tail, qty, count) of every level of a side,
        indexed by ``price - lo``."""
        self._idle_c()
        if side != BID and side != ASK:
            raise ValueError("side must be 0 (BID) or 1 (ASK)")
        v = self._levels_arr[side].view()
        v.flags.writeable = False
        return v

    def depth(self, int side, Py_ssize_t n):
        """The best ``n`` levels of ``side`` as a ``DEPTH_DTYPE`` array (price, qty, count), best first."""
        self._idle_c()
        cdef Py_ssize_t k = 0
        cdef int64_t lv
        if side != BID and side != ASK:
            raise ValueError("side must be 0 (BID) or 1 (ASK)")
        if n < 0:
            raise ValueError("n must be >= 0")
        if n > self.core.n_side[side]:
            n = self.core.n_side[side]  # a side has at most one non-empty level per resting order
        out = np.empty(n, DEPTH_DTYPE)
        cdef int64_t[:, ::1] o = out.view(np.int64).reshape(n, 3)
        lv = self.core.best[side]
        while lv >= 0 and k < n:
            o[k, 0] = self.core.lo + lv
            o[k, 1] = self.core.levels[side][lv].qty
            o[k, 2] = self.core.levels[side][lv].count
            k += 1
            lv = _next_opp(&self.core, side, lv)
        return out[:k]

    def queue(self, int side, price_t price):
        """The L3 FIFO at one level as an ``L3_DTYPE`` array (oid, account, qty), oldest first."""
        self._idle_c()
        cdef int64_t idx
        cdef Py_ssize_t k = 0
        cdef int32_t s
        if side != BID and side != ASK:
            raise ValueError("side must be 0 (BID) or 1 (ASK)")
        if not _in_band(&self.core, price):
            return np.empty(0, L3_DTYPE)
        idx = <int64_t>(<uint64_t>price - <uint64_t>self.core.lo)
        out = np.empty(self.core.levels[side][idx].count, L3_DTYPE)
        cdef uint64_t[:, ::1] o = out.view(np.uint64).reshape(-1, 3)
        s = self.core.levels[side][idx].head
        while s >= 0:
            o[k, 0] = self.core.orders[s].oid
            o[k, 1] = self.core.orders[s].account
            o[k, 2] = <uint64_t>self.core.orders[s].qty
            k += 1
            s = self.core.orders[s].next
        return out

    def order(self, oid_t oid):
        """``(side, price, qty, account)`` of a resting order, or None.  O(1)."""
        self._idle_c()
        cdef int32_t s = _map_find(&self.core, oid)
        if s < 0:
            return None
        o = &self.core.orders[s]
        return o.side, o.price, o.qty, o.account

    def check(self) -> None:
        """Run the full invariant scan (only in a ``LOWLAT_DEBUG`` build; a no-op otherwise)."""
        self._idle_c()
        book_check_c(&self.core)

    # --- snapshot / restore (recovery) ------------------------------------------------------

    def resting_orders(self):
        """Every resting order in priority order, as a ``RESTING_DTYPE`` array (oid, account, price, qty, side,
        stp, post_only): bids best price first, then asks best price first; FIFO (oldest first) inside a level.
        With ``seq`` and ``trade_id`` this is the book's whole state (see :meth:`restore`).  O(orders + levels)."""
        self._idle_c()
        out = np.zeros(self.core.n_live, RESTING_DTYPE)
        if self.core.n_live == 0:
            return out
        cdef RestingOrder[::1] o = out
        with nogil:
            book_resting_c(&self.core, &o[0])
        return out

    def restore(self, const unsigned char[::1] orders not None, uint64_t seq, uint64_t trade_id) -> None:
        """Load a saved state into this empty, unused book: resting orders (``RESTING_DTYPE`` rows as bytes, in
        priority order as :meth:`resting_orders` returns them) and the event sequence / trade-id counters.

        No events are written.  Raises ``ValueError`` (book not empty, row size, more rows than slots, a side,
        price, quantity or STP mode out of range, a duplicate id, or a crossed result) and then leaves the book
        empty.  Cost: O(rows), one nogil loop (~30-60 ns per order).
        """
        cdef BookCore* b = &self.core
        cdef Py_ssize_t n, i = 0
        cdef int rc = 0
        self._idle_c()
        if b.n_live or b.seq or b.trade_id:
            raise ValueError("restore needs an empty, unused book")
        if orders.shape[0] % sizeof(RestingOrder):
            raise ValueError(f"orders: {orders.shape[0]} bytes is not a whole number of RESTING_DTYPE rows")
        n = orders.shape[0] // sizeof(RestingOrder)
        if n > b.max_orders:
            raise ValueError(f"{n} orders do not fit in max_orders={b.max_orders}")
        with nogil:
            rc = book_restore_c(b, &orders[0] if n else NULL, n, seq, trade_id, &i)
        if rc != 0:
            self._reset_arrays()  # back to the empty book it was (every live order is from this call)
        if rc == -1:
            raise ValueError(f"restore: row {i} has a side, price, quantity, STP mode or post_only out of range")
        if rc == -2:
            raise ValueError(f"restore: row {i} repeats an order id")
        if rc == -3:
            raise ValueError("restore: the orders cross (best bid >= best ask)")
        if LOWLAT_DEBUG:
            book_check_c(b)

    def _reset_arrays(self) -> None:
        # the state __cinit__ builds, for an error path of restore (not a hot path: numpy over every array)
        cdef BookCore* b = &self.core
        for side in range(2):
            lv = self._levels_arr[side]
            lv["head"] = -1
            lv["tail"] = -1
            lv["qty"] = 0
            lv["count"] = 0
        self._bits_arr[:] = 0
        self._map_arr["key"] = 0
        self._map_arr["slot"] = -1
        ords = self._orders_arr
        ords.view(np.uint8)[:] = 0
        ords["next"] = np.arange(1, b.max_orders + 1, dtype=np.int32)
        ords["next"][b.max_orders - 1] = -1
        ords["prev"] = -1
        b.free_head = 0
        b.best[0] = -1
        b.best[1] = -1
        b.n_live = 0
        b.n_side[0] = 0
        b.n_side[1] = 0
