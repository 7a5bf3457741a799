"""The ``shm://`` bus's compiled data path: a member's inbound records as one ``MessageBatch`` (``ShmIntake``) and
an output ``MessageBatch`` pushed into the destination members' rings (``BatchRoutes``).

A bus record (``lowlat.transport.shm._codec``) is ``u32 sid, u16 subject length, u32 meta length`` (little endian,
10 bytes), then the subject, the meta (``encode_meta``: the reply subject, then ``\\n``-separated ``key:value``
headers) and the payload.  Both classes work on those bytes in place: no Python object per record on the normal
path, one compiled call per batch.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_RawFree, PyMem_RawRealloc
from libc.stdint cimport int64_t, uint32_t, uint64_t
from libc.string cimport memchr, memcmp

from lowlat._batch cimport MessageBatch
from lowlat._core cimport ll_load_u16, ll_load_u32, ll_store_u16, ll_store_u32
from lowlat._ring cimport _Ring
from lowlat._utf8 cimport utf8_ok

RECORD_HEADER = SHM_HEADER
SID_ALL = SHM_SID_ALL
SID_INBOX = SHM_SID_INBOX


cdef Py_ssize_t shm_reply_len(const unsigned char* m, Py_ssize_t n) noexcept nogil:
    # The reply subject's length at the start of a record's meta (0: none), or -1 when the meta is not what
    # encode_meta writes: not UTF-8, or a header line without a non-empty "key:" (what _codec.split_meta and
    # decode_meta reject).
    cdef const unsigned char* nl
    cdef const unsigned char* colon
    cdef Py_ssize_t r, p, e
    if n == 0:
        return 0
    if not utf8_ok(m, n):
        return -1
    nl = <const unsigned char*>memchr(m, 10, n)
    if nl == NULL:
        return n
    r = nl - m
    p = r + 1
    while True:
        nl = <const unsigned char*>memchr(m + p, 10, n - p)
        e = n if nl == NULL else nl - m
        colon = <const unsigned char*>memchr(m + p, 58, e - p)
        if colon == NULL or colon == m + p:
            return -1
        if e == n:
            return r
        p = e + 1


cdef int _grow(void** p, Py_ssize_t n, size_t item) except -1:
    cdef void* q = PyMem_RawRealloc(p[0], n * item if n > 0 else item)
    if q == NULL:
        raise MemoryError()
    p[0] = q
    return 0


cdef class ShmIntake:
    """Moves a member's pending inbound records into a ``MessageBatch`` in one call, zero-copy.

    ``ShmIntake(ring, max_batch=1024)``: ``ring`` is the member's inbound ``MpscRing``.  The batch's offsets point
    into the ring's data area (read-only); the records stay in the ring until the next ``take`` (or ``release``),
    which is the batch lifetime rule.  Cost: ~15-30 ns per record plus a UTF-8 check of subject and meta; no
    allocation except for the records handed back.
    Counters: ``taken`` (records consumed), ``malformed`` (records skipped because ``_codec.decode`` would reject
    them), ``handed_back`` (records for other subscriptions).
    """

    def __cinit__(self, _Ring ring not None, Py_ssize_t max_batch=1024):
        if max_batch < 1 or max_batch > (1 << 24):
            raise ValueError(f"max_batch must be in 1..{1 << 24}, got {max_batch}")
        ring.check_open_c()
        self._ring = ring
        self._cap = max_batch
        _grow(<void**>&self._offs, max_batch, sizeof(uint64_t))
        _grow(<void**>&self._lens, max_batch, sizeof(uint64_t))
        self._view = ring.mem.view_c(ring.r.data, <Py_ssize_t>ring.r.cap, True)

    def __init__(self, _Ring ring not None, Py_ssize_t max_batch=1024):
        pass  # everything happens in __cinit__

    def __dealloc__(self):
        PyMem_RawFree(self._offs)
        PyMem_RawFree(self._lens)

    def take(self, MessageBatch batch not None, int64_t sid, bint all_mine, list other not None):
        """Consume what the previous ``take`` returned, then take up to ``min(max_batch, batch.capacity)`` pending
        records without waiting.

        Records addressed to ``sid`` (and, with ``all_mine``, those addressed to every matching plain
        subscription, ``SID_ALL``) go into ``batch`` (cleared first; payload, subject and reply subject as spans
        into the ring; headers are not carried).  Well-formed records for anyone else are appended to ``other`` as
        ``bytes`` (for the transport's generic dispatch); malformed ones are counted and skipped.

        Returns the number of records taken (0: nothing was readable).  Raises ``RingError`` for a ring whose
        shared memory was corrupted by something other than a lowlat producer.
        """
        cdef _Ring ring = self._ring
        cdef const unsigned char* base
        cdef const unsigned char* rec
        cdef Py_ssize_t j, k, cap
        cdef uint64_t off, n, ls, lm
        cdef Py_ssize_t rl
        cdef uint32_t rsid
        ring.check_open_c()
        if ring.r.c_peek_end != 0:
            ring.commit()
        if batch._external and batch._owner is self._view:
            batch.n = 0
        else:
            batch.clear()
            batch.set_buffer(self._view)
        cap = self._cap if self._cap < batch.capacity else batch.capacity
        k = ring.peek_spans_c(cap, self._offs, self._lens)
        base = <const unsigned char*>ring.r.data
        for j in range(k):
            off = self._offs[j]
            n = self._lens[j]
            rec = base + off
            if n < SHM_HEADER:
                self.malformed += 1
                continue
            rsid = ll_load_u32(<const char*>rec)
            ls = ll_load_u16(<const char*>rec + 4)
            lm = ll_load_u32(<const char*>rec + 6)
            if SHM_HEADER + ls + lm > n or not utf8_ok(rec + SHM_HEADER, <Py_ssize_t>ls):
                self.malformed += 1
                continue
            rl = shm_reply_len(rec + SHM_HEADER + ls, <Py_ssize_t>lm)
            if rl < 0:
                self.malformed += 1
                continue
            if rsid == <uint64_t>sid or (rsid == SHM_SID_ALL and all_mine):
                batch.add_ref_c(<int64_t>(off + SHM_HEADER + ls + lm), <int64_t>(n - SHM_HEADER - ls - lm),
                                <int64_t>(off + SHM_HEADER), <int64_t>ls, <int64_t>(off + SHM_HEADER + ls), rl)
            else:
                other.append(PyBytes_FromStringAndSize(<const char*>rec, <Py_ssize_t>n))
                self.handed_back += 1
        self.taken += k
        return k

    def release(self):
        """Consume the records of the last ``take`` now (their batch becomes invalid)."""
        if not self._ring.r.closed and self._ring.r.c_peek_end != 0:
            self._ring.commit()


cdef class BatchRoutes:
    """Routing scratch for publishing one ``MessageBatch``: ``scan`` groups its messages by destination key, and
    ``push`` copies the records of one key into one ring in one call.

    The key of a message is its destination subject (the fixed ``subject`` of ``scan``, else its ``reply`` field);
    for an ``_INBOX.<member>.<token>`` reply subject it is ``_INBOX.<member>`` (one key per requester, whatever
    the token).  Messages without a destination, or with one longer than 65535 bytes (``too_long``), are skipped.
    Cost: ~20-40 ns per message to scan (one hash of the key), ~30 ns plus the copy per pushed record.
    """

    def __dealloc__(self):
        PyMem_RawFree(self._kidx)
        PyMem_RawFree(self._order)
        PyMem_RawFree(self._start)
        PyMem_RawFree(self._count)
        PyMem_RawFree(self._koff)
        PyMem_RawFree(self._klen)
        PyMem_RawFree(self._khash)
        PyMem_RawFree(self._table)
        PyMem_RawFree(self._parts)
        PyMem_RawFree(self._plens)
        PyMem_RawFree(self._hdrs)

    cdef int grow_c(self, Py_ssize_t n) except -1:
        cdef Py_ssize_t t = 16
        if n <= self._cap:
            return 0
        while t < 2 * n:
            t <<= 1
        _grow(<void**>&self._kidx, n, sizeof(int64_t))
        _grow(<void**>&self._order, n, sizeof(int64_t))
        _grow(<void**>&self._start, n, sizeof(int64_t))
        _grow(<void**>&self._count, n, sizeof(int64_t))
        _grow(<void**>&self._koff, n, sizeof(int64_t))
        _grow(<void**>&self._klen, n, sizeof(int64_t))
        _grow(<void**>&self._khash, n, sizeof(uint64_t))
        _grow(<void**>&self._table, t, sizeof(int64_t))
        _grow(<void**>&self._parts, 3 * n, sizeof(void*))
        _grow(<void**>&self._plens, 3 * n, sizeof(uint64_t))
        _grow(<void**>&self._hdrs, n * 16, 1)
        self._cap = n
        self._tmask = t - 1
        return 0

    cdef Py_ssize_t key_c(self, const unsigned char* s, Py_ssize_t n) noexcept:
        # Index of the key s[:n], added when new.  Precondition: grow_c(out.n) (a key per message fits).
        cdef uint64_t h = 1469598103934665603ULL
        cdef Py_ssize_t i, slot, kk
        cdef const unsigned char* base = self._out.base_c()
        for i in range(n):
            h = (h ^ s[i]) * 1099511628211ULL
        slot = <Py_ssize_t>(h & <uint64_t>self._tmask)
        while True:
            kk = self._table[slot]
            if kk < 0:
                break
            if (self._khash[kk] == h and self._klen[kk] == n
                    and memcmp(base + self._koff[kk], s, n) == 0):
                return kk
            slot = (slot + 1) & self._tmask
        kk = self.n_keys
        self._table[slot] = kk
        self._khash[kk] = h
        self._koff[kk] = s - base
        self._klen[kk] = n
        self._count[kk] = 0
        self.n_keys = kk + 1
        return kk

    def scan(self, MessageBatch out not None, subject=None):
        """Group ``out``'s messages by destination key; returns the distinct keys (``bytes``) in first-seen order.

        ``subject`` (bytes or None): every message goes to it; None: each to its own ``reply`` subject.  ``out``
        must stay unchanged until the last ``push`` for it.
        """
        cdef Py_ssize_t i, n = out.n, k, rlen, q
        cdef const unsigned char* base
        cdef const unsigned char* r
        cdef int64_t acc
        self.grow_c(n if n > 0 else 1)
        self._out = out
        self.n_keys = 0
        self.too_long = 0
        for i in range(self._tmask + 1):
            self._table[i] = -1
        if subject is not None:
            self._subject = bytes(subject)
            if PyBytes_GET_SIZE(self._subject) > 0xFFFF:
                raise ValueError(f"subject of {PyBytes_GET_SIZE(self._subject)} bytes: at most 65535")
            for i in range(n):
                self._order[i] = i
            self._start[0] = 0
            self._count[0] = n
            self.n_keys = 1 if n else 0
            return [self._subject] if n else []
        self._subject = None
        base = out.base_c()
        for i in range(n):
            rlen = out._rlen[i]
            if rlen == 0 or rlen > 0xFFFF:
                if rlen:
                    self.too_long += 1
                self._kidx[i] = -1
                continue
            r = base + out._roff[i]
            if rlen > 7 and memcmp(r, b"_INBOX.", 7) == 0:
                q = rlen - 1
                while q > 7 and r[q] != 46:   # the last '.': the token follows it
                    q -= 1
                if q > 7:
                    rlen = q
            k = self.key_c(r, rlen)
            self._kidx[i] = k
            self._count[k] += 1
        acc = 0
        for k in range(self.n_keys):
            self._start[k] = acc
            acc += self._count[k]
            self._count[k] = 0
        for i in range(n):
            k = self._kidx[i]
            if k >= 0:
                self._order[self._start[k] + self._count[k]] = i
                self._count[k] += 1
        return [PyBytes_FromStringAndSize(<const char*>base + self._koff[k], <Py_ssize_t>self._klen[k])
                for k in range(self.n_keys)]

    def count(self, Py_ssize_t key):
        """How many messages of the scanned batch have destination ``key`` (an index into ``scan``'s list)."""
        self._check_key(key)
        return self._count[key]

    def indices(self, Py_ssize_t key):
        """The message indices (in batch order) of destination ``key``."""
        self._check_key(key)
        return [self._order[self._start[key] + j] for j in range(self._count[key])]

    cdef int _check_key(self, Py_ssize_t key) except -1:
        if key < 0 or key >= self.n_keys:
            raise IndexError(f"key {key} not in a scan of {self.n_keys} keys")
        return 0

    def push(self, _Ring ring not None, Py_ssize_t key, uint32_t sid, Py_ssize_t done=0):
        """Push the records of destination ``key`` from its ``done``-th message on into ``ring``, in batch order,
        addressed to ``sid`` (record subject: the message's destination subject, no meta).  Returns how many were
        pushed (fewer than asked when the ring is full: call again with ``done`` advanced)."""
        cdef MessageBatch out = self._out
        cdef Py_ssize_t j, i, m, slen
        cdef const unsigned char* base
        cdef const unsigned char* subj
        cdef char* hdr
        self._check_key(key)
        if done < 0 or done > self._count[key]:
            raise ValueError(f"done {done} outside 0..{self._count[key]}")
        m = self._count[key] - done
        base = out.base_c()
        for j in range(m):
            i = self._order[self._start[key] + done + j]
            if self._subject is not None:
                subj = <const unsigned char*>PyBytes_AS_STRING(self._subject)
                slen = PyBytes_GET_SIZE(self._subject)
            else:
                subj = base + out._roff[i]
                slen = out._rlen[i]
            hdr = self._hdrs + 16 * j
            ll_store_u32(hdr, sid)
            ll_store_u16(hdr + 4, <unsigned short>slen)
            ll_store_u32(hdr + 6, 0)
            self._parts[3 * j] = hdr
            self._plens[3 * j] = SHM_HEADER
            self._parts[3 * j + 1] = <void*>subj
            self._plens[3 * j + 1] = <uint64_t>slen
            self._parts[3 * j + 2] = <void*>(base + out._poff[i])
            self._plens[3 * j + 2] = <uint64_t>out._plen[i]
        return ring.push_gather_c(self._parts, self._plens, m, 3)
