"""Train teachers from scratch (`sardfq train-teacher --preset NAME`): the teacher zoo.

A preset is a data set (`TEACHER_DATA`: CIFAR-10 at 32 px, or Tiny-ImageNet-200's 200 ImageNet
classes at 64 px), an architecture (timm `VisionTransformer` arguments) and a `TeacherRecipe`. The
zoo's teachers differ in what may matter to attention priors and to calibration: the number of
classes, depth, width and heads, patch grid and training length. CIFAR-10 CPU presets train in
about an hour on 2 cores, Tiny-ImageNet ones in several hours at one thread; the `*_gpu` presets
are sized for one datacenter GPU (200+ epochs with mixup/cutmix, bf16, data kept on the GPU).

Data order and augmentation are drawn from a generator seeded by (seed, epoch), and the model's
own randomness (drop-path) is restored from the checkpoint, so a run interrupted after any epoch
and resumed from `<out>/last.pt` continues exactly as an uninterrupted one, on CPU and CUDA.
`last.pt` is read with `torch.load(weights_only=True)`: tensors and plain values only, never code.
"""
from __future__ import annotations

import json
import logging
import math
import shutil
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import timm
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .data import ArrayDataset, ImageArrays, even_spread, load_arrays
from .errors import CheckpointError, ConfigError
from .evaluate import evaluate
from .io import atomic_folder, atomic_path, atomic_write_text, check_output_folder
from .models import ModelInfo, describe_model, load_torch_file, write_model_files
from .registry import Registry

log = logging.getLogger(__name__)

ARCH = "timm.models.vision_transformer.VisionTransformer"
TEACHER_FILES = ("config.json", "last.pt")  # what marks a folder train_teacher wrote
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # timm's; Tiny-ImageNet's images are ImageNet's [choice]
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class TeacherData:
    """A data set teachers train on: its `sardfq.data.ARRAY_DATASETS` name, image side, normalization,
    number of classes and the zero padding of its random crops (an eighth of the side)."""

    name: str
    title: str
    img_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    num_classes: int

    @property
    def crop_pad(self) -> int:
        return self.img_size // 8


TEACHER_DATA = {
    "cifar10": TeacherData("cifar10", "CIFAR-10", 32, CIFAR10_MEAN, CIFAR10_STD, 10),
    "tinyimagenet": TeacherData("tinyimagenet", "Tiny-ImageNet-200", 64, IMAGENET_MEAN, IMAGENET_STD, 200),
}


@dataclass(frozen=True)
class TeacherRecipe:
    """How a teacher is trained. Defaults: the recipe of the shipped `vit_tiny_cifar10` [choice]."""

    epochs: int = 16
    batch_size: int = 128
    lr: float = 1e-3  # AdamW
    weight_decay: float = 0.05
    warmup_epochs: int = 1  # linear warm-up, then cosine decay per step
    label_smoothing: float = 0.1
    drop_path: float = 0.1
    grad_clip: float = 1.0
    mix: float = 0.0  # probability of a mixup (alpha 0.8) or cutmix (alpha 1.0) batch; 0: off
    bf16: bool = False  # bf16 autocast of the forward pass (CPUs with AVX-512 BF16, GPUs)
    # timm's fused attention (scaled_dot_product_attention); off, the plain matmul-softmax path, which
    # in bf16 on the CPU trains a 257-token model 1.3x faster (the same function, other rounding)
    fused_attention: bool = True
    eval_every: int = 1  # test top-1 logged every this many epochs (on `eval_images` images)
    eval_images: int = 2000  # an even spread of the test set; the final model gets all 10,000
    seed: int = 0

    def __post_init__(self):
        for name in ("epochs", "batch_size", "eval_every", "eval_images"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ConfigError(f"TeacherRecipe.{name} must be an integer >= 1, got {getattr(self, name)!r}")
        if not 0 <= self.warmup_epochs <= self.epochs:
            raise ConfigError(f"TeacherRecipe.warmup_epochs must be in 0..epochs, got {self.warmup_epochs}")
        if self.lr <= 0:
            raise ConfigError(f"TeacherRecipe.lr must be positive, got {self.lr}")
        for name in ("label_smoothing", "drop_path", "mix"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"TeacherRecipe.{name} must be in [0, 1], got {getattr(self, name)}")

    def replace(self, **changes) -> "TeacherRecipe":
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ConfigError(f"TeacherRecipe has no field {', '.join(unknown)}; fields: {', '.join(sorted(known))}")
        return TeacherRecipe(**{**asdict(self), **changes})


@dataclass(frozen=True)
class TeacherPreset:
    """A teacher of the zoo: an architecture, a recipe and what it varies against the default."""

    name: str
    arch: dict  # timm VisionTransformer arguments (num_classes and the class token are added)
    recipe: TeacherRecipe = field(default_factory=TeacherRecipe)
    device: str = "cpu"  # where the preset is sized to train: "cpu" or "cuda"
    varies: str = ""
    dataset: str = "cifar10"  # a key of TEACHER_DATA

    @property
    def data(self) -> TeacherData:
        return TEACHER_DATA[self.dataset]

    def config(self, num_classes: int | None = None) -> dict:
        """timm arguments; `num_classes` defaults to the data set's (a smaller test copy has fewer)."""
        return {"img_size": self.data.img_size, "mlp_ratio": 4.0, **self.arch,
                "num_classes": num_classes or self.data.num_classes, "class_token": True, "global_pool": "token"}

    def build(self, num_classes: int | None = None) -> torch.nn.Module:
        return timm.models.vision_transformer.VisionTransformer(**self.config(num_classes),
                                                                 drop_path_rate=self.recipe.drop_path)

    def info(self, class_names: tuple[str, ...]) -> ModelInfo:
        """The teacher's ModelInfo, with the class names its training data gives."""
        cfg = self.config(len(class_names))
        return describe_model(self.build(len(class_names)), self.name, dataset=self.dataset,
                              input_size=(3, cfg["img_size"], cfg["img_size"]), mean=self.data.mean,
                              std=self.data.std, class_names=class_names, arch=ARCH, arch_config=cfg)


PRESETS: Registry[TeacherPreset] = Registry("teacher preset")


def _preset(name: str, arch: dict, device: str = "cpu", varies: str = "", dataset: str = "cifar10",
            **recipe) -> None:
    PRESETS.register(name)(TeacherPreset(name, arch, TeacherRecipe(**recipe), device, varies, dataset))


_P4 = {"patch_size": 4}  # 8x8 patch grid at 32 px
_preset("vit_tiny_cifar10", {**_P4, "embed_dim": 192, "depth": 6, "num_heads": 3},
        varies="the default teacher: depth 6, width 192, 3 heads, 16 epochs")
_preset("vit_shallow_cifar10", {**_P4, "embed_dim": 192, "depth": 3, "num_heads": 3},
        varies="shallower: depth 3 (APA on 2 blocks)", epochs=20, bf16=True)
_preset("vit_deep_cifar10", {**_P4, "embed_dim": 128, "depth": 10, "num_heads": 4},
        varies="deeper and narrower: depth 10, width 128, 4 heads of 32", epochs=14, bf16=True)
_preset("vit_long_cifar10", {**_P4, "embed_dim": 128, "depth": 4, "num_heads": 2},
        varies="small and trained long: depth 4, width 128, 2 heads, 40 epochs", epochs=40, bf16=True)
_preset("vit_grid4_cifar10", {"patch_size": 8, "embed_dim": 192, "depth": 6, "num_heads": 3},
        varies="coarser grid: 4x4 patches of 8 px (17 tokens), depth 6, width 192, 3 heads", epochs=20,
        bf16=True)
_preset("vit_grid16_cifar10", {"patch_size": 2, "embed_dim": 96, "depth": 6, "num_heads": 3},
        varies="finer grid: 16x16 patches of 2 px (257 tokens, near DeiT's 14x14), depth 6, width 96, "
               "3 heads", epochs=16, bf16=True, fused_attention=False)
# Tiny-ImageNet-200 (200 ImageNet classes, 64 px): patch 8 keeps the CIFAR teachers' 8x8 grid and 65
# tokens, so every sweep costs what it costs on CIFAR-10; only training costs more (twice the images,
# 200 classes). Measured on an AVX2-only AMD EPYC at one thread, batch 128: 2.84 s a step, 37 minutes
# an epoch at depth 6; 65 minutes at depth 12; 68 (width 96) and 184 (width 192) minutes with patch 4
# (16x16 grid); bf16 autocast 13x slower there (no AVX-512 BF16), so these presets train in float32.
_P8 = {"patch_size": 8}  # 8x8 patch grid at 64 px
_preset("vit_tiny_tin200", {**_P8, "embed_dim": 192, "depth": 6, "num_heads": 3}, dataset="tinyimagenet",
        varies="200 ImageNet classes at 64 px: the default teacher's shape (depth 6, width 192, 3 heads, 8x8 "
               "grid), 20 epochs", epochs=20, warmup_epochs=2)
_preset("vit_deep12_tin200", {**_P8, "embed_dim": 192, "depth": 12, "num_heads": 3}, dataset="tinyimagenet",
        varies="200 ImageNet classes at 64 px in DeiT-T's shape (depth 12, width 192, 3 heads), 8x8 grid, "
               "20 epochs", epochs=20, warmup_epochs=2)
# GPU presets: what the CPU cannot train. Sized for one H100/H200-class GPU in about 5 minutes.
_preset("deit_tiny_cifar10_gpu", {**_P4, "embed_dim": 192, "depth": 12, "num_heads": 3},
        device="cuda", varies="DeiT-T's shape: depth 12, width 192, 3 heads; 200 epochs",
        epochs=200, batch_size=512, lr=2e-3, warmup_epochs=10, mix=0.8, bf16=True, eval_every=10)
_preset("vit_grid16_cifar10_gpu", {"patch_size": 2, "embed_dim": 192, "depth": 9, "num_heads": 3},
        device="cuda", varies="16x16 patch grid (patch 2, 257 tokens, near DeiT's 14x14); 200 epochs",
        epochs=200, batch_size=512, lr=2e-3, warmup_epochs=10, mix=0.8, bf16=True, eval_every=10)


def augment_batch(images: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random crop (zero padding `pad`) and horizontal flip of a uint8 batch (B, 3, H, W), drawn
    from `generator` (on the CPU) and applied on the images' device in one gather."""
    b, _, h, w = images.shape
    top = torch.randint(0, 2 * pad + 1, (b,), generator=generator).to(images.device)
    left = torch.randint(0, 2 * pad + 1, (b,), generator=generator).to(images.device)
    flip = (torch.rand(b, generator=generator) < 0.5).to(images.device)
    padded = F.pad(images, (pad, pad, pad, pad))
    rows = top[:, None] + torch.arange(h, device=images.device)  # B, H
    cols = left[:, None] + torch.arange(w, device=images.device)  # B, W
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    batch = torch.arange(b, device=images.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def mix_batch(images: torch.Tensor, targets: torch.Tensor, generator: torch.Generator):
    """Mixup (alpha 0.8) or cutmix (alpha 1.0), half the time each, on float images and soft targets."""
    perm = torch.randperm(len(images), generator=generator).to(images.device)
    draw = np.random.default_rng(int(torch.randint(2**31, (), generator=generator)))
    cutmix = draw.random() < 0.5
    lam = float(draw.beta(1.0, 1.0) if cutmix else draw.beta(0.8, 0.8))
    if cutmix:
        h, w = images.shape[-2:]
        cut_h, cut_w = int(h * math.sqrt(1 - lam)), int(w * math.sqrt(1 - lam))
        cy, cx = int(draw.integers(h)), int(draw.integers(w))
        y0, y1 = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, h)
        x0, x1 = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, w)
        images = images.clone()
        images[:, :, y0:y1, x0:x1] = images[perm][:, :, y0:y1, x0:x1]
        lam = 1 - (y1 - y0) * (x1 - x0) / (h * w)  # the share of pixels actually kept
    else:
        images = lam * images + (1 - lam) * images[perm]
    return images, lam * targets + (1 - lam) * targets[perm]


def train_teacher(preset: str | TeacherPreset = "vit_tiny_cifar10", *, recipe: TeacherRecipe | None = None,
                  root=None, out="teacher", device="cpu", limit: int | None = None,
                  progress: bool = True) -> dict:
    """Train a preset (or its architecture with another `recipe`) on its data set's training split; returns the
    config.json record (architecture, recipe, per-epoch log, test top-1) written next to
    `model.safetensors` in `out`: a model folder that `load_model(out)` reads.

    `limit` trains and tests on that many images only (smoke runs). After every epoch the state is
    saved to `out/last.pt`; a rerun with the same preset and recipe resumes from there.
    """
    preset = PRESETS.get(preset) if isinstance(preset, str) else preset
    recipe = recipe or preset.recipe
    device = torch.device(device)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ConfigError(f"limit (--limit) must be a positive number of images, got {limit!r}")
    out = check_output_folder(out, "the teacher's folder (--out)", ours=TEACHER_FILES)
    # read the data before creating anything: a missing data folder leaves no output folder behind
    train = load_arrays(preset.dataset, "train", root)
    test = load_arrays(preset.dataset, "test", root)
    classes = train.classes
    if limit is not None:
        train = train.subset(torch.randperm(len(train), generator=torch.Generator().manual_seed(recipe.seed))[:limit])
        test = test.subset(even_spread(len(test), limit))  # what `sardfq eval --limit` evaluates
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(recipe.seed)
    model = preset.build(len(classes)).to(device)
    for block in model.blocks:
        block.attn.fused_attn = recipe.fused_attention
    info = preset.info(classes)
    mean = torch.tensor(info.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(info.std, device=device).view(1, 3, 1, 1)
    train_images, train_labels = train.images.to(device), train.labels.to(device)
    steps_per_epoch = len(train) // recipe.batch_size
    if steps_per_epoch == 0:
        raise ConfigError(f"batch_size {recipe.batch_size} is larger than the {len(train)} training images")
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    total, warmup = recipe.epochs * steps_per_epoch, recipe.warmup_epochs * steps_per_epoch
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: (s + 1) / warmup if s < warmup
        else 0.5 * (1 + math.cos(math.pi * (s - warmup) / max(1, total - warmup))))
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if recipe.bf16 else nullcontext())
    history: list[dict] = []
    start_epoch = 0
    last = out / "last.pt"
    identity = {"preset": preset.name, "arch": preset.config(len(classes)), "recipe": asdict(recipe), "limit": limit}
    if last.is_file():
        # RNG states must stay CPU ByteTensors: load everything on the CPU, the model moves itself
        try:  # weights_only: a checkpoint holds tensors and plain values, and may run no code
            state = load_torch_file(last)
        except CheckpointError as exc:  # it names code to run
            raise CheckpointError(f"cannot resume: {exc}. Delete it to train from scratch") from None
        except Exception as exc:  # a damaged file
            raise CheckpointError(f"cannot resume from {last}: {exc.__class__.__name__}: "
                                  f"{str(exc).splitlines()[0]}. Delete it to train from scratch") from None
        if not isinstance(state, dict):
            raise CheckpointError(f"cannot resume from {last}: it holds a {type(state).__name__}, not a "
                                  "training state. Delete it to train from scratch")
        if state.get("identity") == identity:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            schedule.load_state_dict(state["schedule"])
            torch.set_rng_state(state["rng"])
            if device.type == "cuda" and state.get("cuda_rng") is not None:
                torch.cuda.set_rng_state(state["cuda_rng"], device)
            history, start_epoch = state["history"], state["epoch"]
            log.info("resuming %s from %s after epoch %d", preset.name, last, start_epoch)
        else:
            log.warning("%s belongs to another preset or recipe: training from scratch", last)
    test_subset = ArrayDataset(test.subset(even_spread(len(test), min(recipe.eval_images, len(test)))), info)
    for epoch in range(start_epoch, recipe.epochs):
        model.train()
        began, running = time.perf_counter(), 0.0
        gen = torch.Generator().manual_seed(recipe.seed * 100_003 + epoch)  # data order + augmentation
        order = torch.randperm(len(train), generator=gen)
        bar = tqdm(range(steps_per_epoch), desc=f"{preset.name} epoch {epoch + 1}/{recipe.epochs}",
                   disable=not progress, leave=False)
        for step in bar:
            index = order[step * recipe.batch_size:(step + 1) * recipe.batch_size].to(device)
            images = (augment_batch(train_images[index], gen, preset.data.crop_pad).float() / 255 - mean) / std
            targets = F.one_hot(train_labels[index], len(classes)).float()
            if recipe.mix and bool(torch.rand((), generator=gen) < recipe.mix):
                images, targets = mix_batch(images, targets, gen)
            with autocast:
                logits = model(images)
            loss = F.cross_entropy(logits.float(), targets, label_smoothing=recipe.label_smoothing)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"training loss became {loss.item()} in epoch {epoch + 1}, step {step}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
            optimizer.step()
            schedule.step()
            running += loss.item()
            bar.set_postfix(loss=f"{loss.item():.3f}")
        entry = {"epoch": epoch + 1, "loss": running / steps_per_epoch, "epoch_s": time.perf_counter() - began}
        if (epoch + 1) % recipe.eval_every == 0 or epoch + 1 == recipe.epochs:
            entry["test_top1_subset"] = evaluate(model, test_subset, name=preset.name, device=device,
                                                 progress=False).top1
        history.append(entry)
        log.info("%s epoch %d: %s", preset.name, epoch + 1, entry)
        with atomic_path(last) as tmp:
            torch.save({"identity": identity, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "schedule": schedule.state_dict(), "rng": torch.get_rng_state(),
                        "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
                        "history": history, "epoch": epoch + 1}, tmp)
    return _write_model_folder(model, preset, recipe, history, test, out, device)


def _write_model_folder(model, preset: TeacherPreset, recipe: TeacherRecipe, history: list[dict],
                        test: ImageArrays, out: Path, device) -> dict:
    """Save the weights as fp16 and measure test top-1 *after* that conversion (on a float32 model
    holding the fp16 values): the number the folder promises is the one `sardfq eval` reproduces."""
    info = preset.info(test.classes)
    fresh = preset.build(len(test.classes)).to(device)
    fresh.load_state_dict({k: v.half().float() if v.is_floating_point() else v
                           for k, v in model.state_dict().items()})
    result = evaluate(fresh, ArrayDataset(test, info), name=preset.name, device=device, progress=False)
    record = {"preset": preset.name, "varies": preset.varies, "recipe": asdict(recipe),
              "weights_dtype": "float16", "test_top1": result.top1, "test_images": result.n_images,
              "parameters": sum(p.numel() for p in fresh.parameters()),
              "epochs_done": len(history), "train_hours": sum(h["epoch_s"] for h in history) / 3600,
              "log": history}
    card = model_card({**record, "config": info.arch_config, "mean": info.mean, "std": info.std,
                       "dataset": preset.dataset})
    with atomic_folder(out, ours=TEACHER_FILES) as tmp:  # the whole folder replaced at once
        if (out / "last.pt").is_file():  # the resume state stays beside the model
            shutil.copy2(out / "last.pt", tmp / "last.pt")
        atomic_write_text(tmp / "README.md", card)
        write_model_files(fresh, info, tmp, extra=record, dtype=torch.float16)
    return json.loads((out / "config.json").read_text())


def model_card(record: dict) -> str:
    """The README of a trained teacher's folder, from its config.json record."""
    cfg, recipe = record["config"], record["recipe"]
    grid = cfg["img_size"] // cfg["patch_size"]
    varies = f"{record['varies'][:1].upper()}{record['varies'][1:]}.\n\n" if record["varies"] else ""
    title = TEACHER_DATA[record.get("dataset", "cifar10")].title
    split = "validation" if record.get("dataset") == "tinyimagenet" else "test"
    return f"""# {record['preset']}: a {title} teacher of the sardfq zoo

{varies}- Architecture: `timm.models.vision_transformer.VisionTransformer` with {json.dumps(cfg)}:
  {grid}x{grid} patch grid + 1 class token, {record['parameters']:,} parameters.
- Input: RGB {cfg['img_size']}x{cfg['img_size']} in [0, 1], normalized with mean {tuple(record['mean'])} and
  std {tuple(record['std'])}.
- Weights: `model.safetensors`, {record['weights_dtype']} (loaded into a float32 model).
- Accuracy: **{100 * record['test_top1']:.2f}% top-1 on {record['test_images']:,} {title} {split} images**,
  measured on the saved {record['weights_dtype']} weights; `sardfq eval {record['preset']} --json` reproduces it.
- Recipe (`sardfq.teacher.PRESETS.get("{record['preset']}").recipe`): {json.dumps(recipe)}.
  {record['epochs_done']} epochs, {record['train_hours']:.2f} h of training; per-epoch loss and test top-1 on an
  even spread of {recipe['eval_images']} {split} images are in config.json.
- Re-create it: `sardfq train-teacher --preset {record['preset']} --data DIR --out DIR` (resumes when
  interrupted).
"""
