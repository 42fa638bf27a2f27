"""Execute the tutorial notebooks into the book's chapters, and write the API page.

    python book/build_chapters.py            # every notebook, with book/params/<name>.yaml if present
    python book/build_chapters.py 02_apa     # some of them
    python book/build_chapters.py --defaults # the notebooks' own (CI-sized) defaults
    python book/build_chapters.py --api-only # only the API pages (book/api.md, book/api/)
    python book/build_chapters.py --refresh-parameters  # executed copies: show the sizes they ran with

Each notebooks/<name>.ipynb is run with papermill (parameters from book/params/<name>.yaml, which
holds the book's sizes: larger than the CI defaults, small enough for a CPU) into
book/chapters/<name>.ipynb, which the book renders without executing anything. The values papermill
injected are then written into the chapter's own `parameters` cell (each changed line naming the
notebook's default) and the injected cell is dropped: the page shows the sizes its outputs were made
with, where a reader looks for them.
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


def _assignments(source: str) -> dict[str, tuple[int, str]]:
    """{name: (line index, value as written)} of the single-name assignments in a cell's source."""
    import ast

    tree = ast.parse(source)
    return {node.targets[0].id: (node.lineno - 1, ast.get_source_segment(source, node.value))
            for node in tree.body if isinstance(node, ast.Assign) and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)}


def merge_injected_parameters(parameters: str, injected: str) -> str:
    """The `parameters` cell's source with the values of papermill's injected cell written in: a
    changed line keeps its comment and adds the notebook's own default; a name the notebook does not
    declare is appended (papermill passes it on all the same)."""
    lines = parameters.splitlines()
    declared = _assignments(parameters)
    extra = []
    for name, (_, value) in _assignments(injected).items():
        if name not in declared:
            extra.append(f"{name} = {value}  # set by the book's parameters (book/params)")
            continue
        index, default = declared[name]
        if value == default:
            continue
        line = lines[index]
        _, _, comment = line.partition("  #")
        lines[index] = f"{name} = {value}  #{comment.rstrip()} (notebook default: {default})" if comment else \
            f"{name} = {value}  # notebook default: {default}"
    return "\n".join(lines + extra)


def show_run_parameters(chapter: Path) -> bool:
    """In an executed chapter, write the values papermill injected into the notebook's own
    `parameters` cell and drop the injected cell, so that the page shows, where a reader looks, the
    sizes its outputs were made with (not the notebook's CI-sized defaults above a folded cell that
    overrides them). Nothing is executed. Returns whether the chapter changed."""
    import nbformat

    nb = nbformat.read(chapter, as_version=4)
    tagged = lambda tag: [c for c in nb.cells if tag in c.metadata.get("tags", [])]  # noqa: E731
    injected, parameters = tagged("injected-parameters"), tagged("parameters")
    if not injected:
        return False
    if len(parameters) != 1:
        raise SystemExit(f"{chapter.name}: want one cell tagged 'parameters', found {len(parameters)}")
    for cell in injected:
        parameters[0].source = merge_injected_parameters(parameters[0].source, cell.source)
        nb.cells.remove(cell)
    nbformat.write(nb, chapter)
    return True


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
        show_run_parameters(CHAPTERS / path.name)
        print(f"{path.name}: done in {time.perf_counter() - start:.0f} s", flush=True)


# The API pages, one per wing of the package (a single page of every name ran past 20 screens):
# (page stem, title, module prefixes). A module goes to the first page whose prefix it starts with.
API_PAGES = (
    ("models", "Models, data and evaluation", ("sardfq.models", "sardfq.model_files", "sardfq.data",
                                              "sardfq.image_arrays", "sardfq.calibset", "sardfq.evaluate",
                                              "sardfq.attention")),
    ("synthesis", "Synthesis", ("sardfq.synthesis",)),
    ("quant", "Quantization", ("sardfq.quant",)),
    ("experiments", "Experiments", ("sardfq.experiments",)),
    ("analysis", "Analysis", ("sardfq.analysis",)),
    ("errors", "Errors and constants", ("sardfq.errors", "constants")),
)


def _api_groups() -> dict[str, list[str]]:
    import sardfq

    groups: dict[str, list[str]] = {}
    for name in sardfq.__all__:
        obj = getattr(sardfq, name)
        module = getattr(obj, "__module__", None) or "sardfq"
        if not module.startswith("sardfq") or not (inspect.isclass(obj) or callable(obj)):
            module = "constants"
        groups.setdefault(module, []).append(name)
    return groups


def _api_entry(name: str, module: str) -> list[str]:
    import sardfq

    obj = getattr(sardfq, name)
    lines = [f"### `{name}`", ""]
    if module == "constants":
        return lines + [f"A {type(obj).__name__}.", ""]
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
    return lines


def write_api_page(out: Path = ROOT / "book" / "api.md") -> Path:
    """book/api.md, an index of every name in `sardfq.__all__` by wing, and book/api/<wing>.md,
    each name with its signature and docstring summary."""
    groups = _api_groups()
    pages: dict[str, list[str]] = {stem: [] for stem, _, _ in API_PAGES}
    for module in sorted(groups, key=lambda m: (m == "constants", m)):
        stem = next((s for s, _, prefixes in API_PAGES if module.startswith(prefixes)), None)
        if stem is None:
            raise SystemExit(f"{module} belongs to no API page: add it to API_PAGES in {Path(__file__).name}")
        pages[stem].append(module)
    index = ["# API", "",
             "The public API is what `import sardfq` exports (`sardfq.__all__`); the notebooks, the "
             "command line and the tests use only these names. These pages are generated from the "
             "docstrings by `book/build_chapters.py --api-only`, one page per wing of the package.", "",
             "Command line: `sardfq --help` lists the subcommands (`eval`, `synthesize`, `quantize`, "
             "`run`, `quickstart`, `sweep`, `inspect`, `train-teacher`), each with its own `--help`.", ""]
    folder = out.parent / out.stem
    folder.mkdir(exist_ok=True)
    for stem, title, _ in API_PAGES:
        names = [n for module in pages[stem] for n in sorted(groups[module], key=str.lower)]
        index += [f"- {{doc}}`{out.stem}/{stem}`: " + ", ".join(f"`{n}`" for n in names), ""]
        lines = [f"# {title}", ""]
        for module in pages[stem]:
            lines += [f"## `{module}`", ""]
            for name in sorted(groups[module], key=str.lower):
                lines += _api_entry(name, module)
        (folder / f"{stem}.md").write_text("\n".join(lines).rstrip() + "\n")
    out.write_text("\n".join(index).rstrip() + "\n")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="notebook names without .ipynb (default: all)")
    parser.add_argument("--defaults", action="store_true", help="ignore book/params: CI-sized runs")
    parser.add_argument("--api-only", action="store_true", help="only write the API pages (book/api.md, book/api/)")
    parser.add_argument("--refresh-parameters", action="store_true",
                        help="edit the executed chapters in place, executing nothing: the values papermill injected "
                             "go into each chapter's own parameters cell")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.refresh_parameters:
        for chapter in sorted(CHAPTERS.glob("[0-9][0-9]_*.ipynb")):
            if (not args.names or chapter.stem in args.names) and show_run_parameters(chapter):
                print(f"{chapter.name}: parameters cell shows the values it ran with")
        return 0
    if not args.api_only:
        build_chapters(args.names, defaults=args.defaults)
    print(f"wrote {write_api_page().relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
