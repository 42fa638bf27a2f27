"""The package's shape, measured from its own imports (module level and inside functions; imports
under `if TYPE_CHECKING:` never run and are left out): no circle, no import from a lower layer of
the house to a higher one, the two middle wings apart, and at most `MAX_FLOORS` floors (the longest
chain of imports, the package's `__init__` and `__main__` included)."""
import ast
from functools import lru_cache
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "sardfq"
MAX_FLOORS = 9

# The house, bottom up. A module may import from its own layer or below, never above.
LAYERS = {
    "foundation": 0,  # errors, io, registry, precision, version, attention, compat, model_files, image_arrays
    "core": 1,  # models (a package of rooms), data, calibration sets, evaluation, teacher training
    "synthesis": 2, "quant": 2,  # the two wings of the method, side by side
    "experiments": 3,
    "analysis": 4,
    "entry": 5,  # the command line (and its options read off the configs) and the package's public face
}
FOUNDATION = {"errors", "io", "registry", "precision", "version", "attention", "compat", "model_files",
              "image_arrays"}
CORE = {"models", "data", "calibset", "evaluate", "teacher"}
ENTRY = {"cli", "cli_options", "__init__", "__main__"}
WINGS = ("synthesis", "quant", "experiments", "analysis")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node) -> bool:
    test = node.test
    return isinstance(node, ast.If) and (getattr(test, "id", None) == "TYPE_CHECKING"
                                         or getattr(test, "attr", None) == "TYPE_CHECKING")


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The package modules that `path` imports."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()

    def visit(node):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                continue
            if isinstance(child, ast.Import):
                found.update(a.name for a in child.names if a.name.split(".")[0] == "sardfq")
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")
                    base = base[:len(base) - child.level + 1]
                    target = ".".join(base + ([child.module] if child.module else []))
                else:
                    target = child.module or ""
                if target.split(".")[0] != "sardfq":
                    continue
                for alias in child.names:  # `from . import methods` imports a module
                    sub = f"{target}.{alias.name}"
                    found.add(sub if sub in modules else target)
            visit(child)

    visit(ast.parse(path.read_text()))
    return {m for m in found if m in modules and m != name}


@lru_cache(maxsize=None)
def graph() -> dict[str, set[str]]:
    files = {(_module_name(p)): p for p in PACKAGE.rglob("*.py")}
    modules = set(files)
    return {name: _imports(path, modules) for name, path in files.items()}


def layer(module: str) -> tuple[str, int]:
    top = (module.split(".")[1:] or ["__init__"])[0]  # a package's rooms stand on its layer
    wing = (top if top in WINGS else "foundation" if top in FOUNDATION else "core" if top in CORE
            else "entry" if top in ENTRY else None)
    assert wing is not None, f"{module} has no place in the house: add it to a layer of tests/test_layout.py"
    return wing, LAYERS[wing]


def floors() -> dict[str, int]:
    g, memo = graph(), {}

    def floor(m, seen=()):
        if m in seen:
            raise AssertionError(f"import circle: {' -> '.join((*seen, m))}")
        if m not in memo:
            memo[m] = 1 + max((floor(d, (*seen, m)) for d in g[m]), default=0)
        return memo[m]

    return {m: floor(m) for m in g}


def test_the_package_imports_have_no_circle():
    floors()  # raises naming the circle


def test_no_import_runs_up_the_house_and_the_wings_stay_apart():
    wrong = []
    for source, targets in graph().items():
        wing, level = layer(source)
        if source in ("sardfq.__main__",) or wing == "entry":
            continue
        for target in targets:
            other, other_level = layer(target)
            if other_level > level or (other_level == level and other != wing):
                wrong.append(f"{source} ({wing}) -> {target} ({other})")
            if target.endswith(".__init__") or target == "sardfq" or (
                    target == source.rpartition(".")[0] and not source.endswith("__init__")):
                wrong.append(f"{source} imports its package's __init__ ({target})")
    assert not wrong, "\n".join(wrong)


def test_the_house_has_at_most_nine_floors():
    f = floors()
    top = max(f.values())
    assert top <= MAX_FLOORS, sorted(f.items(), key=lambda kv: -kv[1])[:12]


def test_every_public_name_resolves_from_the_package():
    """`sardfq` imports its names on first use (`sardfq.__getattr__`): each of `__all__`, and the
    modules the chapters import from it, must be where its table says."""
    import sardfq

    import sardfq.evaluate  # a module named as a public verb: the verb stays `sardfq.evaluate`

    for name in [*sardfq.__all__, "viz", "paper_anchors"]:
        assert getattr(sardfq, name) is not None, name
    assert set(sardfq.__all__) <= set(dir(sardfq))
    assert callable(sardfq.evaluate) and sardfq.evaluate.__module__ == "sardfq.evaluate"

