"""Pictures: model inputs denormalized with the model's own mean/std (`to_display`), attention
maps on their own or over their images, MSR regions, what a sparse inversion stopped, and several
sets side by side, a row each."""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from ...data import denormalize
from ...models import ModelInfo
from .style import BOOK_WIDTH, FONT, METHOD_COLORS, TITLE_FONT, bare_axes, image_grid


def to_display(images: Tensor, info: ModelInfo) -> np.ndarray:
    """Normalized (N, C, H, W) model inputs -> (N, H, W, C) floats in [0, 1] for imshow."""
    return denormalize(images.detach().float().cpu(), info).permute(0, 2, 3, 1).numpy()


def _attention_overlay(ax, pixels: np.ndarray, weights: np.ndarray, *, top: float, cmap: str, alpha: float):
    """The image at full brightness with its attention on top, coloured by `cmap` and as opaque as
    it is heavy (0 at no weight, `alpha` at `top`): low attention leaves the picture as it is, so the
    overlay never darkens what it sits on. Returns the mappable for a colour bar."""
    import matplotlib as mpl

    norm = mpl.colors.Normalize(vmin=0.0, vmax=top)
    colours = mpl.colormaps[cmap](norm(weights))
    colours[..., 3] = alpha * np.clip(norm(weights), 0.0, 1.0)
    ax.imshow(pixels, interpolation="nearest")
    overlay = ax.imshow(colours, interpolation="bilinear")
    overlay.set_cmap(cmap)
    overlay.set_norm(norm)  # the scale its colours were computed on, for whoever reads the figure back
    return mpl.cm.ScalarMappable(norm=norm, cmap=cmap)


def show_images(images: Tensor, info: ModelInfo, *, labels: Sequence[int] | Tensor | None = None,
                title: str | None = None, ncols: int = 8, max_images: int = 32, size: float = 1.1):
    """A grid of normalized model inputs, captioned with class names when `labels` are given."""
    images = images[:max_images]
    pixels = to_display(images, info)
    fig, axes = image_grid(len(pixels), ncols, size=size)
    for i, (ax, img) in enumerate(zip(axes, pixels)):
        ax.imshow(img, interpolation="nearest")
        if labels is not None:
            ax.set_title(info.class_names[int(labels[i])][:10], fontsize=FONT)
    if title:
        fig.suptitle(title, fontsize=TITLE_FONT)
    return fig


def show_attention(maps: Tensor, grid: tuple[int, int], *, row_titles: Sequence[str] | None = None,
                   col_titles: Sequence[str] | None = None, size: float = 1.3, cmap: str = "magma"):
    """Patch-attention maps (rows, cols, h*w) -> a rows x cols grid of heat maps. Each row shares one
    colour scale, from 0 to its largest weight, shown by the row's colour bar: maps in a row compare
    directly, and a diffuse row is not stretched to look as peaked as a concentrated one."""
    import matplotlib.pyplot as plt

    maps = maps.detach().float().cpu()
    if maps.ndim == 2:
        maps = maps.unsqueeze(0)
    rows, cols = maps.shape[:2]
    size = min(size, (BOOK_WIDTH - 0.9) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(size * cols + 0.9, size * rows + 0.4), squeeze=False,
                             layout="constrained")
    for r in range(rows):
        top = float(maps[r].max())
        for c in range(cols):
            ax = axes[r, c]
            shown = ax.imshow(maps[r, c].view(*grid).numpy(), cmap=cmap, interpolation="nearest",
                              vmin=0.0, vmax=top)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0 and col_titles is not None:
                ax.set_title(col_titles[c], fontsize=FONT)
            if c == 0 and row_titles is not None:
                ax.set_ylabel(row_titles[r], fontsize=FONT)
        bar = fig.colorbar(shown, ax=list(axes[r]), shrink=0.9, aspect=12)
        bar.ax.tick_params(labelsize=FONT - 1)
        if r == rows - 1:
            bar.set_label("attention weight", fontsize=FONT)
    return fig


def show_images_with_attention(images: Tensor, maps: Tensor, info: ModelInfo, grid: tuple[int, int], *,
                               labels: Sequence[int] | None = None, alpha: float = 0.85, size: float = 1.4):
    """Each image (top row) and its attention map (B, h*w) upsampled over it (bottom row), all maps
    on one colour scale from 0 to the largest weight (the colour bar); the overlay is as opaque as
    the attention is heavy, so the image stays as bright as it is where attention is low."""
    import matplotlib.pyplot as plt

    pixels = to_display(images, info)
    maps = maps.detach().float().cpu().view(len(pixels), 1, *grid)
    up = torch.nn.functional.interpolate(maps, size=pixels.shape[1:3], mode="bilinear",
                                         align_corners=False)[:, 0].numpy()
    n = len(pixels)
    size = min(size, (BOOK_WIDTH - 0.9) / n)
    fig, axes = plt.subplots(2, n, figsize=(size * n + 0.9, 2 * size + 0.5), squeeze=False, layout="constrained")
    for i in range(n):
        axes[0, i].imshow(pixels[i], interpolation="nearest")
        shown = _attention_overlay(axes[1, i], pixels[i], up[i], top=float(up.max()), cmap="magma", alpha=alpha)
        if labels is not None:
            axes[0, i].set_title(info.class_names[int(labels[i])][:10], fontsize=FONT)
        for ax in axes[:, i]:
            ax.set_axis_off()
    bar = fig.colorbar(shown, ax=list(axes[1]), shrink=0.9, aspect=10)
    bar.set_label("attention", fontsize=FONT)
    bar.ax.tick_params(labelsize=FONT - 1)
    return fig


def dim_stopped(images: Tensor, info: ModelInfo, kept_patches: Sequence[Sequence[int]], *,
                keep: float = 0.3) -> Tensor:
    """Normalized images with the patches a sparse inversion stopped dimmed to `keep` of their
    brightness (`kept_patches`: per image, the indices on the patch grid that ran to the end, as
    `CalibrationSet.metadata["sparse"]["kept_patches"]` lists them): what ran and what stopped, on
    one picture."""
    gh, gw = info.patch_grid
    running = torch.zeros(len(images), gh * gw, dtype=torch.bool)
    for row, kept in zip(running, kept_patches):
        row[list(kept)] = True
    h, w = images.shape[-2:]
    mask = running.view(-1, 1, gh, gw).repeat_interleave(h // gh, 2).repeat_interleave(w // gw, 3)
    pixels = denormalize(images.detach().float().cpu(), info)
    pixels = torch.where(mask, pixels, keep * pixels)
    mean, std = torch.tensor(info.mean).view(1, -1, 1, 1), torch.tensor(info.std).view(1, -1, 1, 1)
    return (pixels - mean) / std


def show_regions(images: Tensor, info: ModelInfo, image_index: Tensor, quadrant: Tensor, *,
                 size: float = 1.4, max_images: int = 8):
    """Images with their MSR regions outlined (quadrant q: row q // 2, column q % 2)."""
    from matplotlib.patches import Rectangle

    n = min(len(images), max_images)
    pixels = to_display(images[:n], info)
    fig, axes = image_grid(n, n, size=size)
    h, w = pixels.shape[1:3]
    for i, ax in enumerate(axes):
        if i >= n:
            break
        ax.imshow(pixels[i], interpolation="nearest")
        for q in quadrant[image_index == i].tolist():
            r, c = divmod(int(q), 2)
            ax.add_patch(Rectangle((c * w / 2 - 0.5, r * h / 2 - 0.5), w / 2, h / 2, fill=False,
                                   edgecolor=METHOD_COLORS["sardfq"], linewidth=2))
    return fig


def show_image_rows(rows: Mapping[str, Tensor], info: ModelInfo, *,
                    captions: Mapping[str, Sequence[str]] | None = None, size: float = 0.95):
    """Several sets in one figure, a row each ({name: (N, C, H, W) normalized images}), the set's
    name at the left of its row and an optional caption under each image."""
    import matplotlib.pyplot as plt

    names = list(rows)
    cols = max(len(rows[n]) for n in names)
    size = min(size, (BOOK_WIDTH - 0.8) / cols)
    fig, axes = plt.subplots(len(names), cols, figsize=(size * cols + 0.8, (size + 0.25) * len(names)),
                             squeeze=False, layout="constrained")
    bare_axes(axes)
    for r, name in enumerate(names):
        for c, pixel in enumerate(to_display(rows[name], info)):
            axes[r, c].imshow(pixel, interpolation="nearest")
            if captions is not None:
                axes[r, c].set_xlabel(captions[name][c], fontsize=FONT - 1, labelpad=1)
        axes[r, 0].set_ylabel(name, fontsize=FONT)
    return fig


def show_attention_rows(rows: Mapping[str, tuple[Tensor, Tensor]], info: ModelInfo, grid: tuple[int, int], *,
                        alpha: float = 0.85, size: float = 0.95, cmap: str = "magma"):
    """Attention maps over their images, a row per set ({name: (images, maps (N, h*w))}), every
    map on one colour scale from 0 to the largest weight of any (one colour bar): rows compare
    directly, and a diffuse set is not stretched to look as peaked as a concentrated one. The
    overlay is as opaque as the attention is heavy: the images keep their own brightness."""
    import matplotlib.pyplot as plt

    names = list(rows)
    cols = max(len(rows[n][0]) for n in names)
    size = min(size, (BOOK_WIDTH - 1.6) / cols)
    up = {}
    for name in names:
        images, maps = rows[name]
        maps = maps.detach().float().cpu().view(len(images), 1, *grid)
        up[name] = torch.nn.functional.interpolate(maps, size=tuple(images.shape[-2:]), mode="bilinear",
                                                   align_corners=False)[:, 0].numpy()
    top = max(float(u.max()) for u in up.values())
    fig, axes = plt.subplots(len(names), cols, figsize=(size * cols + 1.6, size * len(names) + 0.2),
                             squeeze=False, layout="constrained")
    shown = None
    bare_axes(axes)
    for r, name in enumerate(names):
        for c, pixel in enumerate(to_display(rows[name][0], info)):
            shown = _attention_overlay(axes[r, c], pixel, up[name][c], top=top, cmap=cmap, alpha=alpha)
        axes[r, 0].set_ylabel(name, fontsize=FONT)
    bar = fig.colorbar(shown, ax=axes, shrink=0.8, aspect=25)
    bar.set_label("class-token attention", fontsize=FONT)
    bar.ax.tick_params(labelsize=FONT - 1)
    return fig
