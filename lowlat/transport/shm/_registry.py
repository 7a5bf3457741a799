"""The shm bus directory: who is on the bus, their rings and their subscriptions.

Layout (also in the README "Transports" section)::

    <root>/lowlat-bus-<name>/            root = /dev/shm (else the temp dir)
        gen                              8-byte little-endian generation counter, mmapped by every member
        lock                             flock()ed while a member rewrites its entry and bumps gen
        <member>.json                    {"pid", "ring", "poll", "subs": [[sid, subject, queue], ...]}
        <member>.bell                    the member's doorbell FIFO
    POSIX shm ring "llb-<name>-<member>" one MpscRing per member: its inbound queue

A member rewrites its entry and bumps ``gen`` on every (un)subscribe; publishers compare ``gen`` (one 8-byte
read) before routing and re-read the directory only when it moved.  Entries of dead pids are reaped by whoever
notices first (racing reapers are fine).

The directory is private: created 0700, and an existing one is used only if it is a real directory owned by
this user (a group/world-accessible one of ours is tightened to 0700); one owned by someone else is refused
with ``TransportError`` (another user could otherwise read the entries, forge members or swap doorbells).
"""

from __future__ import annotations

import fcntl
import json
import logging
import mmap
import os
import struct
import tempfile
from collections.abc import Iterator
from typing import Any

from ...errors import RingError, TransportError

__all__ = ["Registry", "pid_alive", "shm_available", "shm_root"]

log = logging.getLogger("lowlat.transport.shm")
_GEN = struct.Struct("<Q")


def shm_root() -> str:
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else tempfile.gettempdir()


def shm_available() -> tuple[bool, str]:
    """(True, "") if ``shm://`` can work here, else (False, why)."""
    try:
        from ... import _ring  # noqa: F401
    except ImportError as e:
        return False, f"lowlat._ring is not built ({e}); build it: python setup.py build_ext --inplace"
    if not os.path.isdir("/dev/shm"):
        return False, "/dev/shm is missing (POSIX shared memory)"
    return True, ""


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is dead for our purposes
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().split(b") ", 1)[1][:1] != b"Z"
    except (OSError, IndexError):
        return True


def member_pid(member: str) -> int:
    """Members are named ``<pid>-<random hex>``."""
    return int(member.split("-", 1)[0])


class Registry:
    """One member's view of a bus directory (see the module docstring).  Not thread-safe; one per transport."""

    def __init__(self, name: str, member: str) -> None:
        self.name = name
        self.member = member
        self.dir = os.path.join(shm_root(), f"lowlat-bus-{name}")
        self._gen: mmap.mmap | None = None

    def _private_dir(self) -> None:
        import stat

        try:
            os.mkdir(self.dir, 0o700)
        except FileExistsError:
            pass
        st = os.lstat(self.dir)
        if not stat.S_ISDIR(st.st_mode):
            raise TransportError(f"shm bus {self.name!r}: {self.dir} is not a directory (refusing it)")
        if st.st_uid != os.geteuid():
            raise TransportError(f"shm bus {self.name!r}: {self.dir} belongs to uid {st.st_uid}, not to this user "
                                 f"(uid {os.geteuid()}); refusing to join another user's bus")
        if st.st_mode & 0o077:
            os.chmod(self.dir, 0o700)

    def open(self) -> None:
        self._private_dir()
        fd = os.open(os.path.join(self.dir, "gen"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size < _GEN.size:
                os.ftruncate(fd, _GEN.size)
            self._gen = mmap.mmap(fd, _GEN.size)
        finally:
            os.close(fd)

    def ring_name(self, member: str) -> str:
        return f"llb-{self.name}-{member}"

    def bell_path(self, member: str) -> str:
        return os.path.join(self.dir, f"{member}.bell")

    @property
    def generation(self) -> int:
        """The bus generation (one 8-byte read of the shared counter)."""
        return _GEN.unpack_from(self._gen, 0)[0]  # type: ignore[arg-type]  # open() mapped it

    def _bump_locked(self) -> None:
        gm = self._gen
        assert gm is not None  # open() mapped it
        _GEN.pack_into(gm, 0, _GEN.unpack_from(gm, 0)[0] + 1)

    def publish(self, entry: dict[str, Any]) -> None:
        """Replace this member's entry and bump the generation, under the bus lock."""
        path = os.path.join(self.dir, f"{self.member}.json")
        with open(os.path.join(self.dir, "lock"), "a+b") as lk:
            fcntl.flock(lk, fcntl.LOCK_EX)
            tmp = path + ".tmp"
            with open(tmp, "w") as f:
                json.dump(entry, f)
            os.replace(tmp, path)
            self._bump_locked()

    def bump(self) -> None:
        with open(os.path.join(self.dir, "lock"), "a+b") as lk:
            fcntl.flock(lk, fcntl.LOCK_EX)
            self._bump_locked()

    def entry(self, member: str) -> dict[str, Any]:
        try:
            with open(os.path.join(self.dir, f"{member}.json")) as f:
                return json.load(f)  # type: ignore[no-any-return]
        except (OSError, ValueError):
            return {}

    def entries(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every live member's entry (ours included); entries of dead pids are reaped on the way."""
        for fn in os.listdir(self.dir):
            if not fn.endswith(".json"):
                continue
            member = fn[:-5]
            try:
                with open(os.path.join(self.dir, fn)) as f:
                    entry = json.load(f)
            except (OSError, ValueError):
                continue
            if member != self.member and not pid_alive(int(entry.get("pid", 0))):
                self.reap(member, entry)
                continue
            yield member, entry

    def reap(self, member: str, entry: dict[str, Any]) -> None:
        """Remove a dead member's entry, doorbell and ring name (best effort, racing reapers are fine)."""
        from ..._ring import MpscRing

        for suffix in (".json", ".bell"):
            try:
                os.unlink(os.path.join(self.dir, member + suffix))
            except OSError:
                pass
        try:
            r = MpscRing.attach(entry.get("ring") or self.ring_name(member))
            r.unlink()
            r.close()
        except (OSError, RingError):
            pass
        log.warning("shm bus %r: removed member %s of dead pid %s", self.name, member, member.split("-")[0])

    def leave(self) -> None:
        """Remove this member's entry and doorbell, tell the others (bump), unmap the counter."""
        for suffix in (".json", ".bell"):
            try:
                os.unlink(os.path.join(self.dir, self.member + suffix))
            except OSError:
                pass
        if self._gen is not None:
            try:
                self.bump()
            except OSError:
                pass
            self._gen.close()
            self._gen = None

    @property
    def is_open(self) -> bool:
        return self._gen is not None
