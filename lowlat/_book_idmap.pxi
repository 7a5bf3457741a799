# Included by _book.pyx.  The order-id map: open addressing with Robin Hood probing and backward-shift
# deletion over a power-of-two table (key = order id, value = order slot), plus the prefetches the batch loops
# issue ahead of the command they will apply.

cdef inline uint64_t _hash(const BookCore* b, uint64_t key) noexcept nogil:
    # Home bucket.  Ids are usually sequential: keep runs of 64 consecutive ids in 64 consecutive buckets
    # (one 1 KiB block: new orders hit warm cache lines / TLB entries) and scatter the blocks with
    # Fibonacci hashing, so structured ids degrade to plain multiplicative hashing, not to clustering.
    return ((((key >> 6) * <uint64_t>0x9E3779B97F4A7C15) >> b.map_shift) << 6) | (key & 63)


cdef inline uint64_t _dist(const BookCore* b, uint64_t pos) noexcept nogil:
    # probe distance of the entry stored at pos from its home bucket
    return (pos - _hash(b, b.map[pos].key)) & b.map_mask


cdef inline int32_t _map_find(const BookCore* b, uint64_t key) noexcept nogil:
    # Robin Hood lookup: stop at an empty bucket or at an entry closer to its home than we are to ours.
    cdef uint64_t i = _hash(b, key), d = 0
    while b.map[i].slot >= 0:
        if b.map[i].key == key:
            return <int32_t>b.map[i].slot
        if _dist(b, i) < d:
            return -1
        i = (i + 1) & b.map_mask
        d += 1
    return -1


cdef inline void _map_insert(BookCore* b, uint64_t key, int32_t slot) noexcept nogil:
    # Robin Hood insert.  Precondition: key absent; the table has >= 2x max_orders buckets.
    cdef uint64_t i = _hash(b, key), d = 0, de
    cdef MapEntry cur, tmp
    cur.key = key
    cur.slot = slot
    while b.map[i].slot >= 0:
        de = _dist(b, i)
        if de < d:  # the resident is richer (closer to home): it moves on, we take its bucket
            tmp = b.map[i]
            b.map[i] = cur
            cur = tmp
            d = de
        i = (i + 1) & b.map_mask
        d += 1
    b.map[i] = cur


cdef inline void _map_erase(BookCore* b, uint64_t key) noexcept nogil:
    # Backward-shift deletion: pull the following entries one bucket back until an empty bucket or an
    # entry already at its home.  No tombstones, so lookups stay short however long add/cancel churn runs.
    cdef uint64_t i = _hash(b, key), d = 0, j
    while True:
        if b.map[i].slot < 0 or _dist(b, i) < d:
            return  # absent
        if b.map[i].key == key:
            break
        i = (i + 1) & b.map_mask
        d += 1
    j = (i + 1) & b.map_mask
    while b.map[j].slot >= 0 and _dist(b, j) != 0:
        b.map[i] = b.map[j]
        i = j
        j = (j + 1) & b.map_mask
    b.map[i].slot = -1


cdef inline void _prefetch_id(const BookCore* b, const BookCommand* c) noexcept nogil:
    # Batch look-ahead, stage 1: pull the id-map bucket of a command a few rows ahead into cache.  Random
    # cancels of a deep book are otherwise dominated by this one cache miss.
    if c.op <= CMD_MODIFY:
        ll_prefetch(&b.map[_hash(b, c.oid)])


cdef inline void _prefetch_order(const BookCore* b, const BookCommand* c) noexcept nogil:
    # stage 2 (its bucket is cached by now): pull the resting order a cancel/modify will unlink
    cdef int32_t s
    if c.op == CMD_CANCEL or c.op == CMD_MODIFY:
        s = _map_find(b, c.oid)
        if s >= 0:
            ll_prefetch(&b.orders[s])
