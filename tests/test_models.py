import json
import time

import pytest
import torch

import sardfq
from sardfq.models import TIMM_EXAMPLES


def test_teacher_loads_with_its_description(teacher):
    model, info = teacher
    assert info.name == "vit_tiny_cifar10"
    assert info.family == "vit" and info.dataset == "cifar10"
    assert info.input_size == (3, 32, 32)
    assert info.num_blocks == 6 and info.num_heads == (3,) * 6
    assert info.has_class_token and info.patch_grid == (8, 8)
    assert info.class_names[0] == "airplane" and info.num_classes == 10
    assert info.mean == pytest.approx((0.4914, 0.4822, 0.4465), abs=1e-4)
    assert not model.training
    assert sum(p.numel() for p in model.parameters()) == 2_693_578
    json.dumps(info.to_dict())  # JSON-serializable for result records


def test_teacher_weights_are_the_trained_ones(teacher):
    model, _ = teacher
    random_model, _ = sardfq.load_model("vit_tiny_cifar10", pretrained=False)
    assert not torch.equal(model.head.weight, random_model.head.weight)


@pytest.mark.parametrize("name, kwargs, family, heads", [
    ("deit_tiny_patch16_224", dict(img_size=32, depth=2), "vit", (3, 3)),
    ("vit_small_patch16_224", dict(img_size=32, depth=2), "vit", (6, 6)),
    ("swin_tiny_patch4_window7_224", dict(img_size=112, depths=(2, 2, 1, 1)), "swin", (3, 3, 6, 6, 12, 24)),
])
def test_timm_random_init(name, kwargs, family, heads):
    model, info = sardfq.load_model(name, pretrained=False, **kwargs)
    assert info.family == family and info.dataset == "imagenet"
    assert info.num_heads == heads and info.num_blocks == len(heads)
    assert info.input_size == (3, kwargs["img_size"], kwargs["img_size"])
    assert info.has_class_token == (family == "vit")
    assert info.num_classes == 1000 and "goldfish" in info.class_names[1]
    out = model(torch.randn(2, *info.input_size))
    assert out.shape == (2, 1000)


def test_unknown_model_suggests_close_names():
    with pytest.raises(sardfq.UnknownNameError, match="deit_tiny_patch16_224"):
        sardfq.load_model("deit_tiny_patch16")


def test_offline_without_weights_fails_fast_with_instructions(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))  # an empty cache
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path))
    start = time.perf_counter()
    with pytest.raises(sardfq.WeightsNotFoundError, match="checkpoint"):
        sardfq.load_model("deit_tiny_patch16_224")
    assert time.perf_counter() - start < 2.0


def test_local_checkpoint_loads_exactly(tmp_path):
    from safetensors.torch import save_file

    model, info = sardfq.load_model("deit_tiny_patch16_224", pretrained=False, img_size=32, depth=2)
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    torch.save({"state_dict": model.state_dict()}, tmp_path / "w.pth")
    x = torch.randn(2, *info.input_size)
    for file in (path, tmp_path / "w.pth"):
        loaded, _ = sardfq.load_model("deit_tiny_patch16_224", checkpoint=file, img_size=32, depth=2)
        assert torch.equal(loaded(x), model(x))


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file at all")
    with pytest.raises(sardfq.CheckpointError, match="could not read"):
        sardfq.load_model("deit_tiny_patch16_224", checkpoint=bad, img_size=32, depth=2)
    with pytest.raises(sardfq.CheckpointError, match="does not exist"):
        sardfq.load_model("deit_tiny_patch16_224", checkpoint=tmp_path / "missing.pth")


def test_checkpoint_of_another_architecture_is_a_clear_error(tmp_path):
    model, _ = sardfq.load_model("vit_tiny_cifar10", pretrained=False)
    torch.save(model.state_dict(), tmp_path / "teacher.pth")
    with pytest.raises(sardfq.CheckpointError, match="does not fit"):
        sardfq.load_model("deit_tiny_patch16_224", checkpoint=tmp_path / "teacher.pth", img_size=32, depth=2)


def test_supported_names_are_timm_names():
    import timm

    for name in TIMM_EXAMPLES:
        assert timm.is_model(name), name
