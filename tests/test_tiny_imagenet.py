"""Tiny-ImageNet-200: read from its official layout, the official zip and the tarballs of that layout;
bad copies are refused with the file named, and nothing is cached from them."""
import os
import shutil
import tarfile
import zipfile
from pathlib import Path

import pytest
import torch

import sardfq
from sardfq.cli import main
from sardfq.data import load_arrays, load_tiny_imagenet
from conftest import TIN_WNIDS, make_tiny_imagenet, tin_pixel


def _check(arrays, split):
    per_class = 3 if split == "train" else 2
    assert arrays.images.shape == (4 * per_class, 3, 64, 64) and arrays.images.dtype == torch.uint8
    # classes by sorted wnid, named by words.txt's first name; images held class by class
    assert arrays.classes == ("goldfish", "European fire salamander", "bullfrog", "tailed frog")
    assert arrays.labels.tolist() == [c for c in range(4) for _ in range(per_class)]
    for k, (label, image) in enumerate(zip(arrays.labels.tolist(), arrays.images)):
        assert image.unique().tolist() == [tin_pixel(label, k % per_class, "train" if split == "train" else "val")]


@pytest.mark.parametrize("split", ["train", "test"])
def test_official_layout(tin_root, split):
    arrays = load_tiny_imagenet(split, tin_root)
    _check(arrays, split)  # the greyscale first training image of each class is RGB now
    assert torch.equal(load_arrays("tinyimagenet", split, tin_root).images, arrays.images)


def test_the_official_zip_and_the_tarballs_read_the_same(tin_root, tmp_path):
    folder = load_tiny_imagenet("test", tin_root)
    top = tin_root / "tiny-imagenet-200"
    zipped = tmp_path / "zipped"
    zipped.mkdir()
    with zipfile.ZipFile(zipped / "tiny-imagenet-200.zip", "w") as zf:
        for path in sorted(top.rglob("*")):
            zf.write(path, path.relative_to(tin_root).as_posix())
    tarred = tmp_path / "tarred" / "tiny-imagenet-200"
    tarred.mkdir(parents=True)
    for part in ("train", "val"):  # as in the shared data: each tarball holds the class lists too
        with tarfile.open(tarred / f"{part}.tar.gz", "w:gz") as tar:
            for name in ("wnids.txt", "words.txt", part):
                tar.add(top / name, f"tiny-imagenet-200/{name}")
    for root in (zipped, tarred.parent):
        for split in ("train", "test"):
            arrays = load_tiny_imagenet(split, root)
            _check(arrays, split)
    assert torch.equal(load_tiny_imagenet("test", tarred.parent).images, folder.images)


def test_decoded_arrays_are_cached(tin_root, monkeypatch):
    first = load_tiny_imagenet("test", tin_root)
    monkeypatch.setattr("sardfq.data._parse_tiny_imagenet", lambda *a: pytest.fail("decoded again"))
    assert torch.equal(load_tiny_imagenet("test", tin_root).images, first.images)


def _break(root: Path, how: str) -> str:
    """Damage the copy under `root` one way; returns what the error must name."""
    top = root / "tiny-imagenet-200"
    if how == "no annotations":
        (top / "val" / "val_annotations.txt").unlink()
        return "val_annotations.txt"
    if how == "unknown wnid":
        shutil.copytree(top / "train" / TIN_WNIDS[0], top / "train" / "n09999999")
        return "n09999999"
    if how == "wrong count":
        next((top / "train" / TIN_WNIDS[2] / "images").iterdir()).unlink()
        return TIN_WNIDS[2]
    if how == "corrupt jpeg":
        (top / "val" / "images" / "val_5.JPEG").write_bytes(b"\xff\xd8\xff not a jpeg")
        return "val_5.JPEG"
    if how == "unannotated image":
        (top / "val" / "images" / "val_99.JPEG").write_bytes((top / "val" / "images" / "val_0.JPEG").read_bytes())
        return "val_99.JPEG"
    raise ValueError(how)


@pytest.mark.parametrize("how", ["no annotations", "unknown wnid", "wrong count", "corrupt jpeg", "unannotated image"])
def test_a_damaged_copy_is_refused_naming_the_file_and_nothing_is_cached(tmp_path, how, monkeypatch):
    root = make_tiny_imagenet(tmp_path / "data")
    split = "train" if how in ("unknown wnid", "wrong count") else "test"
    named = _break(root, how)
    with pytest.raises(sardfq.DataNotFoundError, match=named):
        load_tiny_imagenet(split, root)
    cache = Path(str(tmp_path / "cache"))
    monkeypatch.setenv("SARDFQ_CACHE", str(cache))
    with pytest.raises(sardfq.DataNotFoundError):
        load_tiny_imagenet(split, root)
    assert not any(cache.rglob("*.npz"))  # no cache entry that a later read could take as complete


def test_the_cli_refuses_a_damaged_copy_in_one_line(tmp_path, capsys):
    root = make_tiny_imagenet(tmp_path / "data")
    named = _break(root, "wrong count")
    code = main(["train-teacher", "--preset", "vit_tiny_tin200", "--data", str(root), "--out", str(tmp_path / "t")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and named in err and len(err.splitlines()) == 1
    assert not (tmp_path / "t").exists()


def test_missing_data_says_where_it_looked(tmp_path):
    with pytest.raises(sardfq.DataNotFoundError, match=r"tiny-imagenet-200.*tiny-imagenet-200\.zip"):
        load_tiny_imagenet("train", tmp_path)
    with pytest.raises(sardfq.ConfigError, match="split"):
        load_tiny_imagenet("validation", tmp_path)


@pytest.mark.slow
def test_the_shared_tarballs_hold_the_whole_data_set(cifar_root):
    if not (cifar_root / "tiny-imagenet-200").is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"CI's data folder {cifar_root} must hold tiny-imagenet-200/ (see .ci/run)")
        pytest.skip(f"no tiny-imagenet-200/ in {cifar_root}")
    val = load_tiny_imagenet("test", cifar_root)
    assert val.images.shape == (10_000, 3, 64, 64) and val.labels.bincount().tolist() == [50] * 200
    assert len(set(val.classes)) == 200 and val.classes[0] == "goldfish"
    train = load_tiny_imagenet("train", cifar_root)
    assert train.images.shape == (100_000, 3, 64, 64) and train.labels.bincount().tolist() == [500] * 200
    assert train.classes == val.classes
