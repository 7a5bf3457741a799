"""Each compiled module's ``.pyi`` agrees with the module (``mypy.stubtest``; allowlist = Cython plumbing only,
``tests/stubtest-allowlist.txt``).  ``lowlat._aeron`` joins when it was built (AERON_HOME)."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
from brokers._util import in_ci

ROOT = Path(__file__).resolve().parents[2]
MODULES = ["lowlat._core", "lowlat._book", "lowlat._ring", "lowlat._idle", "lowlat._histogram", "lowlat._encode", "lowlat._vstage", "lowlat._readside", "lowlat._mstage", "lowlat._shmbus", "lowlat._timer", "lowlat._l2batch", "lowlat._aeron"]


def test_stubs_match_compiled_modules():
    mods = [m for m in MODULES if m != "lowlat._aeron" or importlib.util.find_spec(m) is not None]
    if "lowlat._aeron" not in mods and in_ci():
        pytest.fail("lowlat._aeron was not built (tests/run.sh sets AERON_HOME for the build)", pytrace=False)
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-m", "mypy.stubtest", *mods, "--allowlist",
                        str(ROOT / "tests" / "stubtest-allowlist.txt"), "--ignore-unused-allowlist"],
                       check=False, cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]
