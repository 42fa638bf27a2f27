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


def test_atomic_path_refuses_what_is_not_a_regular_file(tmp_path):
    from sardfq.errors import ConfigError

    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "dir").mkdir()
    (tmp_path / "to_null").symlink_to("/dev/null")  # replacing the link would be harmless; it is refused
    (tmp_path / "file").write_text("x")
    for name, kind in (("fifo", "special file"), ("dir", "a folder"), ("to_null", "special file"),
                       ("file/below", "is a file, not a folder")):
        with pytest.raises(ConfigError, match=kind):
            atomic_write_text(tmp_path / name, "new")
    assert sorted(os.listdir(tmp_path)) == ["dir", "fifo", "file", "to_null"]
    assert os.path.islink(tmp_path / "to_null") and (tmp_path / "file").read_text() == "x"


def test_atomic_folder_replaces_a_folder_whole_or_not_at_all(tmp_path):
    from sardfq.errors import ConfigError
    from sardfq.io import atomic_folder

    target = tmp_path / "out"
    with atomic_folder(target, ours=("marker",)) as tmp:
        (tmp / "marker").write_text("old")
        (tmp / "old_only").write_text("x")
    assert sorted(os.listdir(target)) == ["marker", "old_only"]
    with pytest.raises(RuntimeError):
        with atomic_folder(target, ours=("marker",)) as tmp:
            (tmp / "marker").write_text("new")
            raise RuntimeError("killed midway")
    assert (target / "marker").read_text() == "old" and os.listdir(tmp_path) == ["out"]
    with atomic_folder(target, ours=("marker",)) as tmp:
        (tmp / "marker").write_text("new")
    assert os.listdir(target) == ["marker"] and (target / "marker").read_text() == "new"  # no old file left
    assert os.listdir(tmp_path) == ["out"]
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="did not write"):
        with atomic_folder(tmp_path / "foreign", ours=("marker",)):
            pytest.fail("a foreign folder must be refused before anything is written")
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(ConfigError, match="not a folder"):
        with atomic_folder(tmp_path / "a_file", ours=("marker",)):
            pass
    assert sorted(os.listdir(tmp_path)) == ["a_file", "foreign", "out"]
