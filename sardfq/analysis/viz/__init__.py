"""Figures for the notebooks and the book (matplotlib + seaborn).

Every helper takes `ax=None` (or a figure size) and returns the matplotlib Figure; images are
denormalized with the model's own mean/std (`ModelInfo`); each calibration source keeps one colour
everywhere (`method_color`).

The book's figure standard, which every helper follows: at most `BOOK_WIDTH` inches wide (the
book's text column, so a figure is never shrunk on a desktop), no text under `FONT` points, a
colour bar on every heat map, a legend wherever colour or line style carries meaning, and value
axes that start at zero for bars (differences too small to see there are for a table, not a bar).
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from ..data import denormalize
from ..models import ModelInfo
from .stats import spearman

# One colour per calibration source, everywhere (colour-blind-safe "colorblind" palette order).
METHOD_COLORS = {
    "fp": "#4d4d4d",
    "real": "#029e73",
    "noise": "#949494",
    "psaq": "#de8f05",
    "sardfq": "#0173b2",
    "smi": "#6a3d9a",
    "paper": "#cc78bc",
}
BOOK_WIDTH = 7.0  # inches: the book's text column at 100 dpi
FONT = 9  # points: the smallest text in a figure
TITLE_FONT = 10
_ABLATION_COLORS = ["#56b4e9", "#d55e00", "#ca9161", "#fbafe4", "#ece133", "#8c564b", "#17becf"]


def method_color(name: str) -> str:
    """The colour of a calibration source (`noise`, `psaq`, `sardfq`, `sardfq[apa+sl]`, ...)."""
    if name in METHOD_COLORS:
        return METHOD_COLORS[name]
    key = name.lower()
    if key.startswith("sardfq[") or key.startswith("sardfq-"):
        variants = ["sardfq[none]", "sardfq[apa]", "sardfq[msr]", "sardfq[sl]", "sardfq[apa+msr]",
                    "sardfq[apa+sl]", "sardfq[msr+sl]"]
        if key in variants:
            return _ABLATION_COLORS[variants.index(key)]
    digest = sum(map(ord, name))
    return _ABLATION_COLORS[digest % len(_ABLATION_COLORS)]


def _figure(ax=None, figsize=(5, 3.5)):
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=figsize, layout="constrained")
        return fig, ax
    return ax.figure, ax


def _grid(n: int, ncols: int, *, size: float = 1.2, figsize=None):
    import matplotlib.pyplot as plt

    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    size = min(size, BOOK_WIDTH / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=figsize or (size * ncols, (size + 0.15) * nrows + 0.3),
                             squeeze=False, layout="constrained")
    for ax in axes.flat:
        ax.set_axis_off()
    return fig, axes.flat


def to_display(images: Tensor, info: ModelInfo) -> np.ndarray:
    """Normalized (N, C, H, W) model inputs -> (N, H, W, C) floats in [0, 1] for imshow."""
    return denormalize(images.detach().float().cpu(), info).permute(0, 2, 3, 1).numpy()


def show_images(images: Tensor, info: ModelInfo, *, labels: Sequence[int] | Tensor | None = None,
                title: str | None = None, ncols: int = 8, max_images: int = 32, size: float = 1.1):
    """A grid of normalized model inputs, captioned with class names when `labels` are given."""
    images = images[:max_images]
    pixels = to_display(images, info)
    fig, axes = _grid(len(pixels), ncols, size=size)
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
                               labels: Sequence[int] | None = None, alpha: float = 0.55, size: float = 1.4):
    """Each image (top row) and its attention map (B, h*w) upsampled over it (bottom row), all maps
    on one colour scale from 0 to the largest weight (the colour bar)."""
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
        axes[1, i].imshow(pixels[i], interpolation="nearest")
        shown = axes[1, i].imshow(up[i], cmap="magma", alpha=alpha, interpolation="bilinear",
                                  vmin=0.0, vmax=float(up.max()))
        if labels is not None:
            axes[0, i].set_title(info.class_names[int(labels[i])][:10], fontsize=FONT)
        for ax in axes[:, i]:
            ax.set_axis_off()
    bar = fig.colorbar(shown, ax=list(axes[1]), shrink=0.9, aspect=10)
    bar.set_label("attention", fontsize=FONT)
    bar.ax.tick_params(labelsize=FONT - 1)
    return fig


def plot_loss_history(history: Sequence[Mapping[str, float]] | Mapping[str, Sequence[Mapping[str, float]]],
                      *, terms: Sequence[str] | None = None, ax=None, logy: bool = True,
                      round_starts: Sequence[int] = ()):
    """Loss terms against iteration from `CalibrationSet.metadata['history']` (a list of
    {iteration, term: value} rows), or {label: history} to compare runs (one colour per label).
    `round_starts`: iterations where a synthesis round restarts its learning-rate warm-up, marked
    with dotted lines (the loss may jump there)."""
    fig, ax = _figure(ax)
    runs = history if isinstance(history, Mapping) else {"": history}
    styles = ["-", "--", ":", "-."]
    lowest = math.inf
    for label, rows in runs.items():
        rows = [r for r in rows if r.get("chunk", 0) == 0]
        if not rows:
            continue
        names = terms or [k for k in rows[0] if k not in ("chunk", "iteration")]
        x = [r["iteration"] for r in rows]
        for j, name in enumerate(names):
            if name not in rows[0]:
                continue
            color = method_color(label) if label else None
            values = [r[name] for r in rows]
            lowest = min(lowest, *values)
            ax.plot(x, values, styles[j % len(styles)] if label else "-", color=color,
                    label=f"{label} {name}".strip())
    for i, start in enumerate(round_starts):
        ax.axvline(start, color="black", linestyle=":", linewidth=1,
                   label="new round (warm-up)" if i == 0 else None)
    ax.set_xlabel("iteration", fontsize=FONT)
    ax.set_ylabel("loss" + (" (log scale)" if logy else ""), fontsize=FONT)
    ax.tick_params(labelsize=FONT)
    if logy:  # a plain log axis for positive losses; symlog only where a term reaches zero or below
        ax.set_yscale("log") if lowest > 0 else ax.set_yscale("symlog", linthresh=1e-3)
    legend_below(ax)
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


def plot_kept_tokens(runs: Mapping[str, Mapping], *, ax=None):
    """The share of patch tokens each forward pass kept against iteration, one line per run
    ({label: CalibrationSet.metadata}); a dense run is the flat line at 1."""
    fig, ax = _figure(ax)
    for label, meta in runs.items():
        rows = [r for r in meta["history"] if r.get("chunk", 0) == 0]
        x = [0] + [r["iteration"] for r in rows]
        y = [1.0] + [r.get("tokens", 1.0) for r in rows]
        ax.step(x, y, where="post", color=method_color(label.split("-")[0]),
                linestyle="-" if meta.get("sparse") else "--", label=label)
    ax.set_xlabel("iteration", fontsize=FONT)
    ax.set_ylabel("share of patch tokens in a pass", fontsize=FONT)
    ax.set_ylim(0, 1.05)
    ax.tick_params(labelsize=FONT)
    legend_below(ax)
    return fig


def show_regions(images: Tensor, info: ModelInfo, image_index: Tensor, quadrant: Tensor, *,
                 size: float = 1.4, max_images: int = 8):
    """Images with their MSR regions outlined (quadrant q: row q // 2, column q % 2)."""
    from matplotlib.patches import Rectangle

    n = min(len(images), max_images)
    pixels = to_display(images[:n], info)
    fig, axes = _grid(n, n, size=size)
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


def plot_soft_targets(targets: Tensor, class_names: Sequence[str], *, labels: Sequence[str] | None = None,
                      ax=None, max_rows: int = 6):
    """Rows of target distributions as grouped bars over classes (one-hot vs soft, ...)."""
    import pandas as pd
    import seaborn as sns

    targets = targets.detach().float().cpu()[:max_rows]
    labels = list(labels) if labels is not None else [f"target {i}" for i in range(len(targets))]
    rows = [{"class": class_names[c], "probability": float(targets[i, c]), "target": labels[i]}
            for i in range(len(targets)) for c in range(targets.shape[1])]
    fig, ax = _figure(ax, figsize=(7, 3))
    palette = {lab: method_color(lab) for lab in labels} if all(l in METHOD_COLORS for l in labels) else None
    sns.barplot(data=pd.DataFrame(rows), x="class", y="probability", hue="target", ax=ax, palette=palette, saturation=1)
    ax.tick_params(axis="x", rotation=45, labelsize=FONT)
    ax.set_xlabel("")
    ax.legend(fontsize=FONT, loc="lower left", bbox_to_anchor=(0, 1.01), ncols=len(labels), frameon=False,
              borderaxespad=0)  # above the bars, never over them
    return fig


def plot_accuracy(frame, *, x: str = "variant", y: str = "q_top1", hue: str | None = None, ax=None,
                  fp: float | None = None, title: str | None = None, order: Sequence[str] | None = None):
    """Bars of top-1 (%) per calibration source: the mean over seeds with a one-standard-deviation
    error bar and the seeds as dots, and the full-precision accuracy as a dashed line."""
    import seaborn as sns

    fig, ax = _figure(ax, figsize=(6, 3.5))
    order = list(order) if order is not None else list(dict.fromkeys(frame[x]))
    seeds = len(frame) > len(order) * (frame[hue].nunique() if hue else 1)
    bars = dict(errorbar="sd" if seeds else None, capsize=0.15, err_kws={"linewidth": 1}, saturation=1)
    if hue is None:
        palette = {v: method_color(v) for v in order}
        sns.barplot(data=frame, x=x, y=y, order=order, hue=x, hue_order=order, palette=palette, ax=ax,
                    legend=False, **bars)
        if seeds:
            sns.stripplot(data=frame, x=x, y=y, order=order, color="black", size=3, ax=ax)
    else:
        sns.barplot(data=frame, x=x, y=y, order=order, hue=hue, ax=ax, **bars)
        if seeds:
            sns.stripplot(data=frame, x=x, y=y, order=order, hue=hue, dodge=True, palette="dark:black",
                          size=2.5, ax=ax, legend=False)
    if fp is not None:
        ax.axhline(fp, color=METHOD_COLORS["fp"], linestyle="--", linewidth=1)
        ax.text(len(order) - 0.5, fp, f"FP {fp:.1f}", ha="right", va="bottom", fontsize=FONT)
    ax.set_xlabel("")
    ax.set_ylabel("top-1 (%)")
    ax.tick_params(axis="x", rotation=20, labelsize=FONT)
    if title:
        ax.set_title(title, fontsize=TITLE_FONT)
    return fig


def plot_ablation_heatmaps(tables: Mapping[str, Mapping[str, float]], *, title: str | None = None):
    """One heat map per source (e.g. {"paper, DeiT-S": {...}, "this project": {...}}) of top-1 by
    switch combination: rows APA off/on, columns the MSR/SL pair. Keys are variant names
    (`sardfq[none]`, `sardfq[apa+sl]`, `sardfq`, ...); each map has its own colour scale, since
    the question is which switches help, not the absolute level."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    columns = [("", "none"), ("msr", "MSR"), ("sl", "SL"), ("msr+sl", "MSR+SL")]

    def variant(apa: bool, parts: str) -> str:
        on = (["apa"] if apa else []) + (parts.split("+") if parts else [])
        return "sardfq" if len(on) == 3 else f"sardfq[{'+'.join(on) or 'none'}]"

    fig, axes = plt.subplots(1, len(tables), figsize=(min(BOOK_WIDTH, 4.2 * len(tables)), 2.6),
                             layout="constrained", squeeze=False)
    for ax, (name, values) in zip(axes.flat, tables.items()):
        grid = np.array([[values.get(variant(apa, parts), np.nan) for parts, _ in columns]
                         for apa in (False, True)])
        sns.heatmap(grid, annot=True, fmt=".1f", cmap="viridis", ax=ax, annot_kws={"fontsize": FONT},
                    xticklabels=[label for _, label in columns], yticklabels=["no APA", "APA"],
                    cbar_kws={"label": "top-1 (%)", "shrink": 0.9})
        ax.set_title(name, fontsize=TITLE_FONT)
        ax.tick_params(axis="y", rotation=0)
        ax.tick_params(labelsize=FONT)
    if title:
        fig.suptitle(title, fontsize=TITLE_FONT)
    return fig


def plot_versus_paper(ours: Mapping[str, float], paper: Mapping[str, float], *, ax=None,
                      title: str | None = None, ylabel: str = "top-1 (%)"):
    """Our numbers per method beside the paper's anchor numbers, as paired bars."""
    import pandas as pd
    import seaborn as sns

    methods = [m for m in paper if m in ours] + [m for m in ours if m not in paper]
    rows = ([{"method": m, "source": "this project", "top1": ours[m]} for m in methods if m in ours]
            + [{"method": m, "source": "paper", "top1": paper[m]} for m in methods if m in paper])
    fig, ax = _figure(ax, figsize=(6, 3.5))
    sns.barplot(data=pd.DataFrame(rows), x="method", y="top1", hue="source", ax=ax, errorbar=None, saturation=1,
                palette={"this project": METHOD_COLORS["sardfq"], "paper": METHOD_COLORS["paper"]})
    sns.move_legend(ax, "upper center", bbox_to_anchor=(0.5, -0.1), ncols=2, frameon=False, title=None,
                    fontsize=FONT)  # below the axes: never over a bar
    ax.set_xlabel("")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=TITLE_FONT)
    return fig


def plot_weight_quantization(weight: Tensor, quantized: Tensor, *, channel: int = 0, ax=None,
                             title: str | None = None):
    """One output channel of a weight: the FP values (histogram) and the levels its quantized copy
    takes (vertical lines)."""
    fig, ax = _figure(ax, figsize=(6, 3))
    w = weight.detach().float().cpu()[channel].flatten().numpy()
    q = quantized.detach().float().cpu()[channel].flatten()
    ax.hist(w, bins=60, color=METHOD_COLORS["fp"], alpha=0.6, label="FP weights")
    for i, level in enumerate(torch.unique(q).tolist()):
        ax.axvline(level, color=METHOD_COLORS["sardfq"], linewidth=1, alpha=0.8,
                   label="quantized levels" if i == 0 else None)
    ax.set_xlabel("weight value", fontsize=FONT)
    ax.set_ylabel("count", fontsize=FONT)
    ax.tick_params(labelsize=FONT)
    legend_below(ax)
    if title:
        ax.set_title(title, fontsize=TITLE_FONT)
    return fig


def plot_reconstruction(blocks: Sequence[Mapping[str, float]], *, ax=None, title: str | None = None):
    """Each block's output MSE against the FP block before and after reconstruction, as paired bars
    from zero (`ExperimentResult.reconstruction['blocks']`: rows of {block, mse_before, mse_after})."""
    fig, ax = _figure(ax, figsize=(6, 3))
    names = [str(b["block"]).removeprefix("blocks.") for b in blocks]
    x = np.arange(len(blocks))
    ax.bar(x - 0.2, [b["mse_before"] for b in blocks], 0.4, color=METHOD_COLORS["noise"],
           label="before (calibration only)")
    ax.bar(x + 0.2, [b["mse_after"] for b in blocks], 0.4, color=METHOD_COLORS["sardfq"],
           label="after reconstruction")
    ax.set_xticks(x, names)
    ax.set_xlabel("block", fontsize=FONT)
    ax.set_ylabel("output MSE vs FP", fontsize=FONT)
    ax.tick_params(labelsize=FONT)
    legend_below(ax)
    if title:
        ax.set_title(title, fontsize=TITLE_FONT)
    return fig


# ------------------------------------------------------------------ calibration-set inspection
def plot_feature_projection(features: Mapping[str, Tensor], *, ax=None, title: str | None = None):
    """Features of several sets ({source: (N, D)}, e.g. `sardfq.inspect.class_token_features`)
    projected on the first two principal components of all of them together, one colour and marker
    per source (a reference set, named "... reference", as black crosses): synthetic sets far from
    the real cloud are semantically distorted. The legend sits outside the data."""
    fig, ax = _figure(ax, figsize=(6, 3.3))
    names = list(features)
    stacked = torch.cat([features[n].double() for n in names])
    centred = stacked - stacked.mean(0)
    _, s, v = torch.linalg.svd(centred, full_matrices=False)
    points = (centred @ v[:2].T).numpy()
    explained = (s[:2] ** 2 / (s ** 2).sum()).tolist()
    start = 0
    for name in names:
        n = len(features[name])
        color, marker = source_style(name)
        cross = marker in "x+"  # a reference: light, under the sets
        ax.scatter(points[start:start + n, 0], points[start:start + n, 1], s=14 if cross else 22,
                   alpha=0.45 if cross else 0.85, color=color, marker=marker, label=f"{name} ({n})",
                   edgecolors=None if cross else "none", linewidths=0.8 if cross else 0, zorder=2 if cross else 3)
        start += n
    ax.set_xlabel(f"PC 1 ({100 * explained[0]:.0f}% of variance)", fontsize=FONT)
    ax.set_ylabel(f"PC 2 ({100 * explained[1]:.0f}%)", fontsize=FONT)
    ax.tick_params(labelsize=FONT)
    ax.legend(fontsize=FONT, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False, markerscale=1.4)
    if title:
        ax.set_title(title, fontsize=TITLE_FONT)
    return fig


def plot_metric_scatter(frame, metrics: Sequence[str], *, target: str = "q_top1", hue: str = "variant",
                        ncols: int = 4, ylabel: str = "W4A4 top-1 (%)"):
    """One scatter per metric column of a `sardfq.inspect.study` frame against `target`, one colour
    and marker per calibration source, the metric (group and name on two lines, so a title fits its
    panel) and its Spearman correlation in each title; one legend below the panels, shared y."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    ncols = max(1, min(ncols, len(metrics)))
    nrows = math.ceil(len(metrics) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(BOOK_WIDTH, 2.3 * nrows + 0.5), sharey=True, squeeze=False,
                             layout="constrained")
    for ax in axes.flat[len(metrics):]:
        ax.set_axis_off()
    for ax, metric in zip(axes.flat, metrics):
        for source, rows in frame.groupby(hue, sort=False):
            color, marker = source_style(source)
            ax.scatter(rows[metric], rows[target], s=20, color=color, marker=marker, label=source)
        group, _, short = metric.partition(".")
        ax.set_title(f"{group}\n{short or group}\nSpearman {spearman(frame[metric], frame[target]):+.2f}",
                     fontsize=FONT)
        ax.tick_params(labelsize=FONT - 1)
        ax.xaxis.set_major_locator(MaxNLocator(3))
    for row in axes:
        row[0].set_ylabel(ylabel, fontsize=FONT)
    handles, labels = axes.flat[0].get_legend_handles_labels() if metrics else ([], [])
    if handles:
        fig.legend(handles, labels, fontsize=FONT, loc="outside lower center", ncols=len(labels), frameon=False)
    return fig


def plot_correlations(tables, *, title: str | None = None):
    """Spearman correlation of each metric with accuracy and its 95% bootstrap CI (`correlations`
    tables; a mapping {study name: table} draws one panel per study side by side, sharing the metric
    rows of the first): a marker and interval per metric, not a bar from zero, coloured by whether a
    data-free user can compute it, filled where the interval excludes zero. The legend sits below."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    tables = tables if isinstance(tables, Mapping) else {"": tables}
    order = list(next(iter(tables.values()))["metric"])
    fig, axes = plt.subplots(1, len(tables), figsize=(BOOK_WIDTH, 0.22 * len(order) + 1.4), sharey=True,
                             squeeze=False, layout="constrained")
    y = np.arange(len(order))
    colours = {True: METHOD_COLORS["real"], False: METHOD_COLORS["sardfq"]}
    for ax, (name, table) in zip(axes[0], tables.items()):
        rows = table.set_index("metric").loc[order].reset_index()
        rows = rows.assign(difference=rows["spearman"],
                           excludes_zero=(rows["ci_low"] > 0) | (rows["ci_high"] < 0))
        for real in (False, True):
            part = rows["needs_real_data"].astype(bool).to_numpy() == real
            if part.any():
                _intervals(ax, y[part], rows[part], color=colours[real], label=None, horizontal=True)
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_xlim(-1.05, 1.05)
        ax.set_xlabel("Spearman with top-1, 95% CI", fontsize=FONT)
        ax.tick_params(labelsize=FONT)
        if name:
            ax.set_title(name, fontsize=TITLE_FONT)
    axes[0][0].set_yticks(y, order, fontsize=FONT)
    axes[0][0].invert_yaxis()
    handles = [Line2D([], [], marker="o", linestyle="", color=colours[False], label="data-free"),
               Line2D([], [], marker="o", linestyle="", color=colours[True], label="needs real images"),
               Line2D([], [], marker="o", linestyle="", markerfacecolor="white", markeredgecolor="black",
                      label="hollow: the CI holds 0")]
    fig.legend(handles=handles, fontsize=FONT, loc="outside lower center", ncols=3, frameon=False)
    if title:
        fig.suptitle(title, fontsize=TITLE_FONT)
    return fig


def _intervals(ax, position, rows, *, color: str, label: str, horizontal: bool) -> None:
    """`rows`' differences (columns difference, ci_low, ci_high, excludes_zero) at `position` on the
    other axis, each with its 95% CI: filled markers where the CI excludes zero, hollow where it holds
    it; `label` goes on the filled ones, or on the hollow ones when none is filled."""
    value = rows["difference"].to_numpy(float)
    error = [value - rows["ci_low"].to_numpy(float), rows["ci_high"].to_numpy(float) - value]
    x, y = (value, position) if horizontal else (position, value)
    ax.errorbar(x, y, **{"xerr" if horizontal else "yerr": error}, fmt="none", ecolor=color, capsize=3)
    filled = rows["excludes_zero"].to_numpy(bool)
    ax.scatter(x[filled], y[filled], color=color, zorder=3, label=label if filled.any() else None)
    ax.scatter(x[~filled], y[~filled], facecolor="white", edgecolor=color, zorder=3,
               label=None if filled.any() else label)


def plot_zoo_gains(gains, *, ax=None, title: str | None = None):
    """Paired differences with their 95% CIs (`sardfq.zoo.zoo_gains` rows): one row per teacher and
    bit-width, one marker colour per contrast, a line at zero. A bar whose interval crosses zero
    shows no difference; filled markers are the intervals that exclude it."""
    rows = gains.assign(label=gains["model"] + "  " + gains["bits"])
    labels = list(dict.fromkeys(rows["label"]))
    contrasts = list(dict.fromkeys(rows["contrast"]))
    fig, ax = _figure(ax, figsize=(BOOK_WIDTH, 0.9 + 0.45 * len(labels) * max(1, len(contrasts)) ** 0.5))
    step = 0.8 / max(1, len(contrasts))
    for k, contrast in enumerate(contrasts):
        part = rows[rows["contrast"] == contrast]
        y = np.array([labels.index(v) for v in part["label"]]) + (k - (len(contrasts) - 1) / 2) * step
        color = method_color(contrast.split(" - ")[1] if contrast.startswith("sardfq") else contrast.split(" - ")[0])
        _intervals(ax, y, part, color=color, label=contrast, horizontal=True)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(range(len(labels)), labels, fontsize=FONT)
    ax.invert_yaxis()
    ax.set_xlabel("difference in top-1 (points), 95% CI", fontsize=FONT)
    ax.legend(fontsize=FONT, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncols=len(contrasts),
              title="filled: the 95% CI excludes 0", title_fontsize=FONT, frameon=False)
    if title:
        ax.set_title(title, fontsize=TITLE_FONT)
    return fig


def plot_gain_vs_property(table, properties: Sequence[str], *, contrast: str = "sardfq - psaq",
                          labels: Mapping[str, str] | None = None, title: str | None = None):
    """One panel per teacher property (`sardfq.zoo.zoo_table` rows): the `contrast`'s difference
    with its 95% CI against the property's value, one marker per teacher and colour per bit-width,
    each point named by its teacher. Filled markers: the CI excludes zero."""
    import matplotlib.pyplot as plt

    rows = table[table["contrast"] == contrast]
    ncols = min(2, len(properties))  # two panels a row: each wide enough for its teachers' names
    nrows = math.ceil(len(properties) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(BOOK_WIDTH, 2.6 * nrows + 0.6), layout="constrained",
                             sharey=True, squeeze=False)
    for ax in axes.flat[len(properties):]:
        ax.set_axis_off()
    palette = dict(zip(dict.fromkeys(rows["bits"]), ["#0173b2", "#d55e00", "#029e73", "#cc78bc"]))
    for ax, prop in zip(axes.flat, properties):
        for bits, part in rows.groupby("bits", sort=False):
            _intervals(ax, part[prop].to_numpy(float), part, color=palette[bits], label=bits, horizontal=False)
        for model, points in rows.groupby("model", sort=False):  # one name per teacher, by its highest point
            top = points.loc[points["difference"].idxmax()]
            ax.annotate((labels or {}).get(model, model), (float(top[prop]), float(top["difference"])), xytext=(4, 3),
                        textcoords="offset points", fontsize=FONT)
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_xlabel((labels or {}).get(prop, prop.replace("_", " ")), fontsize=FONT)
        ax.tick_params(labelsize=FONT)
        ax.margins(x=0.25)  # room for the names of the teachers at the edges
    for row in axes:
        row[0].set_ylabel(f"{contrast} (points)", fontsize=FONT)
    handles, names = axes[0][0].get_legend_handles_labels()
    keep = dict(zip(names, handles))
    fig.legend(keep.values(), keep.keys(), fontsize=FONT, loc="outside lower center", ncols=len(keep),
               title="filled: the 95% CI excludes 0", title_fontsize=FONT, frameon=False)
    if title:
        fig.suptitle(title, fontsize=TITLE_FONT)
    return fig


# ------------------------------------------------------------------ calibration-set study, continued
SOURCE_MARKERS = {"noise": "s", "psaq": "^", "sardfq": "o", "real": "D", "smi": "v"}


def source_style(name: str) -> tuple[str, str]:
    """(colour, marker) of a calibration source: its `method_color` and a marker of its own, so
    sources stay apart in grey scale too; a reference set ("real reference", ...) is black crosses,
    never a colour a source has."""
    if name.endswith("reference"):
        return "black", "x"
    return method_color(name), SOURCE_MARKERS.get(name.split("[")[0], "o")


def _bare(axes) -> None:
    """No ticks and no frame on any of `axes` (a grid of images: empty cells stay blank)."""
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)


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
    _bare(axes)
    for r, name in enumerate(names):
        for c, pixel in enumerate(to_display(rows[name], info)):
            axes[r, c].imshow(pixel, interpolation="nearest")
            if captions is not None:
                axes[r, c].set_xlabel(captions[name][c], fontsize=FONT - 1, labelpad=1)
        axes[r, 0].set_ylabel(name, fontsize=FONT)
    return fig


def show_attention_rows(rows: Mapping[str, tuple[Tensor, Tensor]], info: ModelInfo, grid: tuple[int, int], *,
                        alpha: float = 0.6, size: float = 0.95, cmap: str = "magma"):
    """Attention maps over their images, a row per set ({name: (images, maps (N, h*w))}), every
    map on one colour scale from 0 to the largest weight of any (one colour bar): rows compare
    directly, and a diffuse set is not stretched to look as peaked as a concentrated one."""
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
    _bare(axes)
    for r, name in enumerate(names):
        for c, pixel in enumerate(to_display(rows[name][0], info)):
            axes[r, c].imshow(pixel, interpolation="nearest")
            shown = axes[r, c].imshow(up[name][c], cmap=cmap, alpha=alpha, interpolation="bilinear",
                                      vmin=0.0, vmax=top)
        axes[r, 0].set_ylabel(name, fontsize=FONT)
    bar = fig.colorbar(shown, ax=axes, shrink=0.8, aspect=25)
    bar.set_label("class-token attention", fontsize=FONT)
    bar.ax.tick_params(labelsize=FONT - 1)
    return fig


def plot_claim_effects(rows, *, title: str | None = None):
    """Paired effects of switching a method's parts on, against the claims made for them
    (`sardfq.analysis.inspect_prose.claim_effects` rows: question, claim, label, difference, ci_low, ci_high,
    excludes_zero): one panel per question, stacked on one shared axis, a row per metric, the
    difference with its 95% CI in standard deviations of the metric across the sets, signed so that
    right of zero is the way the paper claims and left is against it; one colour per claim, filled
    where the CI excludes zero. The legend sits below the panels."""
    import matplotlib.pyplot as plt

    questions = list(dict.fromkeys(rows["question"]))
    claims = list(dict.fromkeys(rows["claim"]))
    palette = dict(zip(claims, [METHOD_COLORS["sardfq"], "#d55e00", METHOD_COLORS["real"]]))
    counts = [int((rows["question"] == q).sum()) for q in questions]
    fig, axes = plt.subplots(len(questions), 1, figsize=(BOOK_WIDTH, 0.2 * sum(counts) + 0.55 * len(questions) + 1.1),
                             sharex=True, squeeze=False, layout="constrained", gridspec_kw={"height_ratios": counts})
    lim = float(np.nanmax(np.abs(rows[["ci_low", "ci_high"]].to_numpy(float)))) * 1.1 or 1.0
    for ax, question in zip(axes[:, 0], questions):
        part = rows[rows["question"] == question].reset_index(drop=True)
        y = np.arange(len(part))
        for claim in claims:
            mask = (part["claim"] == claim).to_numpy()
            if mask.any():
                _intervals(ax, y[mask], part[mask], color=palette[claim], label=claim, horizontal=True)
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_xlim(-lim, lim)
        ax.set_ylim(len(part) - 0.5, -0.5)
        ax.set_yticks(y, part["label"], fontsize=FONT)
        ax.tick_params(labelsize=FONT)
        ax.set_title(f"{question} on - off: against the claim  <  0  >  as claimed", fontsize=TITLE_FONT)
    axes[-1, 0].set_xlabel("paired difference, in standard deviations of the metric across the sets", fontsize=FONT)
    handles, labels = [], []
    for ax in axes[:, 0]:
        for h, l in zip(*ax.get_legend_handles_labels()):
            if l not in labels:
                handles.append(h)
                labels.append(l)
    fig.legend(handles, [f"claimed: {l}" for l in labels], fontsize=FONT, loc="outside lower center",
               ncols=len(labels), frameon=False, title="filled: the 95% CI excludes 0", title_fontsize=FONT)
    if title:
        fig.suptitle(title, fontsize=TITLE_FONT)
    return fig


# ------------------------------------------------------------------ the results pages (chapter 06)
def plot_intervals(rows, *, label: str = "label", group: str | None = None, title: str | None = None,
                   xlabel: str = "difference in top-1 (points), 95% CI", colors: Mapping[str, str] | None = None,
                   legend_title: str = "filled: the interval excludes 0"):
    """A dot plot of differences with their intervals (rows with difference, ci_low, ci_high and
    excludes_zero), one line per `label` value, one colour per `group` value, a line at zero: the
    standard figure for "how much does A change against B", in place of bars from zero."""
    import pandas as pd

    rows = rows.reset_index(drop=True)
    labels = list(dict.fromkeys(rows[label]))
    groups = list(dict.fromkeys(rows[group])) if group else [None]
    fig, ax = _figure(None, figsize=(BOOK_WIDTH, 0.9 + 0.32 * len(labels) * max(1, len(groups)) ** 0.5))
    step = 0.7 / max(1, len(groups))
    palette = ["#0173b2", "#d55e00", "#029e73", "#cc78bc", "#ca9161", "#949494"]
    for k, name in enumerate(groups):
        part = rows if name is None else rows[rows[group] == name]
        y = np.array([labels.index(v) for v in part[label]], float) + (k - (len(groups) - 1) / 2) * step
        color = (colors or {}).get(name, palette[k % len(palette)])
        _intervals(ax, y, pd.DataFrame(part), color=color, label=str(name) if name is not None else "", horizontal=True)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(range(len(labels)), labels, fontsize=FONT)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel, fontsize=FONT)
    if group:
        handles, names = ax.get_legend_handles_labels()
        fig.legend(handles, names, fontsize=FONT, loc="outside lower center", ncols=min(4, len(groups)),
                   title=legend_title, title_fontsize=FONT, frameon=False)
    if title:
        ax.set_title(title, fontsize=TITLE_FONT)
    return fig


def plot_headroom_map(table, *, value: str = "headroom", settings: Sequence[str] | None = None,
                      labels: Mapping[str, str] | None = None, title: str | None = None):
    """Heat maps of `value` (real - PSAQ-ViT by default, `sardfq.analysis.headroom.headroom_map`
    rows): teachers down, quantization settings across, one panel per reconstruction length, one
    colour scale shared by the panels (diverging, centred on zero), each cell annotated."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    settings = list(settings) if settings is not None else list(dict.fromkeys(table["setting"]))
    models = list(dict.fromkeys(sorted(table["model"])))
    lengths = sorted(table["recon_iters"].unique())
    limit = float(np.nanmax(np.abs(table[value].to_numpy(float)))) or 1.0
    fig, axes = plt.subplots(len(lengths), 1, figsize=(BOOK_WIDTH, 0.6 + (0.45 * len(models) + 0.9) * len(lengths)),
                             layout="constrained", squeeze=False)
    for ax, length in zip(axes[:, 0], lengths):
        part = table[table["recon_iters"] == length].pivot_table(index="model", columns="setting", values=value)
        grid = part.reindex(index=models, columns=settings)
        sns.heatmap(grid, annot=True, fmt=".1f", cmap="RdBu_r", vmin=-limit, vmax=limit, center=0, ax=ax,
                    annot_kws={"fontsize": FONT}, cbar_kws={"label": f"{value} (points)", "shrink": 0.9},
                    yticklabels=[(labels or {}).get(m, m) for m in models])
        ax.set_title(f"{'calibration only' if length == 0 else f'{length} reconstruction steps per block'}",
                     fontsize=TITLE_FONT)
        ax.set_xlabel("")
        ax.set_ylabel("")
        ax.tick_params(axis="x", rotation=30, labelsize=FONT)
        ax.tick_params(axis="y", rotation=0, labelsize=FONT)
    if title:
        fig.suptitle(title, fontsize=TITLE_FONT)
    return fig


def plot_gain_vs_headroom(cells, *, fit: tuple[float, float] | None = None, group: str = "group",
                          labels: Mapping[str, str] | None = None, title: str | None = None):
    """SARDFQ - PSAQ-ViT against real - PSAQ-ViT, every cell with both 95% CIs (rows with
    headroom, headroom_low, headroom_high, gain, gain_low, gain_high, model, setting and `group`),
    one colour per group, the line a hypothesis fitted before (`fit`: intercept, slope) dashed, and
    the line where SARDFQ would close the whole headroom (gain = headroom) dotted."""
    fig, ax = _figure(None, figsize=(BOOK_WIDTH, 4.2))
    palette = ["#949494", "#0173b2", "#d55e00", "#029e73"]
    for k, (name, part) in enumerate(cells.groupby(group, sort=False)):
        x, y = part["headroom"].to_numpy(float), part["gain"].to_numpy(float)
        ax.errorbar(x, y, xerr=[x - part["headroom_low"], part["headroom_high"] - x],
                    yerr=[y - part["gain_low"], part["gain_high"] - y], fmt="o", color=palette[k % 4],
                    ecolor=palette[k % 4], elinewidth=0.8, capsize=2, markersize=5, label=str(name))
        for r in part.itertuples():
            if r.headroom >= 4:  # name the cells that leave room; the zoo's cluster near zero stays quiet
                ax.annotate(f"{(labels or {}).get(r.model, r.model)} {r.setting}", (r.headroom, r.gain),
                            xytext=(4, -10), textcoords="offset points", fontsize=FONT - 1)
    right = float(np.nanmax(cells["headroom_high"].to_numpy(float))) * 1.05
    xs = np.array([0.0, right])
    if fit is not None:
        ax.plot(xs, fit[0] + fit[1] * xs, linestyle="--", color="black", linewidth=1,
                label=f"headroom hypothesis, fitted on the zoo: {fit[0]:+.2f} {fit[1]:+.3f} x")
    ax.plot(xs, xs, linestyle=":", color="#029e73", linewidth=1, label="SARDFQ closes the whole headroom")
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set_xlim(min(0.0, float(np.nanmin(cells["headroom_low"]))) - 0.5, right)
    ax.set_xlabel("real − PSAQ-ViT: the headroom (top-1 points, 95% CI)", fontsize=FONT)
    ax.set_ylabel("SARDFQ − PSAQ-ViT (points, 95% CI)", fontsize=FONT)
    ax.tick_params(labelsize=FONT)
    ax.legend(fontsize=FONT, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncols=2, frameon=False)
    if title:
        ax.set_title(title, fontsize=TITLE_FONT)
    return fig


def plot_speedups(rows: Sequence[Mapping], *, key: str = "throughput_speedup", ax=None, title: str | None = None):
    """Speed-up against the first row (bars from zero, a line at 1), one bar per row of a speed
    table (`benchmarks/bench_export.py` rows: runtime, bits, threads and the `key` ratio). Rows at
    several thread counts get one colour per thread count."""
    fig, ax = _figure(ax, figsize=(BOOK_WIDTH, 0.35 * len(rows) + 1.2))
    threads = list(dict.fromkeys(r["threads"] for r in rows))
    colours = dict(zip(threads, [METHOD_COLORS["sardfq"], METHOD_COLORS["psaq"], METHOD_COLORS["real"]]))
    labels = [f"{r['runtime']}, {r['bits']}" + (f" ({r['threads']} threads)" if len(threads) > 1 else "")
              for r in rows]
    y = np.arange(len(rows))[::-1]
    ax.barh(y, [r[key] for r in rows], color=[colours[r["threads"]] for r in rows])
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_yticks(y, labels)
    ax.set_xlim(left=0)
    ax.set_xlabel("speed-up against PyTorch eager FP32 (same threads)", fontsize=FONT)
    ax.tick_params(labelsize=FONT)
    if title:
        ax.set_title(title, fontsize=TITLE_FONT)
    return fig


# ------------------------------------------------------------------ shared
def legend_below(ax) -> None:
    """The axis's legend (every labelled artist, those a notebook adds included) under its x label,
    outside the data (constrained layout makes room), side by side where the axis is wide enough."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        wide = ax.get_position().width * ax.figure.get_figwidth() > 4.5  # inches: room for entries side by side
        ax.legend(handles, labels, fontsize=FONT, loc="upper center", bbox_to_anchor=(0.5, -0.2),
                  ncols=min(len(labels), 3) if wide else 1, frameon=False)
