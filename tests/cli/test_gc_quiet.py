"""GC-quiet services: pauses timed through gc.callbacks and exported on /metrics (in-process and from a real
``lowlat serve`` process), gc.freeze() + thresholds after start-up, the opt-out, and restoring the collector."""

from __future__ import annotations

import gc
import sys
import urllib.request
import uuid

import pytest
from _services_util import Proc, stop_all
from brokers._util import free_port
from prometheus_client.parser import text_string_to_metric_families
from test_cli_errors import run_cli

from lowlat.services import metrics
from lowlat.services.gcquiet import GcPauses, gc_pauses, parse_thresholds, quiet_gc, restore_gc


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def _cycles(n: int) -> None:
    for _ in range(n):
        a: list[object] = []
        a.append(a)  # garbage only the cyclic collector can free


def test_every_collection_is_timed_per_generation():
    p = GcPauses().install()
    try:
        before = p.pauses(2), p.pause_ns(2), sum(p.collected)
        _cycles(500)
        gc.collect()
        assert p.pauses(2) == before[0] + 1
        assert p.pause_ns(2) > before[1]
        assert sum(p.collected) >= before[2] + 500  # (young collections during the loop may free some)
        gc.collect(0)
        assert p.pauses(0) >= 1
    finally:
        p.uninstall()
    n = p.pauses()
    gc.collect()
    assert p.pauses() == n and not p.installed


def test_quiet_gc_freezes_sets_thresholds_and_restores():
    old = gc.get_threshold()
    assert gc.get_freeze_count() == 0
    state = quiet_gc((12_345, 7, 9))
    try:
        assert gc.get_threshold() == (12_345, 7, 9)
        assert gc.get_freeze_count() == state["frozen"] > 1000  # the interpreter, pytest, lowlat...
    finally:
        restore_gc(state)
    assert gc.get_threshold() == old and gc.get_freeze_count() == 0


@pytest.mark.parametrize(("text", "ok"), [("10000,20,100", (10000, 20, 100)), (" 1, 0 ,0", (1, 0, 0)),
                                          ("0,1,1", None), ("1,2", None), ("a,b,c", None), ("1,2,3,4", None),
                                          ("1,-1,0", None)])
def test_thresholds_are_checked(text, ok):
    if ok is None:
        with pytest.raises(ValueError, match=r"gen0"):
            parse_thresholds(text)
    else:
        assert parse_thresholds(text) == ok


def test_pause_metric_moves_on_gc_collect_in_process():
    port = metrics.start_metrics_server(0)
    p = gc_pauses()
    was = p.installed
    p.install()
    try:
        key = ("lowlat_gc_pause_seconds_count", (("generation", "2"),))
        before = _scrape(port)[key]
        gc.collect()
        gc.collect()
        after = _scrape(port)
        assert after[key] >= before + 2
        assert after[("lowlat_gc_pause_seconds_sum", (("generation", "2"),))] > 0
    finally:
        if not was:
            p.uninstall()


def _serve(*flags: str, env: dict[str, str] | None = None) -> tuple[Proc, int]:
    port = free_port()
    proc = Proc([sys.executable, "-m", "lowlat", "serve", "validator", "--transport",
                 f"shm://gc-{uuid.uuid4().hex[:8]}", "--metrics-port", str(port), *flags], env=env)
    proc.wait_for('"ready"')
    return proc, port


def test_a_service_process_is_gc_quiet_and_exports_its_pauses():
    proc, port = _serve()
    try:
        m = _scrape(port)
        assert m[("lowlat_gc_frozen_objects", ())] > 1000
        assert [m[("lowlat_gc_threshold", (("generation", str(g)),))] for g in range(3)] == [10000, 20, 100]
        # the collection quiet_gc runs before freezing is the first full pause the service timed
        assert m[("lowlat_gc_pause_seconds_count", (("generation", "2"),))] >= 1
        assert '"gc quiet"' in proc.output
    finally:
        stop_all([proc])
    assert proc.p.returncode == 0, proc.output


@pytest.mark.parametrize(("flags", "env", "want"), [
    (["--no-gc-quiet"], None, (0, [700, 10, 10])),
    ([], {"LOWLAT_GC_QUIET": "0"}, (0, [700, 10, 10])),
    (["--gc-thresholds", "5000,5,5"], None, (None, [5000, 5, 5])),
])
def test_gc_quiet_opt_out_and_thresholds(flags, env, want):
    proc, port = _serve(*flags, env=env)
    try:
        m = _scrape(port)
        frozen, thresholds = want
        if frozen is not None:
            assert m[("lowlat_gc_frozen_objects", ())] == frozen
            assert '"gc quiet"' not in proc.output
        assert [m[("lowlat_gc_threshold", (("generation", str(g)),))] for g in range(3)] == thresholds
    finally:
        stop_all([proc])


def test_bad_thresholds_flag_is_a_usage_error():
    r = run_cli("serve", "validator", "--gc-thresholds", "0,1,1")
    assert r.returncode == 2 and "--gc-thresholds" in r.stderr and "out of range" in r.stderr, r.stderr
