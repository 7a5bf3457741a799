"""Sphinx configuration of lowlat's documentation site (built by tests/docs/test_site.py with warnings as errors).

The guides are README.md's and BENCHMARKS.md's sections, included by the pages under docs/ (one source: the README
blocks are run by the tests, so the site shows tested text); the API reference is autodoc over each package's public names
(``__all__``) and their numpydoc docstrings.
"""

from __future__ import annotations

import os
import re
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, ROOT)

import lowlat
import lowlat.services

# autodoc lists a module's __dict__, and lowlat.services imports its service classes lazily (on first use):
# resolve them so the reference has every name of __all__
for _name in lowlat.services.__all__:
    setattr(lowlat.services, _name, getattr(lowlat.services, _name))

project = "lowlat"
author = "lowlat developers"
release = version = lowlat.__version__
copyright = "lowlat developers, Apache-2.0"

extensions = ["myst_parser", "sphinx.ext.autodoc", "numpydoc"]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build"]
myst_heading_anchors = 4  # BENCHMARKS.md is included one level down
myst_enable_extensions = ["colon_fence"]
html_theme = "alabaster"
html_static_path: list[str] = []

autodoc_member_order = "bysource"
autodoc_typehints = "none"          # the signatures (Cython's embedsignature) already carry the types
numpydoc_show_class_members = False  # members are listed by autodoc's :members:
numpydoc_class_members_toctree = False
numpydoc_validation_checks: set[str] = set()


# README.md's "## " sections and the page that shows each (the other pages include them)
SECTION_PAGES = {
    "Two commands": "getting-started", "Architecture": "architecture",
    "FlatBuffers, validation": "components/flatbuffers",
    "Matching engine": "components/matching-engine", "Rings": "components/rings",
    "Transports": "components/transports", "Services and CLI": "components/services", "Operations": "operations",
    "Reliability": "reliability", "Performance": "performance",
}


def _slug(title: str) -> str:
    """GitHub's (and MyST's) heading anchor."""
    return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")


def _anchor_pages(text: str) -> dict[str, str]:
    """Heading anchor -> the page showing it, for in-README links (``[x](#reliability)``)."""
    pages: dict[str, str] = {}
    page = None
    for m in re.finditer(r"^(#{2,4}) (.+)$", text, flags=re.MULTILINE):
        level, title = len(m.group(1)), m.group(2)
        if level == 2:
            page = SECTION_PAGES.get(title)
            if page:
                pages[_slug(title)] = f"/{page}.md"
        elif page:
            pages[_slug(title)] = f"/{page}.md#{_slug(title)}"
    return pages


def _site_links(text: str) -> str:
    """README.md's links as the site has them: BENCHMARKS.md is the performance page, a README heading is the page
    that shows it; other repository files (the schema, examples, scripts) are not pages, so their link text stays
    and the link goes."""
    anchors = _anchor_pages(text)
    text = re.sub(r"\]\(BENCHMARKS\.md(#[^)]*)?\)", lambda m: f"](/performance.md{m.group(1) or ''})", text)
    text = re.sub(r"\[([^\]]+)\]\(#([^)]+)\)",
                  lambda m: f"[{m.group(1)}]({anchors[m.group(2)]})" if m.group(2) in anchors else m.group(1), text)
    return re.sub(r"\[([^\]]+)\]\((?!https?:|#|/)[^)]+\)", r"\1", text)


def _on_include(app: object, relative_path: object, parent_docname: str, content: list[str]) -> None:
    if os.path.basename(str(relative_path)) == "README.md":
        content[0] = _site_links(content[0])


def setup(app: object) -> None:
    app.connect("include-read", _on_include)  # type: ignore[attr-defined]
