"""A model of its own: any timm ViT/Swin of N classes, as a model folder, through the whole pipeline
on a user's ImageFolder; and the errors a user meets on the way."""
import json
import shutil

import numpy as np
import pytest
import torch

import sardfq
from sardfq.cli import main

CLASSES = ("apple", "bee", "cloud", "drum", "eel")
MEAN, STD = (0.5, 0.45, 0.4), (0.25, 0.2, 0.3)
VIT = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=len(CLASSES))
SWIN = dict(img_size=32, patch_size=4, window_size=4, embed_dim=16, depths=(1, 1), num_heads=(1, 2),
            num_classes=len(CLASSES))


def make_folder(path, arch="vit_tiny_patch16_224", **kwargs):
    torch.manual_seed(0)
    model, info = sardfq.load_model(arch, pretrained=False, **kwargs)
    info = info.replace(class_names=CLASSES, mean=MEAN, std=STD)
    return sardfq.save_model_folder(model, info, path), model


def make_image_folder(root, per_class=(3, 2), size=40):
    """root/train and root/val with `per_class` random PNGs of each class."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, count in zip(("train", "val"), per_class):
        for name in CLASSES:
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{i}.png")
    return root


@pytest.fixture
def own_vit(tmp_path):
    folder, model = make_folder(tmp_path / "my_vit", **VIT)
    return folder, model


@pytest.fixture
def own_data(tmp_path):
    return make_image_folder(tmp_path / "data")


def test_folder_round_trip_keeps_weights_classes_and_normalization(own_vit):
    folder, model = own_vit
    meta = json.loads((folder / "config.json").read_text())
    assert meta["arch"] == "vit_tiny_patch16_224" and meta["config"]["num_classes"] == 5
    loaded, info = sardfq.load_model(folder)
    assert info.name == "my_vit" and info.dataset == "imagefolder"
    assert info.class_names == CLASSES and info.num_classes == 5
    assert info.mean == pytest.approx(MEAN) and info.std == pytest.approx(STD)
    assert info.input_size == (3, 32, 32) and info.patch_grid == (4, 4)
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(loaded(x), model.eval()(x))


def test_shipped_teacher_format_still_loads_as_an_embedded_folder():
    assert "vit_tiny_cifar10" in sardfq.embedded_models()
    _, info = sardfq.load_model("vit_tiny_cifar10", pretrained=False)
    assert info.dataset == "cifar10" and info.arch.endswith("VisionTransformer")
    assert info.arch_config["depth"] == 6


def test_model_info_dict_round_trip(own_vit):
    _, info = sardfq.load_model(own_vit[0])
    again = sardfq.ModelInfo.from_dict(json.loads(json.dumps(info.to_dict())))
    assert again == info and again.arch_config == info.arch_config


def test_own_classes_evaluate_on_val_by_class_name(own_vit, own_data):
    model, info = sardfq.load_model(own_vit[0])
    dataset = sardfq.eval_dataset(info, model, own_data)
    assert len(dataset) == 10
    image, label = dataset[len(dataset) - 1]
    assert image.shape == (3, 32, 32) and CLASSES[label] == "eel"


def test_val_folder_with_a_foreign_class_is_a_clear_error(own_vit, own_data):
    (own_data / "val" / "zebra").mkdir()
    model, info = sardfq.load_model(own_vit[0])
    with pytest.raises(sardfq.DataNotFoundError, match="zebra"):
        sardfq.eval_dataset(info, model, own_data)


def test_synthesis_labels_and_soft_labels_span_the_model_classes(own_vit, one_torch_thread):
    model, info = sardfq.load_model(own_vit[0])
    config = sardfq.SynthesisConfig(n=6, iterations=2, batch_size=6)
    calib = sardfq.synthesize(model, info, config, progress=False)
    assert calib.images.shape == (6, 3, 32, 32)
    assert calib.soft_targets.shape == (6, 5) and int(calib.labels.max()) < 5


def test_real_method_draws_n_distinct_images_across_chunks(own_vit, own_data):
    model, info = sardfq.load_model(own_vit[0])
    config = sardfq.SynthesisConfig(method="real", n=15, batch_size=2)  # 8 chunks, all 15 images
    calib = sardfq.synthesize(model, info, config, data_root=own_data, progress=False)
    flat = calib.images.flatten(1)
    assert len(flat) == 15 and len(torch.unique(flat, dim=0)) == 15
    assert sorted(calib.labels.tolist()) == sorted(list(range(5)) * 3)
    with pytest.raises(sardfq.ConfigError, match="15"):
        sardfq.synthesize(model, info, config.__class__(method="real", n=16), data_root=own_data,
                          progress=False)


def test_real_method_imagenet_train_folder_never_repeats_an_image(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(1)
    for synset in ("n01440764", "n01443537"):
        (tmp_path / "train" / synset).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(rng.integers(0, 256, (36, 36, 3), dtype=np.uint8)).save(
                tmp_path / "train" / synset / f"{i}.png")
    model, info = sardfq.load_model("deit_tiny_patch16_224", pretrained=False, img_size=32, depth=1)
    assert info.dataset == "imagenet"
    config = sardfq.SynthesisConfig(method="real", n=8, batch_size=2)
    calib = sardfq.synthesize(model, info, config, data_root=tmp_path, progress=False)
    assert len(torch.unique(calib.images.flatten(1), dim=0)) == 8


def test_synthesize_moves_the_model_back(own_vit):
    model, info = sardfq.load_model(own_vit[0])
    moves = []

    def to(*args, **kwargs):
        moves.append(torch.device(args[0]))
        return torch.nn.Module.to(model, *args, **kwargs)

    model.to = to
    model.train()
    sardfq.synthesize(model, info, sardfq.SynthesisConfig(method="noise", n=2), progress=False)
    assert len(moves) >= 2 and moves[-1] == torch.device("cpu")  # back home after the run's move
    assert model.training


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_synthesize_on_cuda_leaves_a_cpu_model_on_the_cpu(own_vit):
    model, info = sardfq.load_model(own_vit[0])
    sardfq.synthesize(model, info, sardfq.SynthesisConfig(n=2, iterations=2), device="cuda",
                      progress=False)
    assert all(p.device.type == "cpu" for p in model.parameters())


def test_eval_limit_zero_is_one_line(own_vit, own_data, capsys):
    assert main(["eval", str(own_vit[0]), "--data", str(own_data), "--limit", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--limit" in err and "positive" in err and len(err.splitlines()) == 1


def test_unsupported_architecture_names_what_is_missing():
    with pytest.raises(sardfq.UnsupportedModelError, match="no transformer blocks"):
        sardfq.load_model("convnext_atto", pretrained=False)
    with pytest.raises(sardfq.UnsupportedModelError, match="EvaAttention"):
        sardfq.load_model("eva02_tiny_patch14_224", pretrained=False, img_size=32, depth=1)
    model, _ = sardfq.load_model("vit_tiny_patch16_224", pretrained=False, img_size=32, depth=2)
    del model.blocks[1].attn.attn_drop
    with pytest.raises(sardfq.UnsupportedModelError, match=r"block 1 has no attn\.attn_drop"):
        sardfq.check_architecture(model)


def test_any_vit_name_or_tag_loads_without_an_allowlist():
    _, info = sardfq.load_model("deit3_small_patch16_224.fb_in1k", pretrained=False, img_size=32,
                                depth=1)
    assert info.family == "vit" and info.num_blocks == 1 and info.dataset == "imagenet"
    with pytest.raises(sardfq.UnknownNameError, match="vit_tiny_patch16_224"):
        sardfq.load_model("vit_tiny_patch16_22")


def test_hf_hub_id_not_cached_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(sardfq.WeightsNotFoundError, match="huggingface-cli download timm/vit_tiny"):
        sardfq.load_model("hf-hub:timm/vit_tiny_patch16_224.augreg_in21k")


def test_hf_hub_id_in_the_cache_and_a_downloaded_hub_folder_load(tmp_path, monkeypatch):
    """timm's hub layout (config.json with architecture / model_args / label_names /
    pretrained_cfg, and model.safetensors), in a Hugging Face cache and as a plain folder."""
    from safetensors.torch import save_file

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path))
    repo = tmp_path / "models--someone--tiny_vit"
    snapshot = repo / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("a" * 40)
    model, _ = sardfq.load_model("vit_tiny_patch16_224", pretrained=False, img_size=32, depth=1,
                                 num_classes=3)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(snapshot / "model.safetensors"))
    (snapshot / "config.json").write_text(json.dumps({
        "architecture": "vit_tiny_patch16_224", "num_classes": 3, "label_names": ["a", "b", "c"],
        "model_args": {"img_size": 32, "depth": 1},
        "pretrained_cfg": {"input_size": [3, 32, 32], "mean": MEAN, "std": STD, "num_classes": 3}}))
    x = torch.randn(2, 3, 32, 32)
    for name in ("hf-hub:someone/tiny_vit", snapshot):
        loaded, info = sardfq.load_model(name)
        assert torch.equal(loaded(x), model(x))
        assert info.class_names == ("a", "b", "c") and info.mean == pytest.approx(MEAN)
        assert info.input_size == (3, 32, 32) and info.dataset == "imagefolder"


@pytest.mark.parametrize("damage, message", [
    (lambda f: (f / "model.safetensors").unlink(), "has no model.safetensors"),
    (lambda f: (f / "model.safetensors").write_bytes(b"truncated"), "could not read"),
    (lambda f: (f / "config.json").write_text("{not json"), "could not read"),
    (lambda f: (f / "config.json").unlink(), "not a model folder"),
    (lambda f: (f / "config.json").write_text(json.dumps({"arch": "vit_tiny_patch16_22"})),
     "config.json: unknown model 'vit_tiny_patch16_22'"),
])
def test_damaged_folder_is_a_checkpoint_error(own_vit, damage, message, capsys):
    damage(own_vit[0])
    with pytest.raises(sardfq.CheckpointError, match=message):
        sardfq.load_model(own_vit[0])
    assert main(["eval", str(own_vit[0]), "--limit", "1"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_missing_folder_is_a_checkpoint_error(tmp_path):
    with pytest.raises(sardfq.CheckpointError, match="does not exist"):
        sardfq.load_model(str(tmp_path / "nowhere"))


def test_quantized_folder_without_model_info_arch_still_loads(tmp_path):
    """Folders saved before ModelInfo.arch: rebuilt from the model name and its arguments."""
    model, info = sardfq.load_model("deit_tiny_patch16_224", pretrained=False, img_size=32, depth=2)
    q_model = sardfq.quantize(model, info, sardfq.QuantConfig(), torch.randn(4, *info.input_size))
    folder = sardfq.save_quantized(q_model, tmp_path / "q")
    record = json.loads((folder / "quant_config.json").read_text())
    for key in ("arch", "arch_config"):
        del record["info"][key]
    (folder / "quant_config.json").write_text(json.dumps(record))
    loaded, loaded_info = sardfq.load_quantized(folder)
    x = torch.randn(2, *info.input_size)
    assert torch.equal(loaded(x), q_model.eval()(x)) and loaded_info.arch == "deit_tiny_patch16_224"


@pytest.mark.slow
def test_run_own_vit_folder_then_eval_the_quantized_folder(own_vit, own_data, tmp_path, capsys,
                                                          one_torch_thread):
    out = tmp_path / "run"
    assert main(["run", str(own_vit[0]), "--method", "sardfq", "--bits", "w4a4", "--data", str(own_data),
                 "--n", "4", "--synth-iters", "2", "--recon-iters", "2", "--out", str(out),
                 "--device", "cpu", "--no-progress", "--json"]) == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert record["quantized"]["n_images"] == 10 and record["config"]["model"] == str(own_vit[0])
    assert record["run_id"].startswith("my_vit-sardfq-w4a4-s0-")
    assert max(record["calibration"]["crop_labels"][0]) < 5
    quantized = record["quantized_folder"]
    shutil.rmtree(own_vit[0])  # the quantized folder rebuilds the architecture on its own
    q_model, q_info = sardfq.load_quantized(quantized)
    assert q_info.class_names == CLASSES and q_info.mean == pytest.approx(MEAN)
    assert main(["eval", quantized, "--data", str(own_data), "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert evaluated["n_images"] == 10
    assert evaluated["top1"] == pytest.approx(record["quantized"]["top1"])
    assert main(["eval", quantized, "--data", str(own_data)]) == 0
    line = capsys.readouterr().out  # five classes: every image is a top-5 hit, so the line says top-1 only
    assert "top-1" in line and "top-5" not in line


@pytest.mark.slow
def test_real_calibration_from_the_train_folder(own_vit, own_data, tmp_path, capsys, one_torch_thread):
    assert main(["run", str(own_vit[0]), "--method", "real", "--data", str(own_data), "--n", "4",
                 "--recon-iters", "0", "--out", str(tmp_path / "run"), "--device", "cpu",
                 "--no-progress", "--json"]) == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    calib = sardfq.CalibrationSet.load(record["calibration_path"])
    assert len(calib) == 4 and len(torch.unique(calib.images.flatten(1), dim=0)) == 4


@pytest.mark.slow
def test_own_swin_folder_through_quantize_and_eval(tmp_path, own_data, capsys, one_torch_thread):
    folder, model = make_folder(tmp_path / "my_swin", "swin_tiny_patch4_window7_224", **SWIN)
    _, info = sardfq.load_model(folder)
    assert info.family == "swin" and info.class_names == CLASSES
    calib = tmp_path / "calib.safetensors"
    assert main(["synthesize", str(folder), "--n", "4", "--iters", "2", "--out", str(calib),
                 "--device", "cpu", "--no-progress"]) == 0
    out = tmp_path / "q"
    assert main(["quantize", str(folder), "--calib", str(calib), "--recon-iters", "1", "--out", str(out),
                 "--data", str(own_data), "--device", "cpu", "--no-progress", "--json"]) == 0
    quantized = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert quantized["accuracy"]["n_images"] == 10
    assert main(["eval", str(out), "--data", str(own_data), "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert evaluated["top1"] == pytest.approx(quantized["accuracy"]["top1"])
