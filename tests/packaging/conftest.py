"""Builds the sdist from this checkout and the wheel from that sdist (as pip does for a user installing the
sdist), once per session: the packaging checks and the new-user test share them."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Dist:
    sdist: Path
    wheel: Path
    unpacked: Path  # the sdist's top directory, extracted


# a release build: none of the developer switches of setup.py (a LOWLAT_DEBUG=1 suite run must still check what
# users get), and no Aeron (it is never in a wheel users install)
_DEV_SWITCHES = ("LOWLAT_DEBUG", "LOWLAT_ANNOTATE", "LOWLAT_CFLAGS", "LOWLAT_EXTS", "AERON_HOME")


def _run(args: list[str], cwd: Path, timeout: float) -> None:
    env = {k: v for k, v in os.environ.items() if k not in _DEV_SWITCHES}
    r = subprocess.run(args, cwd=str(cwd), capture_output=True, text=True, timeout=timeout, check=False,
                       stdin=subprocess.DEVNULL, env=env)
    assert r.returncode == 0, f"{args} failed:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"


@pytest.fixture(scope="session")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Dist:
    out = tmp_path_factory.mktemp("dist")
    # the PEP 517 hooks pip calls; no build isolation: the build deps are installed here and the machine has
    # no index but the local mirror
    _run([sys.executable, "-c", f"from setuptools import build_meta as b; b.build_sdist({str(out)!r})"], ROOT, 300)
    (sdist,) = out.glob("lowlat-*.tar.gz")
    with tarfile.open(sdist) as tf:
        tf.extractall(out / "src", filter="data")
    (unpacked,) = (out / "src").iterdir()
    # the wheel is built from the unpacked sdist, so a file the sdist forgot fails the build here
    _run([sys.executable, "-m", "pip", "wheel", "--no-build-isolation", "--no-deps", "-q", "-w", str(out / "wheel"),
          str(unpacked)], out, 1200)
    (wheel,) = (out / "wheel").glob("lowlat-*.whl")
    return Dist(sdist, wheel, unpacked)
