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
from libc.stdint cimport int64_t
from libc.string cimport memcpy

import numpy as np

from .errors import LowlatError


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
        self._arrays = arrs
        self._poff = arrs[0]
        self._plen = arrs[1]
        self._soff = arrs[2]
        self._slen = arrs[3]
        self._roff = arrs[4]
        self._rlen = arrs[5]
        self._arena = bytearray(arena_bytes)   # never resized: pointers into it stay valid
        self._owner = self._arena
        self._view = self._arena
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

    def set_buffer(self, buf):
        """Point the (empty) batch at ``buf``, an adapter-owned buffer that ``add_ref`` offsets index."""
        if self.n:
            raise LowlatError("set_buffer on a non-empty batch: clear() it first")
        cdef const unsigned char[::1] v = memoryview(buf).cast("B")
        self._owner = buf
        self._view = v
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

    cdef int _check(self, Py_ssize_t i) except -1:
        if i < 0 or i >= self.n:
            raise IndexError(f"message {i} not in a batch of {self.n}")
        return 0

    def payload(self, Py_ssize_t i):
        """Message ``i``'s payload: a read-only memoryview into ``buf`` (valid per the lifetime rule)."""
        self._check(i)
        return memoryview(self._owner).cast("B")[self._poff[i]:self._poff[i] + self._plen[i]].toreadonly()

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

    @property
    def payload_off(self):
        return self._arrays[0]

    @property
    def payload_len(self):
        return self._arrays[1]

    @property
    def subject_off(self):
        return self._arrays[2]

    @property
    def subject_len(self):
        return self._arrays[3]

    @property
    def reply_off(self):
        return self._arrays[4]

    @property
    def reply_len(self):
        return self._arrays[5]

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
