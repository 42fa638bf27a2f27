import io
import pickle
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

import sardfq
from sardfq.data import CIFAR10_CLASSES


def _jpeg(color) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((32, 32, 3), color, dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()  # lossless, so decoded pixels can be checked exactly


def _make_tarball(folder, split="test", per_class=2):
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(folder / f"{split}.tar.gz", "w:gz") as tar:
        for label, name in enumerate(CIFAR10_CLASSES[:3]):
            for i in range(per_class):
                data = _jpeg(10 * label + i)
                info = tarfile.TarInfo(f"{split}/{name}/{i:04d}.png")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


def test_tarball_layout_decodes_labels_and_pixels(tmp_path):
    _make_tarball(tmp_path / "cifar10")
    arrays = sardfq.load_cifar10("test", tmp_path)
    assert arrays.images.shape == (6, 3, 32, 32) and arrays.images.dtype == torch.uint8
    assert arrays.labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert arrays.images[3].unique().tolist() == [11]  # class 1, image 1


def test_decoded_arrays_are_cached(tmp_path, monkeypatch):
    _make_tarball(tmp_path)
    first = sardfq.load_cifar10("test", tmp_path)
    calls = []
    monkeypatch.setattr("sardfq.data._decode_tarball", lambda *a: calls.append(a))
    second = sardfq.load_cifar10("test", tmp_path)
    assert calls == [] and torch.equal(first.images, second.images)


def test_root_from_environment(tmp_path, monkeypatch):
    _make_tarball(tmp_path, split="train", per_class=1)
    monkeypatch.setenv("SARDFQ_DATA", str(tmp_path))
    assert len(sardfq.load_cifar10("train")) == 3


def test_torchvision_layout(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    data = np.arange(4 * 3072, dtype=np.int64).astype(np.uint8).reshape(4, 3072)
    with open(folder / "test_batch", "wb") as fh:
        pickle.dump({"data": data, "labels": [3, 1, 4, 1]}, fh)
    arrays = sardfq.load_cifar10("test", tmp_path)
    assert arrays.labels.tolist() == [3, 1, 4, 1]
    assert torch.equal(arrays.images[1].reshape(-1), torch.from_numpy(data[1]))  # channel-major rows


def test_extracted_folder_layout(tmp_path):
    for label in (0, 9):
        d = tmp_path / "test" / CIFAR10_CLASSES[label]
        d.mkdir(parents=True)
        (d / "0000.png").write_bytes(_jpeg(label))
    assert sardfq.load_cifar10("test", tmp_path).labels.tolist() == [0, 9]


def test_missing_data_says_where_it_looked(tmp_path, monkeypatch):
    with pytest.raises(sardfq.DataNotFoundError, match=r"looked for.*cifar10.*SARDFQ_DATA"):
        sardfq.load_cifar10("test", tmp_path)
    monkeypatch.delenv("SARDFQ_DATA", raising=False)
    with pytest.raises(sardfq.DataNotFoundError, match="SARDFQ_DATA is not set"):
        sardfq.load_cifar10("test")
    with pytest.raises(sardfq.DataNotFoundError, match="does not exist"):
        sardfq.load_cifar10("test", tmp_path / "nowhere")


def test_corrupt_tarball_is_a_clear_error(tmp_path):
    (tmp_path / "test.tar.gz").write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(sardfq.DataNotFoundError, match="cannot read"):
        sardfq.load_cifar10("test", tmp_path)


def test_bad_split_is_a_config_error(tmp_path):
    with pytest.raises(sardfq.ConfigError, match="split"):
        sardfq.load_cifar10("validation", tmp_path)


def test_imagenet_folder_uses_timm_eval_transform(tmp_path):
    for name in ("n01440764", "n01443537"):
        d = tmp_path / "imagenet" / "val" / name
        d.mkdir(parents=True)
        Image.fromarray(np.zeros((300, 400, 3), np.uint8)).save(d / "a.JPEG")
    model, info = sardfq.load_model("deit_tiny_patch16_224", pretrained=False, depth=1)
    data = sardfq.eval_dataset(info, model, tmp_path)
    image, label = data[1]
    assert image.shape == (3, 224, 224) and label == 1
    with pytest.raises(sardfq.DataNotFoundError, match="ImageNet"):
        sardfq.eval_dataset(info, model, tmp_path / "imagenet" / "val" / "n01440764")


def test_normalize_round_trip(teacher):
    _, info = teacher
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    x = sardfq.normalize(images, info)
    torch.testing.assert_close(sardfq.denormalize(x, info) * 255, images.float(), atol=1e-3, rtol=0)
    low, high = sardfq.pixel_range(info)
    assert (x >= low - 1e-6).all() and (x <= high + 1e-6).all()


def test_real_cifar10_splits(cifar_root):
    test = sardfq.load_cifar10("test", cifar_root)
    assert test.images.shape == (10000, 3, 32, 32)
    assert torch.bincount(test.labels).tolist() == [1000] * 10
    train = sardfq.load_cifar10("train", cifar_root)
    assert len(train) == 50000 and torch.bincount(train.labels).tolist() == [5000] * 10


def test_eval_limit_is_an_even_spread_over_classes(cifar_root, teacher):
    model, info = teacher
    data = sardfq.eval_dataset(info, model, cifar_root, limit=100)
    labels = [data[i][1] for i in range(len(data))]
    assert len(labels) == 100 and sorted(set(labels)) == list(range(10))


def test_heldout_split_is_every_tenth_training_image_and_never_calibrates(cifar_root, teacher):
    from sardfq.data import heldout_dataset, heldout_mask
    from sardfq.data import real_images

    model, info = teacher
    mask = heldout_mask(50000)
    assert int(mask.sum()) == 5000 and mask[9] and not mask[:9].any()
    train = sardfq.load_cifar10("train", cifar_root)
    assert torch.bincount(train.labels[mask]).tolist() == [500] * 10
    data = heldout_dataset(info, cifar_root, limit=50)
    assert len(data) == 50 and len({data[i][1] for i in range(50)}) == 10
    first = data.dataset.arrays.images[0]
    assert torch.equal(first, train.images[9])
    # the real-image calibration source draws from the other 45,000 images only
    images, _ = real_images(info, 200, generator=torch.Generator().manual_seed(0), root=cifar_root)
    drawn = sardfq.normalize(train.images[mask], info)
    flat = drawn.flatten(1)
    hits = (torch.cdist(images.flatten(1), flat).min(dim=1).values < 1e-4).sum()
    assert hits == 0
