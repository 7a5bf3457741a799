"""The core-NATS client wire protocol, compiled: ``NatsParser`` (server -> client) and ``NatsWriter`` (client -> server).

Parser: the event loop reads straight into the parser's receive buffer (``get_buffer``/``buffer_updated``, the
``asyncio.BufferedProtocol`` pair), and ``_parse_c`` walks every complete frame in it: ``INFO``, ``MSG``, ``HMSG``,
``PING``, ``PONG``, ``+OK``, ``-ERR``.  A frame split anywhere in the byte stream waits for the rest; nothing is
copied until the frame is complete.  Bounds (hostile servers): a control line longer than ``max_control``, a size
over ``max_payload`` (the server's INFO value), non-digit or over-long numbers, an unknown verb or a payload not
followed by CRLF raise ``lowlat.errors.DecodeError``; the receive buffer never grows past
``max_payload + max_control`` plus slack.  The adapter drops the connection on that error and reconnects.

Messages go to the ``MsgSink`` registered for their subscription id: one ``memcpy`` from the receive buffer into the
sink's arena (a ``MessageBatch`` chunk), which lets the receive buffer be reused at once and bounds what a slow
subscriber holds by its ``max_pending`` / ``max_pending_bytes`` limits (past them a message is dropped and counted,
never queued).  ``MsgSink.take_batch`` hands a whole chunk over without another copy (the batch path);
``MsgSink.pop`` makes one message's Python objects (the ``async for`` path).

Writer: ``PUB``/``HPUB``/``SUB``/``UNSUB``/``PING``/``PONG`` and raw lines (``CONNECT``) are appended to one growable
buffer; the adapter ``take()``s it once per event-loop turn and writes it with one syscall.  Subjects are checked for
whitespace/control bytes and sizes against ``max_payload`` before anything is written, so a refused command leaves
the buffer unchanged.
"""

cimport cython
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytearray cimport PyByteArray_AS_STRING
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.stdint cimport int64_t
from libc.string cimport memchr, memcpy, memmove

import collections

from .errors import DecodeError, LowlatError, MaxPayloadError

cdef extern from "Python.h":
    const char* PyUnicode_AsUTF8AndSize(object s, Py_ssize_t* size) except NULL


cdef Py_ssize_t _DEFAULT_CHUNK_MSGS = 1024
cdef Py_ssize_t _DEFAULT_CHUNK_BYTES = 256 * 1024
cdef Py_ssize_t _POOL_MAX = 4
cdef Py_ssize_t _MIN_READ = 16 * 1024


@cython.final
cdef class _Chunk:
    """One ``MessageBatch`` of a sink plus the header blocks of its HMSG slots."""

    def __cinit__(self, Py_ssize_t capacity, Py_ssize_t arena_bytes):
        self.b = MessageBatch(capacity, arena_bytes)
        self.hdrs = None


@cython.final
cdef class MsgSink:
    """Pending messages of one subscription, in copying ``MessageBatch`` chunks.

    Limits: ``max_pending`` messages and ``max_pending_bytes`` payload bytes; a message past either is dropped and
    counted in ``dropped`` (``slow`` is set so the adapter reports it).  Memory: chunks of ``batch_capacity`` slots
    and ``arena_bytes`` bytes (a message larger than that gets a chunk of its own size), at most 4 kept spare.
    """

    def __cinit__(self, int64_t sid, Py_ssize_t max_pending=65536, Py_ssize_t max_pending_bytes=64 * 1024 * 1024,
                  Py_ssize_t batch_capacity=_DEFAULT_CHUNK_MSGS, Py_ssize_t arena_bytes=_DEFAULT_CHUNK_BYTES):
        if max_pending <= 0 or max_pending_bytes <= 0:
            raise ValueError("max_pending and max_pending_bytes must be > 0")
        if batch_capacity <= 0 or arena_bytes <= 0:
            raise ValueError("batch_capacity and arena_bytes must be > 0")
        self.sid = sid
        self.max_pending = max_pending
        self.max_pending_bytes = max_pending_bytes
        self._batch_capacity = batch_capacity
        self._arena_bytes = arena_bytes
        self._chunks = collections.deque()
        self._pool = []
        self._fill = None
        self._out = None
        self.owner = None

    cdef _Chunk _new_chunk(self, Py_ssize_t need):
        if need <= self._arena_bytes:
            if self._pool:
                return self._pool.pop()
            return _Chunk(self._batch_capacity, self._arena_bytes)
        return _Chunk(1, need)

    cdef void _recycle(self, _Chunk c) noexcept:
        # copying-mode batches only (never set_buffer'd): resetting the counters is clear()
        c.b.n = 0
        c.b.used = 0
        c.hdrs = None
        if c.b.arena_bytes == self._arena_bytes and c.b.capacity == self._batch_capacity \
                and len(self._pool) < _POOL_MAX:
            self._pool.append(c)

    cdef int deliver_c(self, const unsigned char* payload, Py_ssize_t plen, const unsigned char* subject,
                       Py_ssize_t slen, const unsigned char* reply, Py_ssize_t rlen,
                       const unsigned char* hdr, Py_ssize_t hlen) except -1:
        """Queue one message (1) or drop it: closed (0) or over a pending limit (0, counted)."""
        if self.closed:
            return 0
        if self.pending >= self.max_pending or self.pending_bytes + plen > self.max_pending_bytes:
            self.dropped += 1
            self.slow = True
            return 0
        cdef _Chunk c = self._fill
        if c is None or not c.b.append_c(payload, plen, subject, slen, reply, rlen):
            c = self._new_chunk(plen + slen + rlen)
            if not c.b.append_c(payload, plen, subject, slen, reply, rlen):
                raise LowlatError("internal: a fresh chunk refused a message")
            self._chunks.append(c)
            self._fill = c
        if hlen:
            if c.hdrs is None:
                c.hdrs = {}
            c.hdrs[c.b.n - 1] = PyBytes_FromStringAndSize(<const char*>hdr, hlen)
        self.pending += 1
        self.pending_bytes += plen
        self.delivered += 1
        return 1

    def deliver(self, payload, subject, reply=None, hdr=None):
        """Queue one message from Python (tests, loopback); True if queued."""
        cdef bytes p = bytes(payload)
        cdef bytes s = subject.encode() if isinstance(subject, str) else bytes(subject)
        cdef bytes r = b"" if reply is None else (reply.encode() if isinstance(reply, str) else bytes(reply))
        cdef bytes h = b"" if hdr is None else bytes(hdr)
        return bool(self.deliver_c(<const unsigned char*>PyBytes_AS_STRING(p), len(p),
                                   <const unsigned char*>PyBytes_AS_STRING(s), len(s),
                                   <const unsigned char*>PyBytes_AS_STRING(r), len(r),
                                   <const unsigned char*>PyBytes_AS_STRING(h), len(h)))

    def pop(self):
        """The oldest pending message as ``(subject, payload bytes, reply or None, header block or None)``, or
        None.  Cost: one bytes copy of the payload plus the subject decode."""
        cdef _Chunk c
        cdef Py_ssize_t i
        cdef const unsigned char* base
        while self._chunks:
            c = self._chunks[0]
            if self._cursor >= c.b.n:   # cannot happen with the invariants below; stay safe
                self._drop_head(c)
                continue
            i = self._cursor
            self._cursor = i + 1
            base = c.b.base_c()
            subject = PyUnicode_DecodeUTF8(<const char*>base + c.b._soff[i], c.b._slen[i], "replace")
            payload = PyBytes_FromStringAndSize(<const char*>base + c.b._poff[i], c.b._plen[i])
            reply = (PyUnicode_DecodeUTF8(<const char*>base + c.b._roff[i], c.b._rlen[i], "replace")
                     if c.b._rlen[i] else None)
            hdr = c.hdrs.get(i) if c.hdrs is not None else None
            self.pending -= 1
            self.pending_bytes -= c.b._plen[i]
            if self._cursor >= c.b.n:
                self._drop_head(c)
            return subject, payload, reply, hdr
        return None

    def _drop_head(self, _Chunk c):
        self._chunks.popleft()
        if c is self._fill:
            self._fill = None
        self._cursor = 0
        self._recycle(c)

    def take_batch(self, Py_ssize_t max_msgs=1024):
        """Up to ``max_msgs`` pending messages as one ``MessageBatch`` (usually a whole chunk, no copy; fewer than
        pending when they span chunks).  Valid until the next ``take_batch``/``clear`` on this sink."""
        if max_msgs <= 0:
            raise ValueError("max_msgs must be > 0")
        if self._out is not None:
            self._recycle(self._out)
            self._out = None
        cdef _Chunk c, out
        cdef Py_ssize_t i, k, need = 0, nbytes = 0
        cdef const unsigned char* base
        if not self._chunks:
            self._out = self._new_chunk(0)
            return self._out.b
        c = self._chunks[0]
        if self._cursor == 0 and c.b.n <= max_msgs:
            self._chunks.popleft()
            if c is self._fill:
                self._fill = None
            for i in range(c.b.n):
                nbytes += c.b._plen[i]
            self.pending -= c.b.n
            self.pending_bytes -= nbytes
            self._out = c
            return c.b
        # part of the head chunk: copy those messages into a chunk of their own
        k = min(max_msgs, c.b.n - self._cursor)
        for i in range(self._cursor, self._cursor + k):
            need += c.b._plen[i] + c.b._slen[i] + c.b._rlen[i]
        out = self._new_chunk(need) if k <= self._batch_capacity else _Chunk(k, max(need, 1))
        if out.b.capacity < k:
            out = _Chunk(k, max(need, 1))
        base = c.b.base_c()
        for i in range(self._cursor, self._cursor + k):
            out.b.append_c(base + c.b._poff[i], c.b._plen[i], base + c.b._soff[i], c.b._slen[i],
                           base + c.b._roff[i], c.b._rlen[i])
            nbytes += c.b._plen[i]
            if c.hdrs is not None and i in c.hdrs:
                if out.hdrs is None:
                    out.hdrs = {}
                out.hdrs[out.b.n - 1] = c.hdrs[i]
        self._cursor += k
        self.pending -= k
        self.pending_bytes -= nbytes
        if self._cursor >= c.b.n:
            self._drop_head(c)
        self._out = out
        return out.b

    def batch_header(self, Py_ssize_t i):
        """The raw ``NATS/1.0`` header block of message ``i`` of the last ``take_batch``, or None."""
        if self._out is None or self._out.hdrs is None:
            return None
        return self._out.hdrs.get(i)

    def clear(self):
        """Discard everything pending (unsubscribe)."""
        while self._chunks:
            self._drop_head(self._chunks[0])
        self.pending = 0
        self.pending_bytes = 0


@cython.final
cdef class NatsParser:
    """Server-to-client protocol parser over one receive buffer (see the module docstring).

    ``max_payload``: largest MSG/HMSG size accepted (set it from the server's INFO with ``set_max_payload``);
    ``max_control``: longest control line (INFO with a long ``connect_urls`` list included).
    Memory: the buffer starts at ``buffer_bytes`` and grows only to fit one frame, up to
    ``max_payload + max_control + 64`` bytes.  Cost: ~50-100 ns per small MSG plus the copy into its sink.
    """

    def __cinit__(self, Py_ssize_t max_payload=1024 * 1024, Py_ssize_t max_control=64 * 1024,
                  Py_ssize_t buffer_bytes=256 * 1024):
        if max_payload <= 0 or max_payload > (1 << 31):
            raise ValueError(f"max_payload must be in 1..{1 << 31}")
        if max_control < 64 or max_control > (1 << 24):
            raise ValueError("max_control must be in 64..16 MiB")
        if buffer_bytes < 1024:
            raise ValueError("buffer_bytes must be >= 1024")
        self.max_payload = max_payload
        self.max_control = max_control
        self._min_cap = buffer_bytes
        self._buf = bytearray(buffer_bytes)
        self._p = <unsigned char*>PyByteArray_AS_STRING(self._buf)
        self._cap = buffer_bytes
        self.sinks = {}
        self.ready = []
        self.events = []
        self._last_sid = -1
        self._last_sink = None

    def set_max_payload(self, Py_ssize_t n):
        """Adopt the server's ``max_payload`` (from INFO)."""
        if n <= 0 or n > (1 << 31):
            raise DecodeError(f"server announced an invalid max_payload {n}")
        self.max_payload = n

    def add_sink(self, MsgSink sink not None):
        self.sinks[sink.sid] = sink
        self._last_sid = -1
        self._last_sink = None

    def remove_sink(self, int64_t sid):
        self.sinks.pop(sid, None)
        self._last_sid = -1
        self._last_sink = None

    def reset(self):
        """Forget buffered bytes and events (a new connection); sinks stay."""
        self._start = self._end = self._need = 0
        self.events.clear()
        if self._cap > self._min_cap:
            self._buf = bytearray(self._min_cap)
            self._p = <unsigned char*>PyByteArray_AS_STRING(self._buf)
            self._cap = self._min_cap

    @property
    def buffered(self):
        """Bytes received but not yet parsed (a partial frame)."""
        return self._end - self._start

    @property
    def capacity(self):
        """Current receive buffer size in bytes."""
        return self._cap

    cdef int _ensure_free(self, Py_ssize_t want) except -1:
        cdef Py_ssize_t live = self._end - self._start
        cdef Py_ssize_t newcap
        cdef bytearray nb
        if live == 0:
            self._start = self._end = 0
            if self._cap > self._min_cap and want <= self._min_cap:
                # after a large frame, go back to the small buffer
                self._buf = bytearray(self._min_cap)
                self._p = <unsigned char*>PyByteArray_AS_STRING(self._buf)
                self._cap = self._min_cap
        if self._cap - self._end >= want:
            return 0
        if self._cap - live >= want and (self._start >= self._cap // 2 or self._cap - self._end < _MIN_READ
                                         or self._cap - self._end < want):
            memmove(self._p, self._p + self._start, live)
            self._start = 0
            self._end = live
            return 0
        newcap = max(self._cap * 2, live + want)
        if newcap > self.max_payload + self.max_control + 64 + _MIN_READ:
            newcap = max(live + want, self.max_payload + self.max_control + 64)
        nb = bytearray(newcap)
        memcpy(PyByteArray_AS_STRING(nb), self._p + self._start, live)
        self._buf = nb
        self._p = <unsigned char*>PyByteArray_AS_STRING(nb)
        self._cap = newcap
        self._start = 0
        self._end = live
        return 0

    def get_buffer(self, Py_ssize_t sizehint=-1):
        """A writable view of the free tail of the receive buffer (``BufferedProtocol.get_buffer``)."""
        cdef Py_ssize_t want = _MIN_READ
        cdef Py_ssize_t live = self._end - self._start
        if self._need > live and self._need - live > want:
            want = self._need - live
        self._ensure_free(want)
        return memoryview(self._buf)[self._end:]

    def buffer_updated(self, Py_ssize_t nbytes):
        """``nbytes`` were written into the last ``get_buffer`` view: parse; returns the frames parsed."""
        if nbytes < 0 or nbytes > self._cap - self._end:
            raise LowlatError(f"buffer_updated({nbytes}) outside the buffer handed out")
        self._end += nbytes
        return self._parse_c()

    def feed(self, data):
        """Copy ``data`` in and parse (for TLS-less tests and loopback); returns the frames parsed."""
        cdef const unsigned char[::1] v = memoryview(data).cast("B") if len(data) else b""
        cdef Py_ssize_t off = 0, n = v.shape[0], k, frames = 0
        while off < n:
            self.get_buffer()
            k = min(n - off, self._cap - self._end)
            memcpy(self._p + self._end, &v[off], k)
            self._end += k
            off += k
            frames += self._parse_c()
        return frames

    cdef MsgSink _sink_c(self, int64_t sid):
        if sid == self._last_sid:
            return self._last_sink
        s = self.sinks.get(sid)
        if s is None:
            return None
        self._last_sid = sid
        self._last_sink = <MsgSink>s
        return self._last_sink

    cdef Py_ssize_t _parse_c(self) except -1:
        cdef unsigned char* p = self._p
        cdef Py_ssize_t s = self._start, e = self._end, lim, nl, le, a, j, ntok, frames = 0
        cdef Py_ssize_t tok_off[6]
        cdef Py_ssize_t tok_len[6]
        cdef const unsigned char* q
        cdef unsigned char c0, c1, c2, c3
        cdef int64_t sid, hlen, total
        cdef Py_ssize_t body, frame_end
        cdef bint hmsg
        cdef MsgSink sink
        while s < e:
            lim = e if e - s <= self.max_control + 2 else s + self.max_control + 2
            q = <const unsigned char*>memchr(p + s, 10, lim - s)
            if q == NULL:
                if e - s > self.max_control + 1:
                    self._start = s
                    raise DecodeError(f"NATS control line longer than {self.max_control} bytes")
                self._need = 0
                break
            nl = q - p
            le = nl
            if le > s and p[le - 1] == 13:
                le -= 1
            c0 = p[s] | 0x20 if s < le else 0
            c1 = p[s + 1] | 0x20 if s + 1 < le else 0
            c2 = p[s + 2] | 0x20 if s + 2 < le else 0
            c3 = p[s + 3] | 0x20 if s + 3 < le else 0
            hmsg = c0 == b'h' and c1 == b'm' and c2 == b's' and c3 == b'g'
            if hmsg or (c0 == b'm' and c1 == b's' and c2 == b'g'):
                a = s + (4 if hmsg else 3)
                if a >= le or (p[a] != 32 and p[a] != 9):
                    self._start = s
                    raise DecodeError(f"malformed NATS line {_show(p + s, le - s)}")
                # split the arguments on spaces/tabs: MSG subject sid [reply] size, HMSG ... hdr total
                ntok = 0
                while a < le:
                    while a < le and (p[a] == 32 or p[a] == 9):
                        a += 1
                    if a >= le:
                        break
                    if ntok == 5:
                        self._start = s
                        raise DecodeError(f"too many arguments in {_show(p + s, le - s)}")
                    tok_off[ntok] = a
                    while a < le and p[a] != 32 and p[a] != 9:
                        a += 1
                    tok_len[ntok] = a - tok_off[ntok]
                    ntok += 1
                if (hmsg and (ntok < 4 or ntok > 5)) or (not hmsg and (ntok < 3 or ntok > 4)):
                    self._start = s
                    raise DecodeError(f"wrong argument count in {_show(p + s, le - s)}")
                sid = _digits(p + tok_off[1], tok_len[1], 18, "sid")
                total = _digits(p + tok_off[ntok - 1], tok_len[ntok - 1], 10, "size")
                hlen = _digits(p + tok_off[ntok - 2], tok_len[ntok - 2], 10, "header size") if hmsg else 0
                if total > self.max_payload:
                    self._start = s
                    raise DecodeError(f"NATS message of {total} bytes exceeds max_payload {self.max_payload}")
                if hlen > total:
                    self._start = s
                    raise DecodeError(f"NATS header size {hlen} exceeds the message size {total}")
                body = nl + 1
                frame_end = body + total + 2
                if frame_end > e:
                    self._need = frame_end - s
                    break
                if p[body + total] != 13 or p[body + total + 1] != 10:
                    self._start = s
                    raise DecodeError("NATS message payload is not followed by CRLF")
                if hmsg and (hlen < 12 or p[body] != b'N' or p[body + 1] != b'A' or p[body + 2] != b'T'
                             or p[body + 3] != b'S' or p[body + 4] != b'/'):
                    self._start = s
                    raise DecodeError("NATS header block does not start with NATS/")
                self.msgs += 1
                sink = self._sink_c(sid)
                if sink is None:
                    self.unknown_sid += 1
                else:
                    j = ntok == (5 if hmsg else 4)   # has a reply subject
                    sink.deliver_c(p + body + hlen, total - hlen, p + tok_off[0], tok_len[0],
                                   p + tok_off[2], tok_len[2] if j else 0, p + body, hlen)
                    if not sink.notify:
                        sink.notify = True
                        self.ready.append(sink)
                s = frame_end
                self._need = 0
                frames += 1
                continue
            if le - s == 4 and c0 == b'p' and c1 == b'i' and c2 == b'n' and c3 == b'g':
                self.pings += 1
            elif le - s == 4 and c0 == b'p' and c1 == b'o' and c2 == b'n' and c3 == b'g':
                self.pongs += 1
            elif le - s == 3 and p[s] == b'+' and c1 == b'o' and c2 == b'k':
                self.oks += 1
            elif le - s >= 4 and p[s] == b'-' and c1 == b'e' and c2 == b'r' and c3 == b'r':
                self.events.append(("-ERR", _err_text(p + s + 4, le - s - 4)))
            elif le - s >= 5 and c0 == b'i' and c1 == b'n' and c2 == b'f' and c3 == b'o' \
                    and (p[s + 4] == 32 or p[s + 4] == 9):
                self.events.append(("INFO", PyBytes_FromStringAndSize(<const char*>p + s + 5, le - s - 5)))
            else:
                self._start = s
                raise DecodeError(f"unknown NATS protocol line {_show(p + s, le - s)}")
            s = nl + 1
            frames += 1
        self._start = s
        return frames


cdef str _show(const unsigned char* p, Py_ssize_t n):
    # a short, printable excerpt of a hostile line for the error message
    return repr(PyBytes_FromStringAndSize(<const char*>p, min(n, 40)))


cdef str _err_text(const unsigned char* p, Py_ssize_t n):
    cdef bytes b = PyBytes_FromStringAndSize(<const char*>p, min(n, 512))
    return b.decode("utf-8", "replace").strip().strip("'")


cdef int64_t _digits(const unsigned char* p, Py_ssize_t n, Py_ssize_t most, str what) except -1:
    cdef int64_t v = 0
    cdef Py_ssize_t i
    if n <= 0 or n > most:
        raise DecodeError(f"NATS {what} field has {n} digits")
    for i in range(n):
        if p[i] < 48 or p[i] > 57:
            raise DecodeError(f"NATS {what} field {_show(p, n)} is not a decimal number")
        v = v * 10 + (p[i] - 48)
    return v


cdef inline const char* _str_or_bytes(object s, Py_ssize_t* n) except NULL:
    if type(s) is str:
        return PyUnicode_AsUTF8AndSize(s, n)
    if type(s) is bytes:
        n[0] = PyBytes_GET_SIZE(s)
        return PyBytes_AS_STRING(s)
    raise TypeError(f"subject must be str or bytes, not {type(s).__name__}")


@cython.final
cdef class NatsWriter:
    """Client-to-server commands appended to one growable buffer; ``take()`` returns them as bytes.

    ``max_payload`` bounds PUB/HPUB sizes (header block + payload) and raises ``lowlat.errors.MaxPayloadError``
    before anything is written.  Cost: one memcpy of subject, reply, headers and payload per PUB (~60 ns + copy).
    """

    def __cinit__(self, Py_ssize_t capacity=64 * 1024, Py_ssize_t max_payload=1024 * 1024):
        if capacity < 256:
            raise ValueError("capacity must be >= 256")
        self._b = <char*>PyMem_Malloc(capacity)
        if self._b == NULL:
            raise MemoryError()
        self._cap = capacity
        self._len = 0
        self.max_payload = max_payload

    def __dealloc__(self):
        PyMem_Free(self._b)

    cdef int _reserve(self, Py_ssize_t n) except -1:
        cdef Py_ssize_t newcap
        cdef char* nb
        if self._len + n <= self._cap:
            return 0
        newcap = max(self._cap * 2, self._len + n)
        nb = <char*>PyMem_Realloc(self._b, newcap)
        if nb == NULL:
            raise MemoryError()
        self._b = nb
        self._cap = newcap
        return 0

    cdef int _put(self, const char* p, Py_ssize_t n) except -1:
        self._reserve(n)
        if n:
            memcpy(self._b + self._len, p, n)
        self._len += n
        return 0

    cdef int _put_subject(self, const char* p, Py_ssize_t n, bint wildcards) except -1:
        # NATS answers a subject with whitespace with -ERR and closes the connection, and drops a publish to an
        # empty token or a wildcard without a word: refuse them here, before anything is written
        cdef Py_ssize_t i
        cdef unsigned char c
        if n <= 0:
            raise ValueError("empty subject")
        for i in range(n):
            c = <unsigned char>p[i]
            if c <= 32 or c == 127:
                raise ValueError(f"invalid subject {PyBytes_FromStringAndSize(p, n)!r}: whitespace or control byte")
            if c == 46 and (i == 0 or i == n - 1 or p[i - 1] == 46):   # '.'
                raise ValueError(f"invalid subject {PyBytes_FromStringAndSize(p, n)!r}: empty token")
            if not wildcards and (c == 42 or c == 62):   # '*', '>'
                raise ValueError(f"invalid subject {PyBytes_FromStringAndSize(p, n)!r}: a wildcard cannot be "
                                 "published to")
        return 0

    cdef int _put_words(self, const char* a, Py_ssize_t alen, const char* b, Py_ssize_t blen) except -1:
        # "a " and, when blen > 0, "b ": a command's subject and its optional second word, the reply subject of
        # PUB/HPUB or the queue group of SUB
        self._put(a, alen)
        self._put(" ", 1)
        if blen:
            self._put(b, blen)
            self._put(" ", 1)
        return 0

    cdef int _put_int(self, int64_t v) except -1:
        cdef char tmp[24]
        cdef int i = 24
        if v < 0:
            raise ValueError("negative size")
        if v == 0:
            i -= 1
            tmp[i] = 48
        while v > 0:
            i -= 1
            tmp[i] = 48 + <char>(v % 10)
            v //= 10
        return self._put(tmp + i, 24 - i)

    cdef int pub_c(self, const char* subj, Py_ssize_t slen, const char* reply, Py_ssize_t rlen,
                   const char* hdr, Py_ssize_t hlen, const char* payload, Py_ssize_t plen) except -1:
        """Append one PUB (or HPUB when ``hlen`` > 0); nothing is written if a check fails."""
        cdef Py_ssize_t total = hlen + plen
        if total > self.max_payload:
            raise MaxPayloadError(f"message of {total} bytes exceeds the server's max_payload of "
                                  f"{self.max_payload} bytes")
        self._put_subject(subj, slen, False)
        if rlen:
            self._put_subject(reply, rlen, False)
        self._reserve(slen + rlen + total + 48)
        if hlen:
            self._put("HPUB ", 5)
        else:
            self._put("PUB ", 4)
        self._put_words(subj, slen, reply, rlen)
        if hlen:
            self._put_int(hlen)
            self._put(" ", 1)
        self._put_int(total)
        self._put("\r\n", 2)
        self._put(hdr, hlen)
        self._put(payload, plen)
        self._put("\r\n", 2)
        self.commands += 1
        return 0

    def pub(self, subject, payload, reply=None, hdr=None):
        """Append ``PUB subject [reply] size`` (``HPUB`` when ``hdr``, a ``NATS/1.0`` block, is given)."""
        cdef Py_ssize_t slen = 0, rlen = 0, hlen = 0
        cdef const char* sp = _str_or_bytes(subject, &slen)
        cdef const char* rp = NULL
        cdef const char* hp = NULL
        cdef Py_buffer view
        if reply is not None and reply != "":
            rp = _str_or_bytes(reply, &rlen)
        if hdr is not None:
            hp = _str_or_bytes(hdr, &hlen)
        if type(payload) is bytes:
            self.pub_c(sp, slen, rp, rlen, hp, hlen, PyBytes_AS_STRING(payload), PyBytes_GET_SIZE(payload))
            return
        PyObject_GetBuffer(payload, &view, PyBUF_SIMPLE)
        try:
            self.pub_c(sp, slen, rp, rlen, hp, hlen, <const char*>view.buf, view.len)
        finally:
            PyBuffer_Release(&view)

    def pub_many(self, subject, payloads):
        """Append one PUB to ``subject`` per payload of the list/tuple ``payloads`` (one Python call for all).
        Like calling ``pub`` in a loop: a payload refused (not a buffer, over max_payload) raises, and the ones
        before it stay queued.  Returns how many were appended."""
        cdef Py_ssize_t slen = 0, i, n
        cdef const char* sp = _str_or_bytes(subject, &slen)
        cdef Py_buffer view
        cdef object seq = payloads if type(payloads) is list or type(payloads) is tuple else list(payloads)
        cdef object p
        self._put_subject(sp, slen, False)
        n = len(seq)
        for i in range(n):
            p = seq[i]
            if type(p) is bytes:
                self.pub_c(sp, slen, NULL, 0, NULL, 0, PyBytes_AS_STRING(p), PyBytes_GET_SIZE(p))
                continue
            PyObject_GetBuffer(p, &view, PyBUF_SIMPLE)
            try:
                self.pub_c(sp, slen, NULL, 0, NULL, 0, <const char*>view.buf, view.len)
            finally:
                PyBuffer_Release(&view)
        return n

    def pub_batch(self, MessageBatch batch not None, subject=None):
        """Append every message of ``batch`` as a PUB, to ``subject`` or else to its own reply subject (messages
        with neither are skipped).  Returns ``(sent, refused)``; a refused message (bad reply subject, over
        max_payload) leaves the rest going out."""
        cdef Py_ssize_t i, sent = 0, refused = 0, slen = 0
        cdef const char* sp = NULL
        cdef const char* base = <const char*>batch.base_c()
        if subject is not None:
            sp = _str_or_bytes(subject, &slen)
            self._put_subject(sp, slen, False)
        for i in range(batch.n):
            try:
                if sp != NULL:
                    self.pub_c(sp, slen, NULL, 0, NULL, 0, base + batch._poff[i], batch._plen[i])
                elif batch._rlen[i]:
                    self.pub_c(base + batch._roff[i], batch._rlen[i], NULL, 0, NULL, 0,
                               base + batch._poff[i], batch._plen[i])
                else:
                    continue
            except (ValueError, MaxPayloadError):
                refused += 1
                continue
            sent += 1
        return sent, refused

    def sub(self, subject, int64_t sid, queue=None):
        """Append ``SUB subject [queue] sid``."""
        cdef Py_ssize_t slen = 0, qlen = 0
        cdef const char* sp = _str_or_bytes(subject, &slen)
        cdef const char* qp = NULL
        self._put_subject(sp, slen, True)
        if queue:
            qp = _str_or_bytes(queue, &qlen)
            self._put_subject(qp, qlen, False)
        self._put("SUB ", 4)
        self._put_words(sp, slen, qp, qlen)
        self._put_int(sid)
        self._put("\r\n", 2)
        self.commands += 1

    def unsub(self, int64_t sid, int64_t max_msgs=0):
        """Append ``UNSUB sid [max_msgs]``."""
        self._put("UNSUB ", 6)
        self._put_int(sid)
        if max_msgs > 0:
            self._put(" ", 1)
            self._put_int(max_msgs)
        self._put("\r\n", 2)
        self.commands += 1

    def ping(self):
        self._put("PING\r\n", 6)
        self.commands += 1

    def pong(self):
        self._put("PONG\r\n", 6)
        self.commands += 1

    def raw(self, data):
        """Append an already-formatted command (``CONNECT {...}\\r\\n``)."""
        cdef Py_ssize_t n = 0
        cdef const char* p = _str_or_bytes(data, &n)
        self._put(p, n)
        self.commands += 1

    @property
    def pending(self):
        """Bytes buffered and not yet taken."""
        return self._len

    def take(self):
        """Everything buffered as one ``bytes`` (empty when nothing is); the buffer is reused."""
        cdef bytes out = PyBytes_FromStringAndSize(self._b, self._len)
        cdef char* nb
        self._len = 0
        if self._cap > 4 * 1024 * 1024:
            nb = <char*>PyMem_Realloc(self._b, 64 * 1024)
            if nb != NULL:
                self._b = nb
                self._cap = 64 * 1024
        return out

    def discard(self):
        """Drop everything buffered."""
        self._len = 0
