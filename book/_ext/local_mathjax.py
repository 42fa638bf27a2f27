"""Serve MathJax from the built book itself, so its math renders offline.

Sphinx loads MathJax 3 from a CDN by default: a book copied to a laptop or an air-gapped cluster
then shows raw `\\(...\\)`. This extension points `mathjax_path` at `_static/mathjax/`, and copies
MathJax 3 there from the PyPI package `django-static-mathjax` (import name `mathjax`; the book
extra installs it) at the end of every HTML build.
"""
from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path

from sphinx.errors import ExtensionError

ENTRY = "tex-mml-chtml.js"  # Sphinx's default MathJax 3 component (TeX and MathML in, HTML out)
# What that component loads on demand (fonts, menu, accessibility); the other bundles and the
# SVG output are left out.
ON_DEMAND = ("output/chtml", "input", "ui", "a11y", "sre", "adaptors")


def mathjax_source() -> Path:
    try:
        root = Path(str(resources.files("mathjax"))) / "static" / "mathjax" / "es5"
    except ModuleNotFoundError:
        root = None
    if root is None or not (root / ENTRY).is_file():
        raise ExtensionError("MathJax for offline math is missing: pip install -e '.[book]' "
                             "(it installs django-static-mathjax)")
    return root


def _configure(app, config) -> None:
    mathjax_source()  # fail at the start of the build, not at its end
    config.mathjax_path = f"mathjax/{ENTRY}"


def _copy(app, exception) -> None:
    if exception is not None or app.builder.format != "html":
        return
    source, target = mathjax_source(), Path(app.outdir) / "_static" / "mathjax"
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source / ENTRY, target / ENTRY)
    for sub in ON_DEMAND:
        if (source / sub).is_dir():
            shutil.copytree(source / sub, target / sub, dirs_exist_ok=True)


def setup(app):
    app.connect("config-inited", _configure)
    app.connect("build-finished", _copy)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
