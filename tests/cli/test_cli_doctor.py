"""``lowlat doctor``: on this host (checked against the kernel's files read here) and on a host tree with isolated
CPUs, a powersave governor, SMT and THP=always (what a tuned or an untuned bare-metal box reports)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_cli_errors import ROOT, run_cli

from lowlat.services.affinity import format_cpus
from lowlat.services.doctor import format_report, run_doctor

NAMES = ["cpus", "isolcpus", "nohz_full", "governor", "smt", "affinity", "thp"]


def _by_name(checks):
    return {c["name"]: c for c in checks}


def test_doctor_json_on_this_host():
    r = run_cli("doctor", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    c = _by_name(out["checks"])
    assert set(NAMES) <= set(c) and "busy_spin" in c
    assert out["warnings"] == sum(x["status"] == "warn" for x in out["checks"])
    online = Path("/sys/devices/system/cpu/online").read_text().strip()
    assert c["cpus"]["value"].endswith(f"{len(os.sched_getaffinity(0))} usable by this process")
    assert f"({online})" in c["cpus"]["value"]
    assert c["affinity"]["value"] == f"this process may run on {format_cpus(os.sched_getaffinity(0))}"
    thp = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    if thp.exists():
        chosen = next(t[1:-1] for t in thp.read_text().split() if t.startswith("["))
        assert c["thp"]["value"].startswith(f"enabled={chosen} ")
    if not list(Path("/sys/devices/system/cpu").glob("cpu[0-9]*/cpufreq/scaling_governor")):
        assert "absent" in c["governor"]["value"] and c["governor"]["advice"]
    if len(os.sched_getaffinity(0)) <= 2:
        assert c["busy_spin"]["status"] == "warn" and "BackoffIdle" in c["busy_spin"]["advice"]
    for x in out["checks"]:
        assert x["status"] in ("ok", "warn", "info")
        if x["status"] == "warn":
            assert x["advice"], x  # every warning says what to change


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs")
def test_doctor_sees_the_affinity_it_runs_with():
    cpu = max(os.sched_getaffinity(0))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run([sys.executable, "-m", "lowlat", "doctor", "--json"], capture_output=True, text=True,
                       timeout=60, env=env, check=False, preexec_fn=lambda: os.sched_setaffinity(0, {cpu}))
    assert r.returncode == 0, r.stderr
    c = _by_name(json.loads(r.stdout)["checks"])
    assert c["affinity"] == {"name": "affinity", "status": "ok", "value": f"this process may run on {cpu}",
                             "advice": ""}
    assert c["cpus"]["value"].endswith("1 usable by this process")
    assert c["busy_spin"]["value"] == "not sensible: 1 usable CPUs"


def _tree(tmp: Path, *, cmdline: str, governors: dict[int, str], siblings: dict[int, str], thp: str) -> Path:
    def w(rel: str, text: str) -> None:
        p = tmp / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text + "\n")

    w("proc/cmdline", cmdline)
    w("sys/devices/system/cpu/online", "0-7")
    for cpu, g in governors.items():
        w(f"sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_governor", g)
    for cpu, s in siblings.items():
        w(f"sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list", s)
    w("sys/kernel/mm/transparent_hugepage/enabled", thp)
    w("sys/kernel/mm/transparent_hugepage/defrag", "always defer [madvise] never")
    w("sys/devices/system/clocksource/clocksource0/current_clocksource", "hpet")
    return tmp


def test_an_untuned_host_gets_advice_for_each_problem(tmp_path):
    root = _tree(tmp_path, cmdline="ro quiet", governors={c: "powersave" for c in range(8)},
                 siblings={c: f"{c % 4},{c % 4 + 4}" for c in range(8)}, thp="[always] madvise never")
    c = {x.name: x for x in run_doctor(str(root), affinity=set(range(8)))}
    assert c["cpus"].status == "ok" and c["cpus"].value.startswith("8 online (0-7)")
    assert c["isolcpus"].status == "warn" and "isolcpus=" in c["isolcpus"].advice
    assert c["governor"].status == "warn" and c["governor"].value == "powersave on 0-7"
    assert "performance" in c["governor"].advice
    assert c["smt"].status == "warn" and "0,4" in c["smt"].value and "smt/control" in c["smt"].advice
    assert c["affinity"].status == "info" and "--hot-cpus" in c["affinity"].advice
    assert c["thp"].status == "warn" and "echo madvise" in c["thp"].advice
    assert c["clocksource"].status == "warn" and "tsc" in c["clocksource"].advice
    assert c["busy_spin"].status == "info"
    text = format_report(list(c.values()))
    assert text.count("-> ") >= 7 and text.endswith("warning(s)")


def test_a_tuned_host_is_ok(tmp_path):
    root = _tree(tmp_path, cmdline="ro isolcpus=nohz,domain,2-3 nohz_full=2-3 rcu_nocbs=2-3 -- isolcpus=7",
                 governors={c: "performance" for c in range(8)}, siblings={c: str(c) for c in range(8)},
                 thp="always [madvise] never")
    c = {x.name: x for x in run_doctor(str(root), affinity={2, 3})}
    assert c["isolcpus"].status == "ok" and c["isolcpus"].value.startswith("2-3 isolated")  # not the init's 7
    assert c["nohz_full"].status == "ok" and c["nohz_full"].value.startswith("2-3")
    assert c["governor"].status == "ok" and c["governor"].value == "performance on 0-7"
    assert c["smt"].status == "ok" and c["thp"].status == "ok" and c["affinity"].status == "ok"
    assert c["busy_spin"].status == "warn"  # two usable CPUs: still not worth spinning
    c = {x.name: x for x in run_doctor(str(root), affinity={0, 1, 2, 3})}
    assert c["busy_spin"].status == "ok" and "isolated" in c["busy_spin"].value
    c = {x.name: x for x in run_doctor(str(root), affinity={0, 1, 4, 5})}
    assert c["isolcpus"].status == "info" and "--hot-cpus 2" in c["isolcpus"].advice


def test_doctor_text_exits_0():
    r = run_cli("doctor")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("lowlat doctor: what affects latency on this host")
    assert "Traceback" not in r.stderr
