"""Source checks (uvloop tests/test_sourcecode.py idea): every cdef in a .pxd states its exception spec; the package
is clean under ``ruff check`` and ``mypy`` (both in the test extra; configuration in pyproject.toml)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SKIP = re.compile(r"^\s*(cdef|cpdef)\s+(class|struct|union|enum|extern|readonly|public\s+\w+\s*$)")


def _declarations(text: str):
    """Yield (line number, full declaration) of every cdef/cpdef function declared in a .pxd (joins
    multi-line signatures until the parentheses balance)."""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].split("#", 1)[0]
        if re.match(r"^\s*c?p?def\s", line) and re.match(r"^\s*(cdef|cpdef)\s", line) and "(" in line \
                and not SKIP.match(line):
            start, decl = i, line
            while decl.count("(") > decl.count(")") and i + 1 < len(lines):
                i += 1
                decl += " " + lines[i].split("#", 1)[0].strip()
            head = decl.split("(", 1)[0]
            if not re.search(r"\(\s*\*", decl) and "=" not in head:    # not a function-pointer attribute
                yield start + 1, decl
        i += 1


def _tail(decl: str) -> str:
    depth, k = 0, 0
    for k, ch in enumerate(decl):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                break
    return decl[k + 1:]


PY_RETURNS = {"object", "list", "tuple", "dict", "str", "bytes", "bytearray", "set", "frozenset", "memoryview"}


def _returns_python_object(decl: str, classes: set) -> bool:
    # Functions returning Python objects always propagate exceptions; Cython forbids a spec there.
    words = decl.split("(", 1)[0].split()[1:]                  # drop cdef/cpdef
    words = [w for w in words if w not in ("inline", "public", "api", "const")]
    return len(words) < 2 or words[-2] in PY_RETURNS or words[-2] in classes


def test_every_pxd_cdef_function_states_its_exception_spec():
    bad = []
    pxds = sorted((ROOT / "lowlat").rglob("*.pxd"))
    assert pxds
    classes = {c for p in pxds for c in re.findall(r"^\s*cdef\s+class\s+(\w+)", p.read_text(), re.MULTILINE)}
    for pxd in pxds:
        for lineno, decl in _declarations(pxd.read_text()):
            tail = _tail(decl)
            if not re.search(r"\b(noexcept|except)\b", tail) and not _returns_python_object(decl, classes):
                bad.append(f"{pxd.relative_to(ROOT)}:{lineno}: {decl.strip()[:100]}")
    assert not bad, "cdef declarations without an exception spec:\n" + "\n".join(bad)


def test_checker_finds_a_missing_spec():
    sample = ("cdef int ok(int x) noexcept nogil\ncdef int bad(int x,\n            int y) nogil\ncdef struct S:\n"
              "    cdef object view_c(self, char* p)\n    cdef Foo make_c(self)\n    cdef get_c(self)\n")
    found = [d for _, d in _declarations(sample) if not re.search(r"\b(noexcept|except)\b", _tail(d))
             and not _returns_python_object(d, {"Foo"})]
    assert len(found) == 1 and "bad" in found[0]



def _run(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600, check=False)


def test_ruff_check_package():
    r = _run("ruff", "check", "--no-cache", "lowlat")
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]


@pytest.mark.slow
@pytest.mark.timeout(660)
def test_mypy_package():
    r = _run("mypy", "lowlat")
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]


def test_no_issue_numbers_or_changelogs_in_the_package():
    """Code says why, not which ticket: history lives in git and CHANGELOG, not in comments."""
    bad = []
    for f in sorted((ROOT / "lowlat").rglob("*")):
        if f.suffix in (".py", ".pyx", ".pxd", ".pyi", ".pxi", ".h"):
            for i, line in enumerate(f.read_text().splitlines(), 1):
                if re.search(r"\bissue #?\d+|Changes after", line, re.IGNORECASE):
                    bad.append(f"{f.relative_to(ROOT)}:{i}: {line.strip()[:100]}")
    assert not bad, "\n".join(bad)


# "About 600 lines of Python or 1,000 of Cython": past these a module says in its docstring (or its leading
# comment) why it stays one piece, naming the guide it exceeds ("600-line" / "1,000-line").
_SIZE_GUIDE = {".py": (620, "600-line"), ".pyx": (1050, "1,000-line"), ".pxi": (1050, "1,000-line"),
               ".pxd": (1050, "1,000-line")}


def test_large_modules_say_why_they_are_one_piece():
    bad = []
    for f in sorted((ROOT / "lowlat").rglob("*")):
        limit, phrase = _SIZE_GUIDE.get(f.suffix, (0, ""))
        if not limit:
            continue
        text = f.read_text()
        n = text.count("\n")
        head = text[:6000]
        if n > limit and phrase not in " ".join(head.split()):
            bad.append(f"{f.relative_to(ROOT)}: {n} lines and no word on the {phrase} guide at its top")
    assert not bad, "\n".join(bad)
