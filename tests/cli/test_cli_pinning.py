"""``lowlat serve ... --cpus/--hot-cpus/--rt-priority`` (and ``LOWLAT_CPUS``) on real service processes: the kernel's
view of every thread's CPU set (/proc/<pid>/task/<tid>/status) while the service answers orders."""

from __future__ import annotations

import os
import sys
import uuid

import pytest
from _services_util import Proc, stop_all
from brokers._util import free_port
from test_cli_errors import run_cli

from lowlat.services import affinity

pytestmark = pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="Linux only")
ALLOWED = sorted(affinity.allowed_cpus())
two_cpus = pytest.mark.skipif(len(ALLOWED) < 2, reason="needs two CPUs")


def _threads(pid: int) -> dict[int, tuple[str, str]]:
    """tid -> (thread name, Cpus_allowed_list) of every thread of ``pid``."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/status") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
        out[int(tid)] = (fields["Name"].strip(), fields["Cpus_allowed_list"].strip())
    return out


def _serve(*flags: str, env: dict[str, str] | None = None) -> tuple[Proc, str]:
    url = f"shm://pin-{uuid.uuid4().hex[:8]}"
    # the metrics endpoint is a second (non-hot) thread of the service
    p = Proc([sys.executable, "-m", "lowlat", "serve", "validator", "--transport", url, "--metrics-port",
              str(free_port()), *flags], env=env)
    p.wait_for('"ready"')
    return p, url


@two_cpus
@pytest.mark.parametrize("cpu", ["0", "1"])
def test_serve_cpus_pins_every_thread(cpu):
    p, _ = _serve("--cpus", cpu)
    try:
        threads = _threads(p.p.pid)
        assert len(threads) >= 2, threads
        assert {c for _, c in threads.values()} == {cpu}, threads
        assert '"cpu placement"' in p.output
    finally:
        stop_all([p])
    assert p.p.returncode == 0, p.output


@two_cpus
def test_lowlat_cpus_env_is_the_same_setting():
    p, _ = _serve(env={"LOWLAT_CPUS": "1"})
    try:
        assert {c for _, c in _threads(p.p.pid).values()} == {"1"}
    finally:
        stop_all([p])


@two_cpus
def test_hot_thread_apart_from_the_rest_and_still_serving():
    hot, rest = str(ALLOWED[1]), str(ALLOWED[0])
    p, url = _serve("--cpus", f"{ALLOWED[0]},{ALLOWED[1]}", "--hot-cpus", hot)
    try:
        threads = _threads(p.p.pid)
        assert threads[p.p.pid][1] == hot, threads           # the event-loop (main) thread
        others = {c for tid, (_, c) in threads.items() if tid != p.p.pid}
        assert others == {rest}, threads                     # metrics server etc. kept off the hot CPU
        r = run_cli("loadgen", "--transport", url, "--count", "200", "--rate", "2000", "--no-progress", "--json")
        assert r.returncode == 0, r.stderr
    finally:
        stop_all([p])
    assert p.p.returncode == 0, p.output


def test_realtime_hot_thread_where_permitted():
    if os.geteuid() != 0:
        pytest.skip("SCHED_FIFO needs root or CAP_SYS_NICE here")
    p, _ = _serve("--rt-priority", "1")
    try:
        assert os.sched_getscheduler(p.p.pid) == os.SCHED_FIFO
        assert os.sched_getparam(p.p.pid).sched_priority == 1
    finally:
        stop_all([p])


@pytest.mark.parametrize(("args", "env", "needle"), [
    (["--cpus", "4096"], {}, "--cpus: CPU 4096 is not in the set this process may use"),
    (["--hot-cpus", "1-x"], {}, "--hot-cpus: '1-x' is not a CPU or range"),
    (["--rt-priority", "100"], {}, "--rt-priority: '100' is out of range (valid: >= 0 and <= 99)"),
    ([], {"LOWLAT_CPUS": "4096"}, "LOWLAT_CPUS='4096' (cpus): CPU 4096 is not in the set"),
])
def test_bad_placement_is_one_line_and_status_2(args, env, needle):
    r = run_cli("serve", "validator", "--transport", f"shm://pin-{uuid.uuid4().hex[:8]}", *args, env=env,
                timeout=60)
    assert r.returncode == 2, r.stderr
    assert needle in r.stderr and "Traceback" not in r.stderr, r.stderr
