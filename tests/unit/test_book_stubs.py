"""lowlat/_book.pyi matches the compiled module (mypy.stubtest; allowlist = Cython plumbing only)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ALLOWLIST = """
lowlat._book.__test__
lowlat._book.__pyx_capi__
lowlat._book.__reduce_cython__
lowlat._book.__setstate_cython__
lowlat._book.*.__reduce_cython__
lowlat._book.*.__setstate_cython__
lowlat._book.__pyx_unpickle_.*
lowlat._book.Book.__init__
lowlat._book.Engine.__init__
"""


def test_stubtest_book(tmp_path):
    pytest.importorskip("mypy")
    allow = tmp_path / "allowlist.txt"
    allow.write_text(ALLOWLIST)
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-m", "mypy.stubtest", "lowlat._book", "--allowlist", str(allow),
                        "--ignore-unused-allowlist"], check=False, cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
