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


TIN_WNIDS = ("n01443537", "n01629819", "n01641577", "n01644900")  # deliberately not in sorted-name order
TIN_WORDS = {"n01443537": "goldfish, Carassius auratus", "n01629819": "European fire salamander",
             "n01641577": "bullfrog, Rana catesbeiana", "n01644900": "tailed frog"}


def tin_pixel(label: int, i: int, split: str) -> int:
    """The grey level of image `i` of class `label` in a `make_tiny_imagenet` folder."""
    return 40 * label + 3 * i + (0 if split == "train" else 1)


def make_tiny_imagenet(root: Path, *, train_per_class: int = 3, val_per_class: int = 2, size: int = 64) -> Path:
    """A small Tiny-ImageNet-200 in its official layout under `root/tiny-imagenet-200`: 4 classes,
    lossless images (PNG bytes under .JPEG names, as Pillow reads either) of one grey level each
    (`tin_pixel`), the first training image of every class greyscale (mode L), as some of the real ones are."""
    import io

    import numpy as np
    from PIL import Image

    def image(value: int, grey: bool) -> bytes:
        buf = io.BytesIO()
        array = np.full((size, size) if grey else (size, size, 3), value, dtype=np.uint8)
        Image.fromarray(array).save(buf, format="PNG")
        return buf.getvalue()

    top = root / "tiny-imagenet-200"
    top.mkdir(parents=True, exist_ok=True)
    (top / "wnids.txt").write_text("\n".join(reversed(TIN_WNIDS)) + "\n")
    (top / "words.txt").write_text("".join(f"{w}\t{TIN_WORDS[w]}\n" for w in TIN_WNIDS))
    lines, n = [], 0
    for label, wnid in enumerate(TIN_WNIDS):
        folder = top / "train" / wnid / "images"
        folder.mkdir(parents=True)
        (top / "train" / wnid / f"{wnid}_boxes.txt").write_text("")
        for i in range(train_per_class):
            (folder / f"{wnid}_{i}.JPEG").write_bytes(image(tin_pixel(label, i, "train"), grey=i == 0))
    (top / "val" / "images").mkdir(parents=True)
    for i in range(val_per_class):
        for label, wnid in enumerate(TIN_WNIDS):  # classes interleaved, as in the official val split
            (top / "val" / "images" / f"val_{n}.JPEG").write_bytes(image(tin_pixel(label, i, "val"), grey=False))
            lines.append(f"val_{n}.JPEG\t{wnid}\t0\t0\t{size - 1}\t{size - 1}")
            n += 1
    (top / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture
def tin_root(tmp_path) -> Path:
    """A data root holding a small official-layout Tiny-ImageNet-200 (`make_tiny_imagenet`)."""
    return make_tiny_imagenet(tmp_path / "data")
