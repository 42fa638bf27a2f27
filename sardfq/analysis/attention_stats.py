"""Analyses of calibration images a chapter shows: their patch attention, how structured it is,
and what the model sees in each MSR region."""
from __future__ import annotations

import torch

from ..attention import attention_blocks
from ..synthesis.msr import QUADRANTS, crop_regions
from ..synthesis.priors import local_maxima, real_attention_bank


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
