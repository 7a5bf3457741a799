"""The documentation site builds with Sphinx, warnings as errors: the guides (README.md / BENCHMARKS.md sections
included by docs/), the getting-started page and the API reference of every public class and function."""

from __future__ import annotations

import importlib
import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest
from _services_util import ROOT

pytest.importorskip("sphinx", reason="the docs extra of lowlat[test]: pip install -e '.[test]'")
pytest.importorskip("myst_parser", reason="the docs extra of lowlat[test]: pip install -e '.[test]'")
pytest.importorskip("numpydoc", reason="the docs extra of lowlat[test]: pip install -e '.[test]'")

PAGES = ["index", "getting-started", "architecture", "components/flatbuffers", "components/matching-engine",
    "components/rings", "components/transports", "components/services", "operations", "reliability",
    "performance", "api/index", "api/lowlat", "api/transport", "api/services", "changelog"]
API = {"lowlat": "api/lowlat", "lowlat.transport": "api/transport", "lowlat.services": "api/services"}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    r = subprocess.run([sys.executable, "-m", "sphinx", "-b", "html", "-W", "--keep-going", "-q",
                        "-d", str(out / ".doctrees"), str(ROOT / "docs"), str(out / "html")],
                       capture_output=True, text=True, timeout=600, cwd=str(ROOT), check=False)
    assert r.returncode == 0, f"sphinx failed (warnings are errors):\n{r.stdout[-6000:]}\n{r.stderr[-6000:]}"
    return out / "html"


def test_every_page_is_built(site: Path):
    for page in PAGES:
        assert (site / f"{page}.html").stat().st_size > 2000, page


@pytest.mark.parametrize("modname", list(API))
def test_api_reference_has_every_public_class_and_function(site: Path, modname: str):
    html = (site / f"{API[modname]}.html").read_text()
    mod = importlib.import_module(modname)
    names = [n for n in mod.__all__ if inspect.isclass(getattr(mod, n)) or inspect.isroutine(getattr(mod, n))]
    assert names
    missing = [n for n in names if f'id="{modname}.{n}"' not in html]
    assert not missing, f"{modname}: not in the API reference: {missing}"


def test_guides_are_the_tested_readme_text(site: Path):
    """The component pages show README.md's sections (whose code blocks tests/docs/test_readme.py runs), with
    BENCHMARKS.md links pointing at the performance page."""
    text = (site / "components/matching-engine.html").read_text()
    assert "apply_frames" in text and "Self-trade prevention" in text
    transports = (site / "components/transports.html").read_text()
    assert 'href="../performance.html#aeron"' in transports
    assert "Summary: goals vs what was measured here" in (site / "performance.html").read_text()


def _doc_python_blocks() -> list[tuple[str, int, str]]:
    """(page, line, code) of every ```python block written in docs/ itself (README's are run by test_readme)."""
    out = []
    for page in sorted((ROOT / "docs").rglob("*.md")):
        lines = page.read_text().splitlines()
        i = 0
        while i < len(lines):
            if lines[i].strip() == "```python":
                j = lines.index("```", i + 1)
                out.append((str(page.relative_to(ROOT)), i + 1, "\n".join(lines[i + 1:j]) + "\n"))
                i = j
            i += 1
    return out


@pytest.mark.parametrize("page,line,code", _doc_python_blocks(), ids=lambda v: str(v) if isinstance(v, int) else None)
def test_docs_python_blocks_run(page: str, line: int, code: str, tmp_path: Path):
    (tmp_path / "block.py").write_text(code)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run([sys.executable, "block.py"], capture_output=True, text=True, timeout=60, cwd=str(tmp_path),
                       check=False, env=env)
    assert r.returncode == 0, f"{page}:{line} failed:\n{code}\n{r.stdout}\n{r.stderr}"


def _public_objects():
    for modname in API:
        mod = importlib.import_module(modname)
        for name in mod.__all__:
            obj = getattr(mod, name)
            yield f"{modname}.{name}", obj
            if inspect.isclass(obj):
                for k, v in vars(obj).items():
                    if not k.startswith("_") and callable(v):
                        yield f"{modname}.{name}.{k}", v


def test_numpydoc_sections_parse_as_written():
    """numpydoc reads a paragraph under "Parameters" as more parameters (the reference then shows prose as
    bold parameter names): every parameter a public docstring lists must be a name."""
    from numpydoc.docscrape import NumpyDocString

    bad = []
    for qualname, obj in _public_objects():
        doc = inspect.getdoc(obj)
        if not doc or "----" not in doc:
            continue
        for p in NumpyDocString(doc)["Parameters"]:
            if not all(part.strip().lstrip("*").isidentifier() for part in p.name.split(",")):
                bad.append(f"{qualname}: {p.name[:60]!r}")
    assert not bad, "docstring text parsed as parameters (start a Notes section):\n" + "\n".join(bad)
