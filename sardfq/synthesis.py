"""Synthesize a calibration set: one optimization loop, methods plugged in by name.

`synthesize(model, info, config)` starts from the method's initial images and, for methods that
optimize, runs Adam on the pixels (PSAQ-ViT's schedule, which SARDFQ builds on): `rounds` rounds
of iterations/rounds steps, each with a linear warm-up then cosine decay; a random roll jitter
(+-15 then +-30 px at 224 px, scaled to the resolution) and a horizontal flip each step; pixels
clipped to the valid normalized range after each step. Images are optimized `batch_size` at a time.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .calibset import CalibrationSet
from .data import denormalize, pixel_range
from .errors import ConfigError, UnknownNameError
from .methods import METHODS, Method
from .models import ModelInfo
from .msr import K_MSR, QUADRANTS
from .precision import autocast, check_autocast
from .priors import K_APA, PRIORS

log = logging.getLogger(__name__)

# [choice] APA weight a1 (the paper tunes it per model in [1, 1e5]). Chosen on the embedded teacher
# with synthetic images only, never test data: for a1 in {0, 10, 1e2, 1e3, 1e4} (8 images, 100
# steps, APA + SL, seed 11) we measured the APA distance of the final images to their priors and
# their soft-label CE; a1 = 100 is the largest value whose CE stays within 1.5x of a1 = 0's
# (0.19 vs 0.17; 1e3: 0.45, 1e4: 2.4 with the labels lost) while cutting the APA distance by 65%.
# Other models scale it by (patches / 64)^2, because the MSE between maps that sum to 1 over P
# patches shrinks like 1 / P^2.
TEACHER_APA_WEIGHT = 100.0
TEACHER_PATCHES = 64


@dataclass(frozen=True)
class SynthesisConfig:
    """How to synthesize a calibration set. Sources: [paper], [PSAQ-ViT code] or [choice]."""

    method: str = "sardfq"  # noise | real | psaq | sardfq
    n: int = 32  # [paper] calibration images
    iterations: int = 1000  # [paper]
    seed: int = 0  # [choice]
    batch_size: int = 32  # [paper] images optimized together; larger n runs in chunks
    apa: bool = True  # [paper] switches of the sardfq method (ignored by the others)
    msr: bool = True
    sl: bool = True
    apa_weight: float | None = None  # [choice] a1; None: TEACHER_APA_WEIGHT scaled to the grid
    prior: str = "gmm"  # [paper] gmm | laplace | real
    k_apa: int = K_APA  # [paper] mixture components at most
    k_msr: int = K_MSR  # [paper] regions per image at most
    depth_weighting: bool = True  # [paper] weight block l by l/L
    deep_only: bool = True  # [paper] APA on blocks l >= L/2 only
    soft_label_low: float = 5.0  # [paper] Z of the relevant classes ~ U(low, high)
    soft_label_high: float = 10.0  # [paper]
    tv_weight: float = 0.05  # [paper]
    entropy_weight: float = 1.0  # [PSAQ-ViT code] psaq only
    lr: float | None = None  # [PSAQ-ViT code] None: 0.2, or 0.25 for Swin
    betas: tuple[float, float] = (0.5, 0.9)  # [PSAQ-ViT code]
    rounds: int = 2  # [PSAQ-ViT code]
    warmup_fraction: float = 0.1  # [PSAQ-ViT code] of each round
    jitter_px: tuple[int, ...] = (15, 30)  # [PSAQ-ViT code] per round at 224 px; scaled
    flip_p: float = 0.5  # [PSAQ-ViT code]
    real_prior_images: int = 256  # [choice] real images behind prior="real"
    autocast: str | None = None  # [choice] None (float32) or "bf16" (autocast of the forward
    #   passes); float32 by default: bf16 cost W4A4 accuracy on every seed (results/bf16_check)

    def __post_init__(self):
        for name, registry in (("method", METHODS), ("prior", PRIORS)):
            value = getattr(self, name)
            if value not in registry:
                try:
                    registry.get(value)
                except UnknownNameError as exc:
                    raise UnknownNameError(f"SynthesisConfig.{name}: {exc}") from None
        for name in ("apa", "msr", "sl", "depth_weighting", "deep_only"):
            if not isinstance(getattr(self, name), bool):
                self._fail(name, "must be True or False")
        for name in ("n", "iterations", "batch_size", "rounds", "k_apa", "real_prior_images"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                self._fail(name, "must be an integer >= 1")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            self._fail("seed", "must be an integer >= 0")
        if isinstance(self.k_msr, bool) or not isinstance(self.k_msr, int) or not 1 <= self.k_msr <= QUADRANTS:
            self._fail("k_msr", f"must be an integer in 1..{QUADRANTS} (regions are the quadrants of a 2x2 grid)")
        if self.iterations < self.rounds:
            self._fail("iterations", f"must be at least rounds ({self.rounds})")
        if self.apa_weight is not None and not (math.isfinite(self.apa_weight) and self.apa_weight >= 0):
            self._fail("apa_weight", "must be a finite number >= 0 (or None for the default)")
        if self.lr is not None and not (math.isfinite(self.lr) and self.lr > 0):
            self._fail("lr", "must be a positive number (or None for the default)")
        for name in ("tv_weight", "entropy_weight"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                self._fail(name, "must be a finite number >= 0")
        if not self.soft_label_low <= self.soft_label_high:
            self._fail("soft_label_low", "must not exceed soft_label_high")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            self._fail("betas", "must be two numbers in [0, 1)")
        if not 0 <= self.warmup_fraction < 1:
            self._fail("warmup_fraction", "must be in [0, 1)")
        if not self.jitter_px or any(int(j) != j or j < 0 for j in self.jitter_px):
            self._fail("jitter_px", "must be one or more whole numbers of pixels >= 0")
        if not 0 <= self.flip_p <= 1:
            self._fail("flip_p", "must be a probability in [0, 1]")
        check_autocast(self.autocast, "SynthesisConfig.autocast")
        # tuples survive JSON as lists; keep the frozen dataclass hashable and comparable
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        object.__setattr__(self, "jitter_px", tuple(int(j) for j in self.jitter_px))

    def _fail(self, name: str, why: str):
        raise ConfigError(f"SynthesisConfig.{name} {why}; got {getattr(self, name)!r}")

    @property
    def switches(self) -> dict[str, bool] | None:
        """{apa, msr, sl} for the sardfq method; None for the others."""
        return {"apa": self.apa, "msr": self.msr, "sl": self.sl} if self.method == "sardfq" else None

    @property
    def label(self) -> str:
        """A short name: the method, plus the switches that are off (e.g. `sardfq-no-msr`)."""
        if self.method != "sardfq":
            return self.method
        off = [k for k, v in self.switches.items() if not v]
        return "sardfq" + "".join(f"-no-{k}" for k in off)

    def resolved_apa_weight(self, info: ModelInfo) -> float:
        if self.apa_weight is not None:
            return float(self.apa_weight)
        patches = info.patch_grid[0] * info.patch_grid[1]
        return TEACHER_APA_WEIGHT * (patches / TEACHER_PATCHES) ** 2

    def resolved_lr(self, info: ModelInfo) -> float:
        if self.lr is not None:
            return float(self.lr)
        return 0.25 if info.family == "swin" else 0.2

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "SynthesisConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"SynthesisConfig has no field(s) {', '.join(unknown)}; "
                              f"known: {', '.join(sorted(known))}")
        return cls(**data)


def _lr_factor(step: int, steps: int, warmup: int) -> float:
    """Linear warm-up over `warmup` steps, then cosine decay to 0 at `steps` (PSAQ-ViT's policy)."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))


def _round_lengths(iterations: int, rounds: int) -> list[int]:
    base, extra = divmod(iterations, rounds)
    return [base + (1 if r < extra else 0) for r in range(rounds)]


def synthesize(model: nn.Module, info: ModelInfo, config: SynthesisConfig = SynthesisConfig(), *,
               device: str | torch.device = "cpu", data_root: str | os.PathLike | None = None,
               progress: bool = True) -> CalibrationSet:
    """Synthesize `config.n` calibration images for `model` with `config.method`.

    Deterministic for a given seed on the CPU. Raises FloatingPointError (naming the iteration and
    the loss term) if a loss becomes NaN or infinite.
    """
    device = torch.device(device)
    began = time.perf_counter()
    generator = torch.Generator().manual_seed(config.seed)  # every random draw comes from it
    was_training = model.training
    grad_flags = [p.requires_grad for p in model.parameters()]
    model.to(device).eval()
    model.requires_grad_(False)  # gradients flow to the pixels only
    try:
        method: Method = METHODS.get(config.method)(model, info, config, generator=generator,
                                                    device=device, data_root=data_root)
        sizes = [min(config.batch_size, config.n - s) for s in range(0, config.n, config.batch_size)]
        total_steps = config.iterations * len(sizes) if method.optimizes else 0
        images, labels, targets, finals, history = [], [], [], [], []
        step_seconds: list[float] = []
        loop_seconds = 0.0
        with tqdm(total=total_steps, desc=f"synthesize {config.label}", leave=False,
                  disable=not progress or not total_steps) as bar:
            for chunk, size in enumerate(sizes):
                start = method.start(size)
                if method.optimizes:
                    t0 = time.perf_counter()
                    start, final, chunk_history = _optimize(method, model, info, config, start,
                                                            generator, bar, chunk, step_seconds)
                    loop_seconds += time.perf_counter() - t0
                    finals.append(final)
                    history.extend(chunk_history)
                images.append(start.detach().cpu())
                labels.append(method.labels.cpu())
                soft = method.soft_targets()
                targets.append(None if soft is None else soft.cpu())
    finally:
        for p, flag in zip(model.parameters(), grad_flags):
            p.requires_grad_(flag)
        model.train(was_training)
    final_losses = ({k: sum(f[k] for f in finals) / len(finals) for k in finals[0]} if finals else {})
    iterations = config.iterations if method.optimizes else 0
    metadata = {
        "method": config.method,
        "label": config.label,
        "switches": config.switches,
        "seed": config.seed,
        "model": info.name,
        "n": config.n,
        "iterations": iterations,
        "final_losses": final_losses,
        "loss_weights": dict(method.weights) if method.optimizes else {},
        "seconds": time.perf_counter() - began,
        "loop_seconds": loop_seconds,
        "ms_per_iteration": 1000 * loop_seconds / max(1, iterations * len(sizes)),
        "median_ms_per_iteration": 1000 * _median(step_seconds) if step_seconds else 0.0,
        "apa_weight": config.resolved_apa_weight(info),
        "lr": config.resolved_lr(info),
        "device": str(device),
        "history": history,
        "config": config.to_dict(),
        "versions": _versions(),
        **method.extra_metadata(),
    }
    soft_targets = None if any(t is None for t in targets) else torch.cat(targets)
    log.info("synthesized %d images with %s in %.1f s", config.n, config.label, metadata["seconds"])
    return CalibrationSet(torch.cat(images), torch.cat(labels), soft_targets, metadata)


def _optimize(method: Method, model: nn.Module, info: ModelInfo, config: SynthesisConfig,
              images: Tensor, generator: torch.Generator, bar, chunk: int,
              step_seconds: list[float]) -> tuple[Tensor, dict[str, float], list[dict]]:
    """Adam on the pixels of one chunk; returns (images, final loss terms, history).

    Appends the wall time of each step to `step_seconds`."""
    images = images.detach().clone().requires_grad_(True)
    lr = config.resolved_lr(info)
    optimizer = torch.optim.Adam([images], lr=lr, betas=config.betas, eps=1e-8)
    lo, hi = (t.to(images.device) for t in pixel_range(info))
    size = info.image_size
    record_every = max(1, config.iterations // 100)
    history: list[dict] = []
    values: dict[str, float] = {}
    step = 0
    with method.capture() as captured:
        for rnd, steps in enumerate(_round_lengths(config.iterations, config.rounds)):
            warmup = int(config.warmup_fraction * steps)
            limit = config.jitter_px[min(rnd, len(config.jitter_px) - 1)]
            limit = int(round(limit * size / 224))  # 15/30 px at 224 -> 2/4 px at 32
            for i in range(steps):
                tick = time.perf_counter()
                for group in optimizer.param_groups:
                    group["lr"] = lr * _lr_factor(i, steps, warmup)
                shift = int(torch.randint(-limit, limit + 1, (), generator=generator))
                flip = bool(torch.rand((), generator=generator) < config.flip_p)
                batch = method.forward_batch(images)  # B (+ M crops), C, H, W
                if shift:
                    batch = torch.roll(batch, shifts=(shift, shift), dims=(2, 3))
                if flip:
                    batch = batch.flip(3)
                with autocast(config.autocast, images.device):
                    logits = model(batch)
                terms = method.loss_terms(logits.float(), batch, captured, shift=shift, flip=flip)
                total = sum(method.weights[k] * v for k, v in terms.items())
                names = ["total", *terms]
                numbers = torch.stack([total.detach(), *(v.detach() for v in terms.values())]).tolist()
                values = dict(zip(names, numbers))
                bad = [k for k in names[1:] if not math.isfinite(values[k])]
                if bad or not math.isfinite(values["total"]):
                    raise FloatingPointError(
                        f"synthesis loss term {(bad or ['total'])[0]!r} became "
                        f"{values[(bad or ['total'])[0]]} at iteration {step + 1} (chunk {chunk + 1}); "
                        f"all terms: {values}")
                optimizer.zero_grad(set_to_none=True)
                total.backward()
                optimizer.step()
                with torch.no_grad():
                    images.clamp_(lo, hi)
                step += 1
                step_seconds.append(time.perf_counter() - tick)
                if step % record_every == 0 or step == config.iterations:
                    history.append({"chunk": chunk, "iteration": step, **values})
                bar.update(1)
                if step % 10 == 0 or step == config.iterations:
                    bar.set_postfix({k: f"{v:.4g}" for k, v in values.items()}, refresh=False)
    return images.detach(), values, history


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else 0.5 * (ordered[mid - 1] + ordered[mid])


def _versions() -> dict[str, str]:
    import timm

    from . import __version__

    return {"sardfq": __version__, "torch": torch.__version__, "timm": timm.__version__}


def save_image_grid(calib_set: CalibrationSet, info: ModelInfo, path: str | os.PathLike, *,
                    nrow: int | None = None, upscale: int | None = None) -> Path:
    """Write the images of `calib_set` as one PNG grid (denormalized with the model's mean/std).

    Small images are enlarged (nearest neighbour, to at least 128 px) so the grid is readable.
    """
    from torchvision.utils import save_image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images = denormalize(calib_set.images.float(), info)  # N, C, H, W in [0, 1]
    factor = upscale if upscale is not None else max(1, 128 // images.shape[-1])
    if factor > 1:
        images = torch.nn.functional.interpolate(images, scale_factor=factor, mode="nearest")
    nrow = nrow or max(1, math.ceil(math.sqrt(len(images) * 2)))  # wider than tall
    save_image(images, str(path), nrow=nrow, padding=2, pad_value=1.0)
    return path
