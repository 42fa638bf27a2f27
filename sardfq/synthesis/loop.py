"""Synthesize a calibration set: one optimization loop, methods plugged in by name.

`synthesize(model, info, config)` starts from the method's initial images and, for methods that
optimize, runs Adam on the pixels (PSAQ-ViT's schedule, which SARDFQ builds on): `rounds` rounds
of iterations/rounds steps, each with a linear warm-up then cosine decay; a random roll jitter
(+-15 then +-30 px at 224 px, scaled to the resolution) and a horizontal flip each step; pixels
clipped to the valid normalized range after each step. Images are optimized `batch_size` at a time.
With `SynthesisConfig.sparse` (the `smi` method's default) the patches a run stops optimizing are
dropped from later passes (`sardfq.synthesis.sparse`).
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..attention import record_attention
from ..calibset import CalibrationSet
from ..data import denormalize, pixel_range
from ..io import atomic_path
from ..models import ModelInfo
from ..precision import autocast
from ..version import library_versions
from .config import METHODS, SynthesisConfig
from .shortcuts import class_token_tail
from .sparse import PatchSchedule, check_sparse_model, class_token_attention, keep_tokens, prune_steps

if TYPE_CHECKING:  # the methods register themselves into METHODS when the wing is imported
    from .methods import Method

log = logging.getLogger(__name__)


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
               progress: bool = True, shortcuts: bool = True) -> CalibrationSet:
    """Synthesize `config.n` calibration images for `model` with `config.method`.

    Deterministic for a given seed on the CPU. Raises FloatingPointError (naming the iteration and
    the loss term) if a loss becomes NaN or infinite. The model runs on `device` and is handed back
    where it was, in the training mode it had. `shortcuts=False` turns off the bit-exact shortcuts
    of `sardfq.synthesis.shortcuts` (the same images, slower: for tests and benchmarks).
    """
    device = torch.device(device)
    began = time.perf_counter()
    generator = torch.Generator().manual_seed(config.seed)  # every random draw comes from it
    was_training = model.training
    home = next(model.parameters()).device
    grad_flags = [p.requires_grad for p in model.parameters()]
    model.to(device).eval()
    model.requires_grad_(False)  # gradients flow to the pixels only
    try:
        method: Method = METHODS.get(config.method)(model, info, config, generator=generator,
                                                    device=device, data_root=data_root)
        if config.is_sparse and method.optimizes:
            check_sparse_model(model, info.name)
        sizes = [min(config.batch_size, config.n - s) for s in range(0, config.n, config.batch_size)]
        total_steps = config.iterations * len(sizes) if method.optimizes else 0
        images, labels, targets, finals, history, kept = [], [], [], [], [], []
        step_seconds: list[float] = []
        loop_seconds = 0.0
        used: set[str] = set()  # the shortcuts switched on (short passes still run whole)
        with tqdm(total=total_steps, desc=f"synthesize {config.label}", leave=False,
                  disable=not progress or not total_steps) as bar:
            for chunk, size in enumerate(sizes):
                start = method.start(size)
                if method.optimizes:
                    t0 = time.perf_counter()
                    start, final, chunk_history, schedule = _optimize(method, model, info, start, generator, bar,
                                                                      chunk, step_seconds, shortcuts, used)
                    if schedule is not None:
                        kept.append(schedule)
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
        model.to(home).train(was_training)
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
        "apa_weight": method.config.apa_weight,
        "lr": method.config.lr,
        "device": str(device),
        "shortcuts": sorted(used),
        "history": history,
        "sparse": _sparse_metadata(kept, config) if kept else None,
        "config": config.to_dict(),
        "versions": library_versions(),
        **method.extra_metadata(),
    }
    soft_targets = None if any(t is None for t in targets) else torch.cat(targets)
    log.info("synthesized %d images with %s in %.1f s", config.n, config.label, metadata["seconds"])
    return CalibrationSet(torch.cat(images), torch.cat(labels), soft_targets, metadata)


def _optimize(method: Method, model: nn.Module, info: ModelInfo,
              images: Tensor, generator: torch.Generator, bar, chunk: int,
              step_seconds: list[float], shortcuts: bool = True,
              used: set[str] | None = None) -> tuple[Tensor, dict[str, float], list[dict], PatchSchedule | None]:
    """Adam on the pixels of one chunk; returns (images, final loss terms, history, the chunk's
    `PatchSchedule` in a sparse inversion or None).

    Appends the wall time of each step to `step_seconds`, and the names of the shortcuts switched
    on to `used`."""
    images = images.detach().clone().requires_grad_(True)
    config = method.config  # with its model-dependent defaults resolved
    lr = config.lr
    optimizer = torch.optim.Adam([images], lr=lr, betas=config.betas, eps=1e-8)
    lo, hi = (t.to(images.device) for t in pixel_range(info))
    size = info.image_size
    record_every = max(1, config.iterations // 100)
    history: list[dict] = []
    values: dict[str, float] = {}
    step = 0
    schedule = stopped_pixels = running = None
    if config.is_sparse:
        schedule = PatchSchedule(len(images), info.patch_grid, tuple(info.input_size[1:]),
                                 prune_steps(config.iterations, config.prune_at), config.prune_ratio, images.device)
    sparse = keep_tokens(model) if schedule is not None else contextlib.nullcontext()
    # the tail shortcut is entered after the capture, so that hooks there see every token
    with method.capture() as captured, class_token_tail(model, shortcuts and method.class_token_logits) as tail, \
            sparse as keep:
        if tail and used is not None:
            used.add("class_token_tail")
        for rnd, steps in enumerate(_round_lengths(config.iterations, config.rounds)):
            warmup = int(config.warmup_fraction * steps)
            limit = config.jitter_px[min(rnd, len(config.jitter_px) - 1)]
            limit = int(round(limit * size / 224))  # 15/30 px at 224 -> 2/4 px at 32
            for i in range(steps):
                tick = time.perf_counter()
                if schedule is not None and schedule.due(step):
                    _stop_patches(model, images, schedule, keep, step)
                    # the pixels of the patches stopped now, as they are: what stopped="frozen" keeps
                    now = images.detach()
                    stopped_pixels = now.clone() if stopped_pixels is None else \
                        torch.where(running, stopped_pixels, now)
                    running = schedule.pixel_mask()
                for group in optimizer.param_groups:
                    group["lr"] = lr * _lr_factor(i, steps, warmup)
                shift = int(torch.randint(-limit, limit + 1, (), generator=generator))
                flip = bool(torch.rand((), generator=generator) < config.flip_p)
                batch = method.forward_batch(images)  # B (+ M crops), C, H, W
                if shift:
                    batch = torch.roll(batch, shifts=(shift, shift), dims=(2, 3))
                if flip:
                    batch = batch.flip(3)
                tokens = None
                if schedule is not None:
                    tokens = keep.index = schedule.rows(shift, flip, method.crops if len(batch) > len(images) else None)
                with autocast(config.autocast, images.device, model):
                    logits = model(batch)
                terms = method.loss_terms(logits.float(), batch, captured, shift=shift, flip=flip, tokens=tokens)
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
                    tokens_kept = {} if schedule is None else {"tokens": schedule.fraction}
                    history.append({"chunk": chunk, "iteration": step, **values, **tokens_kept})
                bar.update(1)
                if step % 10 == 0 or step == config.iterations:
                    bar.set_postfix({k: f"{v:.4g}" for k, v in values.items()}, refresh=False)
    images = images.detach()
    if stopped_pixels is not None:  # black, as SMI saves its image, or the pixels when they stopped
        fill = lo.expand_as(images) if config.stopped == "zero" else stopped_pixels
        images = torch.where(schedule.pixel_mask(), images, fill)
    return images, values, history, schedule


@torch.no_grad()
def _stop_patches(model: nn.Module, images: Tensor, schedule: PatchSchedule, keep, step: int) -> None:
    """SMI's stop: rank the running patches of `images` (as they are: no jitter, no flip) by the last
    block's class-token attention and stop the least attended."""
    last = len(model.blocks) - 1
    keep.index = schedule.rows()
    with record_attention(model, [last], detach=True) as recorder:
        model(images)
    schedule.stop(step, class_token_attention(recorder.maps[last], int(model.num_prefix_tokens)))


def _sparse_metadata(schedules: list[PatchSchedule], config: SynthesisConfig) -> dict:
    """What a sparse inversion did: its stops, the share of patch tokens each pass kept on average,
    and which patches of each image ran to the end (their indices on the patch grid)."""
    first = schedules[0]
    return {"prune_steps": sorted(first.steps), "prune_ratio": config.prune_ratio, "stopped": config.stopped,
            "stops": first.history, "final_fraction": first.fraction,
            "mean_token_fraction": _mean_token_fraction(first, config.iterations),
            "kept_patches": [row for s in schedules for row in s.kept.tolist()]}


def _mean_token_fraction(schedule: PatchSchedule, iterations: int) -> float:
    """The share of patch tokens the passes of a run processed, averaged over its iterations."""
    fractions, last, share = 0.0, 0, 1.0
    for stop in schedule.history:
        fractions += share * (stop["iteration"] - last)
        last, share = stop["iteration"], stop["fraction"]
    return (fractions + share * (iterations - last)) / iterations


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else 0.5 * (ordered[mid - 1] + ordered[mid])


def save_image_grid(calib_set: CalibrationSet, info: ModelInfo, path: str | os.PathLike, *,
                    nrow: int | None = None, upscale: int | None = None) -> Path:
    """Write the images of `calib_set` as one PNG grid (denormalized with the model's mean/std).

    Small images are enlarged (nearest neighbour, to at least 128 px) so the grid is readable.
    """
    from torchvision.utils import save_image

    images = denormalize(calib_set.images.float(), info)  # N, C, H, W in [0, 1]
    factor = upscale if upscale is not None else max(1, 128 // images.shape[-1])
    if factor > 1:
        images = torch.nn.functional.interpolate(images, scale_factor=factor, mode="nearest")
    nrow = nrow or max(1, math.ceil(math.sqrt(len(images) * 2)))  # wider than tall
    with atomic_path(path) as tmp:
        save_image(images, str(tmp), nrow=nrow, padding=2, pad_value=1.0, format="png")
    return Path(path)
