"""Sparse inversion (SMI: Hu et al., *Sparse Model Inversion*, ICML 2024), for any method.

At a few iterations of a run (`prune_at`) the patches each image's class token attends to least in
the last block (averaged over heads) stop being optimized: a share `prune_ratio` of the patches
still running is dropped from every later forward and backward pass, so most of the run processes
about a quarter of the tokens [SMI code]. The patch tokens are embedded (with their position
embeddings) as usual and then gathered in timm's `patch_drop` slot (`keep_tokens`), so the blocks
see the class token and the kept patches only, and the model is timm's own forward.

How each piece meets a pruned image [choice]:
- The ranking runs on the image as it is (no jitter, no flip), as SMI's does, in one extra forward
  pass without gradients at each stop.
- Jitter and flip move the kept set with the image: each kept patch goes to the patch cell nearest
  to where the roll takes it (the prior's rule in `transform_priors`), mirrored by a flip.
- An MSR crop (a quadrant resized to the input) keeps as many tokens as its image: the crop's
  patches over the image's kept patches first, then those over the patches stopped last, so every
  row of a pass has the same length (the crops' own attention is never ranked).
- APA compares the class token's attention over the kept patches with the prior restricted to the
  same patches and renormalized; PSAQ-ViT's patch-similarity entropy pools the kept patches' pairs.
- A stopped patch's pixels are out of every forward pass but still in the TV term, which alone
  moves them on (as in SMI's code). The finished image holds them either black (`stopped="zero"`,
  SMI's saved "masked" image) or as they were when the patch stopped (`stopped="frozen"`). SMI's code re-ranks the finished
  image with the full model to choose which patches to blacken; here they are the patches whose
  optimization stopped.

Speed comes from the blocks only (the patch embedding and the loss terms on pixels run whole).
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Iterator

import torch
from timm.models.vision_transformer import VisionTransformer
from torch import Tensor, nn

from ..errors import ConfigError

PRUNE_AT = (0.05, 0.1, 0.2, 0.3)  # [SMI README: iterations 50, 100, 200, 300] as fractions of SARDFQ's 1000
PRUNE_RATIO = 0.3  # [SMI README] of the patches still running, at each stop
STOPPED = ("zero", "frozen")  # what a stopped patch holds in the finished image


def check_sparse_model(model: nn.Module, name: str = "the model") -> None:
    """A ConfigError unless sparse inversion applies: a timm VisionTransformer with a class token
    (the ranking reads its attention), a fixed patch grid and the patch-token slot it fills."""
    if not isinstance(model, VisionTransformer) or getattr(model, "cls_token", None) is None:
        raise ConfigError(f"sparse inversion (SynthesisConfig.sparse, method 'smi') ranks patches by the class "
                          f"token's attention; {name} is not a timm ViT/DeiT with a class token (Swin has none)")
    if getattr(model, "dynamic_img_size", False) or not hasattr(model, "patch_drop"):
        raise ConfigError(f"sparse inversion needs a fixed patch grid and timm's patch_drop slot; {name} has neither")


class KeepTokens(nn.Module):
    """What sits in timm's `patch_drop` slot during sparse inversion: (B, prefix + N, C) tokens ->
    the prefix tokens and, per row, the patch tokens `index` (R, K) names. `index` None: all."""

    def __init__(self, prefix: int):
        super().__init__()
        self.prefix = prefix
        self.index: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        if self.index is None:
            return x
        p = self.prefix
        index = self.index.to(x.device)[..., None].expand(-1, -1, x.shape[-1])  # R, K, C
        return torch.cat([x[:, :p], x[:, p:].gather(1, index)], dim=1)


@contextmanager
def keep_tokens(model: nn.Module) -> Iterator[KeepTokens]:
    """Put a `KeepTokens` in `model.patch_drop` for the duration; set its `index` before a pass."""
    check_sparse_model(model)
    keep = KeepTokens(int(getattr(model, "num_prefix_tokens", 1)))
    before = model.patch_drop
    model.patch_drop = keep
    try:
        yield keep
    finally:
        model.patch_drop = before


def prune_steps(iterations: int, prune_at: tuple[float, ...]) -> list[int]:
    """The iterations (0-based, counted over the whole run) before which patches stop."""
    return sorted({min(iterations - 1, max(1, int(round(f * iterations)))) for f in prune_at})


class PatchSchedule:
    """Which patches of each image of a chunk are still optimized, in the image's own frame.

    `grid` (gh, gw) patch cells of `image_size` (H, W) pixels; `steps` from `prune_steps`."""

    def __init__(self, batch: int, grid: tuple[int, int], image_size: tuple[int, int], steps: list[int],
                 ratio: float, device: torch.device | str = "cpu"):
        self.grid, self.image_size, self.steps, self.ratio = grid, image_size, set(steps), ratio
        n = grid[0] * grid[1]
        self.kept = torch.arange(n, device=device).expand(batch, n).contiguous()  # B, K: ascending
        # when each patch stopped (later = larger), and its attention then: the crops' order of choice
        self.stopped_at = torch.full((batch, n), math.inf, device=device)
        self.history: list[dict] = []  # one entry per stop: the step and the share of patches left

    @property
    def fraction(self) -> float:
        return self.kept.shape[1] / (self.grid[0] * self.grid[1])

    def due(self, step: int) -> bool:
        return step in self.steps

    def stop(self, step: int, attention: Tensor) -> None:
        """Stop the least-attended `ratio` of the kept patches; `attention` (B, K): the class token's
        attention to each kept patch, in the order of `self.kept`."""
        k = self.kept.shape[1]
        keep = max(1, int(k * (1 - self.ratio)))  # SMI: int(K * (1 - ratio))
        order = attention.argsort(dim=1, descending=True, stable=True)
        going = self.kept.gather(1, order[:, keep:])
        self.stopped_at.scatter_(1, going, float(step))
        self.kept = self.kept.gather(1, order[:, :keep]).sort(dim=1).values
        self.history.append({"iteration": step, "kept": keep, "fraction": self.fraction})

    def pixel_mask(self) -> Tensor:
        """(B, 1, H, W) bool: True on the pixels of kept patches."""
        (gh, gw), (h, w) = self.grid, self.image_size
        cells = torch.zeros(self.kept.shape[0], gh * gw, dtype=torch.bool, device=self.kept.device)
        cells.scatter_(1, self.kept, True)
        cells = cells.view(-1, 1, gh, gw)
        return cells.repeat_interleave(h // gh, 2).repeat_interleave(w // gw, 3)

    def rows(self, shift: int = 0, flip: bool = False, crops: tuple[Tensor, Tensor] | None = None) -> Tensor:
        """Token indices (R, K) of each row of a forward pass in its own frame: the images rolled by
        `shift` pixels (both axes) and flipped in width if `flip`, then the MSR crops `crops`
        (image_index, quadrant), cut before the roll, each rolled and flipped likewise."""
        gh, gw = self.grid
        index = self.kept
        if crops is not None:
            index = torch.cat([index, self._crop_tokens(*crops)])
        r, c = index // gw, index % gw
        dr, dc = (int(round(shift * g / s)) for g, s in zip(self.grid, self.image_size))
        r, c = (r + dr) % gh, (c + dc) % gw
        if flip:
            c = gw - 1 - c
        return (r * gw + c).sort(dim=1).values

    def _crop_tokens(self, image_index: Tensor, quadrant: Tensor) -> Tensor:
        """For each crop, the K crop patches over its image's most recently running patches."""
        (gh, gw), k = self.grid, self.kept.shape[1]
        device = self.kept.device
        image_index, quadrant = image_index.to(device), quadrant.to(device)
        # the image patch under the centre of each crop patch (crop cell r covers half an image cell)
        rows = (quadrant // 2)[:, None] * (gh / 2) + (torch.arange(gh, device=device) + 0.5) / 2  # M, gh
        cols = (quadrant % 2)[:, None] * (gw / 2) + (torch.arange(gw, device=device) + 0.5) / 2  # M, gw
        under = rows.floor().long()[:, :, None] * gw + cols.floor().long()[:, None, :]  # M, gh, gw
        rank = self.stopped_at[image_index].gather(1, under.flatten(1))  # inf for running patches
        return rank.argsort(dim=1, descending=True, stable=True)[:, :k]


def class_token_attention(maps: Tensor, prefix: int) -> Tensor:
    """A block's post-softmax maps (B, heads, T, T) -> the class token's attention to each patch
    token, averaged over heads (B, T - prefix): SMI's ranking."""
    return maps[:, :, 0, prefix:].mean(dim=1)


def restrict_priors(priors: dict[int, Tensor], index: Tensor) -> dict[int, Tensor]:
    """Priors (B, heads, N) over the full grid -> over the kept patches `index` (B, K), renormalized
    to sum to 1 as the class token's attention over those patches does."""
    out = {}
    for block, prior in priors.items():
        kept = prior.gather(-1, index[:, None, :].expand(-1, prior.shape[1], -1).to(prior.device))
        out[block] = kept / kept.sum(dim=-1, keepdim=True).clamp_min(1e-12)
    return out
