"""Preallocated lock-free rings: SPSC, MPSC and broadcast, on the heap or in POSIX shared memory.

Shared layout (every ring; all words native-endian uint64 unless noted; offsets in bytes)::

    0    magic "LLRING01" (0x4C4C52494E473031), written last with a release store
    8    u32 layout version (1)      12  u32 kind (1 SPSC, 2 MPSC, 3 broadcast)
    16   capacity (data bytes)       24  slot_size (0 = variable-length records)
    32   header size (512)           40  creator pid
    128  tail      136 records pushed         -- producer cache line(s)   [broadcast: 128 tail intent,
    256  head      264 records popped   272 records skipped (dead)   -- consumer     136 tail, 144 latest]
    512  data: `capacity` bytes

Records (SPSC/MPSC) start at 8-byte aligned positions; positions are monotonic byte counters and the
offset in the data area is ``pos & (capacity - 1)``.  Each record is an 8-byte header then the payload,
padded to 8 bytes (variable mode) or to the slot stride ``align8(8 + slot_size)`` (slot mode)::

    bits  0..29  frame length (bytes from this header to the next one)
    bit   30     PAD: filler up to the end of the data area (a record never wraps)
    bit   31     COMMITTED
    bits 32..63  payload length when committed; the writer's pid while pending

SPSC protocol: the producer writes header and payload below its private tail, then release-stores the
shared tail (once per call, so a batch is published with one store); the consumer acquire-loads the tail
and reads only below it, then release-stores the head.  A producer killed mid-write never moved the tail:
the partial record is invisible, and the next producer object continues from the shared tail.

MPSC protocol: a producer reserves ``frame`` bytes with a CAS on the tail, writes a *pending* header
carrying its pid, copies the payload, then release-stores the committed header.  The consumer
acquire-loads the header at its head: a zero or pending header means "not yet", so a half-written record
is never visible.  After reading, the consumer zeroes the consumed bytes (so stale bytes never look like
a header on the next lap) and release-stores the head; producers acquire-load the head before reusing
the space.

A MPSC producer that dies between claim and publish leaves a pending (or, in a window of a few
instructions right after the CAS, still zero) header.  The consumer stalls there.  While stalled it
checks the pid in a pending header every 10 ms; if that process is gone (or a zombie) the record is
turned into padding and skipped, and ``dead_records`` counts it.  A zero header is skipped after
``dead_producer_timeout`` seconds (a live producer descheduled that long between its CAS and its
next store would be skipped too; pass None to never do that).

Broadcast: see BroadcastRing (Agrona's BroadcastTransmitter/Receiver scheme: tail intent, seqlock-style
validation after copying).

Hostile shared memory: every header word read at attach is range-checked before any arithmetic on it
(capacity, slot_size, header size, version, kind); positions are only ever used masked, record headers
are validated before use, an impossible shared tail (more than a ring ahead of the head) or a tail-intent
word that laps a receiver twice at the same tail raises RingError, and no scan runs past one ring.  What
this cannot cover: a segment truncated (ftruncate) by another process under a live mapping makes the next
access to the lost pages raise SIGBUS; that is the POSIX shared-memory contract, so only let processes you
trust hold a ring's name.
"""

cimport cython
from cpython.buffer cimport PyBuffer_FillInfo, PyBuffer_Release, PyObject_GetBuffer, PyBUF_SIMPLE
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_CheckExact, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.exc cimport PyErr_CheckSignals
from cpython.mem cimport PyMem_RawCalloc, PyMem_RawFree, PyMem_RawRealloc
from cpython.memoryview cimport PyMemoryView_FromObject
from libc.errno cimport EEXIST, ENOENT, errno
from libc.stdint cimport int64_t, uint32_t, uint64_t, uintptr_t
from libc.string cimport memcpy, memset
from posix.fcntl cimport O_CREAT, O_EXCL, O_RDWR
from posix.mman cimport (
    MAP_FAILED, MAP_POPULATE, MAP_SHARED, PROT_READ, PROT_WRITE, mmap, munmap, shm_open, shm_unlink,
)
from posix.stat cimport fstat, struct_stat
from posix.unistd cimport close as c_close, ftruncate

from lowlat._idle cimport LL_IDLE_BUSY, idle_cfg, ll_cpu_relax, ll_idle, ll_idle_t, ll_now_ns, ll_sleep_ns

import os

from lowlat._idle import BackoffIdle, BusySpinIdle, IdleStrategy, SleepingIdle, YieldingIdle
from lowlat.errors import LappedError, RingError, RingFullError

cdef extern from *:
    """
    #define LL_RING_MAGIC 0x4C4C52494E473031ULL
    #define LL_NO_POS 0xFFFFFFFFFFFFFFFFULL
    #define LL_HDR_FRAME_MASK 0x3FFFFFFFULL
    #define LL_HDR_PAD 0x40000000ULL
    #define LL_HDR_COMMITTED 0x80000000ULL
    #define LL_HDR_CORRUPT 1ULL
    """
    uint64_t LL_RING_MAGIC
    uint64_t LL_NO_POS
    uint64_t LL_HDR_FRAME_MASK
    uint64_t LL_HDR_PAD
    uint64_t LL_HDR_COMMITTED
    uint64_t LL_HDR_CORRUPT

cdef enum:
    RING_VERSION = 1
    RING_HDR_SIZE = 512
    OFF_MAGIC = 0
    OFF_VERSION = 8
    OFF_KIND = 12
    OFF_CAPACITY = 16
    OFF_SLOT = 24
    OFF_HDR_SIZE = 32
    OFF_CREATOR_PID = 40
    OFF_TAIL = 128
    OFF_PUSHED = 136
    OFF_HEAD = 256
    OFF_POPPED = 264
    OFF_DEAD = 272
    OFF_BC_INTENT = 128
    OFF_BC_TAIL = 136
    OFF_BC_LATEST = 144
    RING_KIND_SPSC = 1
    RING_KIND_MPSC = 2
    RING_KIND_BROADCAST = 3
    MIN_CAPACITY = 64
    MAX_CAPACITY = 1 << 29
    PID_CHECK_NS = 10000000          # 10 ms between liveness checks of a stalled writer
    WAIT_CHUNK_NS = 50000000         # blocking calls come back for signals every 50 ms
    GIL_SPIN_POLLS = 128             # BusySpinIdle: polls before releasing the GIL (a few µs at most)

RING_LAYOUT_VERSION = RING_VERSION
HEADER_SIZE = RING_HDR_SIZE
RECORD_HEADER_SIZE = 8

ll_pid_init()

_KIND_NAMES = {RING_KIND_SPSC: "SpscRing", RING_KIND_MPSC: "MpscRing", RING_KIND_BROADCAST: "BroadcastRing"}

# The default of every blocking call that is given idle=None (one object: each call copies its parameters).
cdef object _DEFAULT_IDLE = BackoffIdle()

# One concept per file (uvloop handles/ style); they compile into this one extension.
include "_ring_mem.pxi"
include "_ring_records.pxi"
include "_ring_queue.pxi"
include "_ring_broadcast.pxi"
