"""CPU pinning API on real processes and threads: what the kernel reports in /proc afterwards."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading

import pytest

from lowlat.errors import AffinityError, LowlatError
from lowlat.services import affinity
from lowlat.services.affinity import format_cpus, parse_cpus

pytestmark = pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="Linux only")
ALLOWED = sorted(affinity.allowed_cpus())
two_cpus = pytest.mark.skipif(len(ALLOWED) < 2, reason="needs two CPUs")


def _status(path: str, key: str) -> str:
    with open(path) as f:
        for line in f:
            if line.startswith(key + ":"):
                return line.split(":", 1)[1].strip()
    raise AssertionError(f"{key} not in {path}")


def test_parse_and_format_round_trip():
    assert parse_cpus("2,3") == {2, 3}
    assert parse_cpus("0-3, 6") == {0, 1, 2, 3, 6}
    assert parse_cpus([1, 0]) == {0, 1}
    assert format_cpus({0, 1, 2, 5, 7, 8}) == "0-2,5,7-8"
    assert format_cpus(parse_cpus("4,0-1")) == "0-1,4"


@pytest.mark.parametrize("bad", ["", ",", "x", "1-", "3-1", "0-99999999", "-1", "1.5"])
def test_malformed_lists_are_lowlat_errors(bad):
    with pytest.raises(AffinityError) as e:
        parse_cpus(bad)
    assert isinstance(e.value, LowlatError) and isinstance(e.value, OSError)


def test_cpu_outside_the_allowed_set_is_refused_with_the_set():
    outside = max(ALLOWED) + 1
    with pytest.raises(AffinityError, match=rf"CPU {outside} is not in the set this process may use "
                                            rf"\({format_cpus(ALLOWED)};"):
        affinity.pin_thread(str(outside))
    assert affinity.thread_cpus() == set(os.sched_getaffinity(0))  # nothing changed


_CHILD = textwrap.dedent("""
    import sys, threading, time
    from lowlat.services import affinity
    ev = threading.Event()
    t = threading.Thread(target=ev.wait, name="helper")
    t.start()
    affinity.pin_process(sys.argv[1])
    print(t.native_id, flush=True)
    sys.stdin.readline()
    ev.set()
""")


@two_cpus
@pytest.mark.parametrize("cpu", ["0", "1"])
def test_pin_process_confines_every_thread(cpu):
    p = subprocess.Popen([sys.executable, "-c", _CHILD, cpu], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         text=True)
    try:
        helper = int(p.stdout.readline())
        assert _status(f"/proc/{p.pid}/status", "Cpus_allowed_list") == cpu
        # a thread started before the call is pinned too (sched_setaffinity(pid) alone covers the main thread)
        assert _status(f"/proc/{p.pid}/task/{helper}/status", "Cpus_allowed_list") == cpu
    finally:
        p.communicate("\n", timeout=10)
    assert p.returncode == 0


@two_cpus
@pytest.mark.parametrize("cpu", [0, 1])
def test_pin_thread_pins_only_that_thread(cpu):
    before = os.sched_getaffinity(0)
    seen: dict[str, object] = {}
    go = threading.Event()

    def hot() -> None:
        affinity.pin_thread({cpu})
        seen["tid"] = threading.get_native_id()
        seen["cpus"] = affinity.thread_cpus()
        seen["proc"] = _status(f"/proc/self/task/{seen['tid']}/status", "Cpus_allowed_list")
        go.wait(10)

    t = threading.Thread(target=hot)
    t.start()
    try:
        while "proc" not in seen and t.is_alive():
            t.join(0.01)
        assert seen["cpus"] == {cpu} and seen["proc"] == str(cpu)
        assert os.sched_getaffinity(0) == before  # the calling (main) thread kept its set
        # and another thread can be pinned by its native id
        other = next(c for c in ALLOWED if c != cpu)
        affinity.pin_thread([other], native_id=seen["tid"])
        assert affinity.thread_cpus(seen["tid"]) == {other}
    finally:
        go.set()
        t.join(10)


def test_realtime_refused_without_permission_says_what_to_do():
    """As an unprivileged user (RLIMIT_RTPRIO 0, no CAP_SYS_NICE) SCHED_FIFO is refused with the remedy."""
    code = textwrap.dedent("""
        import os
        from lowlat.services import affinity  # imported first: the unprivileged user may not read site-packages
        if os.getuid() == 0:  # root -> nobody drops CAP_SYS_NICE too
            os.setgid(65534); os.setuid(65534)
        try:
            affinity.set_realtime(10)
        except affinity.AffinityError as e:
            print("refused:", e)
        else:
            print("granted", os.sched_getscheduler(0))
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30,
                       env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}, check=False)
    assert r.returncode == 0, r.stderr
    if r.stdout.startswith("granted"):
        pytest.skip("this unprivileged user may use SCHED_FIFO (ulimit -r > 0)")
    assert r.stdout.startswith("refused: no permission for SCHED_FIFO priority 10"), r.stdout
    assert "CAP_SYS_NICE" in r.stdout and "ulimit -r" in r.stdout


def test_realtime_where_permitted_and_back():
    if os.geteuid() != 0:
        pytest.skip("SCHED_FIFO needs root or CAP_SYS_NICE here")
    out: dict[str, int] = {}

    def t() -> None:
        affinity.set_realtime(5)
        out["policy"] = os.sched_getscheduler(0)
        out["prio"] = os.sched_getparam(0).sched_priority
        affinity.set_realtime(0)
        out["after"] = os.sched_getscheduler(0)

    th = threading.Thread(target=t)
    th.start()
    th.join(10)
    assert out == {"policy": os.SCHED_FIFO, "prio": 5, "after": os.SCHED_OTHER}
    with pytest.raises(AffinityError, match="out of range"):
        affinity.set_realtime(100)
