import json

import pytest
import torch

import sardfq
from sardfq.cli import main
from sardfq.teacher import PRESETS, TeacherPreset, TeacherRecipe, augment_batch, mix_batch, train_teacher

# one block of width 32: fast enough to train a few steps in every test
TINY = TeacherPreset("tiny_test", {"patch_size": 8, "embed_dim": 32, "depth": 1, "num_heads": 2},
                     TeacherRecipe(epochs=2, batch_size=16, warmup_epochs=1, eval_images=16))


def _weights(folder):
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def test_training_writes_a_model_folder_whose_accuracy_is_that_of_its_saved_weights(cifar_root, tmp_path,
                                                                                     one_torch_thread):
    record = train_teacher(TINY, root=cifar_root, out=tmp_path, limit=64, progress=False)
    assert record["epochs_done"] == 2 and len(record["log"]) == 2 and record["test_images"] == 64
    assert json.loads((tmp_path / "config.json").read_text())["log"] == record["log"]
    assert f"{100 * record['test_top1']:.2f}% top-1 on 64" in (tmp_path / "README.md").read_text()
    assert all(v.dtype == torch.float16 for v in _weights(tmp_path).values())
    # the folder is a model folder: sardfq loads it and reproduces the accuracy it records
    model, info = sardfq.load_model(tmp_path)
    assert info.dataset == "cifar10" and info.patch_grid == (4, 4) and info.num_blocks == 1
    data = sardfq.eval_dataset(info, model, cifar_root, limit=64)
    assert sardfq.evaluate(model, data, progress=False).top1 == record["test_top1"]


def test_an_interrupted_run_resumes_exactly_as_an_uninterrupted_one(cifar_root, tmp_path, monkeypatch,
                                                                   one_torch_thread):
    straight = train_teacher(TINY, root=cifar_root, out=tmp_path / "a", limit=64, progress=False)
    real_save = torch.save

    saves = []

    def dies_while_saving_epoch_2(obj, path, *args, **kwargs):
        saves.append(path)
        if len(saves) == 2:
            raise KeyboardInterrupt
        real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(torch, "save", dies_while_saving_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        train_teacher(TINY, root=cifar_root, out=tmp_path / "b", limit=64, progress=False)
    monkeypatch.setattr(torch, "save", real_save)
    assert torch.load(tmp_path / "b" / "last.pt", weights_only=False)["epoch"] == 1
    torch.manual_seed(123)  # the global RNG state of the new process must not matter
    resumed = train_teacher(TINY, root=cifar_root, out=tmp_path / "b", limit=64, progress=False)
    assert [h["loss"] for h in resumed["log"]] == [h["loss"] for h in straight["log"]]
    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert all(torch.equal(a[k], b[k]) for k in a)
    # a rerun of a finished run resumes past its last epoch: no optimizer step happens
    monkeypatch.setattr(torch.optim.AdamW, "step", lambda *a, **k: pytest.fail("trained again"))
    assert train_teacher(TINY, root=cifar_root, out=tmp_path / "a", limit=64, progress=False)["log"] == straight["log"]


@pytest.mark.parametrize("name", PRESETS.names())
def test_every_preset_trains_a_few_steps_on_the_cpu(name, request, tmp_path, one_torch_thread):
    preset = PRESETS.get(name)
    # CIFAR-10 presets on the real files; Tiny-ImageNet ones on a small official-layout copy (4 classes)
    root = request.getfixturevalue("tin_root" if preset.dataset == "tinyimagenet" else "cifar_root")
    recipe = preset.recipe.replace(epochs=1, warmup_epochs=0, batch_size=8, eval_images=8)
    record = train_teacher(preset, recipe=recipe, root=root, out=tmp_path / "t", limit=12, progress=False)
    assert record["preset"] == name and record["config"]["depth"] == preset.arch["depth"]
    assert record["log"][0]["loss"] > 0 and record["dataset"] == preset.dataset
    model, info = sardfq.load_model(str(tmp_path / "t"))
    assert info.input_size == (3, preset.data.img_size, preset.data.img_size)
    assert info.class_names[:1] == (("goldfish",) if preset.dataset == "tinyimagenet" else ("airplane",))


def test_the_zoo_differs_in_depth_width_grid_and_length():
    presets = [PRESETS.get(n) for n in PRESETS.names()]
    assert {p.arch["depth"] for p in presets} >= {3, 6, 10, 12}
    assert len({p.arch["embed_dim"] for p in presets}) >= 2 and len({p.recipe.epochs for p in presets}) >= 3
    grids = {p.config()["img_size"] // p.arch["patch_size"] for p in presets}
    assert grids == {4, 8, 16}
    assert {p.device for p in presets} == {"cpu", "cuda"}


def test_augmentation_is_a_crop_of_the_padded_image_and_a_flip():
    images = torch.randint(0, 256, (6, 3, 8, 8), dtype=torch.uint8)
    out = augment_batch(images, torch.Generator().manual_seed(0), pad=2)
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2))
    for img, pad_img in zip(out, padded):
        crops = [pad_img[:, t:t + 8, l:l + 8] for t in range(5) for l in range(5)]
        assert any(torch.equal(img, c) or torch.equal(img, c.flip(-1)) for c in crops)
    again = augment_batch(images, torch.Generator().manual_seed(0), pad=2)
    assert torch.equal(out, again)


def test_mixing_keeps_targets_distributions():
    images = torch.rand(8, 3, 8, 8)
    targets = torch.nn.functional.one_hot(torch.arange(8) % 3, 3).float()
    gen = torch.Generator().manual_seed(0)
    for _ in range(6):
        mixed, soft = mix_batch(images, targets, gen)
        assert mixed.shape == images.shape and torch.allclose(soft.sum(1), torch.ones(8))


def test_missing_data_leaves_no_output_folder(tmp_path):
    out = tmp_path / "teacher"
    assert main(["train-teacher", "--preset", "vit_shallow_cifar10", "--data", str(tmp_path / "nope"),
                 "--out", str(out)]) == 2
    assert not out.exists()


def test_bad_recipe_names_the_field():
    with pytest.raises(sardfq.ConfigError, match="epochs"):
        TeacherRecipe(epochs=0)
    with pytest.raises(sardfq.ConfigError, match="mix"):
        TeacherRecipe(mix=2.0)
    with pytest.raises(sardfq.ConfigError, match="no field"):
        TeacherRecipe().replace(epoch=3)
    with pytest.raises(sardfq.UnknownNameError, match="vit_shallow_cifar10"):
        PRESETS.get("vit_shalow_cifar10")


def test_the_readme_lists_every_preset_as_it_is_defined():
    from pathlib import Path

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    for name in PRESETS.names():
        p = PRESETS.get(name)
        grid = p.config()["img_size"] // p.arch["patch_size"]
        row = (f"| `{name}` | {p.arch['depth']} | {p.arch['embed_dim']} | {p.arch['num_heads']} | "
               f"{grid}x{grid} | {p.recipe.epochs} |")
        assert row in readme, row
        card = Path(__file__).parent.parent / "sardfq" / "weights" / name / "config.json"
        if card.is_file():  # a shipped teacher: the row's accuracy (and training time) is its card's
            import json

            d = json.loads(card.read_text())
            line = next(line for line in readme.splitlines() if row in line)
            shipped = f"{100 * d['test_top1']:.2f}%" + (f", {d['train_hours']:.2f} h" if "train_hours" in d else "")
            assert shipped in line, (name, shipped)
