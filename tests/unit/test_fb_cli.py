"""`lowlat validate-demo` (the core's CLI demo) runs and reports counts, rejects by reason and ns/order."""

import subprocess
import sys

from lowlat import cli


def test_validate_demo_report(capsys):
    assert cli.main(["validate-demo", "--count", "2000", "--repeat", "1", "--reject-ratio", "0.2"]) == 0
    out = capsys.readouterr().out
    assert "orders       2000" in out and "ns/order" in out
    accepted = int(out.split("accepted")[1].split()[0])
    rejected = int(out.split("rejected")[1].split()[0])
    assert accepted + rejected == 2000 and 200 < rejected < 700
    assert "UNKNOWN_SYMBOL" in out and "OFF_TICK" in out


def test_python_dash_m_lowlat_help():
    r = subprocess.run(check=False, args=[sys.executable, "-m", "lowlat", "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "validate-demo" in r.stdout


def test_bad_count_is_a_usage_error(capsys):
    assert cli.main(["validate-demo", "--count", "0"]) == 2
