"""Attention, measured: the patch attention of images, how structured it is, what a teacher's real
attention looks like against the priors APA pulls it towards (`teacher_properties`), and what the
model sees in each MSR region."""
from __future__ import annotations

import torch

from ..attention import attention_blocks
from ..data import heldout_dataset
from ..models import load_model
from ..synthesis.config import K_APA
from ..synthesis.losses import apa_blocks
from ..synthesis.msr import QUADRANTS, crop_regions
from ..synthesis.priors import draw_priors, local_maxima, real_attention_bank


def patch_attention(model, images, blocks=None, *, batch_size: int = 64) -> dict:
    """{block: (N, heads, h*w)} patch attention of normalized `images` (CPU tensors), all blocks by
    default: what APA aligns with its priors."""
    blocks = list(range(len(attention_blocks(model)))) if blocks is None else list(blocks)
    return real_attention_bank(model, images, blocks, batch_size=batch_size)


def attention_statistics(maps, grid: tuple[int, int]) -> dict:
    """How structured patch-attention maps (..., h*w) are: mean entropy (nats; uniform attention
    over P patches has log P), mean number of peaks (strict local maxima) and mean largest weight."""
    maps = maps.float()
    entropy = -(maps * maps.clamp_min(1e-12).log()).sum(-1)
    return {"entropy": float(entropy.mean()), "uniform_entropy": float(torch.log(torch.tensor(float(maps.shape[-1])))),
            "peaks": float(local_maxima(maps, grid).float().mean()), "max_weight": float(maps.amax(-1).mean())}


def region_predictions(model, images, *, batch_size: int = 64):
    """The model's top-1 class of each quadrant of each image, cropped and resized as MSR does:
    (N, 4) int64, quadrant q = row q // 2, column q % 2."""
    device = next(model.parameters()).device
    n = len(images)
    index = torch.arange(n).repeat_interleave(QUADRANTS)
    quadrant = torch.arange(QUADRANTS).repeat(n)
    crops = crop_regions(images.float(), index, quadrant)
    with torch.no_grad():
        logits = torch.cat([model(crops[i:i + batch_size].to(device)).cpu()
                            for i in range(0, len(crops), batch_size)])
    return logits.argmax(1).view(n, QUADRANTS)


@torch.no_grad()
def teacher_properties(name: str, *, root=None, n_images: int = 256, seed: int = 0,
                       device="cpu") -> dict:
    """Architecture, accuracy and attention shape of teacher `name` (a model name or folder).

    The attention statistics are measured on `n_images` held-out CIFAR-10 training images (never
    calibration images) in the blocks APA aligns, and on GMM priors drawn for the same blocks."""
    model, info = load_model(name, device=device)
    blocks = apa_blocks(info.num_blocks)
    data = heldout_dataset(info, root, limit=n_images)
    images = torch.stack([data[i][0] for i in range(len(data))])
    real = patch_attention(model, images, blocks)
    priors = draw_priors("gmm", n_images, {b: info.num_heads[b] for b in blocks},
                         {b: info.patch_grid for b in blocks}, generator=torch.Generator().manual_seed(seed),
                         k_max=K_APA)
    real_stats = attention_statistics(torch.cat([real[b].flatten(0, 1) for b in blocks]), info.patch_grid)
    prior_stats = attention_statistics(torch.cat([priors[b].flatten(0, 1) for b in blocks]), info.patch_grid)
    width = getattr(model, "embed_dim", None)
    return {
        "model": name, "depth": info.num_blocks, "width": width, "heads": info.num_heads[0],
        "grid": info.patch_grid[0], "apa_blocks": len(blocks),
        "parameters": sum(p.numel() for p in model.parameters()),
        "real_entropy": real_stats["entropy"], "prior_entropy": prior_stats["entropy"],
        "uniform_entropy": real_stats["uniform_entropy"],
        # > 0: real attention is more peaked than the priors APA pulls it towards
        "entropy_gap": prior_stats["entropy"] - real_stats["entropy"],
        "real_max_weight": real_stats["max_weight"], "prior_max_weight": prior_stats["max_weight"],
        "real_peaks": real_stats["peaks"], "prior_peaks": prior_stats["peaks"],
        "attention_images": n_images,
    }
