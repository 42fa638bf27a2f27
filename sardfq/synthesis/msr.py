"""Multi-semantic reinforcement (MSR): optimize regions of each image as images of their own.

[choice] The regions are the four quadrants of a 2x2 grid. Every iteration each image gets
m ~ U{1..k_max} distinct quadrants (k_max <= 4, the paper's K_MSR); each is cut out, resized back
to the input size with a differentiable bilinear resize, and classified with its own label, fixed
per (image, quadrant) when synthesis starts. A crop is a slice of its image, so the gradient of its
loss reaches its quadrant only. The crops are batched with the images into one forward pass.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

K_MSR = 4  # [paper]
QUADRANTS = 4


def draw_regions(batch: int, k_max: int = K_MSR, *, generator: torch.Generator
                 ) -> tuple[Tensor, Tensor]:
    """Pick m ~ U{1..k_max} distinct quadrants per image.

    Returns (image_index, quadrant) as two int64 tensors of length M = sum of the m's, ordered by
    image; quadrant q covers row q // 2 and column q % 2 of the 2x2 grid.
    """
    if not 1 <= k_max <= QUADRANTS:
        raise ValueError(f"k_max must be in 1..{QUADRANTS}, got {k_max}")
    m = torch.randint(1, k_max + 1, (batch, 1), generator=generator)
    order = torch.rand(batch, QUADRANTS, generator=generator).argsort(dim=1)  # random permutation
    keep = torch.arange(QUADRANTS).view(1, -1) < m  # first m of each permutation
    image_index = torch.arange(batch).view(-1, 1).expand(batch, QUADRANTS)[keep]
    return image_index, order[keep]


def quadrant_mask(image_index: Tensor, quadrant: Tensor, batch: int, height: int, width: int) -> Tensor:
    """(batch, 1, H, W) bool mask of the pixels covered by the given regions (for tests and plots)."""
    mask = torch.zeros(batch, 2, 2, dtype=torch.bool)
    mask[image_index, quadrant // 2, quadrant % 2] = True
    mask = mask.repeat_interleave(height // 2, 1).repeat_interleave(width // 2, 2)
    return mask.unsqueeze(1)


def crop_regions(images: Tensor, image_index: Tensor, quadrant: Tensor) -> Tensor:
    """Cut the quadrants out of `images` (B, C, H, W) and resize each to H x W: (M, C, H, W)."""
    b, c, h, w = images.shape
    if h % 2 or w % 2:
        raise ValueError(f"MSR needs an even image size, got {h}x{w}")
    tiles = images.view(b, c, 2, h // 2, 2, w // 2).permute(0, 2, 4, 1, 3, 5)  # B, 2, 2, C, h/2, w/2
    index = image_index.to(images.device)
    q = quadrant.to(images.device)
    crops = tiles[index, q // 2, q % 2]  # M, C, h/2, w/2
    return F.interpolate(crops, size=(h, w), mode="bilinear", align_corners=False)
