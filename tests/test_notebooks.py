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


def _build_chapters():
    import importlib.util

    spec = importlib.util.spec_from_file_location("build_chapters", ROOT / "book" / "build_chapters.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _assigned(source: str) -> dict:
    return {n.targets[0].id: ast.literal_eval(n.value) for n in ast.parse(source).body
            if isinstance(n, ast.Assign) and len(n.targets) == 1 and isinstance(n.targets[0], ast.Name)}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_a_chapters_parameters_cell_shows_the_values_it_ran_with(path):
    """The page shows, in its one parameters cell, the sizes its outputs were made with: every value
    papermill passed (the notebook's metadata keeps them) and every value of book/params/<name>.yaml,
    with no injected cell left to override a visible one."""
    import yaml

    chapter = CHAPTERS / path.name
    if not chapter.is_file():
        pytest.skip("not executed")
    nb = json.loads(chapter.read_text())
    tags = [c.get("metadata", {}).get("tags", []) for c in nb["cells"]]
    assert not any("injected-parameters" in t for t in tags), \
        f"{path.stem}: python book/build_chapters.py --refresh-parameters {path.stem}"
    shown = _assigned(_parameters_cell(chapter))
    ran = nb.get("metadata", {}).get("papermill", {}).get("parameters", {})
    wanted = ROOT / "book" / "params" / f"{path.stem}.yaml"
    book = yaml.safe_load(wanted.read_text()) or {} if wanted.is_file() else {}
    for name, value in {**ran, **book}.items():
        assert shown.get(name) == value, f"{path.stem}: the page shows {name} = {shown.get(name)!r}, it ran with {value!r}"


def test_the_run_parameters_are_written_into_the_parameters_cell():
    merge = _build_chapters().merge_injected_parameters
    source = 'n = 4  # images (the paper: 32)\nseed = 0  # seed\nresults_dir = None  # records'
    merged = merge(source, '# Parameters\nn = 32\nresults_dir = "results/teacher_main"\nextra = 1\n')
    assert merged.splitlines() == ['n = 32  # images (the paper: 32) (notebook default: 4)', "seed = 0  # seed",
                                   'results_dir = "results/teacher_main"  # records (notebook default: None)',
                                   "extra = 1  # set by the book's parameters (book/params)"]
    assert _assigned(merged) == {"n": 32, "seed": 0, "results_dir": "results/teacher_main", "extra": 1}


# A number a reader meets in a finding box or a takeaway is printed by code (glued), never typed: the
# prose around it is stripped of glue, cross-references, code and directive options, and what is left
# may hold no number but a chapter's number (01, 06) and the 95% of a confidence interval.
_NOT_PROSE = re.compile(r"\{glue(?::\w+)?\}`[^`]*`|\{doc\}`[^`]*`|`[^`]*`|^\s*:\w+:.*$|^```.*$|^:::.*$",
                        re.MULTILINE)
_NUMBER = re.compile(r"(?<![\w.\-/])[+\-−]?\d+(?:[.,]\d+)*%?(?![\w/])")


def _typed_numbers(text: str) -> list[str]:
    found = _NUMBER.findall(_NOT_PROSE.sub(" ", text))
    return [n for n in found if not re.fullmatch(r"0\d", n) and n != "95%"]


def _finding_and_takeaways(text: str) -> list[str]:
    boxes = re.findall(r"\{admonition\}[^\n]*\n(.*?)\n(?:::::?|````?)\s*$", text, re.DOTALL | re.MULTILINE)
    takeaways = re.findall(r"^## Takeaways\n(.*?)(?=^#|\Z)", text, re.DOTALL | re.MULTILINE)
    return boxes + takeaways


@pytest.mark.parametrize("path", [*NOTEBOOKS, ROOT / "book" / "intro.md"], ids=lambda p: p.stem)
def test_every_number_in_a_finding_box_or_a_takeaway_is_glued(path):
    if path.suffix == ".md":
        texts = [path.read_text()]
    else:
        texts = ["".join(c["source"]) for c in _cells(path) if c["cell_type"] == "markdown"]
    typed = [n for text in texts for part in _finding_and_takeaways(text) for n in _typed_numbers(part)]
    assert not typed, f"{path.name}: numbers typed by hand in a finding box or takeaway: {typed}"


def test_the_number_check_sees_a_typed_number_and_passes_a_glued_one():
    assert _typed_numbers("SARDFQ is ahead in 3 of 8 cells") == ["3", "8"]
    assert _typed_numbers("ahead by {glue:text}`gap:+.1f` points at W4A4, chapter 06, 95% CIs, `n=32`") == []
    box = ":::{admonition} Finding\n:class: finding\nahead in 2 cells\n:::\n"
    assert _typed_numbers(_finding_and_takeaways(box)[0]) == ["2"]


# Words the intro's finding box (06_results' finding, pasted) may not lean on: a reader meets the box
# before any page defines them.
JARGON = ("headroom", "attn2", "attn4", "resolved", "entropy gap", "share of the", "hypothesis")


def test_the_intros_finding_avoids_the_words_it_has_not_defined():
    intro = (ROOT / "book" / "intro.md").read_text()
    assert "regime_finding_html" in intro.split("What this book holds")[0]
    chapter = CHAPTERS / "06_results.ipynb"
    if not chapter.is_file():
        pytest.skip("not executed")
    outputs = [o for c in _cells(chapter) if c["cell_type"] == "code" for o in c.get("outputs", [])
               if o.get("metadata", {}).get("scrapbook", {}).get("name") == "regime_finding"]
    assert outputs, "06_results glues no regime_finding"
    text = outputs[0]["data"]["application/papermill.record/text/markdown"].lower()
    assert not [w for w in JARGON if w in text], [w for w in JARGON if w in text]
    assert "gain:" not in text and "largest gain" not in text  # a level cell is not called a gain
