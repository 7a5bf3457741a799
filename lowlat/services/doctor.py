"""``lowlat doctor``: what on this host affects tail latency, and what to change.

Every check reads the kernel's own files (``/proc/cmdline``, ``/sys/devices/system/cpu``, ``/sys/kernel/mm``) and
the process's affinity; a file that is absent (a VM without cpufreq, a kernel without SMT control) is reported as
such, never guessed.  ``root`` relocates ``/proc`` and ``/sys`` (a container's view of a host, or a test tree).
"""

from __future__ import annotations

import glob
import os
import shlex
from dataclasses import asdict, dataclass
from typing import Any

from .affinity import format_cpus, parse_cpus

__all__ = ["Check", "as_json", "format_report", "run_doctor"]

OK, WARN, INFO = "ok", "warn", "info"


@dataclass
class Check:
    """One finding: ``status`` is ``ok`` (nothing to change), ``warn`` (costs latency; ``advice`` says what to
    change) or ``info`` (depends on the deployment)."""

    name: str
    status: str
    value: str
    advice: str = ""

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def _read(root: str, path: str) -> str | None:
    try:
        with open(os.path.join(root, path.lstrip("/"))) as f:
            return f.read().strip()
    except OSError:
        return None


def _cpuset(text: str | None) -> frozenset[int] | None:
    if not text:
        return None
    try:
        return parse_cpus(text)
    except OSError:
        return None


def _cmdline_param(cmdline: str, key: str) -> str | None:
    for tok in shlex.split(cmdline) if cmdline else ():
        if tok == "--":
            break   # the rest is the init process's arguments
        if tok.startswith(key + "="):
            return tok.split("=", 1)[1]
    return None


def _isolated_cpus(value: str) -> frozenset[int] | None:
    """``isolcpus=`` may carry flags before the list (``isolcpus=nohz,domain,2-3``)."""
    parts = [p for p in value.split(",") if p and not p[0].isalpha()]
    return _cpuset(",".join(parts))


def _bracketed(text: str | None) -> str | None:
    """``always [madvise] never`` -> ``madvise``."""
    if not text:
        return None
    for tok in text.split():
        if tok.startswith("[") and tok.endswith("]"):
            return tok[1:-1]
    return text


def run_doctor(root: str = "/", affinity: set[int] | None = None) -> list[Check]:
    """The checks, in report order.  ``affinity``: the CPU set to judge (default this process's)."""
    out: list[Check] = []
    online = _cpuset(_read(root, "/sys/devices/system/cpu/online"))
    n_online = len(online) if online else (os.cpu_count() or 1)
    if affinity is None:
        affinity = set(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else set(range(n_online))
    n = len(affinity)
    out.append(Check("cpus", OK if n >= 4 else WARN,
                     f"{n_online} online ({format_cpus(online) if online else 'list not readable'}), "
                     f"{n} usable by this process",
                     "" if n >= 4 else "fewer than 4 usable CPUs: the hot thread shares a core with the kernel, "
                     "the broker and the load generator; use a host (or a container limit) with >= 4 CPUs and "
                     "pin the hot thread with --hot-cpus"))

    cmdline = _read(root, "/proc/cmdline") or ""
    iso_text = _cmdline_param(cmdline, "isolcpus")
    iso = _isolated_cpus(iso_text) if iso_text else _cpuset(_read(root, "/sys/devices/system/cpu/isolated"))
    nohz_text = _cmdline_param(cmdline, "nohz_full")
    nohz = _cpuset(nohz_text) if nohz_text else None
    if iso:
        inside = iso & affinity
        out.append(Check("isolcpus", OK, f"{format_cpus(iso)} isolated from the scheduler",
                         "" if inside else f"this process runs on {format_cpus(affinity)}, none of them isolated: "
                         f"serve with --hot-cpus {min(iso)}"))
        if not inside:
            out[-1].status = INFO
    else:
        out.append(Check("isolcpus", WARN if n_online >= 4 else INFO, "none (no isolcpus= on the kernel command "
                         "line)", "boot with isolcpus=<cpus> (and nohz_full=, rcu_nocbs= for the same CPUs) to keep "
                         "other tasks off the hot thread's CPU, then serve with --hot-cpus <one of them>"
                         + ("" if n_online >= 4 else "; with this few CPUs isolating one leaves too little for the "
                            "rest")))
    if nohz:
        out.append(Check("nohz_full", OK, f"{format_cpus(nohz)} without the periodic tick"))
    else:
        out.append(Check("nohz_full", INFO, "none (no nohz_full= on the kernel command line)",
                         "nohz_full=<isolated cpus> stops the scheduler tick on a CPU running one thread (fewer "
                         "~µs interruptions); only useful together with isolcpus"))

    govs: dict[str, list[int]] = {}
    for path in sorted(glob.glob(os.path.join(root, "sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_governor"))):
        cpu = int(path.split("/cpu/cpu", 1)[1].split("/", 1)[0])
        g = _read("/", path)
        if g:
            govs.setdefault(g, []).append(cpu)
    if not govs:
        out.append(Check("governor", INFO, "no cpufreq interface (absent: a VM, or no frequency driver)",
                         "the hypervisor or firmware sets the frequency: ask for fixed-frequency / performance "
                         "hosts; on bare metal load the cpufreq driver and set the performance governor"))
    else:
        text = "; ".join(f"{g} on {format_cpus(c)}" for g, c in govs.items())
        slow = [g for g in govs if g != "performance"]
        out.append(Check("governor", WARN if slow else OK, text,
                         "set the performance governor (cpupower frequency-set -g performance, or echo performance "
                         "> /sys/devices/system/cpu/cpu*/cpufreq/scaling_governor): powersave/schedutil ramp the "
                         "clock up only after the burst started" if slow else ""))

    sibs: set[str] = set()
    for cpu in sorted(affinity):
        s = _read(root, f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list")
        if s:
            sibs.add(s)
    smt = _read(root, "/sys/devices/system/cpu/smt/active")
    shared = sorted(s for s in sibs if len(_cpuset(s) or ()) > 1)
    if not sibs:
        out.append(Check("smt", INFO, "topology not readable", "check lscpu: hyperthread siblings share a core's "
                         "caches and execution units"))
    elif shared:
        out.append(Check("smt", WARN, f"hyperthread siblings share cores: {' '.join(shared)}",
                         "keep the sibling of the hot thread's CPU idle (leave it out of --cpus of every process) "
                         "or turn SMT off (echo off > /sys/devices/system/cpu/smt/control)"))
    else:
        out.append(Check("smt", OK, "one thread per core" + (f" (smt/active={smt})" if smt is not None else "")))

    out.append(Check("affinity", OK if n < n_online or n_online == 1 else INFO, f"this process may run on "
                     f"{format_cpus(affinity)}",
                     "" if n < n_online else "not pinned: serve with --cpus (process) and --hot-cpus (event-loop "
                     "thread) so the scheduler does not migrate the hot thread between cores"))

    thp = _bracketed(_read(root, "/sys/kernel/mm/transparent_hugepage/enabled"))
    defrag = _bracketed(_read(root, "/sys/kernel/mm/transparent_hugepage/defrag"))
    if thp is None:
        out.append(Check("thp", INFO, "transparent huge pages: not readable (absent)"))
    elif thp == "always":
        out.append(Check("thp", WARN, f"enabled={thp} defrag={defrag}",
                         "khugepaged compaction and defrag stalls add ms-scale pauses: echo madvise > "
                         "/sys/kernel/mm/transparent_hugepage/enabled (and defrag=defer or never)"))
    else:
        out.append(Check("thp", OK, f"enabled={thp} defrag={defrag}"))

    clock = _read(root, "/sys/devices/system/clocksource/clocksource0/current_clocksource")
    if clock is not None:
        out.append(Check("clocksource", OK if clock in ("tsc", "kvm-clock", "arch_sys_counter") else WARN, clock,
                         "" if clock in ("tsc", "kvm-clock", "arch_sys_counter") else
                         f"{clock} makes every clock read a slow call: use tsc (clocksource=tsc tsc=reliable)"))

    spare = n - 1
    iso_usable = bool(iso and iso & affinity)
    if n <= 2:
        spin = Check("busy_spin", WARN, f"not sensible: {n} usable CPUs",
                     "a busy-spinning thread takes a whole core from the OS, the broker and every other process "
                     "here: use the event-driven or backoff idle strategies (BackoffIdle, poll_idle='yield'), "
                     "at most one spinning thread, or a host with more cores")
    elif iso_usable:
        spin = Check("busy_spin", OK, "sensible on an isolated CPU",
                     "spin only the hot thread, pinned to an isolated CPU (--hot-cpus); everything else backs off")
    else:
        spin = Check("busy_spin", INFO, f"possible for one thread ({spare} other CPUs), but nothing is isolated",
                     "spin one thread at most and pin it (--hot-cpus); isolcpus= makes it worth it")
    out.append(spin)
    return out


def format_report(checks: list[Check]) -> str:
    """Human text: one line per check, the advice indented under the ones that have some."""
    mark = {OK: "ok  ", WARN: "WARN", INFO: "info"}
    lines = ["lowlat doctor: what affects latency on this host"]
    for c in checks:
        lines.append(f"  [{mark.get(c.status, c.status)}] {c.name:<12} {c.value}")
        if c.advice:
            lines.append(f"         {'':<12} -> {c.advice}")
    warns = sum(c.status == WARN for c in checks)
    lines.append(f"{warns} warning(s)" if warns else "nothing to change")
    return "\n".join(lines)


def as_json(checks: list[Check]) -> dict[str, Any]:
    return {"checks": [c.as_dict() for c in checks], "warnings": sum(c.status == WARN for c in checks)}
