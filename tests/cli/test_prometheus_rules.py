"""examples/prometheus: the rules pass ``promtool check rules`` and their unit tests (``promtool test rules``), and
every metric they use is one a real ``lowlat serve`` process (or a breaker / the GC timer) exports."""

from __future__ import annotations

import re
import subprocess
import sys
import urllib.request
import uuid

from _services_util import ROOT, Proc, stop_all
from brokers._util import free_port, require_binary
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from test_cli_errors import run_cli

from lowlat.breaker import Breakers
from lowlat.services.gcquiet import gc_pauses
from lowlat.services.metrics import collector

DIR = ROOT / "examples" / "prometheus"
RULES = DIR / "lowlat-rules.yml"
HOW = "bash tests/setup/40-promtool.sh"  # Debian package prometheus


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    tool = require_binary("promtool", HOW)
    return subprocess.run([tool, *args], capture_output=True, text=True, timeout=120, cwd=str(DIR), check=False)


def test_promtool_check_rules():
    r = _promtool("check", "rules", RULES.name)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS: 16 rules found" in r.stdout, r.stdout


def test_promtool_unit_tests_of_the_rules():
    r = _promtool("test", "rules", "lowlat-rules.test.yml")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout


def test_a_broken_expectation_fails_promtool(tmp_path):
    """The unit tests can fail: the same file with one expected value changed does."""
    text = (DIR / "lowlat-rules.test.yml").read_text().replace("value: 0.2}", "value: 0.3}")
    (tmp_path / "t.yml").write_text(text.replace("rule_files: [lowlat-rules.yml]", f"rule_files: [{RULES}]"))
    r = subprocess.run([require_binary("promtool", HOW), "test", "rules", str(tmp_path / "t.yml")],
                       capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 1 and "lowlat:rejects:ratio_5m" in r.stdout + r.stderr, r.stdout + r.stderr


def _names(text: str) -> set[str]:
    """Sample names (``lowlat_x_total``, ``_bucket``) and family names (what the annotations mention)."""
    fams = list(text_string_to_metric_families(text))
    return {s.name for fam in fams for s in fam.samples} | {fam.name for fam in fams}


def test_every_metric_the_rules_use_is_exported():
    used = set(re.findall(r"\blowlat_[a-z_]+", RULES.read_text()))
    assert len(used) >= 10, used
    port = free_port()
    url = f"shm://rules-{uuid.uuid4().hex[:8]}"
    p = Proc([sys.executable, "-m", "lowlat", "serve", "validator", "--transport", url, "--metrics-port", str(port)])
    try:
        p.wait_for('"ready"')
        r = run_cli("loadgen", "--transport", url, "--count", "300", "--rate", "3000", "--reject-ratio", "0.3",
                    "--no-progress")
        assert r.returncode == 0, r.stderr
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
            scraped = resp.read().decode()
    finally:
        stop_all([p])
    exported = _names(scraped)
    kinds = {s.labels.get("kind") for fam in text_string_to_metric_families(scraped) for s in fam.samples
             if s.name == "lowlat_messages_total"}
    assert {"in", "rejected"} <= kinds, kinds
    # a breaker in use (an application's downstream calls) adds its families next to the service's
    b = Breakers(None, name="rules-test")
    b.breaker("risk.check")
    was = gc_pauses().installed
    gc_pauses().install()
    try:
        reg = CollectorRegistry(auto_describe=False)
        reg.register(collector())  # type: ignore[arg-type]
        exported |= _names(generate_latest(reg).decode())
    finally:
        if not was:
            gc_pauses().uninstall()
    missing = sorted(used - exported)
    assert not missing, f"rules use metrics nothing exports: {missing}"
