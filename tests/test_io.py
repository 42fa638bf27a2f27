"""One atomic-write helper: files are absent or complete, and every writer in the package uses it."""
import ast
import os
from pathlib import Path

import pytest

from sardfq.io import atomic_path, atomic_write_text, read_record, write_json_atomic

PACKAGE = Path(__file__).resolve().parents[1] / "sardfq"


def test_write_json_atomic_leaves_no_temporaries(tmp_path):
    path = write_json_atomic(tmp_path / "sub" / "r.json", {"a": 1})
    assert read_record(path) == {"a": 1}
    assert os.listdir(tmp_path / "sub") == ["r.json"]
    with pytest.raises(TypeError):
        write_json_atomic(path, {"a": object()})
    assert read_record(path) == {"a": 1}  # the old record survives a failed write
    assert os.listdir(tmp_path / "sub") == ["r.json"]
    (tmp_path / "bad.json").write_text('{"a": ')
    assert read_record(tmp_path / "bad.json") is None


def test_atomic_path_keeps_the_old_file_when_the_writer_fails(tmp_path):
    target = atomic_write_text(tmp_path / "f.txt", "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["f.txt"]
    mask = os.umask(0)
    os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask  # the usual permissions, not mkstemp's 0600


def _calls(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            names.add(f"{node.value.id}.{node.attr}")
    return names


def test_every_writer_goes_through_the_one_helper():
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "io.py":
            continue
        found = _calls(path) & {"os.replace", "tempfile.mkstemp", "tempfile.NamedTemporaryFile", "os.rename",
                                "tmp.replace", "tmp.rename"}
        assert not found, f"{path.relative_to(PACKAGE)} writes files itself ({found}); use sardfq.io"


def test_synthesis_config_and_methods_do_not_import_each_other():
    def imported(name):
        tree = ast.parse((PACKAGE / name).read_text())
        return {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}

    assert not imported("synthesis/config.py") & {"methods", "loop"}
    assert not imported("synthesis/methods.py") & {"loop"}
