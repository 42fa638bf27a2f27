"""The tutorial notebooks: their parameters cells follow one convention and the book builds offline
from the executed chapters without a warning. Each notebook runs with its defaults under nbval
(`pytest --nbval-lax notebooks`, part of `make test`)."""
import ast
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _cells(path):
    return json.loads(path.read_text())["cells"]


def _parameters_cell(path):
    cells = [c for c in _cells(path) if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1, f"{path.name}: want exactly one cell tagged 'parameters'"
    return "".join(cells[0]["source"])


def test_every_chapter_is_in_the_book():
    toc = (ROOT / "_toc.yml").read_text()
    assert NOTEBOOKS and all(f"book/chapters/{p.stem}" in toc for p in NOTEBOOKS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_parameters_cell_is_plain_literals_with_comments(path):
    source = _parameters_cell(path)
    tree = ast.parse(source)
    lines = source.splitlines()
    for node in tree.body:
        assert isinstance(node, ast.Assign) and len(node.targets) == 1, \
            f"{path.name}: line {node.lineno} is not a single assignment"
        ast.literal_eval(node.value)  # plain literal: papermill can override it
        line = lines[node.lineno - 1]
        assert "#" in line, f"{path.name}: `{line}` needs a short comment"
    names = {n.targets[0].id for n in tree.body}
    if {"model", "seed"} <= names:  # experiment-style notebooks share ExperimentConfig's names
        assert "model_name" not in names
    assert "seed" in names or path.stem.startswith("06_")  # the results pages read records only


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_outputs_are_not_committed(path):
    for cell in _cells(path):
        if cell["cell_type"] == "code":
            assert not cell.get("outputs"), f"{path.name}: clear outputs before committing"


@pytest.mark.slow
def test_book_builds_offline_without_warnings(built_book):
    proc, html = built_book
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    for p in NOTEBOOKS:
        page = (html / "book" / "chapters" / f"{p.stem}.html").read_text()
        assert "<img" in page, f"{p.stem}: no figure in the rendered chapter"


def _results_notebook(path) -> bool:
    return bool(json.loads(path.read_text()).get("metadata", {}).get("sardfq", {}).get("results_page"))


RESULTS = [p for p in NOTEBOOKS if _results_notebook(p)]
CHAPTERS = ROOT / "book" / "chapters"
GLUE_REF = re.compile(r"\{glue(?::\w+)?\}`([^`:]+)[^`]*`|```\{glue(?::\w+)?\}\s+([^\n]+)")


def test_at_least_one_chapter_is_a_results_page():
    assert any(p.stem == "07_inspect" for p in RESULTS)


@pytest.mark.parametrize("path", RESULTS, ids=lambda p: p.stem)
def test_a_results_page_opens_with_its_finding_and_binds_its_prose_with_glue(path):
    cells = _cells(path)
    first = "".join(cells[0]["source"])
    assert cells[0]["cell_type"] == "markdown" and first.startswith("# "), f"{path.name}: title first"
    opening = first.split("\n\n", 2)[1] if first.count("\n\n") else ""
    assert "{admonition} Finding" in opening and ":class: finding" in opening, \
        f"{path.name}: the finding box follows the title"
    for cell in cells:
        if cell["cell_type"] != "code":
            continue
        tree = ast.parse("".join(cell["source"]))
        for node in ast.walk(tree):  # prose goes through glue, never displayed from a code cell
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "display":
                assert not any(getattr(getattr(a, "func", None), "id", None) == "Markdown" for a in node.args), \
                    f"{path.name}: display(Markdown(...)) instead of glue"
        last = tree.body[-1] if tree.body else None
        assert not (isinstance(last, ast.Expr) and isinstance(last.value, ast.Call)
                    and getattr(last.value.func, "id", None) == "Markdown"), \
            f"{path.name}: a Markdown(...) cell output instead of glue"


def _glued(chapter) -> set[str]:
    return {out["metadata"]["scrapbook"]["name"] for cell in _cells(chapter) if cell["cell_type"] == "code"
            for out in cell.get("outputs", []) if "scrapbook" in out.get("metadata", {})}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_glue_reference_of_a_chapter_is_glued_in_its_executed_copy(path):
    wanted = {(a or b).strip() for cell in _cells(path) if cell["cell_type"] == "markdown"
              for a, b in GLUE_REF.findall("".join(cell["source"]))}
    chapter = CHAPTERS / path.name
    if not wanted:
        return
    assert chapter.is_file(), f"{path.stem}: not executed (python book/build_chapters.py {path.stem})"
    missing = wanted - _glued(chapter)
    assert not missing, f"{path.stem}: glued nowhere in book/chapters/{path.name}: {sorted(missing)}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_book_folds_the_parameters_papermill_injects(path):
    chapter = CHAPTERS / path.name
    if not chapter.is_file():
        pytest.skip("not executed")
    for cell in _cells(chapter):
        tags = cell.get("metadata", {}).get("tags", [])
        if "injected-parameters" in tags:
            assert "hide-input" in tags, f"{path.stem}: rerun python book/build_chapters.py {path.stem}"
