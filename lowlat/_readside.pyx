"""``OrderStates``: the matcher's read side of recent orders (last known state per order id), in C.

A bounded mapping ``order id -> [status, side, price_ticks, leaves, cum, account, reason]`` that keeps the
most recently written ``max_orders`` orders: writing an order makes it the newest; writing one more than
``max_orders`` evicts the oldest (the behaviour of an ``OrderedDict`` with ``move_to_end`` and
``popitem(last=False)``).  The compiled matching stage writes it with no Python object per order (and the
garbage collector has nothing to traverse); queries read it with ``get``.

Memory: 64 bytes per order for the states plus 32-64 bytes for the id index, allocated at construction.
"""

from cpython.mem cimport PyMem_RawCalloc, PyMem_RawFree
from libc.stdint cimport int32_t, int64_t, uint64_t


cdef class OrderStates:
    """Up to ``max_orders`` order states; see the module docstring.  ``get``/``in``/``len``/``items`` as a dict."""

    def __cinit__(self, Py_ssize_t max_orders=100_000):
        cdef uint64_t buckets = 128  # >= two 64-bucket blocks
        cdef Py_ssize_t i
        if max_orders < 0 or max_orders > (1 << 30):
            raise ValueError(f"max_orders must be in 0..2**30, got {max_orders}")
        self.max_orders = max_orders
        while buckets < 2 * <uint64_t>max_orders:
            buckets <<= 1
        self._mask = buckets - 1
        self._shift = 64 + 6  # block index = top (log2(buckets) - 6) bits of the product
        while buckets > 1:
            buckets >>= 1
            self._shift -= 1
        self._pool = <OState*>PyMem_RawCalloc(max_orders if max_orders else 1, sizeof(OState))
        self._map = <OBucket*>PyMem_RawCalloc(self._mask + 1, sizeof(OBucket))
        if self._pool == NULL or self._map == NULL:
            raise MemoryError()
        for i in range(<Py_ssize_t>(self._mask + 1)):
            self._map[i].slot = -1
        for i in range(max_orders):
            self._pool[i].newer = <int32_t>(i + 1) if i + 1 < max_orders else -1
        self._free = 0 if max_orders else -1
        self._oldest = -1
        self._newest = -1
        self._n = 0

    def __init__(self, Py_ssize_t max_orders=100_000):
        pass  # everything happens in __cinit__

    def __dealloc__(self):
        PyMem_RawFree(self._pool)
        PyMem_RawFree(self._map)

    cdef uint64_t _home(self, uint64_t key) noexcept:
        # as the engine's id map: runs of 64 consecutive ids in 64 consecutive buckets (new orders hit warm cache
        # lines), the blocks scattered by Fibonacci hashing
        return ((((key >> 6) * <uint64_t>0x9E3779B97F4A7C15) >> self._shift) << 6) | (key & 63)

    cdef int64_t find_c(self, uint64_t oid) noexcept:
        cdef uint64_t i = self._home(oid)
        while self._map[i].slot >= 0:
            if self._map[i].key == oid:
                return self._map[i].slot
            i = (i + 1) & self._mask
        return -1

    cdef void _erase(self, uint64_t oid) noexcept:
        # remove oid from the index, shifting later entries of its probe run back (no tombstones)
        cdef uint64_t i = self._home(oid), j, h
        while self._map[i].key != oid or self._map[i].slot < 0:
            if self._map[i].slot < 0:
                return
            i = (i + 1) & self._mask
        j = i
        while True:
            j = (j + 1) & self._mask
            if self._map[j].slot < 0:
                break
            h = self._home(self._map[j].key)
            # the entry at j may stay when its home is cyclically in (i, j]
            if (i <= j and i < h <= j) or (i > j and (h > i or h <= j)):
                continue
            self._map[i] = self._map[j]
            i = j
        self._map[i].slot = -1

    cdef void _unlink(self, int32_t s) noexcept:
        cdef OState* o = &self._pool[s]
        if o.older >= 0:
            self._pool[o.older].newer = o.newer
        else:
            self._oldest = o.newer
        if o.newer >= 0:
            self._pool[o.newer].older = o.older
        else:
            self._newest = o.older

    cdef void _link_newest(self, int32_t s) noexcept:
        cdef OState* o = &self._pool[s]
        o.older = self._newest
        o.newer = -1
        if self._newest >= 0:
            self._pool[self._newest].newer = s
        else:
            self._oldest = s
        self._newest = s

    cdef void touch_c(self, int64_t slot) noexcept:
        # make slot the newest
        if slot != self._newest:
            self._unlink(<int32_t>slot)
            self._link_newest(<int32_t>slot)

    cdef int64_t put_c(self, uint64_t oid, int64_t status, int64_t side, int64_t price, int64_t leaves,
                       int64_t cum, uint64_t account, int64_t reason) noexcept:
        # write oid's state and make it the newest, evicting the oldest when full; returns its slot (-1 when
        # max_orders is 0: nothing is kept)
        cdef int64_t s = self.find_c(oid)
        cdef int32_t old
        cdef uint64_t i
        cdef OState* o
        if s < 0:
            if self.max_orders == 0:
                return -1
            if self._n == self.max_orders:
                old = self._oldest
                self._erase(self._pool[old].oid)
                self._unlink(old)
                self._pool[old].newer = self._free
                self._free = old
                self._n -= 1
            s = self._free
            self._free = self._pool[s].newer
            self._link_newest(<int32_t>s)
            i = self._home(oid)
            while self._map[i].slot >= 0:
                i = (i + 1) & self._mask
            self._map[i].key = oid
            self._map[i].slot = s
            self._n += 1
        else:
            self.touch_c(s)
        o = &self._pool[s]
        o.oid = oid
        o.status = status
        o.side = side
        o.price = price
        o.leaves = leaves
        o.cum = cum
        o.account = account
        o.reason = reason
        return s

    def put(self, uint64_t oid, state) -> None:
        """Write ``state`` (``[status, side, price_ticks, leaves, cum, account, reason]``) as oid's newest."""
        if len(state) != 7:
            raise ValueError(f"an order state has 7 fields, got {len(state)}")
        self.put_c(oid, state[0], state[1], state[2], state[3], state[4], state[5], state[6])

    def get(self, oid, default=None):
        """oid's state as a new list ``[status, side, price_ticks, leaves, cum, account, reason]``, or
        ``default``.  Reading does not change the order's recency."""
        cdef int64_t s
        if not (0 <= oid < (1 << 64)):
            return default
        s = self.find_c(oid)
        if s < 0:
            return default
        return _state(&self._pool[s])

    def __contains__(self, oid) -> bool:
        return 0 <= oid < (1 << 64) and self.find_c(oid) >= 0

    def __len__(self) -> int:
        return self._n

    def items(self) -> list:
        """``[(oid, state), ...]`` from the oldest to the newest."""
        cdef int32_t s = self._oldest
        out = []
        while s >= 0:
            out.append((self._pool[s].oid, _state(&self._pool[s])))
            s = self._pool[s].newer
        return out

    def __repr__(self) -> str:
        return f"OrderStates({self._n} of {self.max_orders})"


cdef list _state(const OState* o):
    return [o.status, o.side, o.price, o.leaves, o.cum, o.account, o.reason]
