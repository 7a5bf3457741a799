"""``MessageBatch``: many messages as offsets into one buffer (the transport contract's batch path).

A subscription hands over everything pending as one batch (``Subscription.take_batch``); a transport publishes
one (``Transport.publish_batch_to``).  No Python object exists per message on either side: compiled stages read
``payload``/``subject``/``reply`` spans as ``(offset, length)`` pairs into ``buf``.

Two modes, chosen per fill (between ``clear()`` calls):

- copying: ``append()`` copies each message into the batch's own fixed arena (one ``memcpy`` per field); when
  the arena or the message slots are full ``append`` returns ``False`` and the caller keeps the message for the
  next batch: nothing is dropped by the batch.
- external: an adapter that already holds the bytes (a socket receive buffer, a ring span) calls
  ``set_buffer(buf)`` and ``add_ref(...)`` with offsets into it: zero copies.

**Lifetime rule**: a batch taken from a subscription is valid until the next ``take_batch``/``next_batch`` call
on that subscription (or its close); the adapter may reuse the memory after that.  Copy what you keep.
A reply or subject of length 0 means "none".  Offsets and lengths are ``int64``.
"""

from cpython.bytes cimport PyBytes_AS_STRING
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from libc.stdint cimport int32_t, int64_t, uint64_t
from libc.string cimport memcmp, memcpy

import numpy as np

from .errors import LowlatError


cdef inline Py_ssize_t _put_span(unsigned char* a, Py_ssize_t at, const unsigned char* s, int64_t off,
                                 int64_t ln, int64_t* prev) noexcept:
    # Store s[off:off+ln] at a+at unless it is the span stored last (prev: source offset, length, stored
    # offset; updated); returns the new end of the used arena.
    if ln and not (off == prev[0] and ln == prev[1]):
        memcpy(a + at, s + off, ln)
        prev[0] = off
        prev[1] = ln
        prev[2] = at
        return at + ln
    return at


cdef class MessageBatch:
    """Up to ``capacity`` messages; in copying mode their bytes live in an arena of ``arena_bytes`` bytes.

    Cost: ``append`` one memcpy per field (~20-40 ns plus the copy); ``add_ref`` a few stores.
    Memory: ``capacity * 48`` bytes of offsets plus the arena.
    """

    def __cinit__(self, Py_ssize_t capacity=1024, Py_ssize_t arena_bytes=1 << 20):
        if capacity <= 0 or capacity > (1 << 24):
            raise ValueError(f"capacity must be in 1..{1 << 24}, got {capacity}")
        if arena_bytes <= 0 or arena_bytes > (1 << 31):
            raise ValueError(f"arena_bytes must be in 1..{1 << 31}, got {arena_bytes}")
        self.capacity = capacity
        self.arena_bytes = arena_bytes
        arrs = np.zeros((6, capacity), dtype=np.int64)
        # Python reads the rows as arrays, compiled code through typed views of the same memory.
        rows = (self.payload_off, self.payload_len, self.subject_off, self.subject_len,
                self.reply_off, self.reply_len) = (arrs[0], arrs[1], arrs[2], arrs[3], arrs[4], arrs[5])
        self._poff, self._plen, self._soff, self._slen, self._roff, self._rlen = rows
        self._arena = bytearray(arena_bytes)   # never resized: pointers into it stay valid
        self._owner = self._arena
        self._view = self._arena
        self._ro = memoryview(self._arena).toreadonly()
        self._external = False
        self.n = 0
        self.used = 0

    def clear(self):
        """Empty the batch and return to copying mode (the arena is reused)."""
        self.n = 0
        self.used = 0
        if self._external:
            self._external = False
            self._owner = self._arena
            self._view = self._arena
            self._ro = memoryview(self._arena).toreadonly()

    def set_buffer(self, buf):
        """Point the (empty) batch at ``buf``, an adapter-owned buffer that ``add_ref`` offsets index."""
        if self.n:
            raise LowlatError("set_buffer on a non-empty batch: clear() it first")
        cdef const unsigned char[::1] v = memoryview(buf).cast("B")
        self._owner = buf
        self._view = v
        self._ro = memoryview(buf).cast("B").toreadonly()
        self._external = True

    cdef int append_c(self, const unsigned char* payload, Py_ssize_t plen,
                      const unsigned char* subject, Py_ssize_t slen,
                      const unsigned char* reply, Py_ssize_t rlen) except -1:
        """Copy one message in; 1 if added, 0 if the batch is full (slots or arena)."""
        if self._external:
            raise LowlatError("append on a batch in external-buffer mode: clear() it first")
        if plen < 0 or slen < 0 or rlen < 0:
            raise ValueError("negative length")
        cdef Py_ssize_t need = plen + slen + rlen
        if self.n >= self.capacity or need > self.arena_bytes - self.used:
            return 0
        cdef unsigned char* a = <unsigned char*>&self._view[0]
        cdef Py_ssize_t i = self.n
        cdef Py_ssize_t at = self.used
        self._poff[i] = at
        self._plen[i] = plen
        if plen:
            memcpy(a + at, payload, plen)
        at += plen
        self._soff[i] = at
        self._slen[i] = slen
        if slen:
            memcpy(a + at, subject, slen)
        at += slen
        self._roff[i] = at
        self._rlen[i] = rlen
        if rlen:
            memcpy(a + at, reply, rlen)
        at += rlen
        self.used = at
        self.n = i + 1
        return 1

    cdef int add_ref_c(self, int64_t poff, int64_t plen, int64_t soff, int64_t slen,
                       int64_t roff, int64_t rlen) except -1:
        """Add one message by reference into the external buffer; 1 if added, 0 if the slots are full."""
        cdef int64_t size = self._view.shape[0]
        if not self._external:
            raise LowlatError("add_ref needs set_buffer() first")
        if (poff < 0 or plen < 0 or poff > size - plen or soff < 0 or slen < 0 or soff > size - slen
                or roff < 0 or rlen < 0 or roff > size - rlen):
            raise ValueError("span outside the batch's buffer")
        if self.n >= self.capacity:
            return 0
        cdef Py_ssize_t i = self.n
        self._poff[i] = poff
        self._plen[i] = plen
        self._soff[i] = soff
        self._slen[i] = slen
        self._roff[i] = roff
        self._rlen[i] = rlen
        self.n = i + 1
        return 1

    def append(self, payload, subject="", reply=None):
        """Copy one message in; ``False`` (nothing changed) when the batch is full.  ``subject``/``reply``
        are ``str`` or bytes; ``reply=None`` means no reply subject."""
        cdef const unsigned char[::1] p = memoryview(payload).cast("B") if len(payload) else b"\0"
        cdef bytes s = subject.encode() if isinstance(subject, str) else bytes(subject)
        cdef bytes r = b"" if reply is None else (reply.encode() if isinstance(reply, str) else bytes(reply))
        cdef Py_ssize_t plen = len(payload)
        return bool(self.append_c(&p[0], plen, <const unsigned char*>PyBytes_AS_STRING(s), len(s),
                                  <const unsigned char*>PyBytes_AS_STRING(r), len(r)))

    def add_ref(self, int64_t poff, int64_t plen, int64_t soff=0, int64_t slen=0,
                int64_t roff=0, int64_t rlen=0):
        """Add one message by reference (offsets into the buffer given to ``set_buffer``); ``False`` when full."""
        return bool(self.add_ref_c(poff, plen, soff, slen, roff, rlen))

    cdef Py_ssize_t extend_c(self, MessageBatch src, Py_ssize_t start, Py_ssize_t stop) except -1:
        # Copy src[start:stop] in order until this batch is full; a subject/reply span equal (same offset and
        # length in src) to the previous message's is stored once and shared.  Returns how many were copied.
        if self._external:
            raise LowlatError("extend_from into a batch in external-buffer mode: clear() it first")
        if src is self:
            raise ValueError("extend_from: the source must not be the batch itself")
        if start < 0 or stop > src.n or start > stop:
            raise IndexError(f"range {start}..{stop} outside a batch of {src.n}")
        cdef const unsigned char* s = src.base_c()
        cdef unsigned char* a = <unsigned char*>&self._view[0]
        cdef Py_ssize_t i, k = self.n, at = self.used
        cdef int64_t plen, soff, slen, roff, rlen, need
        cdef int64_t ps[3]   # previous subject: source offset, length, where it was stored
        cdef int64_t pr[3]   # the same for the reply
        cdef int64_t b0
        ps[0] = ps[1] = pr[0] = pr[1] = -1
        ps[2] = pr[2] = 0
        for i in range(start, stop):
            if k >= self.capacity:
                break
            plen = src._plen[i]
            soff = src._soff[i]
            slen = src._slen[i]
            roff = src._roff[i]
            rlen = src._rlen[i]
            need = plen
            if slen and not (soff == ps[0] and slen == ps[1]):
                need += slen
            if rlen and not (roff == pr[0] and rlen == pr[1]):
                need += rlen
            if need > self.arena_bytes - at:
                break
            self._poff[k] = at
            self._plen[k] = plen
            if plen:
                memcpy(a + at, s + src._poff[i], plen)
                at += plen
            b0 = at
            at = _put_span(a, at, s, soff, slen, ps)
            self._soff[k] = ps[2] if slen else b0
            self._slen[k] = slen
            b0 = at
            at = _put_span(a, at, s, roff, rlen, pr)
            self._roff[k] = pr[2] if rlen else b0
            self._rlen[k] = rlen
            k += 1
        cdef Py_ssize_t done = k - self.n
        self.n = k
        self.used = at
        return done

    def extend_from(self, MessageBatch src not None, Py_ssize_t start=0, stop=None):
        """Copy messages ``start..stop-1`` of ``src`` (any mode) in, in order, until this batch is full;
        returns how many were copied (the rest is untouched: nothing is dropped).  Cost: one memcpy per field,
        a subject or reply shared with the previous message stored once."""
        return self.extend_c(src, start, src.n if stop is None else stop)

    def append_payloads(self, payloads, subject=""):
        """Copy each buffer of ``payloads`` in as a message to ``subject`` (stored once, shared), no reply;
        returns how many fit (the rest is not added).  Cost: one memcpy per payload."""
        if self._external:
            raise LowlatError("append on a batch in external-buffer mode: clear() it first")
        cdef bytes sb = subject.encode() if isinstance(subject, str) else bytes(subject)
        cdef Py_ssize_t slen = len(sb), k = self.n, at = self.used, done = 0, plen
        cdef int64_t soff = -1
        cdef const unsigned char[::1] v
        cdef const unsigned char* p
        for obj in payloads:
            if type(obj) is bytes:
                p = <const unsigned char*>PyBytes_AS_STRING(obj)
                plen = len(<bytes>obj)
            else:
                plen = memoryview(obj).nbytes
                v = memoryview(obj).cast("B") if plen else b"\0"
                p = &v[0]
            if k >= self.capacity or plen + (slen if soff < 0 else 0) > self.arena_bytes - at:
                break
            at = _put_msg(self, k, at, p, plen, <const unsigned char*>PyBytes_AS_STRING(sb), slen, &soff)
            k += 1
            done += 1
        self.n = k
        self.used = at
        return done

    def payload_bytes(self, Py_ssize_t start=0, stop=None):
        """Sum of the payload lengths of messages ``start..stop-1`` (bytes); O(stop - start)."""
        cdef Py_ssize_t e = self.n if stop is None else stop
        if start < 0 or e > self.n or start > e:
            raise IndexError(f"range {start}..{e} outside a batch of {self.n}")
        cdef int64_t total = 0
        cdef Py_ssize_t i
        for i in range(start, e):
            total += self._plen[i]
        return total

    cdef int _check(self, Py_ssize_t i) except -1:
        if i < 0 or i >= self.n:
            raise IndexError(f"message {i} not in a batch of {self.n}")
        return 0

    def payload(self, Py_ssize_t i):
        """Message ``i``'s payload: a read-only memoryview into ``buf`` (valid per the lifetime rule)."""
        self._check(i)
        return self._ro[self._poff[i]:self._poff[i] + self._plen[i]]

    def subject(self, Py_ssize_t i):
        """Message ``i``'s subject as ``str`` ("" if none)."""
        self._check(i)
        return bytes(self._view[self._soff[i]:self._soff[i] + self._slen[i]]).decode("utf-8", "replace")

    def reply(self, Py_ssize_t i):
        """Message ``i``'s reply subject as ``str``, or ``None``."""
        self._check(i)
        if self._rlen[i] == 0:
            return None
        return bytes(self._view[self._roff[i]:self._roff[i] + self._rlen[i]]).decode("utf-8", "replace")

    @property
    def buf(self):
        """The buffer every offset indexes (read-only memoryview)."""
        return memoryview(self._owner).cast("B").toreadonly()

    @property
    def external(self):
        """True if the offsets point into an adapter-owned buffer (zero-copy), False for the own arena."""
        return bool(self._external)

    def __len__(self):
        return self.n

    def __iter__(self):
        """Yield ``(subject, payload, reply)`` per message (a convenience for Python callers; allocates)."""
        cdef Py_ssize_t i
        for i in range(self.n):
            yield self.subject(i), self.payload(i), self.reply(i)

    def __repr__(self):
        return f"MessageBatch(n={self.n}, capacity={self.capacity}, external={bool(self._external)})"


cdef int check_stage_args(MessageBatch inb, Py_ssize_t start, MessageBatch out) except -1:
    """A stage reads ``inb`` from ``start`` and appends to ``out``: ``start`` in range, ``out`` in copying mode
    and distinct from ``inb``."""
    if start < 0 or start > inb.n:
        raise IndexError(f"start {start} outside a batch of {inb.n}")
    if out._external:
        raise LowlatError("the output batch is in external-buffer mode: clear() it first")
    if out is inb:
        raise ValueError("the output batch must not be the input batch")
    return 0


cdef inline Py_ssize_t _put_msg(MessageBatch b, Py_ssize_t k, Py_ssize_t at, const unsigned char* p, int64_t plen,
                                const unsigned char* subj, int64_t slen, int64_t* stored) noexcept:
    # Slot k of b := payload p (copied at `at`) with subject subj, no reply.  The subject is copied only when
    # *stored < 0 (then *stored is where it went), else the stored copy is shared.  Returns the new arena end.
    # Precondition: the caller checked the slot and the arena room.
    cdef unsigned char* a = <unsigned char*>&b._view[0]
    b._poff[k] = at
    b._plen[k] = plen
    if plen:
        memcpy(a + at, p, plen)
        at += plen
    if slen and stored[0] < 0:
        memcpy(a + at, subj, slen)
        stored[0] = at
        at += slen
    b._soff[k] = stored[0] if slen else at
    b._slen[k] = slen
    b._roff[k] = at
    b._rlen[k] = 0
    return at


# Where a plan's delivered messages take their subject from.
cdef enum:
    PLAN_FIXED = 0     # one subject for the whole batch (publish_batch_to(batch, subject))
    PLAN_REPLY = 1     # each message's reply span (publish_batch_to(batch): each to its reply subject)
    PLAN_SUBJECT = 2   # each message's own subject span (a copy handed to another event loop)


cdef inline uint64_t _fnv1a(const unsigned char* p, int64_t n) noexcept nogil:
    cdef uint64_t h = 14695981039346656037ULL
    cdef int64_t i
    for i in range(n):
        h = (h ^ p[i]) * 1099511628211ULL
    return h


cdef class FanoutPlan:
    """One batch routed to many receivers without a Python object per message (the inproc fan-out).

    ``FanoutPlan(src, subject)`` sends every message of ``src`` to ``subject``; ``FanoutPlan(src)`` sends each
    message to its reply subject (messages without one are skipped); ``FanoutPlan(src, own_subjects=True)``
    keeps each message's subject.  The distinct destinations are ``subjects`` (first-appearance order, with
    ``counts``): the caller routes each once, then adds one *row* per receiver (``add_row``) and marks per
    destination what the receiver gets (``select``: all of its messages, or every ``m``-th for member ``r``
    of a queue group of ``m``, so round robin stays per message).  ``deliver`` copies a row's messages into a
    receiver's batch in one C loop, applying its pending limits per message.
    Cost: construction O(n) (one hash per change of reply subject), ``deliver`` one memcpy per payload.
    """

    def __cinit__(self, MessageBatch src not None, subject=None, *, bint own_subjects=False):
        self.src = src
        self.n = src.n
        self.subjects = []
        self.counts = []
        cdef Py_ssize_t i
        cdef int64_t total = 0
        for i in range(self.n):
            total += src._plen[i]
        if subject is not None or own_subjects:
            self.kind = PLAN_SUBJECT if subject is None else PLAN_FIXED
            self.d = 1
            if self.kind == PLAN_FIXED:
                self.fixed = subject.encode() if isinstance(subject, str) else bytes(subject)
                self.subjects.append(subject if isinstance(subject, str) else self.fixed.decode("utf-8", "replace"))
                total += len(self.fixed) * self.n
            else:
                self.fixed = b""
                self.subjects.append("")
                for i in range(self.n):
                    total += src._slen[i]
            self.counts.append(self.n)
            self.bytes_upper = total
            return
        self.kind = PLAN_REPLY
        self.fixed = b""
        self._index_replies()
        for i in range(self.n):
            total += src._rlen[i]
        self.bytes_upper = total

    cdef int _index_replies(self) except -1:
        # Number the distinct reply subjects: consecutive equal ones cost a memcmp, others a hash probe.
        cdef MessageBatch b = self.src
        cdef Py_ssize_t n = self.n, i, slot
        cdef const unsigned char* base = b.base_c()
        self.sid = <int32_t*>PyMem_Malloc((n if n else 1) * sizeof(int32_t))
        self.ordv = <int32_t*>PyMem_Malloc((n if n else 1) * sizeof(int32_t))
        if self.sid == NULL or self.ordv == NULL:
            raise MemoryError()
        cdef Py_ssize_t size = 16
        while size < 2 * n:
            size <<= 1
        cdef int32_t* table = <int32_t*>PyMem_Malloc(size * sizeof(int32_t))
        cdef int32_t* first = <int32_t*>PyMem_Malloc((n if n else 1) * sizeof(int32_t))
        cdef int32_t* cnt = <int32_t*>PyMem_Malloc((n if n else 1) * sizeof(int32_t))
        if table == NULL or first == NULL or cnt == NULL:
            PyMem_Free(table)
            PyMem_Free(first)
            PyMem_Free(cnt)
            raise MemoryError()
        cdef int32_t nd = 0, s, prev = -1
        cdef int64_t roff, rlen, f
        for i in range(size):
            table[i] = -1
        for i in range(n):
            rlen = b._rlen[i]
            if rlen == 0:
                self.sid[i] = -1
                self.ordv[i] = 0
                continue
            roff = b._roff[i]
            s = -1
            if prev >= 0:
                f = first[prev]
                if b._rlen[f] == rlen and memcmp(base + b._roff[f], base + roff, rlen) == 0:
                    s = prev
            if s < 0:
                slot = <Py_ssize_t>(_fnv1a(base + roff, rlen) & <uint64_t>(size - 1))
                while table[slot] >= 0:
                    f = first[table[slot]]
                    if b._rlen[f] == rlen and memcmp(base + b._roff[f], base + roff, rlen) == 0:
                        s = table[slot]
                        break
                    slot = (slot + 1) & (size - 1)
                if s < 0:
                    s = nd
                    nd += 1
                    table[slot] = s
                    first[s] = <int32_t>i
                    cnt[s] = 0
            self.sid[i] = s
            self.ordv[i] = cnt[s]
            cnt[s] += 1
            prev = s
        self.d = nd
        for s in range(nd):
            f = first[s]
            self.subjects.append(bytes(b._view[b._roff[f]:b._roff[f] + b._rlen[f]]).decode("utf-8", "replace"))
            self.counts.append(cnt[s])
        PyMem_Free(table)
        PyMem_Free(first)
        PyMem_Free(cnt)
        return 0

    def __dealloc__(self):
        PyMem_Free(self.sid)
        PyMem_Free(self.ordv)
        PyMem_Free(self.sel)

    def add_row(self):
        """A new receiver row (selects nothing yet); returns its index."""
        cdef Py_ssize_t per = 3 * (self.d if self.d else 1), j
        cdef int64_t* grown
        if self.rows == self.rows_cap:
            self.rows_cap = 4 if self.rows_cap == 0 else 2 * self.rows_cap
            grown = <int64_t*>PyMem_Realloc(self.sel, self.rows_cap * per * sizeof(int64_t))
            if grown == NULL:
                raise MemoryError()
            self.sel = grown
        cdef int64_t* row = self.sel + self.rows * per
        for j in range(0, per, 3):
            row[j] = -1
            row[j + 1] = 0
            row[j + 2] = 0
        self.rows += 1
        return self.rows - 1

    def select(self, Py_ssize_t row, Py_ssize_t dest, int64_t group=0, int64_t member=0, int64_t base=0):
        """Row ``row`` receives destination ``dest``'s messages: all of them (``group=0``), or in a queue group
        of ``group`` members as member ``member``: the k-th message to ``dest`` goes to member
        ``(base + k) % group``."""
        if row < 0 or row >= self.rows or dest < 0 or dest >= self.d:
            raise IndexError(f"row {row} / destination {dest} outside {self.rows} / {self.d}")
        if group < 0 or (group > 0 and not 0 <= member < group) or base < 0:
            raise ValueError("group must be >= 0, 0 <= member < group and base >= 0")
        cdef int64_t* e = self.sel + (row * self.d + dest) * 3
        e[0] = group
        e[1] = member
        e[2] = base
        return None

    cdef bint _picked(self, const int64_t* row, Py_ssize_t i) noexcept:
        cdef int32_t s = 0
        cdef int64_t k = i
        if self.kind == PLAN_REPLY:
            s = self.sid[i]
            if s < 0:
                return False
            k = self.ordv[i]
        cdef const int64_t* e = row + 3 * s
        if e[0] < 0:
            return False
        return e[0] == 0 or (e[2] + k) % e[0] == e[1]

    cdef int _row_ok(self, Py_ssize_t row) except -1:
        if row < 0 or row >= self.rows:
            raise IndexError(f"row {row} outside {self.rows}")
        if self.src.n != self.n:
            raise LowlatError("the source batch changed since the plan was made")
        return 0

    def need(self, Py_ssize_t i):
        """Bytes message ``i`` takes in a receiver's batch (payload + subject)."""
        if i < 0 or i >= self.n:
            raise IndexError(f"message {i} not in a batch of {self.n}")
        if self.kind == PLAN_FIXED:
            return self.src._plen[i] + len(self.fixed)
        if self.kind == PLAN_REPLY:
            return self.src._plen[i] + self.src._rlen[i]
        return self.src._plen[i] + self.src._slen[i]

    def indices(self, Py_ssize_t row):
        """The messages row ``row`` receives, in order (for receivers that take one message at a time)."""
        self._row_ok(row)
        cdef const int64_t* r = self.sel + row * self.d * 3
        cdef Py_ssize_t i
        return [i for i in range(self.n) if self._picked(r, i)]

    def subject_of(self, Py_ssize_t i):
        """The destination subject of message ``i``."""
        if i < 0 or i >= self.n:
            raise IndexError(f"message {i} not in a batch of {self.n}")
        if self.kind == PLAN_REPLY:
            return self.subjects[self.sid[i]] if self.sid[i] >= 0 else None
        if self.kind == PLAN_FIXED:
            return self.subjects[0]
        return self.src.subject(i)

    def row_subject(self, Py_ssize_t row):
        """The one subject of everything row ``row`` receives, or None when it receives several."""
        self._row_ok(row)
        if self.kind == PLAN_FIXED:
            return self.subjects[0]
        if self.kind != PLAN_REPLY:
            return None
        cdef const int64_t* r = self.sel + row * self.d * 3
        cdef Py_ssize_t j, one = -1
        for j in range(self.d):
            if r[3 * j] >= 0:
                if one >= 0:
                    return None
                one = j
        return self.subjects[one] if one >= 0 else None

    @property
    def fixed_subject(self):
        """The one subject of every message (FanoutPlan(src, subject)), else None."""
        return self.subjects[0] if self.kind == PLAN_FIXED else None

    def deliver(self, Py_ssize_t row, MessageBatch dst not None, Py_ssize_t start, Py_ssize_t count,
                Py_ssize_t max_count, int64_t nbytes, int64_t max_bytes):
        """Copy row ``row``'s messages from ``start`` on into ``dst`` (copying mode; subject = destination,
        no reply), as one receiver queue with ``count`` messages / ``nbytes`` payload bytes pending and
        limits ``max_count`` / ``max_bytes``: a message past a limit is dropped (counted), the rest still go.
        Stops before a message ``dst`` has no room for.

        Returns ``(next, accepted, dropped, nbytes)``: ``next == n`` when every message was handled.
        """
        self._row_ok(row)
        if dst._external:
            raise LowlatError("deliver into a batch in external-buffer mode: clear() it first")
        if dst is self.src:
            raise ValueError("deliver: the receiver batch must not be the source batch")
        if start < 0 or start > self.n:
            raise IndexError(f"start {start} outside a batch of {self.n}")
        cdef MessageBatch src = self.src
        cdef const int64_t* r = self.sel + row * self.d * 3
        cdef const unsigned char* s = src.base_c()
        cdef const unsigned char* fx = <const unsigned char*>PyBytes_AS_STRING(self.fixed)
        cdef int64_t fxlen = len(self.fixed)
        cdef Py_ssize_t i = start, k = dst.n, at = dst.used, accepted = 0, dropped = 0
        cdef int64_t plen, soff = 0, slen = 0, need, key = 0
        cdef int64_t pkey = -1, ds_off = 0     # previous subject (its key, where it was stored)
        cdef bint all_of = self.kind != PLAN_REPLY and r[0] == 0
        while i < self.n:
            if not all_of and not self._picked(r, i):
                i += 1
                continue
            plen = src._plen[i]
            if count >= max_count or nbytes + plen > max_bytes:
                dropped += 1
                i += 1
                continue
            # key: what makes two subjects equal without comparing bytes (one fixed subject; the destination
            # index; the span itself for a copy, whose equal subjects already share one span)
            if self.kind == PLAN_FIXED:
                slen = fxlen
                key = 0
            elif self.kind == PLAN_REPLY:
                soff = src._roff[i]
                slen = src._rlen[i]
                key = self.sid[i]
            else:
                soff = src._soff[i]
                slen = src._slen[i]
                key = soff * 65536 + slen if slen < 65536 else -2 - i
            need = plen
            if slen and key != pkey:
                need += slen
            if k >= dst.capacity or need > dst.arena_bytes - at:
                break
            if slen and key != pkey:
                ds_off = -1   # a new subject: stored with this message
                pkey = key
            at = _put_msg(dst, k, at, s + src._poff[i], plen, fx if self.kind == PLAN_FIXED else s + soff, slen,
                          &ds_off)
            k += 1
            count += 1
            nbytes += plen
            accepted += 1
            i += 1
        dst.n = k
        dst.used = at
        return i, accepted, dropped, nbytes

    def copy_row(self, Py_ssize_t row):
        """Row ``row``'s messages copied into a new batch (subject = destination): what another event loop's
        receiver gets, so the source may be reused at once."""
        self._row_ok(row)
        cdef MessageBatch out = MessageBatch(max(self.n, 1), max(self.bytes_upper, 1))
        self.deliver(row, out, 0, 0, self.n + 1, 0, self.bytes_upper + 1)
        return out
