"""The public API type-checks from a user's point of view (msgspec ``tests/typing`` idea).

``user_script.py`` imports only from ``lowlat`` and must pass ``mypy --strict`` and pyright's default mode; misuses
(an int or the wrong enum where an enum parameter is declared, an assignment to a read-only attribute) must be
reported, which shows the stubs are really consulted.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("user_script.py")

pytestmark = pytest.mark.timeout(600)


def _mypy(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "mypy", "--strict", *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600, check=False)


def test_user_script_passes_mypy_strict():
    r = _mypy(str(SCRIPT))
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]


def _pyright(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "pyright", "--pythonpath", sys.executable, *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600, check=False)


def test_user_script_passes_pyright():
    r = _pyright(str(SCRIPT))
    assert r.returncode == 0 and "0 errors" in r.stdout, r.stdout[-6000:] + r.stderr[-2000:]


def test_user_script_runs():
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, str(SCRIPT)], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=120, check=False)
    assert r.returncode == 0, r.stderr[-3000:]


MISUSES = {
    "tif=Side.BUY": 'from lowlat import Book, Side\nBook(0, 10, 4).submit(1, Side.BUY, 5, 1, tif=Side.BUY)\n',
    "side=int": 'from lowlat import Book\nBook(0, 10, 4).submit(1, 0, 5, 1)\n',
    "tif=int": 'from lowlat import Book, Side\nBook(0, 10, 4).submit(1, Side.BUY, 5, 1, tif=1)\n',
    "encode side=str": 'from lowlat import encode_order\nencode_order(1, "X", 1.0, 1, "buy", 0)\n',
    "private module name": 'import lowlat\nlowlat.not_a_name\n',
    "read-only attribute": 'from lowlat import Book\nBook(0, 10, 4).tick_size = 2.0\n',
}


def test_misuses_are_reported(tmp_path):
    files = {}
    for i, (name, src) in enumerate(sorted(MISUSES.items())):
        files[name] = tmp_path / f"misuse_{i}.py"
        files[name].write_text(src)
    r = _mypy(*map(str, files.values()))
    assert r.returncode == 1, r.stdout + r.stderr
    for name, f in files.items():
        assert f"{f.name}:2: error:" in r.stdout, (name, r.stdout)
    r = _pyright(*map(str, files.values()))
    assert r.returncode == 1, r.stdout + r.stderr
    for name, f in files.items():
        assert f"{f.name}:2:" in r.stdout, (name, r.stdout)


def test_all_lists_exactly_the_public_names():
    import __future__

    import inspect

    import lowlat

    public = {n for n, v in vars(lowlat).items() if not n.startswith("_") and not inspect.ismodule(v)
              and not isinstance(v, __future__._Feature)}
    assert set(lowlat.__all__) - {"__version__"} == public
    assert len(lowlat.__all__) == len(set(lowlat.__all__))
