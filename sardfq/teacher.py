"""Re-create the embedded CIFAR-10 teacher (`sardfq train-teacher`), with its recipe as a config.

The shipped weights came from `TeacherRecipe()` (the defaults): 16 epochs, 73.14% test top-1 on
2 CPU cores in about two hours. Training resumes from `<out>/last.pt` when interrupted.
"""
from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .data import ArrayDataset, load_cifar10
from .errors import ConfigError
from .evaluate import evaluate
from .models import DEFAULT_MODEL, load_model, weights_dir

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TeacherRecipe:
    epochs: int = 16
    batch_size: int = 128
    lr: float = 1e-3  # AdamW
    weight_decay: float = 0.05
    warmup_epochs: int = 1  # linear warm-up, then cosine decay per step
    label_smoothing: float = 0.1
    drop_path: float = 0.1
    grad_clip: float = 1.0
    seed: int = 0

    def __post_init__(self):
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"TeacherRecipe.{name} must be at least 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ConfigError(f"TeacherRecipe.lr must be positive, got {self.lr}")


def train_teacher(recipe: TeacherRecipe = TeacherRecipe(), *, root=None, out="teacher",
                  device="cpu", limit: int | None = None, progress: bool = True) -> dict:
    """Train the teacher architecture from scratch on CIFAR-10 train; returns the config.json record
    (recipe, per-epoch log, test top-1) written next to `model.safetensors` in `out`.

    `limit` trains and tests on that many images only (smoke runs). After every epoch the state is
    saved to `out/last.pt`; a rerun with the same recipe resumes from there.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(recipe.seed)
    model, info = load_model(DEFAULT_MODEL, pretrained=False, drop_path_rate=recipe.drop_path)
    model.to(device)
    train = load_cifar10("train", root)
    if limit is not None:
        index = torch.randperm(len(train), generator=torch.Generator().manual_seed(recipe.seed))[:limit]
        train.images, train.labels = train.images[index], train.labels[index]
    test_set = ArrayDataset(load_cifar10("test", root), info)
    if limit is not None:  # smoke runs: an even spread of the test set too
        test_set = torch.utils.data.Subset(test_set, torch.linspace(0, len(test_set) - 1, limit).long().tolist())
    loader = DataLoader(ArrayDataset(train, info, augment=True), batch_size=recipe.batch_size,
                        shuffle=True, drop_last=True,
                        generator=torch.Generator().manual_seed(recipe.seed))
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    total = recipe.epochs * len(loader)
    warmup = recipe.warmup_epochs * len(loader)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: (s + 1) / warmup if s < warmup
                                                 else 0.5 * (1 + math.cos(math.pi * (s - warmup) / max(1, total - warmup))))
    criterion = torch.nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
    history: list[dict] = []
    start_epoch = 0
    last = out / "last.pt"
    if last.is_file():
        state = torch.load(last, map_location=device, weights_only=False)
        if state["recipe"] == asdict(recipe):
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            schedule.load_state_dict(state["schedule"])
            torch.set_rng_state(state["rng"])
            history, start_epoch = state["history"], state["epoch"]
            log.info("resuming from %s after epoch %d", last, start_epoch)
    for epoch in range(start_epoch, recipe.epochs):
        model.train()
        began, running = time.perf_counter(), 0.0
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{recipe.epochs}", disable=not progress, leave=False)
        for images, labels in bar:
            images, labels = images.to(device), labels.to(device)
            loss = criterion(model(images), labels)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"training loss became {loss.item()} in epoch {epoch + 1}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
            optimizer.step()
            schedule.step()
            running += loss.item()
            bar.set_postfix(loss=f"{loss.item():.3f}")
        acc = evaluate(model, test_set, name="teacher", device=device, progress=progress).top1
        history.append({"epoch": epoch + 1, "loss": running / len(loader), "test_top1": acc,
                        "epoch_s": time.perf_counter() - began})
        log.info("epoch %d: loss %.4f, test top-1 %.4f", epoch + 1, history[-1]["loss"], acc)
        tmp = last.with_suffix(".tmp")
        torch.save({"recipe": asdict(recipe), "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "schedule": schedule.state_dict(), "rng": torch.get_rng_state(), "history": history,
                    "epoch": epoch + 1}, tmp)
        os.replace(tmp, last)
    shipped = json.loads((weights_dir() / "config.json").read_text())
    record = {**{k: shipped[k] for k in ("arch", "config", "classes", "mean", "std")},
              "recipe": asdict(recipe), "test_top1": history[-1]["test_top1"],
              "epochs_done": len(history), "log": history}
    save_file({k: v.contiguous().cpu() for k, v in model.state_dict().items()}, str(out / "model.safetensors"))
    (out / "config.json").write_text(json.dumps(record, indent=1))
    return record
