# Included by _book.pyx.  The Engine class: many books, one nogil batch across them (routing by book index
# or by symbol).

@cython.final
cdef class Engine:
    """Many books, one per symbol, driven by one batch loop.

    Books are added with :meth:`add_book` (allocation happens there, never per command).  A batch row's
    ``book`` field is the book's index (``Engine.index(symbol)``); an unknown index gives a REJECTED
    event with ``Reject.UNKNOWN_SYMBOL`` and seq 0.
    """

    def __cinit__(self, int default_stp=STP_NONE):
        if default_stp < STP_NONE or default_stp > STP_DECREMENT_AND_CANCEL:
            raise ValueError("default_stp must be a StpMode value")
        self.default_stp = default_stp
        self._books = []
        self._by_symbol = {}
        self._cores = NULL
        self._syms = NULL
        self._sym_lens = NULL
        self._sym_bytes = []
        self._n = 0
        self._cap = 0

    def __dealloc__(self):
        PyMem_RawFree(self._cores)
        PyMem_RawFree(self._syms)
        PyMem_RawFree(self._sym_lens)

    def add_book(self, str symbol, price_t lo, int64_t n_ticks, int64_t max_orders, double tick_size=1.0,
                 default_stp=None, int64_t event_capacity=-1) -> Book:
        """Create the book for ``symbol`` (see :class:`Book` for the parameters); returns it."""
        cdef BookCore** grown
        cdef const char** grown_s
        cdef Py_ssize_t* grown_l
        if symbol in self._by_symbol:
            raise ValueError(f"book {symbol!r} already exists")
        if self._n >= 0xFFFFFFFF:
            raise ValueError("too many books")
        bk = Book(lo, n_ticks, max_orders, self.default_stp if default_stp is None else default_stp,
                  tick_size, event_capacity, symbol, <uint32_t>self._n)
        sym_b = symbol.encode()
        if self._n == self._cap:
            grown = <BookCore**>PyMem_RawRealloc(self._cores, (self._cap * 2 + 4) * sizeof(BookCore*))
            if grown == NULL:
                raise MemoryError()
            self._cores = grown
            grown_s = <const char**>PyMem_RawRealloc(self._syms, (self._cap * 2 + 4) * sizeof(const char*))
            if grown_s == NULL:
                raise MemoryError()
            self._syms = grown_s
            grown_l = <Py_ssize_t*>PyMem_RawRealloc(self._sym_lens, (self._cap * 2 + 4) * sizeof(Py_ssize_t))
            if grown_l == NULL:
                raise MemoryError()
            self._sym_lens = grown_l
            self._cap = self._cap * 2 + 4
        self._cores[self._n] = &(<Book>bk).core
        self._sym_bytes.append(sym_b)
        self._syms[self._n] = <const char*>sym_b
        self._sym_lens[self._n] = len(sym_b)
        self._n += 1
        self._books.append(bk)
        self._by_symbol[symbol] = bk
        return bk

    cdef int _acquire_c(self) except -1:
        # mark every book busy for a nogil batch (checked and set under the GIL, so it cannot race)
        cdef Py_ssize_t k
        for k in range(self._n):
            if self._cores[k].busy:
                raise RuntimeError("a book of this Engine is being used by a batch in another thread")
        for k in range(self._n):
            self._cores[k].busy = 1
        return 0

    def __getitem__(self, symbol) -> Book:
        return self._by_symbol[symbol]

    def __contains__(self, symbol) -> bool:
        return symbol in self._by_symbol

    def __len__(self) -> int:
        return self._n

    def index(self, symbol) -> int:
        """Book index of ``symbol`` (the ``book`` field of batch rows and events)."""
        return (<Book>self._by_symbol[symbol]).core.book_index

    @property
    def books(self) -> list:
        """Books in index order (a new list)."""
        return list(self._books)

    def apply_batch(self, const BookCommand[::1] commands not None, BookEvent[::1] events_out not None,
                    int64_t[::1] latency_ns=None) -> tuple:
        """Apply ``commands`` across books in one nogil loop; same contract as :meth:`Book.apply_batch`
        (events of all books interleaved in command order, each carrying its ``book`` index and that
        book's own sequence number).  Returns ``(n_done, n_events)``."""
        cdef FrameRun fr
        cdef Py_ssize_t n = commands.shape[0], k
        if latency_ns is not None and latency_ns.shape[0] < n:
            raise ValueError("latency_ns is shorter than commands")
        if n == 0:
            return 0, 0
        if events_out.shape[0] == 0:
            raise ValueError("events_out is empty")
        memset(&fr, 0, sizeof(FrameRun))
        fr.cores = self._cores
        fr.n_books = self._n
        fr.by_index = True
        _fr_outputs(&fr, events_out, latency_ns)
        # each book writes straight into events_out at the running offset; its own buffer is restored after
        self._acquire_c()
        try:
            with nogil:
                _run_commands(&fr, &commands[0], n)
            _fr_raise(&fr, True)
            return fr.n_frames, fr.n_ev
        finally:
            for k in range(self._n):
                _restore_events(<Book>self._books[k])

    def apply_frames(self, const unsigned char[::1] frames not None, BookEvent[::1] events_out not None,
                     int64_t[::1] latency_ns=None) -> tuple:
        """Apply framed FlatBuffer commands across books, routed by the command's ``symbol`` (UTF-8, exact
        match); a MassCancel without symbol cancels the account in every book.  An unknown or absent symbol
        gives REJECTED/UNKNOWN_SYMBOL with seq 0 and book 0xFFFFFFFF.  Otherwise as
        :meth:`Book.apply_frames`.  Returns ``(n_frames, bytes_consumed, n_events)``."""
        cdef FrameRun fr
        cdef Py_ssize_t n = frames.shape[0]
        if events_out.shape[0] == 0:
            raise ValueError("events_out is empty")
        if n == 0 or self._n == 0:
            if n and not self._n:
                raise ValueError("the engine has no books")
            return 0, 0, 0
        memset(&fr, 0, sizeof(FrameRun))
        fr.cores = self._cores
        fr.syms = self._syms
        fr.sym_lens = self._sym_lens
        fr.n_books = self._n
        _fr_outputs(&fr, events_out, latency_ns)
        self._acquire_c()
        try:
            with nogil:
                _run_frames(&fr, <const char*>&frames[0], n)
            _fr_raise(&fr, False)
            return fr.n_frames, fr.pos, fr.n_ev
        finally:
            for k in range(self._n):
                _restore_events(<Book>self._books[k])


cdef int _restore_events(Book bk) except -1:
    # end of a batch call: the book's event writer back on its own buffer, idle, no overflow pending
    bk.core.ev = bk._own_ev
    bk.core.ev_cap = bk._own_cap
    bk.core.ev_n = 0
    bk.core.overflow = 0
    bk.core.busy = 0
    return 0
