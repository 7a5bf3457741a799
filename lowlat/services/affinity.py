"""CPU pinning and the real-time scheduling class, for a service process and its hot thread (Linux).

A latency-critical service runs best when its hot thread (the event-loop thread where intake and the compiled
stages run) owns a core that nothing else is scheduled on, and the rest of the process (metrics server, client
library threads) stays off that core.  ``pin_process`` confines every thread of the process (and, by
inheritance, every thread started later) to a CPU set; ``pin_thread`` confines one thread; ``set_realtime``
gives one thread ``SCHED_FIFO``.  ``pin_service_threads`` is what ``run_services`` does with ``cpus`` /
``hot_cpus`` / ``rt_priority`` from the service configuration (``--cpus``, ``--hot-cpus``, ``--rt-priority``).

Every failure is an ``AffinityError`` (a ``LowlatError`` and an ``OSError``) with a message that says what to
change: a CPU outside the set this process may use (the cgroup's cpuset, e.g. a container's ``--cpuset-cpus``),
a malformed list, a platform without ``sched_setaffinity`` (macOS, Windows), or no permission for real-time
scheduling (needs root, ``CAP_SYS_NICE`` or ``ulimit -r``).
"""

from __future__ import annotations

import errno
import os
import re
import sys
import threading
from collections.abc import Iterable

from ..errors import AffinityError

__all__ = ["AffinityError", "allowed_cpus", "check_cpus", "format_cpus", "parse_cpus", "pin_process",
           "pin_service_threads", "pin_thread", "set_realtime", "thread_cpus"]

_ITEM = re.compile(r"^(\d+)(?:-(\d+))?$")
_MAX_CPU = 1 << 16   # no machine has more; bounds what a hostile list like 0-99999999 can allocate


def _supported() -> None:
    if not hasattr(os, "sched_setaffinity"):
        raise AffinityError(f"CPU pinning needs os.sched_setaffinity, which {sys.platform} does not have (Linux "
                            "only); run without --cpus/--hot-cpus there")


def parse_cpus(cpus: str | Iterable[int]) -> frozenset[int]:
    """``"2,3"``, ``"0-3,6"`` (the kernel's cpulist format) or an iterable of ints -> a non-empty CPU set."""
    if isinstance(cpus, str):
        out: set[int] = set()
        for part in cpus.replace(" ", "").split(","):
            if not part:
                continue
            m = _ITEM.match(part)
            if m is None:
                raise AffinityError(f"{part!r} is not a CPU or range in {cpus!r} (expected e.g. 2,3 or 0-3,6)")
            lo = int(m.group(1))
            hi = int(m.group(2)) if m.group(2) is not None else lo
            if hi < lo or hi >= _MAX_CPU:
                raise AffinityError(f"{part!r} is not a valid CPU range in {cpus!r}")
            out.update(range(lo, hi + 1))
    else:
        out = set()
        for c in cpus:
            if isinstance(c, bool) or not isinstance(c, int) or not 0 <= c < _MAX_CPU:
                raise AffinityError(f"{c!r} is not a CPU number")
            out.add(c)
    if not out:
        raise AffinityError("an empty CPU list pins to nothing (expected e.g. 2,3 or 0-3)")
    return frozenset(out)


def format_cpus(cpus: Iterable[int]) -> str:
    """A CPU set in the kernel's cpulist format: ``{0, 1, 2, 5}`` -> ``"0-2,5"``."""
    s = sorted(set(cpus))
    parts: list[str] = []
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and s[j + 1] == s[j] + 1:
            j += 1
        parts.append(str(s[i]) if i == j else f"{s[i]}-{s[j]}")
        i = j + 1
    return ",".join(parts)


def _cgroup_cpuset() -> frozenset[int] | None:
    """The CPUs the process's cgroup allows (v2 ``cpuset.cpus.effective`` or v1 ``cpuset.effective_cpus``)."""
    try:
        with open("/proc/self/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        hier, _, rest = line.partition(":")
        ctrls, _, path = rest.partition(":")
        if hier == "0" and ctrls == "":
            candidates = [f"/sys/fs/cgroup{path}/cpuset.cpus.effective"]
        elif "cpuset" in ctrls.split(","):
            candidates = [f"/sys/fs/cgroup/cpuset{path}/cpuset.effective_cpus",
                          f"/sys/fs/cgroup/cpuset{path}/cpuset.cpus"]
        else:
            continue
        for c in candidates:
            try:
                with open(c) as f:
                    text = f.read().strip()
            except OSError:
                continue
            if text:
                try:
                    return parse_cpus(text)
                except AffinityError:
                    return None
    return None


def allowed_cpus() -> frozenset[int]:
    """The CPUs this process may run on: its cgroup's cpuset (so a thread pinned narrower can be widened again),
    else the online CPUs, else the current affinity."""
    _supported()
    got = _cgroup_cpuset()
    if got is not None:
        return got
    try:
        with open("/sys/devices/system/cpu/online") as f:
            return parse_cpus(f.read().strip())
    except (OSError, AffinityError):
        return frozenset(os.sched_getaffinity(0))


def check_cpus(cpus: str | Iterable[int]) -> frozenset[int]:
    """Parse ``cpus`` and check it against ``allowed_cpus()``; ``AffinityError`` naming the CPUs outside it."""
    _supported()
    want = parse_cpus(cpus)
    allowed = allowed_cpus()
    outside = want - allowed
    if outside:
        raise AffinityError(f"CPU {format_cpus(outside)} is not in the set this process may use "
                            f"({format_cpus(allowed)}; a container's --cpuset-cpus or the cgroup limits it)")
    return want


def _tasks() -> list[int]:
    try:
        return sorted(int(t) for t in os.listdir("/proc/self/task"))
    except OSError:
        return [0]


def _set(tid: int, cpus: frozenset[int]) -> None:
    try:
        os.sched_setaffinity(tid, cpus)
    except ProcessLookupError:
        if tid:           # a thread that ended meanwhile
            return
        raise
    except OSError as e:
        if e.errno == errno.EINVAL:
            raise AffinityError(f"the kernel refused CPU set {format_cpus(cpus)} (offline CPUs, or outside this "
                                f"process's cpuset {format_cpus(allowed_cpus())})") from None
        raise AffinityError(f"sched_setaffinity({tid}, {format_cpus(cpus)}): {e.strerror}") from None


def pin_process(cpus: str | Iterable[int]) -> frozenset[int]:
    """Confine every thread of this process to ``cpus``; threads started later inherit it.  Returns the set."""
    want = check_cpus(cpus)
    for tid in _tasks():
        _set(tid, want)
    return want


def pin_thread(cpus: str | Iterable[int], native_id: int | None = None) -> frozenset[int]:
    """Confine one thread (``threading.get_native_id()`` of it; default the calling thread) to ``cpus``.
    Threads this thread starts later inherit the set.  Returns the set."""
    want = check_cpus(cpus)
    _set(0 if native_id is None or native_id == threading.get_native_id() else native_id, want)
    return want


def thread_cpus(native_id: int | None = None) -> frozenset[int]:
    """The CPU set of one thread (default the calling thread)."""
    _supported()
    return frozenset(os.sched_getaffinity(0 if native_id is None else native_id))


def set_realtime(priority: int, native_id: int | None = None) -> None:
    """Put one thread (default the calling thread) in ``SCHED_FIFO`` at ``priority`` (1..99); ``0`` puts it back
    in ``SCHED_OTHER``.  A ``SCHED_FIFO`` thread that never blocks starves everything else on its CPU: give it a
    CPU of its own (``pin_thread``) and keep it event-driven (no busy-spinning)."""
    if not hasattr(os, "sched_setscheduler"):
        raise AffinityError(f"real-time scheduling needs os.sched_setscheduler, which {sys.platform} does not have")
    if isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= 99:
        raise AffinityError(f"real-time priority {priority!r} is out of range (valid: 0 = off, 1 .. 99)")
    tid = 0 if native_id is None or native_id == threading.get_native_id() else native_id
    policy = os.SCHED_FIFO if priority else os.SCHED_OTHER
    try:
        os.sched_setscheduler(tid, policy, os.sched_param(priority))
    except PermissionError:
        try:
            import resource

            soft: object = resource.getrlimit(resource.RLIMIT_RTPRIO)[0]
        except (OSError, ImportError, AttributeError):
            soft = "unknown"
        raise AffinityError(f"no permission for SCHED_FIFO priority {priority} (RLIMIT_RTPRIO, `ulimit -r`, is "
                            f"{soft}): run as root, grant CAP_SYS_NICE (setcap cap_sys_nice+ep, or a container's "
                            "--cap-add SYS_NICE), or raise `ulimit -r`; or drop --rt-priority") from None
    except OSError as e:
        raise AffinityError(f"sched_setscheduler(SCHED_FIFO, {priority}): {e.strerror}") from None


def pin_service_threads(cpus: str = "", hot_cpus: str = "", rt_priority: int = 0) -> dict[str, str]:
    """Pin a running service process: every thread to ``cpus`` (when given), then the calling thread (the hot,
    event-loop thread) to ``hot_cpus`` with ``SCHED_FIFO`` at ``rt_priority`` (when given); when both sets are
    given the other threads are kept off the hot CPUs (``cpus - hot_cpus``, if that leaves any).

    Call it from the hot thread after the service started its helper threads (they are re-pinned here; threads
    started later by the hot thread inherit the hot set).  Returns ``{thread name: cpulist}`` for a log line."""
    out: dict[str, str] = {}
    if not (cpus or hot_cpus or rt_priority):
        return out
    me = threading.get_native_id()
    names = {t.native_id: t.name for t in threading.enumerate() if t.native_id is not None}
    if cpus:
        proc = pin_process(cpus)
        rest = proc - parse_cpus(hot_cpus) if hot_cpus else proc
        rest = rest or proc
        for tid in _tasks():
            if tid != me:
                _set(tid, frozenset(rest))
                out[names.get(tid, f"tid {tid}")] = format_cpus(rest)
    if hot_cpus:
        pin_thread(hot_cpus)
    if rt_priority:
        set_realtime(rt_priority)
    out[f"{names.get(me, 'hot')} (hot)"] = format_cpus(thread_cpus())
    return out
