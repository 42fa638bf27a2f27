"""Synthesis losses: APA, soft labels, the TV image prior and PSAQ-ViT's patch-similarity entropy.

Losses take tensors, never models. The one exception is `record_head_outputs`, a context manager
in the spirit of `sardfq.record_attention` that captures the attention output (attn @ v, before the
output projection) of chosen blocks for the patch-similarity entropy; its hooks are always removed.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F
from timm.models.swin_transformer import SwinTransformer
from torch import Tensor, nn

from ..attention import attention_blocks

SOFT_LABEL_RANGE = (5.0, 10.0)  # [paper] logits of the relevant classes ~ U(5, 10)
TV_TARGET_RANGE = (2500.0, 3000.0)  # [PSAQ-ViT code] v ~ U(2500, 3000) at 224 px, batch 32
KDE_BANDWIDTH = 0.01  # [PSAQ-ViT code]
KDE_POINTS = 10  # [PSAQ-ViT code]


# ------------------------------------------------------------------------------------------ APA
def apa_blocks(num_blocks: int, deep_only: bool = True) -> list[int]:
    """0-based indices of the blocks APA acts on: 1-based l >= L/2 (all blocks if not deep_only)."""
    if not deep_only:
        return list(range(num_blocks))
    first = math.ceil(num_blocks / 2)  # 1-based
    return [l - 1 for l in range(max(first, 1), num_blocks + 1)]


def apa_loss(attention: dict[int, Tensor], priors: dict[int, Tensor], num_blocks: int, *,
             depth_weighting: bool = True) -> Tensor:
    """sum over blocks in `priors` and heads of (l/L) * MSE(attention, prior).

    `attention` and `priors` map a 0-based block index to (B, heads, h*w) patch distributions;
    the MSE averages over images and patches; l is the 1-based block number.
    """
    total = None
    for block, prior in priors.items():
        attn = attention[block]
        per_head = ((attn - prior) ** 2).mean(dim=(0, 2)).sum()  # sum over heads of the MSE
        weight = (block + 1) / num_blocks if depth_weighting else 1.0
        total = weight * per_head if total is None else total + weight * per_head
    if total is None:
        raise ValueError("apa_loss got no blocks")
    return total


# ---------------------------------------------------------------------------------- soft labels
def soft_targets(relevant: Tensor, *, generator: torch.Generator,
                 low: float = SOFT_LABEL_RANGE[0], high: float = SOFT_LABEL_RANGE[1]) -> Tensor:
    """T = softmax(Z): Z ~ U(low, high) where `relevant` (N, classes, bool) is set, 0 elsewhere."""
    z = low + torch.rand(relevant.shape, generator=generator) * (high - low)
    z = torch.where(relevant.cpu(), z, torch.zeros(()))
    return z.softmax(dim=-1)


def soft_cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean over rows of -sum_c T_c log softmax(logits)_c (equals CE for one-hot targets)."""
    return -(targets * logits.log_softmax(dim=-1)).sum(dim=-1).mean()


# ------------------------------------------------------------------------------------------- TV
def tv_l2(images: Tensor) -> Tensor:
    """Sum of the L2 norms (over the whole batch) of four directional pixel differences."""
    d1 = images[:, :, :, :-1] - images[:, :, :, 1:]
    d2 = images[:, :, :-1, :] - images[:, :, 1:, :]
    d3 = images[:, :, 1:, :-1] - images[:, :, :-1, 1:]
    d4 = images[:, :, :-1, :-1] - images[:, :, 1:, 1:]
    return d1.norm() + d2.norm() + d3.norm() + d4.norm()


def tv_target(batch: int, height: int, width: int, *, generator: torch.Generator,
              low: float = TV_TARGET_RANGE[0], high: float = TV_TARGET_RANGE[1]) -> float:
    """The TV level v, drawn in PSAQ-ViT's range and scaled to this batch and resolution.

    `tv_l2` is a norm over every pixel of the batch, so at a fixed per-pixel roughness it grows with
    the square root of the pixel count: v = U(low, high) * sqrt(batch * H * W / (32 * 224 * 224)).
    """
    scale = math.sqrt(batch * height * width / (32 * 224 * 224))
    return float(low + torch.rand((), generator=generator) * (high - low)) * scale


def tv_loss(images: Tensor, target: float) -> Tensor:
    """|TV_l2(x) - v| (PSAQ-ViT's form)."""
    return (tv_l2(images) - target).abs()


# ------------------------------------------------------------------ patch-similarity entropy
@contextmanager
def record_head_outputs(model: nn.Module, blocks: Sequence[int] | None = None
                        ) -> Iterator[dict[int, Tensor]]:
    """Capture, per block, the attention output attn @ v averaged over heads, prefix tokens dropped.

    Yields a dict filled at each forward pass: {block: (B*G, N, head_dim)}, with G = 1 for ViT/DeiT
    and G = windows per image for Swin (its attention runs per window). Works with fused attention.
    """
    all_blocks = attention_blocks(model)
    indices = list(range(len(all_blocks))) if blocks is None else [int(b) for b in blocks]
    prefix = 0 if isinstance(model, SwinTransformer) else int(getattr(model, "num_prefix_tokens", 0))
    captured: dict[int, Tensor] = {}
    handles = []
    for idx in indices:
        attn = all_blocks[idx].attn
        heads = int(attn.num_heads)

        def keep(_module, inputs, idx=idx, heads=heads):
            x = inputs[0]  # B*G, N, heads*head_dim (timm concatenates the heads before proj)
            x = x.view(*x.shape[:2], heads, -1).mean(dim=2)
            captured[idx] = x[:, prefix:]

        handles.append(attn.proj.register_forward_pre_hook(keep))
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


def patch_similarity_entropy(features: Tensor, num_images: int | None = None, *,
                             bandwidth: float = KDE_BANDWIDTH, points: int = KDE_POINTS) -> Tensor:
    """Differential entropy of each image's patch-similarity distribution, shape (num_images,).

    `features` (B*G, N, D): patch features (G groups per image, e.g. Swin windows). Cosine
    similarities of all ordered patch pairs within a group (the diagonal included) are pooled per
    image; a Gaussian KDE (bandwidth 0.01) is evaluated at `points` points spaced evenly between the
    batch's smallest and largest similarity (as PSAQ-ViT does; the grid is not differentiated), and
    the entropy is the trapezoid integral of -p log p with p = pdf + 1e-4. Vectorized over images.
    """
    num_images = features.shape[0] if num_images is None else num_images
    # float32 even under bf16 autocast: bf16 resolves similarities near 1 to about 0.004, close to
    # the 0.01 bandwidth. Measured on the teacher (32 images): bf16 features moved the entropy by
    # -7.9% and the pixel gradient to cosine 0.79 against float32; cast to float32, -0.01% and 0.996.
    # APA needs no cast: its bf16 maps meet float32 priors, so the MSE runs in float32 (+0.1%).
    features = features.to(torch.promote_types(features.dtype, torch.float32))  # float64 stays
    unit = F.normalize(features, dim=-1, eps=1e-8)
    sims = (unit @ unit.transpose(1, 2)).reshape(num_images, -1)  # B, G*N*N
    lo, hi = sims.detach().min(), sims.detach().max()
    steps = torch.linspace(0, 1, points, device=sims.device, dtype=sims.dtype)
    grid = lo + (hi - lo) * steps  # points
    var = bandwidth ** 2
    diffs = grid.view(1, -1, 1) - sims.unsqueeze(1)  # B, points, G*N*N
    pdf = torch.exp(-diffs ** 2 / (2 * var)).mean(-1) / math.sqrt(2 * math.pi * var)  # B, points
    p = pdf + 1e-4
    return torch.trapezoid(-p * torch.log(p), grid.expand_as(p), dim=-1)
