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
