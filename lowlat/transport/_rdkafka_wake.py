"""Wake an asyncio loop straight from librdkafka: a queue of a confluent-kafka handle signals an eventfd.

Why: confluent-kafka only offers blocking ``poll(timeout)``.  Serving it on a thread and handing each delivery
report to the loop with ``call_soon_threadsafe`` costs a second cross-thread wake-up per report (≈ +40-50 % on the
ack latency here).  librdkafka itself can write to a file descriptor whenever one of its queues goes from empty to
non-empty (``rd_kafka_queue_io_event_enable``); with that fd in the loop's selector, ``poll(0)`` runs on the loop
thread exactly when there is something to serve: one wake-up, as when a caller blocks in ``poll()``.

confluent-kafka does not expose that call, so this module reaches the ``rd_kafka_t *`` of a handle through ctypes:
it is the first field after ``PyObject_HEAD`` of confluent-kafka's ``Handle`` struct (``confluent_kafka.h``), and
the librdkafka the extension loaded is found in ``/proc/self/maps`` (the wheel bundles its own copy).  Before the
pointer is used for anything else it must name the handle we made (``rd_kafka_name`` starts with the unique
``client.id`` we gave it), and the library's version must be the one confluent-kafka reports.  Any mismatch means
``attach`` returns ``None`` and the caller keeps its thread (the portable path).

Lifetime rule: librdkafka writes to the fd until the event is disabled, so ``close()`` disables it before closing
the fd (a closed fd number can be reused by anything); the ``QueueWake`` keeps the handle alive until then.
"""

from __future__ import annotations

import ctypes
import os
import sys
from typing import Any

__all__ = ["QueueWake", "attach"]

_ONE = (1).to_bytes(8, sys.byteorder)   # an eventfd is written in 8-byte native counters
_lib: Any = None   # the librdkafka that confluent-kafka loaded, once looked up (None: not usable)
_looked = False


def _librdkafka() -> Any:
    global _lib, _looked
    if _looked:
        return _lib
    _looked = True
    try:
        import confluent_kafka
        path = None
        with open("/proc/self/maps") as maps:   # the copy the extension uses, not another one on the system
            for line in maps:
                name = line.rsplit(None, 1)[-1]
                if "librdkafka" in os.path.basename(name) and ".so" in name:
                    path = name
                    break
        if path is None:
            return None
        lib = ctypes.CDLL(path)
        lib.rd_kafka_version.restype = ctypes.c_int
        if lib.rd_kafka_version() != confluent_kafka.libversion()[1]:
            return None
        lib.rd_kafka_name.restype = ctypes.c_char_p
        lib.rd_kafka_name.argtypes = [ctypes.c_void_p]
        for fn in (lib.rd_kafka_queue_get_main, lib.rd_kafka_queue_get_consumer):
            fn.restype = ctypes.c_void_p
            fn.argtypes = [ctypes.c_void_p]
        lib.rd_kafka_queue_io_event_enable.restype = None
        lib.rd_kafka_queue_io_event_enable.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t]
        lib.rd_kafka_queue_destroy.restype = None
        lib.rd_kafka_queue_destroy.argtypes = [ctypes.c_void_p]
        _lib = lib
    except (ImportError, OSError, AttributeError):   # no /proc, no such symbol: keep the thread
        _lib = None
    return _lib


def _rk(handle: Any, client_id: str) -> int | None:
    """The ``rd_kafka_t *`` inside ``handle`` (a confluent-kafka Producer/Consumer made with ``client_id``)."""
    head = object.__basicsize__   # sizeof(PyObject_HEAD) of this interpreter build
    if type(handle).__basicsize__ < head + ctypes.sizeof(ctypes.c_void_p):
        return None
    rk = ctypes.c_void_p.from_address(id(handle) + head).value
    if not rk:
        return None
    name = _lib.rd_kafka_name(rk) or b""
    # librdkafka names a handle "<client.id>#<type>-<n>"
    return rk if name.startswith(client_id.encode() + b"#") else None


class QueueWake:
    """An eventfd that librdkafka writes to when the handle's queue (``main``: delivery reports and other
    callbacks of a producer; ``consumer``: a consumer's messages and events) goes from empty to non-empty.

    Protocol for the reader: ``clear()`` first, then serve the queue until it is empty (``poll(0)``): an op enqueued
    after that serve starts writes again, so no wake-up is lost."""

    def __init__(self, handle: Any, rk: int, queue: str) -> None:
        self._handle = handle   # keeps rk valid while librdkafka may still write to our fd
        self._rk = rk
        self._getq = _lib.rd_kafka_queue_get_main if queue == "main" else _lib.rd_kafka_queue_get_consumer
        self.fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        try:
            self._enable(self.fd, _ONE)
        except BaseException:
            os.close(self.fd)
            raise

    def _enable(self, fd: int, payload: bytes | None) -> None:
        q = self._getq(self._rk)   # a new reference to the queue: the event belongs to the queue, not to it
        if not q:
            raise OSError("librdkafka returned no queue")
        try:
            _lib.rd_kafka_queue_io_event_enable(q, fd, payload, len(payload) if payload else 0)
        finally:
            _lib.rd_kafka_queue_destroy(q)

    def clear(self) -> None:
        try:
            os.eventfd_read(self.fd)
        except BlockingIOError:
            pass

    def close(self) -> None:
        """Stop librdkafka's writes, then close the fd (idempotent)."""
        if self.fd < 0:
            return
        self._enable(-1, None)
        os.close(self.fd)
        self.fd = -1
        self._handle = None

    def __del__(self) -> None:   # never leave librdkafka writing to a closed (reusable) fd number
        if getattr(self, "fd", -1) >= 0:
            try:
                self.close()
            except Exception:  # noqa: BLE001, S110 - interpreter shutdown: ctypes may be gone; the fd dies with us
                pass


def attach(handle: Any, client_id: str, queue: str = "main") -> QueueWake | None:
    """A ``QueueWake`` on ``handle``'s ``queue``, or ``None`` where librdkafka cannot be reached safely (the caller
    then serves the queue from a thread).  ``handle`` must have been created with ``client.id = client_id``."""
    if not hasattr(os, "eventfd") or _librdkafka() is None:
        return None
    rk = _rk(handle, client_id)
    if rk is None:
        return None
    return QueueWake(handle, rk, queue)
