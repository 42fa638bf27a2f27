"""Shared fixtures. Tests that need the real CIFAR-10 files use `cifar_root`: skipped on a developer
machine without them, a failure in CI (CI=true), where .ci/run always provides them."""
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def cifar_root() -> Path:
    root = os.environ.get("SARDFQ_DATA")
    if root and Path(root).is_dir():
        return Path(root)
    if os.environ.get("CI"):
        pytest.fail("CI must set SARDFQ_DATA to a folder holding CIFAR-10 (see .ci/run)")
    pytest.skip("SARDFQ_DATA not set: the real CIFAR-10 files are not available here")


@pytest.fixture(scope="session")
def teacher():
    import sardfq

    return sardfq.load_model("vit_tiny_cifar10")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    # every test shares one session cache folder, never the user's ~/.cache
    monkeypatch.setenv("SARDFQ_CACHE", str(tmp_path_factory.getbasetemp() / "sardfq-cache"))


@pytest.fixture
def one_torch_thread():
    """One torch thread: on a busy 2-core machine, two threads wait on each other at every small op
    (measured several times slower); the tensors in the tests that use this are small enough for one."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def built_book(tmp_path_factory):
    """`jupyter-book build . -W --keep-going` of this checkout into a temporary folder, once per session:
    (the finished process, the `_build/html` folder). Needs the executed chapters in book/chapters/."""
    import shutil
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    jb = shutil.which("jupyter-book", path=str(Path(sys.executable).parent)) or shutil.which("jupyter-book")
    if jb is None:
        pytest.fail("jupyter-book is not installed: pip install -e '.[book]'")
    missing = [p.stem for p in (root / "notebooks").glob("[0-9][0-9]_*.ipynb")
               if not (root / "book" / "chapters" / p.name).is_file()]
    assert not missing, f"executed chapters missing (python book/build_chapters.py): {missing}"
    out = tmp_path_factory.mktemp("book")
    proc = subprocess.run([jb, "build", str(root), "--path-output", str(out), "-W", "--keep-going"],
                          capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"},
                          timeout=900)
    return proc, out / "_build" / "html"
