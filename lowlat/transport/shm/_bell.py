"""Doorbells of the ``shm://`` bus: one FIFO per member (``<dir>/<member>.bell``) that a publisher writes one byte
to after pushing into the member's ring, so that the member can sleep in epoll (the event loop's ``add_reader``)
or ``poll(2)`` (a stage thread) instead of polling its ring.

No lost wake-up: the owner empties its FIFO *before* it looks at its ring, and a publisher writes its byte after
its record, so a record pushed after the look always leaves a byte behind.  The writes are non-blocking: a full
FIFO already means "wake up".  Members that poll their ring (``wait="spin"``, ``connect_sync()``) say so in the
registry and are skipped: a write to them would be a wasted syscall.  Cost: one ``write(2)`` per push (per batch
from ``publish_batch_sync``) to a member that sleeps; one ``read(2)`` per wake-up.
"""

from __future__ import annotations

import os

from ._registry import Registry


class Doorbells:
    """This member's own FIFO (``fd``: read side, ``O_RDWR`` so that it never sees EOF) and the write ends of the
    other members' FIFOs, opened on first use."""

    def __init__(self, reg: Registry, member: str) -> None:
        self._reg = reg
        self.member = member
        self.fd = -1                          # our own FIFO (O_RDWR, non-blocking); -1 when closed
        self.polling: frozenset[str] = frozenset()   # members that poll their ring (from the registry)
        self._peers: dict[str, int] = {}      # member -> write fd of its FIFO

    def open(self) -> None:
        path = self._reg.bell_path(self.member)
        os.mkfifo(path, 0o600)
        self.fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)

    def clear(self) -> bool:
        """Empty our FIFO; False if it is gone (closed).  Always before looking at the ring (the rule above)."""
        try:
            while len(os.read(self.fd, 65536)) == 65536:
                pass
        except BlockingIOError:
            pass
        except OSError:
            return False
        return True

    def ring(self, member: str) -> None:
        """Wake ``member`` (nothing if it polls, is gone or has not created its FIFO yet: it drains on connect)."""
        if member in self.polling:
            return
        fd = self._peers.get(member)
        if fd is None:
            try:
                fd = self._peers[member] = os.open(self._reg.bell_path(member), os.O_WRONLY | os.O_NONBLOCK)
            except OSError:  # owner gone (ENXIO: no reader) or not created yet
                return
        try:
            os.write(fd, b"\x01")
        except BlockingIOError:
            pass  # FIFO full: the owner has wake-ups pending already
        except OSError:
            self.forget(member)

    def forget(self, member: str) -> None:
        """Close our write end of ``member``'s FIFO (it left or died)."""
        fd = self._peers.pop(member, None)
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        for member in list(self._peers):
            self.forget(member)
