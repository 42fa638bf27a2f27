"""Structured attention priors: random target maps over a block's patch grid, one per image and head.

A prior is a distribution over the h*w patches of a block (it sums to 1), drawn once per image at
the start of synthesis and kept fixed. APA pulls the model's patch attention towards it.

Kinds (registered by name in `PRIORS`):
- `gmm` [paper; details are our choice]: a mixture of k ~ U{1..k_max} isotropic Gaussians, centres
  uniform on the grid, sigma uniform in [0.5, scale_max * G] cells (G = the grid's shorter side;
  scale_max = 1/3 by default, `SCALE_MAX`), weights from
  a flat Dirichlet. Each component is normalized over the grid before mixing, so a component whose
  centre sits near the border keeps its weight.
- `laplace` [paper ablation]: the same mixture with isotropic Laplace components exp(-d / b),
  b drawn like sigma.
- `real` [paper ablation]: patch-attention maps of real images (`real_attention_bank`); each
  synthetic image takes all its maps (every block and head) from one real image drawn at random.

Every kind has the signature `draw(batch, heads, grid, *, generator, k_max, scale_max, bank=None)` and returns
a (batch, heads, h*w) tensor on the CPU.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
from torch import Tensor, nn

from ..attention import record_attention
from .config import K_APA, PRIORS, SCALE_MAX


def _mixture(batch: int, heads: int, grid: tuple[int, int], generator: torch.Generator,
             k_max: int, profile: Callable[[Tensor, Tensor], Tensor], scale_max: float = SCALE_MAX) -> Tensor:
    """Shared sampler: `profile(distance, scale)` gives a component's unnormalized shape."""
    if k_max < 1:
        raise ValueError(f"k_max must be at least 1, got {k_max}")
    if not scale_max > 0:
        raise ValueError(f"scale_max must be positive, got {scale_max}")
    h, w = grid
    shape = (batch, heads, k_max)
    k = torch.randint(1, k_max + 1, (batch, heads, 1), generator=generator)  # components in use
    cy = torch.rand(shape, generator=generator) * (h - 1)
    cx = torch.rand(shape, generator=generator) * (w - 1)
    top = max(min(h, w) / (1 / scale_max), 0.5)  # divides by exactly 3.0 at the default, as before
    scale = 0.5 + torch.rand(shape, generator=generator) * (top - 0.5)
    # flat Dirichlet = normalized exponential draws; components beyond k get weight 0
    gamma = -torch.log(torch.rand(shape, generator=generator).clamp_min(1e-12))
    gamma = gamma * (torch.arange(k_max).view(1, 1, -1) < k)
    weights = gamma / gamma.sum(-1, keepdim=True)  # batch, heads, k_max
    ys = torch.arange(h, dtype=torch.float32).view(h, 1).expand(h, w).reshape(-1)
    xs = torch.arange(w, dtype=torch.float32).view(1, w).expand(h, w).reshape(-1)
    dist = torch.sqrt((ys - cy[..., None]) ** 2 + (xs - cx[..., None]) ** 2)  # batch, heads, k_max, h*w
    comp = profile(dist, scale[..., None])
    comp = comp / comp.sum(-1, keepdim=True)
    prior = (weights[..., None] * comp).sum(2)  # batch, heads, h*w
    return prior / prior.sum(-1, keepdim=True)


@PRIORS.register("gmm")
def gaussian_mixture(batch: int, heads: int, grid: tuple[int, int], *, generator: torch.Generator,
                     k_max: int = K_APA, scale_max: float = SCALE_MAX, bank: Tensor | None = None) -> Tensor:
    """(batch, heads, h*w) Gaussian-mixture priors."""
    return _mixture(batch, heads, grid, generator, k_max, lambda d, s: torch.exp(-0.5 * (d / s) ** 2),
                    scale_max)


@PRIORS.register("laplace")
def laplace_mixture(batch: int, heads: int, grid: tuple[int, int], *, generator: torch.Generator,
                    k_max: int = K_APA, scale_max: float = SCALE_MAX, bank: Tensor | None = None) -> Tensor:
    """(batch, heads, h*w) Laplace-mixture priors."""
    return _mixture(batch, heads, grid, generator, k_max, lambda d, s: torch.exp(-d / s), scale_max)


@PRIORS.register("real")
def real_attention(batch: int, heads: int, grid: tuple[int, int], *, generator: torch.Generator,
                   k_max: int = K_APA, scale_max: float = SCALE_MAX, bank: Tensor | None = None) -> Tensor:
    """(batch, heads, h*w) maps of one block taken from `bank` (real images, heads, h*w).

    The rows to take are chosen by `draw_priors`, which passes the bank already indexed, so that
    every block of one synthetic image uses the same real image.
    """
    if bank is None:
        raise ValueError("the 'real' attention prior needs a bank of real attention maps "
                         "(see sardfq.real_attention_bank)")
    if bank.shape[0] != batch or bank.shape[1] != heads or bank.shape[2] != grid[0] * grid[1]:
        raise ValueError(f"real attention bank of shape {tuple(bank.shape)} does not fit "
                         f"batch {batch}, {heads} heads, grid {grid}")
    return bank.float() / bank.float().sum(-1, keepdim=True)


def draw_priors(kind: str, batch: int, heads: dict[int, int], grids: dict[int, tuple[int, int]], *,
                generator: torch.Generator, k_max: int = K_APA, scale_max: float = SCALE_MAX,
                bank: dict[int, Tensor] | None = None) -> dict[int, Tensor]:
    """Priors for every block in `grids`: {block: (batch, heads, h*w)}, each map summing to 1."""
    draw = PRIORS.get(kind)
    rows = None
    if bank is not None:
        n_real = next(iter(bank.values())).shape[0]
        rows = torch.randint(0, n_real, (batch,), generator=generator)
    out = {}
    for block in sorted(grids):
        block_bank = bank[block][rows] if bank is not None and block in bank else None
        out[block] = draw(batch, heads[block], grids[block], generator=generator, k_max=k_max,
                          scale_max=scale_max, bank=block_bank)
    return out


@torch.no_grad()
def real_attention_bank(model: nn.Module, images: Tensor, blocks: Sequence[int], *,
                        batch_size: int = 64) -> dict[int, Tensor]:
    """Patch attention of real (normalized) `images`: {block: (N, heads, h*w)} on the CPU."""
    device = next(model.parameters()).device
    parts: dict[int, list[Tensor]] = {b: [] for b in blocks}
    with record_attention(model, blocks, detach=True) as recorder:
        for start in range(0, len(images), batch_size):
            recorder.clear()
            model(images[start:start + batch_size].to(device))
            for block, maps in recorder.patch_attention().items():
                parts[block].append(maps.float().cpu())
    return {b: torch.cat(v) for b, v in parts.items()}


def transform_priors(priors: dict[int, Tensor], grids: dict[int, tuple[int, int]],
                     shift_px: int, image_size: int, flip: bool) -> dict[int, Tensor]:
    """Move priors with the jitter applied to the images: roll by the shift in cells, flip in width.

    Keeps a fixed prior from fighting the random roll/flip (an asymmetric target would otherwise be
    averaged with its mirror image). [choice]
    """
    out = {}
    for block, prior in priors.items():
        h, w = grids[block]
        maps = prior.view(*prior.shape[:-1], h, w)
        cells = int(round(shift_px * h / image_size))
        if cells:
            maps = torch.roll(maps, shifts=(cells, cells), dims=(-2, -1))
        if flip:
            maps = maps.flip(-1)
        out[block] = maps.reshape(prior.shape)
    return out


def local_maxima(prior: Tensor, grid: tuple[int, int]) -> Tensor:
    """Number of strict local maxima (8-neighbourhood) of each map in (..., h*w): counts modes."""
    h, w = grid
    maps = prior.reshape(-1, 1, h, w)
    padded = torch.nn.functional.pad(maps, (1, 1, 1, 1), value=-math.inf)
    neigh = torch.nn.functional.unfold(padded, 3).view(maps.shape[0], 9, h, w)
    neigh = torch.cat([neigh[:, :4], neigh[:, 5:]], 1)  # drop the centre
    peaks = (maps[:, 0] > neigh.max(1).values).flatten(1).sum(1)
    return peaks.view(prior.shape[:-1])
