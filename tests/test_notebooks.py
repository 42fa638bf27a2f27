"""The tutorial notebooks: their parameters cells follow one convention and the book builds offline
from the executed chapters without a warning. Each notebook runs with its defaults under nbval
(`pytest --nbval-lax notebooks`, part of `make test`)."""
import ast
import json
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
    assert "seed" in names or path.stem == "06_results"


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


CHAPTERS = ROOT / "book" / "chapters"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_book_folds_the_parameters_papermill_injects(path):
    chapter = CHAPTERS / path.name
    if not chapter.is_file():
        pytest.skip("not executed")
    for cell in _cells(chapter):
        tags = cell.get("metadata", {}).get("tags", [])
        if "injected-parameters" in tags:
            assert "hide-input" in tags, f"{path.stem}: rerun python book/build_chapters.py {path.stem}"
