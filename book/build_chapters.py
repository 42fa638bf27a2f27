"""Execute the tutorial notebooks into the book's chapters, and write the API page.

    python book/build_chapters.py            # every notebook, with book/params/<name>.yaml if present
    python book/build_chapters.py 02_apa     # some of them
    python book/build_chapters.py --defaults # the notebooks' own (CI-sized) defaults
    python book/build_chapters.py --api-only # only book/api.md

Each notebooks/<name>.ipynb is run with papermill (parameters from book/params/<name>.yaml, which
holds the book's sizes: larger than the CI defaults, small enough for a CPU) into
book/chapters/<name>.ipynb, which the book renders without executing anything.
"""
from __future__ import annotations

import argparse
import inspect
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
CHAPTERS = ROOT / "book" / "chapters"
PARAMS = ROOT / "book" / "params"


def build_chapters(names: list[str], *, defaults: bool = False) -> None:
    import yaml

    from sardfq.experiments.sweep import execute_notebook

    CHAPTERS.mkdir(parents=True, exist_ok=True)
    for path in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")):
        if names and path.stem not in names:
            continue
        params_file = PARAMS / f"{path.stem}.yaml"
        params = {} if defaults or not params_file.is_file() else yaml.safe_load(params_file.read_text()) or {}
        start = time.perf_counter()
        print(f"{path.name}: running with {params or 'its defaults'}", flush=True)
        execute_notebook(path, CHAPTERS / path.name, params, cwd=ROOT, progress=False)
        print(f"{path.name}: done in {time.perf_counter() - start:.0f} s", flush=True)


def write_api_page(out: Path = ROOT / "book" / "api.md") -> Path:
    """book/api.md: every name in `sardfq.__all__` with its signature and docstring summary."""
    import sardfq

    groups: dict[str, list[str]] = {}
    for name in sardfq.__all__:
        obj = getattr(sardfq, name)
        module = getattr(obj, "__module__", None) or "sardfq"
        if not module.startswith("sardfq") or not (inspect.isclass(obj) or callable(obj)):
            module = "constants"
        groups.setdefault(module, []).append(name)
    lines = ["# API", "",
             "The public API is what `import sardfq` exports (`sardfq.__all__`); the notebooks, the "
             "command line and the tests use only these names. This page is generated from the "
             "docstrings by `book/build_chapters.py --api-only`.", "",
             "Command line: `sardfq --help` lists the subcommands (`eval`, `export`, `synthesize`, "
             "`quantize`, `run`, `quickstart`, `sweep`, `inspect`, `train-teacher`), each with its own `--help`.", ""]
    for module in sorted(groups, key=lambda m: (m == "constants", m)):
        lines += [f"## `{module}`", ""]
        for name in sorted(groups[module], key=str.lower):
            obj = getattr(sardfq, name)
            lines += [f"### `{name}`", ""]
            if module == "constants":
                lines += [f"A {type(obj).__name__}.", ""]
                continue
            try:
                signature = f"{name}{inspect.signature(obj)}"
            except (TypeError, ValueError):
                signature = name
            kind = "class " if inspect.isclass(obj) else ""
            lines += ["```python", f"{kind}{signature}", "```", ""]
            doc = inspect.getdoc(obj) or ""
            summary = " ".join(doc.split("\n\n")[0].split())  # one paragraph: it wraps at any width
            if summary and not (inspect.isclass(obj) and summary.startswith(name + "(")):
                lines += [summary, ""]
    out.write_text("\n".join(lines).rstrip() + "\n")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="notebook names without .ipynb (default: all)")
    parser.add_argument("--defaults", action="store_true", help="ignore book/params: CI-sized runs")
    parser.add_argument("--api-only", action="store_true", help="only write book/api.md")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if not args.api_only:
        build_chapters(args.names, defaults=args.defaults)
    print(f"wrote {write_api_page().relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
