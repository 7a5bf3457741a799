"""A new user: a fresh venv (no system site-packages), the wheel built from this checkout and its dependencies from
the package index pip is configured with, then the README's first command, a CLI mistake and a README block, all
run from an empty directory with nothing of the checkout on the path."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]


def _user_env(venv: Path) -> dict[str, str]:
    """The environment of a shell with the venv activated: no PYTHONPATH (the tests' own points at the
    checkout), none of the developer build switches."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "LOWLAT_DEBUG_TRACEBACK") and not k.startswith("LOWLAT_")}
    env["VIRTUAL_ENV"] = str(venv)
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


def _run(args: list[str], cwd: Path, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=str(cwd), env=env, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, check=False)


def _readme_block(needle: str) -> str:
    """The README's ```python block containing ``needle``."""
    blocks = re.findall(r"^```python\n(.*?)^```", (ROOT / "README.md").read_text(), flags=re.DOTALL | re.MULTILINE)
    (code,) = [b for b in blocks if needle in b]
    return code


@pytest.fixture(scope="module")
def user(dist: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, str]]:
    base = tmp_path_factory.mktemp("new-user")
    venv = base / "venv"
    r = subprocess.run([sys.executable, "-m", "venv", str(venv)], capture_output=True, text=True, timeout=120,
                       check=False)
    assert r.returncode == 0, r.stderr
    assert "include-system-site-packages = false" in (venv / "pyvenv.cfg").read_text()
    env = _user_env(venv)
    work = base / "work"
    work.mkdir()
    r = _run([str(venv / "bin" / "pip"), "install", "-q", str(dist.wheel)], work, env, 300)
    assert r.returncode == 0, f"pip install of the wheel failed:\n{r.stdout}\n{r.stderr}"
    return venv, work, env


def test_installed_from_the_wheel_alone(user):
    venv, work, env = user
    probe = ("import importlib.util as u, lowlat; print(lowlat.__file__);"
             "print([m for m in ('matplotlib', 'prometheus_client', 'hdrhistogram', 'nats', 'zmq') if u.find_spec(m)])")
    r = _run([str(venv / "bin" / "python"), "-c", probe], work, env, 60)
    assert r.returncode == 0, r.stderr
    where, extras = r.stdout.splitlines()
    assert where.startswith(str(venv)), where          # not the checkout
    assert extras == "[]", extras                       # the core install pulled in no extra


def test_lowlat_demo(user):
    venv, work, env = user
    r = _run([str(venv / "bin" / "lowlat"), "demo", "--duration", "1"], work, env, 120)
    assert r.returncode == 0, f"{r.stdout}\n{r.stderr}"
    assert "unanswered 0" in r.stdout and "== matcher" in r.stdout, r.stdout
    # no matplotlib in a core install: the demo says how to get its PNG instead of failing
    assert "pip install 'lowlat[plot]'" in r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr


def test_a_cli_mistake_is_one_line(user):
    venv, work, env = user
    r = _run([str(venv / "bin" / "lowlat"), "demo", "--transport", "nat://127.0.0.1:4222"], work, env, 60)
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "nat" in lines[0] and "Traceback" not in r.stderr, r.stderr


def test_a_readme_block(user):
    venv, work, env = user
    code = _readme_block("Validator([InstrumentRules")
    code += "assert list(codes) == [0, 0, Reject.MALFORMED]\nprint('block ok')\n"
    (work / "readme_block.py").write_text(code)
    r = _run([str(venv / "bin" / "python"), "readme_block.py"], work, env, 60)
    assert r.returncode == 0 and r.stdout.strip() == "block ok", f"{r.stdout}\n{r.stderr}"
