import json

import pytest
import torch

import sardfq
from sardfq.teacher import TeacherRecipe, train_teacher


def test_smoke_training_writes_a_loadable_teacher_and_resumes(cifar_root, tmp_path, monkeypatch):
    recipe = TeacherRecipe(epochs=1, batch_size=32)
    record = train_teacher(recipe, root=cifar_root, out=tmp_path, limit=64, progress=False)
    assert record["epochs_done"] == 1 and 0 <= record["test_top1"] <= 1
    assert json.loads((tmp_path / "config.json").read_text())["log"] == record["log"]
    model, _ = sardfq.load_model("vit_tiny_cifar10", checkpoint=tmp_path / "model.safetensors")
    state = torch.load(tmp_path / "last.pt", weights_only=False)["model"]
    assert torch.equal(model.head.weight, state["head.weight"])
    # a rerun of a finished recipe resumes past the last epoch: no optimizer step happens
    monkeypatch.setattr(torch.optim.AdamW, "step", lambda *a, **k: pytest.fail("trained again"))
    again = train_teacher(recipe, root=cifar_root, out=tmp_path, limit=64, progress=False)
    assert again["log"] == record["log"]


def test_bad_recipe_names_the_field():
    with pytest.raises(sardfq.ConfigError, match="epochs"):
        TeacherRecipe(epochs=0)
