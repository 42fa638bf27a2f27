"""Inputs a user may download or be handed, tried as an attacker or a careless user would: no file
runs code, and every bad input stops the command with one line naming the cause (exit 2, no
traceback, in seconds), leaving nothing behind.

The code-execution payloads are pickles whose unpickling calls `open(MARKER, "w")`: a test passes
only if the marker never appears."""
import json
import math
import os
import pickle
import shutil
import time
from pathlib import Path

import pytest
import torch

import sardfq
from sardfq.cli import main

SECONDS = 20  # what a bad input may cost before its error


class Payload:
    """Unpickling this calls open(marker, "w"): the marker file proves the pickle ran code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _listing(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def fails(args, message, capsys, *, root: Path | None = None, code: int = 2) -> str:
    """`sardfq ARGS` exits `code` with one line holding `message`, no traceback, in under SECONDS,
    and (given `root`) creates nothing under it."""
    before = _listing(root) if root is not None else None
    began = time.perf_counter()
    assert main([str(a) for a in args]) == code
    seconds = time.perf_counter() - began
    err = capsys.readouterr().err.strip().splitlines()
    # beside the error: log lines, and what a progress bar cleared by the error left in the capture
    lines = [line for line in err if line.strip() and not line.startswith(("INFO", "DEBUG", "WARNING"))
             and "%|" not in line]
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in "\n".join(err), err
    assert seconds < SECONDS
    if root is not None:
        assert _listing(root) == before, sorted(_listing(root) - before)
    return lines[0]


# ----------------------------------------------------------------------------- model folders
TINY = dict(img_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2, num_classes=3)
CLASS = "timm.models.vision_transformer.VisionTransformer"


def tiny_folder(path: Path, **changes) -> Path:
    """A valid model folder of a one-block ViT, its config.json then changed by `changes` (a value
    of None removes the key)."""
    torch.manual_seed(0)
    model, info = sardfq.load_model("vit_tiny_patch16_224", pretrained=False, **TINY)
    info = info.replace(class_names=("a", "b", "c"), mean=(0.5,) * 3, std=(0.25,) * 3)
    sardfq.save_model_folder(model, info, path)
    meta = json.loads((path / "config.json").read_text())
    meta.update(changes)
    (path / "config.json").write_text(json.dumps({k: v for k, v in meta.items() if v is not None}))
    return path


def payload_folder(path: Path, marker: Path, **config) -> Path:
    """A model folder whose config asks timm's checkpoint loader to unpickle its weights.pth."""
    path.mkdir(parents=True)
    torch.save(Payload(marker), path / "weights.pth")
    (path / "config.json").write_text(json.dumps({
        "arch": config.pop("arch", "timm.models._helpers.load_state_dict"),
        "config": {"checkpoint_path": str(path / "weights.pth"), "weights_only": False, **config},
        "mean": [0.5] * 3, "std": [0.5] * 3}))
    return path


@pytest.mark.parametrize("command", ["eval", "run", "synthesize", "quantize"])
def test_a_model_folder_naming_a_loader_runs_no_code(command, tmp_path, capsys):
    marker = tmp_path / "MARKER"
    folder = payload_folder(tmp_path / "evil", marker)
    calib = sardfq.CalibrationSet(torch.randn(2, 3, 32, 32), torch.zeros(2, dtype=torch.long)).save(
        tmp_path / "calib.safetensors")
    extra = {"quantize": ["--calib", calib]}.get(command, [])
    fails([command, folder, *extra], "is not a model class sardfq builds", capsys)
    assert not marker.exists()


def test_a_model_folder_named_from_its_parent_runs_no_code(tmp_path, capsys, monkeypatch):
    marker = tmp_path / "MARKER"
    payload_folder(tmp_path / "evil", marker)
    monkeypatch.chdir(tmp_path)
    fails(["eval", "evil"], "is not a model class sardfq builds", capsys)
    assert not marker.exists()


@pytest.mark.parametrize("arch, extra, message", [
    ("vit_tiny_patch16_224", {}, "'checkpoint_path' is a loading option"),
    (CLASS, {}, "'checkpoint_path' is a loading option"),
])
def test_loader_options_in_a_model_folder_are_refused(arch, extra, message, tmp_path, capsys):
    marker = tmp_path / "MARKER"
    folder = payload_folder(tmp_path / "evil", marker, arch=arch, **extra)
    fails(["eval", folder], message, capsys)
    meta = json.loads((folder / "config.json").read_text())
    for option in ({"pretrained": True}, {"pretrained_cfg_overlay": {"file": str(folder / "weights.pth")}},
                   {"weights_only": False}):
        meta["config"] = {**TINY, **option}
        (folder / "config.json").write_text(json.dumps(meta))
        fails(["eval", folder], f"{next(iter(option))!r} is a loading option", capsys)
    assert not marker.exists()


def test_a_quantized_folder_naming_a_loader_runs_no_code(tmp_path, capsys):
    marker = tmp_path / "MARKER"
    model, info = sardfq.load_model("vit_tiny_patch16_224", pretrained=False, **TINY)
    q_model = sardfq.quantize(model, info, sardfq.QuantConfig(), torch.randn(2, 3, 32, 32))
    folder = sardfq.save_quantized(q_model, tmp_path / "q")
    torch.save(Payload(marker), tmp_path / "weights.pth")
    record = json.loads((folder / "quant_config.json").read_text())
    record["info"]["arch"] = "timm.models._helpers.load_state_dict"
    record["info"]["arch_config"] = {"checkpoint_path": str(tmp_path / "weights.pth"), "weights_only": False}
    (folder / "quant_config.json").write_text(json.dumps(record))
    fails(["eval", folder], "is not a model class sardfq builds", capsys)
    del record["info"]["arch"]  # the older layout: the model's name and its arguments
    record["model_kwargs"] = {"checkpoint_path": str(tmp_path / "weights.pth")}
    (folder / "quant_config.json").write_text(json.dumps(record))
    fails(["eval", folder], "'checkpoint_path' is a loading option", capsys)
    assert not marker.exists()


def test_a_pickled_checkpoint_runs_no_code(tmp_path, capsys):
    marker = tmp_path / "MARKER"
    torch.save({"head.weight": Payload(marker)}, tmp_path / "weights.pth")
    fails(["eval", "vit_tiny_cifar10", "--checkpoint", tmp_path / "weights.pth"],
          "holds more than tensors and plain values (Unsupported global: GLOBAL io.open)", capsys)
    assert not marker.exists()


def test_the_shipped_teachers_and_timm_layouts_still_load():
    for name in sardfq.embedded_models():
        meta = json.loads((sardfq.models.weights_dir(name) / "config.json").read_text())
        assert meta["arch"] in sardfq.models.MODEL_CLASSES
        _, info = sardfq.load_model(name, pretrained=False)
        assert info.arch == meta["arch"]
    for arch in ("deit_tiny_patch16_224", "vit_tiny_patch16_224", "swin_tiny_patch4_window7_224",
                 "timm.models.deit.VisionTransformerDistilled"):
        assert sardfq.models.build_architecture(arch, {"img_size": 32, "depth": 1} if "swin" not in arch else
                                                {"img_size": 32, "window_size": 4, "depths": [1, 1],
                                                 "num_heads": [1, 2], "embed_dim": 16, "patch_size": 4})


def test_the_readme_example_folder_loads_and_states_the_bounds(tmp_path):
    import re

    from sardfq.experiments.sweep import MAX_RUNS
    from sardfq.models import MAX_BLOCKS, MAX_PARAMETERS
    from sardfq.synthesis.config import HARD_MAX_IMAGES, MAX_IMAGES

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    example = re.search(r"`my_vit/config.json`:\n\n```json\n(.*?)```", readme, re.S).group(1)
    (tmp_path / "my_vit").mkdir()
    (tmp_path / "my_vit" / "config.json").write_text(example)
    _, info = sardfq.load_model(tmp_path / "my_vit", pretrained=False)
    assert info.class_names == ("apple", "bee", "cloud", "drum", "eel") and info.input_size == (3, 224, 224)
    section = readme[readme.index("## What loading can and cannot do"):readme.index("## Speed")]
    for stated in (f"{MAX_BLOCKS} blocks", f"10^{round(math.log10(MAX_PARAMETERS))} parameters",
                   f"more than {MAX_RUNS:,} runs", f"more than {MAX_IMAGES:,} calibration images",
                   f"more than {HARD_MAX_IMAGES:,} with it", "--allow-code", "weights_only=True"):
        assert stated in section, stated


@pytest.mark.parametrize("changes, message", [
    ({"arch": ["vit_tiny_patch16_224"]}, "arch must be a timm model name or a model class path, got list"),
    ({"arch": "os.system"}, "unknown model 'os.system'"),
    ({"arch": "timm.layers.create_act_layer"}, "is not a model class sardfq builds"),
    ({"config": [1, 2]}, "\"config\" must be a mapping"),
    ({"config": {**TINY, "num_heads": 3}}, "dim should be divisible by num_heads"),
    ({"config": {**TINY, "depht": 2}}, "'depht' (did you mean 'depth'?)"),
    ({"config": {**TINY, "depth": 100000}}, "asks for 100,000 blocks"),
    ({"config": {**TINY, "embed_dim": 60000, "depth": 500, "num_heads": 1}}, "parameters, more than"),
    ({"config": {**TINY, "norm_layer": "../evil.py"}}, "looks like a file path"),
    ({"config": {**TINY, "act_layer": {"name": "gelu"}}}, "must be a number, string, boolean"),
    ({"classes": 3}, "\"classes\" must be a list of class names"),
    ({"classes": "abc"}, "\"classes\" must be a list of class names"),
    ({"classes": ["a", "b"]}, "lists 2 classes but the model has 3 outputs"),
    ({"mean": [0.5, 0.5]}, "ModelInfo.mean must be 3 finite numbers"),
    ({"mean": ["a", "b", "c"]}, "ModelInfo.mean must be 3 finite numbers"),
    ({"std": [0.5, 0.0, 0.5]}, "ModelInfo.std must be positive"),
    ({"std": [0.5, -1, 0.5]}, "ModelInfo.std must be positive"),
    ({"input_size": [3, 64, 64]}, "input_size [3, 64, 64] does not match the architecture"),
    ({"dataset": "mnist"}, "dataset must be one of"),
])
def test_a_bad_model_folder_is_one_line(changes, message, tmp_path, capsys):
    folder = tiny_folder(tmp_path / "m", **changes)
    fails(["eval", folder], message, capsys, root=tmp_path)


@pytest.mark.parametrize("damage, message", [
    (lambda f: _config(f, arch="../x"), "arch '../x' names a file, not an architecture"),
    (lambda f: _config(f, arch="a/b.py"), "arch 'a/b.py' names a file"),
    (lambda f: _config(f, arch="timm.layers.create_act_layer"), "is not a model class sardfq builds"),
    (lambda f: _config(f, arch=["vit_tiny_patch16_224"]), "arch must be a timm model name or a model class path"),
    (lambda f: _config(f, classes=3), "\"classes\" must be a list of class names"),
    (lambda f: (f / "config.json").write_text("{not json"), "could not read"),
    (lambda f: (f / "config.json").write_text("[1, 2]"), "names no architecture"),
    (lambda f: (f / "model.safetensors").write_bytes(b"truncated"), "longer than the whole file"),
    (lambda f: _halve(f / "model.safetensors"), "the file is cut short"),
])
def test_what_a_folder_says_alone_is_refused_before_torch_loads(damage, message, tmp_path):
    """The command line reads config.json and the safetensors header with the standard library
    first (`sardfq.model_files`): a folder they condemn is refused in a fraction of a second, with
    the very line `load_model` gives it, and torch and timm never imported."""
    import subprocess
    import sys

    folder = tiny_folder(tmp_path / "m")
    damage(folder)
    with pytest.raises(sardfq.CheckpointError) as loader:
        sardfq.load_model(folder)
    code = ("import sys; from sardfq.cli import main; code = main(sys.argv[1:]); "
            "print(code, 'torch' in sys.modules, 'timm' in sys.modules)")
    began = time.perf_counter()
    ran = subprocess.run([sys.executable, "-c", code, "eval", str(folder)], capture_output=True, text=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=120)
    assert ran.stdout.split() == ["2", "False", "False"], (ran.stdout, ran.stderr)
    assert ran.stderr.strip() == f"sardfq eval: error: {loader.value}" and message in ran.stderr
    assert time.perf_counter() - began < SECONDS


def _halve(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def _config(folder: Path, **changes) -> None:
    meta = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**meta, **changes}))


def test_the_classes_a_folder_may_name_are_those_timm_has():
    from sardfq.model_files import MODEL_CLASS_PATHS
    from sardfq.models.architecture import timm_model_classes

    assert set(timm_model_classes()) == set(MODEL_CLASS_PATHS) == set(sardfq.models.MODEL_CLASSES)


@pytest.mark.parametrize("weights, message", [
    (lambda state: {k: v.fill_(float("nan")) if k == "head.weight" else v for k, v in state.items()},
     "'head.weight' holds NaN or infinite values"),
    (lambda state: {k: v.to(torch.int64) for k, v in state.items()}, "holds torch.int64 values"),
])
def test_nan_or_integer_weights_are_refused(weights, message, tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    folder = tiny_folder(tmp_path / "m")
    state = weights(load_file(str(folder / "model.safetensors")))
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "model.safetensors"))
    fails(["eval", folder], message, capsys)
    with pytest.raises(sardfq.CheckpointError, match="NaN|int64"):
        sardfq.load_model(folder)


def test_synthesizing_from_a_model_with_std_zero_is_refused(tmp_path, capsys):
    folder = tiny_folder(tmp_path / "m", std=[0.0, 0.0, 0.0])
    fails(["synthesize", folder, "--n", "2", "--iters", "2", "--out", tmp_path / "c.safetensors", "--device", "cpu"],
          "ModelInfo.std must be positive", capsys, root=tmp_path)


def test_saving_over_a_model_folder_is_all_or_nothing(tmp_path, monkeypatch):
    folder = tiny_folder(tmp_path / "m")
    before = {name: (folder / name).read_bytes() for name in ("config.json", "model.safetensors")}
    model, info = sardfq.load_model(folder)
    torch.nn.init.zeros_(model.head.weight)

    def dies_writing_the_config(path, text):
        raise KeyboardInterrupt

    monkeypatch.setattr("sardfq.models.atomic_write_text", dies_writing_the_config)  # after the new weights
    with pytest.raises(KeyboardInterrupt):
        sardfq.save_model_folder(model, info, folder)
    assert {name: (folder / name).read_bytes() for name in before} == before
    assert sorted(os.listdir(tmp_path)) == ["m"]


def test_model_info_refuses_what_would_be_silently_wrong():
    _, info = sardfq.load_model("vit_tiny_patch16_224", pretrained=False, **TINY)
    for change, message in (({"std": (1.0, 0.0, 1.0)}, "positive"), ({"class_names": "abc"}, "list of strings"),
                            ({"mean": (0.5, float("nan"), 0.5)}, "finite"), ({"input_size": (3, 32)}, "three")):
        with pytest.raises(sardfq.ConfigError, match=message):
            info.replace(**change)


# ------------------------------------------------------------------------------ data folders
def _batches(root: Path, batch) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    with open(folder / "test_batch", "wb") as fh:
        pickle.dump(batch, fh)
    return root


def test_a_pickled_cifar_batch_runs_no_code(tmp_path, capsys):
    marker = tmp_path / "MARKER"
    root = _batches(tmp_path / "data", {"data": Payload(marker), "labels": [0]})
    fails(["eval", "vit_tiny_cifar10", "--data", root], "it refers to io.open", capsys)
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar_batches_of_every_pickle_protocol_still_load(protocol, tmp_path):
    import numpy as np

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    data = np.arange(2 * 3072).astype(np.uint8).reshape(2, 3072)
    with open(folder / "test_batch", "wb") as fh:  # the keys and values torchvision's files hold
        pickle.dump({"batch_label": b"testing batch 1 of 1", "labels": [7, 2], "data": data,
                     "filenames": [b"a.png", b"b.png"]}, fh, protocol=protocol)
    arrays = sardfq.load_cifar10("test", tmp_path)
    assert arrays.labels.tolist() == [7, 2] and torch.equal(arrays.images[1].reshape(-1), torch.from_numpy(data[1]))


@pytest.mark.parametrize("batch, message", [
    ({"data": [1, 2], "labels": [0]}, "is not a CIFAR-10 batch"),
    ({"labels": [0]}, "is not a CIFAR-10 batch"),
    ([1, 2, 3], "is not a CIFAR-10 batch"),
])
def test_a_malformed_cifar_batch_is_one_line(batch, message, tmp_path, capsys):
    fails(["eval", "vit_tiny_cifar10", "--data", _batches(tmp_path / "d", batch)], message, capsys)


def test_a_corrupt_image_in_a_cifar_tarball_is_one_line(tmp_path, capsys):
    import io
    import tarfile

    (tmp_path / "d").mkdir()
    with tarfile.open(tmp_path / "d" / "test.tar.gz", "w:gz") as tar:
        data = b"\xff\xd8\xff\xe0 not a jpeg"
        info = tarfile.TarInfo("test/cat/0001.jpg")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    fails(["eval", "vit_tiny_cifar10", "--data", tmp_path / "d"], "test/cat/0001.jpg in", capsys)


def test_a_corrupt_image_in_an_image_folder_is_one_line(tmp_path, capsys):
    from PIL import Image

    folder = tiny_folder(tmp_path / "m")
    for name in ("a", "b"):
        (tmp_path / "data" / "val" / name).mkdir(parents=True)
        Image.new("RGB", (32, 32)).save(tmp_path / "data" / "val" / name / "0.png")
    (tmp_path / "data" / "val" / "b" / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    fails(["eval", folder, "--data", tmp_path / "data"], "1.png cannot be decoded", capsys)


# ----------------------------------------------------------------------------- train-teacher
def _cifar_tarballs(root: Path, per_split: int = 4) -> Path:
    """A CIFAR-10 data folder of `per_split` random 32x32 PNGs in each split's tarball."""
    import io
    import tarfile

    import numpy as np
    from PIL import Image

    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        with tarfile.open(root / f"{split}.tar.gz", "w:gz") as tar:
            for i in range(per_split):
                buf = io.BytesIO()
                Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buf, format="PNG")
                info = tarfile.TarInfo(f"{split}/{sardfq.data.CIFAR10_CLASSES[i % 10]}/{i:04d}.png")
                info.size = len(buf.getvalue())
                tar.addfile(info, io.BytesIO(buf.getvalue()))
    return root


def test_resuming_a_teacher_runs_no_code_from_its_checkpoint(tmp_path, capsys):
    marker = tmp_path / "MARKER"
    data = _cifar_tarballs(tmp_path / "data")
    out = tmp_path / "teacher"
    out.mkdir()
    torch.save({"identity": Payload(marker)}, out / "last.pt")
    fails(["train-teacher", "--data", data, "--out", out, "--batch-size", "2", "--epochs", "1",
           "--device", "cpu"], "cannot resume: ", capsys)
    assert not marker.exists() and os.listdir(out) == ["last.pt"]


@pytest.mark.parametrize("args, message", [
    (["--limit", "-5"], "limit (--limit) must be a positive number of images"),
    (["--limit", "0"], "limit (--limit) must be a positive number of images"),
    (["--out", "{tmp}/file"], "exists and is a file, not a folder"),
    (["--out", "{tmp}/file/below"], "is a file, not a folder"),
    (["--out", "{tmp}/foreign"], "is a folder sardfq did not write"),
])
def test_bad_train_teacher_options_are_one_line(args, message, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("mine")
    args = [a.format(tmp=tmp_path) for a in args]
    fails(["train-teacher", "--data", tmp_path, *args], message, capsys, root=tmp_path)


# -------------------------------------------------------------------------- calibration sets
def _raw_set(path: Path, images, labels=None) -> Path:
    """A safetensors file in the calibration-set layout, written as is (no checks)."""
    from safetensors.torch import save_file

    labels = torch.zeros(len(images), dtype=torch.long) if labels is None else labels
    save_file({"images": images.contiguous(), "labels": labels.contiguous()}, str(path))
    return path


NAN = torch.randn(4, 3, 32, 32).index_fill_(0, torch.tensor([2]), float("nan"))


@pytest.mark.parametrize("images, labels, message", [
    (torch.randn(4, 3, 64, 64), None, "(3, 64, 64) (C, H, W) but vit_tiny_cifar10 takes (3, 32, 32)"),
    (torch.randn(4, 1, 32, 32), None, "(1, 32, 32) (C, H, W) but vit_tiny_cifar10 takes (3, 32, 32)"),
    (torch.randn(0, 3, 32, 32), None, "holds no images"),
    (torch.randn(4, 32, 32), None, "must be N, C, H, W"),
    (torch.randn(4, 3, 32, 32), torch.zeros(3, dtype=torch.long), "4 calibration images need as many integer labels"),
    (NAN, None, "NaN or infinite"),
    (torch.full((4, 3, 32, 32), float("inf")), None, "NaN or infinite"),
])
def test_a_bad_calibration_set_is_refused_before_a_folder_is_written(images, labels, message, tmp_path, capsys):
    calib = _raw_set(tmp_path / "set.safetensors", images, labels)
    fails(["quantize", "vit_tiny_cifar10", "--calib", calib, "--out", tmp_path / "q", "--recon-iters", "0",
           "--device", "cpu"], message, capsys, root=tmp_path)


def test_inspect_on_a_set_with_nan_is_one_line(tmp_path, capsys):
    calib = _raw_set(tmp_path / "set.safetensors", NAN)
    fails(["inspect", "vit_tiny_cifar10", calib, "--reference", calib, "--device", "cpu"], "NaN or infinite",
          capsys, root=tmp_path)
    with pytest.raises(sardfq.ConfigError, match="finite"):
        model, info = sardfq.load_model("vit_tiny_cifar10", pretrained=False)
        sardfq.inspect_calibration(model, info, NAN, NAN)


# ----------------------------------------------------------------------------------- sweeps
def _sweep_file(path: Path, **keys) -> Path:
    import yaml

    path.write_text(yaml.safe_dump({"name": "s", "fixed": {"synthesis.method": "noise"},
                                    "grid": {"seed": [0]}, **keys}))
    return path


def test_a_sweep_naming_a_module_runs_no_code(tmp_path, capsys, monkeypatch):
    marker = tmp_path / "MARKER"
    (tmp_path / "evil.py").write_text(f"open({str(marker)!r}, 'w')\ndef run(*a, **k):\n    return {{}}\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))  # as `python -m sardfq` puts the working folder first
    sweep = _sweep_file(tmp_path / "evil.yaml", experiment="evil:run")
    fails(["sweep", sweep, "--results", tmp_path / "r"], "names Python code to import and run", capsys,
          root=tmp_path)
    assert not marker.exists()
    with pytest.raises(sardfq.ConfigError, match="--allow-code"):
        sardfq.run_sweep(_sweep_file(tmp_path / "t.yaml", experiment="test_sweep:fake_experiment"),
                         results_dir=tmp_path / "r", progress=False)
    assert not marker.exists() and not (tmp_path / "r").exists()


def test_a_sweep_naming_a_notebook_runs_it_only_when_allowed(tmp_path, capsys):
    marker = tmp_path / "MARKER"
    notebook = tmp_path / "evil.ipynb"
    notebook.write_text(json.dumps({"cells": [{"cell_type": "code", "metadata": {}, "outputs": [],
                                              "execution_count": None, "source": f"open({str(marker)!r}, 'w')"}],
                                    "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    sweep = _sweep_file(tmp_path / "nb.yaml", notebook=str(notebook))
    fails(["sweep", sweep, "--results", tmp_path / "r"], "names a notebook to execute", capsys, root=tmp_path)
    assert not marker.exists()


def test_an_unknown_experiment_name_suggests_the_registered_ones(tmp_path, capsys):
    fails(["sweep", _sweep_file(tmp_path / "s.yaml", experiment="run_experimnt"), "--results", tmp_path / "r"],
          "Did you mean: run_experiment?", capsys, root=tmp_path)


@pytest.mark.parametrize("extra", [[], ["--dry-run"]])
def test_a_huge_sweep_is_refused_before_it_is_expanded(extra, tmp_path, capsys):
    sweep = _sweep_file(tmp_path / "big.yaml", grid={"seed": list(range(1000)), "synthesis.n": list(range(1, 1001))})
    fails(["sweep", sweep, "--results", tmp_path / "r", *extra], "expands to 1,000,000 runs", capsys, root=tmp_path)


@pytest.mark.parametrize("args, message", [
    (["--only", "seed=[1"], "--only 'seed=[1': the value is not valid YAML"),
    (["--results", "{tmp}/s.yaml"], "the results folder {tmp}/s.yaml exists and is a file"),
    (["--workers", "0"], "workers: must be a positive integer"),
])
def test_bad_sweep_options_are_one_line(args, message, tmp_path, capsys):
    sweep = _sweep_file(tmp_path / "s.yaml")
    fails(["sweep", sweep, *[a.format(tmp=tmp_path) for a in args]], message.format(tmp=tmp_path), capsys,
          root=tmp_path)


def test_a_scheduler_that_does_not_answer_fails_fast_and_leaves_no_results(tmp_path, capsys, monkeypatch):
    import socket

    pytest.importorskip("distributed")
    monkeypatch.setattr("sardfq.experiments.sweep.SCHEDULER_TIMEOUT_S", 3)
    with socket.socket() as s:  # a port nothing listens on once this is closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    fails(["sweep", _sweep_file(tmp_path / "s.yaml"), "--results", tmp_path / "r", "--scheduler",
           f"tcp://127.0.0.1:{port}"], "no Dask scheduler answered there", capsys, root=tmp_path)


# ---------------------------------------------------------------------------------- options
def _image_folder(root: Path, classes=("a", "b", "c")) -> Path:
    from PIL import Image

    for name in classes:
        (root / "val" / name).mkdir(parents=True)
        Image.new("RGB", (32, 32)).save(root / "val" / name / "0.png")
    return root


@pytest.mark.parametrize("args, message", [
    (["--device", "foo"], "--device: 'foo' is not a device"),
    (["--device", "tpu"], "--device: 'tpu' is not a device"),
    (["--batch-size", "0"], "batch_size (--batch-size) must be a positive number"),
    (["--limit", "-5"], "--limit) must be a positive number of images"),
])
def test_bad_eval_options_are_one_line(args, message, tmp_path, capsys):
    folder = tiny_folder(tmp_path / "m")
    fails(["eval", folder, "--data", _image_folder(tmp_path / "data"), *args], message, capsys, root=tmp_path)


@pytest.mark.parametrize("command", [["compare", "sardfq", "psaq", "--results", "{tmp}"],
                                     ["zoo", "--results", "{tmp}"]])
@pytest.mark.parametrize("boot", ["-5", "0", "10000000"])
def test_bad_bootstrap_counts_are_one_line(command, boot, tmp_path, capsys):
    fails([a.format(tmp=tmp_path) for a in command] + ["--boot", boot], "n_boot (--boot) must be", capsys)


@pytest.mark.parametrize("command", [["synthesize", "vit_tiny_cifar10"], ["run", "vit_tiny_cifar10"]])
@pytest.mark.parametrize("n, message", [("100000", "more than 1,024"), (str(10**12), "at most 100,000 images")])
def test_absurd_calibration_sizes_are_refused_before_starting(command, n, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fails([*command, "--n", n, "--device", "cpu"], message, capsys, root=tmp_path)


def test_absurd_reconstruction_lengths_are_refused(tmp_path, capsys):
    calib = sardfq.CalibrationSet(torch.randn(2, 3, 32, 32), torch.zeros(2, dtype=torch.long)).save(
        tmp_path / "c.safetensors")
    fails(["quantize", "vit_tiny_cifar10", "--calib", calib, "--recon-iters", str(10**7), "--out", tmp_path / "q"],
          "ReconConfig.iters must be an integer in 0..1,000,000", capsys, root=tmp_path)


def test_force_lifts_the_soft_size_bound_only(tmp_path, capsys):
    from sardfq.synthesis.config import HARD_MAX_IMAGES, MAX_IMAGES

    sardfq.SynthesisConfig(n=MAX_IMAGES + 1).check_size(force=True)
    with pytest.raises(sardfq.ConfigError, match="--force"):
        sardfq.SynthesisConfig(n=MAX_IMAGES + 1).check_size()
    with pytest.raises(sardfq.ConfigError, match="at most"):
        sardfq.SynthesisConfig(n=HARD_MAX_IMAGES + 1)
    sweep = _sweep_file(tmp_path / "s.yaml", fixed={"synthesis.method": "noise", "synthesis.n": MAX_IMAGES + 1})
    fails(["sweep", sweep, "--results", tmp_path / "r"], "pass --force", capsys, root=tmp_path)


def test_ctrl_c_says_interrupted(monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("sardfq.experiments.run.load_model", interrupted)
    assert main(["eval", "vit_tiny_cifar10"]) == 130
    assert capsys.readouterr().err.strip() == "sardfq eval: interrupted"


# ---------------------------------------------------------------------------------- outputs
@pytest.mark.parametrize("out, message", [
    ("{tmp}/folder", "--out {tmp}/folder exists and is a folder, not a regular file"),
    ("{tmp}/file/calib.safetensors", "{tmp}/file is a file, not a folder"),
    ("{tmp}/fifo", "is a device or other special file"),
    ("{tmp}/to_null", "is a device or other special file"),
    ("{tmp}/grid.safetensors", "the image grid beside --out {tmp}/grid.png exists and is a folder"),
])
def test_synthesize_refuses_an_out_it_may_not_replace_before_any_work(out, message, tmp_path, capsys):
    (tmp_path / "folder").mkdir()
    (tmp_path / "grid.png").mkdir()
    (tmp_path / "file").write_text("x")
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "to_null").symlink_to("/dev/null")
    fails(["synthesize", "vit_tiny_cifar10", "--out", out.format(tmp=tmp_path), "--n", "2", "--iters", "2",
           "--device", "cpu"], message.format(tmp=tmp_path), capsys, root=tmp_path)
    assert os.path.islink(tmp_path / "to_null") and Path("/dev/null").is_char_device()


@pytest.mark.parametrize("command", [["quantize", "vit_tiny_cifar10", "--calib", "{tmp}/no.safetensors"],
                                     ["run", "vit_tiny_cifar10"]])
@pytest.mark.parametrize("out, message", [
    ("{tmp}/file", "--out {tmp}/file exists and is a file, not a folder"),
    ("{tmp}/file/q", "{tmp}/file is a file, not a folder"),
    ("{tmp}/foreign", "is a folder sardfq did not write"),
])
def test_folder_outputs_are_checked_before_the_work(command, out, message, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("mine")
    fails([a.format(tmp=tmp_path) for a in command] + ["--out", out.format(tmp=tmp_path), "--device", "cpu"],
          message.format(tmp=tmp_path), capsys, root=tmp_path)


# ---------------------------------------------------------------------------------- records
def _records(root: Path, damage) -> Path:
    """A results folder of two paired experiment records (sardfq and psaq, seed 0), `damage`d."""
    from sardfq.evaluate import PerImage

    import numpy as np

    root.mkdir()
    per_image = PerImage(np.array([True, False, True]), "abc", np.array([True, True, False]),
                         np.zeros(3, np.float32)).to_dict()
    for method in ("sardfq", "psaq"):
        config = sardfq.ExperimentConfig.from_dict({"synthesis.method": method, "seed": 0})
        record = {"kind": "experiment", "run_id": method, "config": config.to_dict(), "variant": method,
                  "bits": "w4a4", "fp": {"top1": 0.7, "top5": 0.9, "n_images": 3},
                  "quantized": {"top1": 0.6, "top5": 0.9, "n_images": 3, "agreement": 0.6, "per_image": per_image}}
        (root / f"{method}.json").write_text(json.dumps(damage(record) if method == "psaq" else record))
    return root


def _without_config(record):
    return {k: v for k, v in record.items() if k != "config"}


def _broken_base64(record):
    record["quantized"]["per_image"]["correct"] = "not base64!"
    return record


@pytest.mark.parametrize("damage", [_without_config, _broken_base64])
@pytest.mark.parametrize("command", [["compare", "sardfq", "psaq"], ["zoo"]])
def test_a_damaged_record_is_one_line_naming_it(damage, command, tmp_path, capsys):
    results = _records(tmp_path / "results", damage)
    line = fails([*command, "--results", results, "--boot", "10"], "is not a readable experiment record", capsys)
    assert "psaq" in line and "rerun that run" in line
    healthy = _records(tmp_path / "healthy", lambda r: r)
    assert main(["compare", "sardfq", "psaq", "--results", str(healthy), "--boot", "10"]) == 0


# ------------------------------------------------------------------ `sardfq run --out` is atomic
def _run_args(folder, data, out, seed):
    return ["run", str(folder), "--method", "noise", "--n", "2", "--recon-iters", "0", "--data", str(data),
            "--out", str(out), "--seed", str(seed), "--device", "cpu", "--no-progress", "--json"]


def _run_folder_state(out: Path) -> tuple[int, set[str]]:
    """The seed of the run in `out`, after checking that its files belong to one and the same run."""
    record = json.loads((out / "result.json").read_text())
    calib = sardfq.CalibrationSet.load(out / "calibration.safetensors")
    quant = json.loads((out / "quantized" / "quant_config.json").read_text())
    seed = record["config"]["seed"]
    assert calib.metadata["seed"] == seed and quant["calibration"]["seed"] == seed
    assert record["calibration_path"] == str(out / "calibration.safetensors")
    return seed, _listing(out)


def test_an_interrupted_run_leaves_the_previous_run_folder_whole(tmp_path, capsys, monkeypatch, one_torch_thread):
    folder, data, out = tiny_folder(tmp_path / "m"), _image_folder(tmp_path / "data"), tmp_path / "run"
    assert main(_run_args(folder, data, out, seed=0)) == 0
    before = _run_folder_state(out)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("sardfq.experiments.run.save_quantized", interrupted)  # after the new calibration set is written
    capsys.readouterr()
    assert main(_run_args(folder, data, out, seed=1)) == 130
    assert capsys.readouterr().err.strip().endswith("sardfq run: interrupted")
    assert _run_folder_state(out) == before
    assert sorted(os.listdir(tmp_path)) == ["data", "m", "run"]  # no temporary folder left


@pytest.mark.slow
def test_a_run_killed_at_any_point_leaves_the_old_run_or_the_new_one(tmp_path):
    import signal
    import subprocess
    import sys

    folder, data, out = tiny_folder(tmp_path / "m"), _image_folder(tmp_path / "data"), tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def sardfq_run(seed):
        return subprocess.Popen([sys.executable, "-m", "sardfq", *_run_args(folder, data, out, seed)], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    assert sardfq_run(0).wait(timeout=300) == 0
    old = _run_folder_state(out)
    seen = set()
    # kill while the new run writes into its temporary folder: at once, later, and once its model is saved
    for delay, wait_for in ((0.0, None), (1.0, None), (0.0, "quantized")):
        proc = sardfq_run(1)
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None:
            temporaries = [p for p in tmp_path.glob(".run.*.tmp") if p.is_dir()]
            if temporaries and (wait_for is None or any((t / wait_for).exists() for t in temporaries)):
                break
            time.sleep(0.01)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        seed, files = _run_folder_state(out)  # complete, and one run's files only
        assert (seed, files) == old or seed == 1
        seen.add(seed)
        if seed == 1:
            break
        for leftover in tmp_path.glob(".run.*.tmp"):  # what a kill leaves: a hidden temporary folder
            shutil.rmtree(leftover)
    assert 0 in seen
    assert sardfq_run(1).wait(timeout=300) == 0
    assert _run_folder_state(out)[0] == 1
