"""Line and bar plots of one run or a few: loss terms against iteration, the share of tokens a
sparse pass kept, soft targets, top-1 per calibration source, a weight against its quantized
levels, reconstruction per block, and the export's speed-ups."""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from .style import BOOK_WIDTH, FONT, METHOD_COLORS, TITLE_FONT, legend_below, method_color, new_figure


def plot_loss_history(history: Sequence[Mapping[str, float]] | Mapping[str, Sequence[Mapping[str, float]]],
                      *, terms: Sequence[str] | None = None, ax=None, logy: bool = True,
                      round_starts: Sequence[int] = ()):
    """Loss terms against iteration from `CalibrationSet.metadata['history']` (a list of
    {iteration, term: value} rows), or {label: history} to compare runs (one colour per label).
    `round_starts`: iterations where a synthesis round restarts its learning-rate warm-up, marked
    with dotted lines (the loss may jump there)."""
    fig, ax = new_figure(ax)
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


def plot_kept_tokens(runs: Mapping[str, Mapping], *, ax=None):
    """The share of patch tokens each forward pass kept against iteration, one line per run
    ({label: CalibrationSet.metadata}); a dense run is the flat line at 1."""
    fig, ax = new_figure(ax)
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


def plot_soft_targets(targets: Tensor, class_names: Sequence[str], *, labels: Sequence[str] | None = None,
                      ax=None, max_rows: int = 6):
    """Rows of target distributions as grouped bars over classes (one-hot vs soft, ...)."""
    import pandas as pd
    import seaborn as sns

    targets = targets.detach().float().cpu()[:max_rows]
    labels = list(labels) if labels is not None else [f"target {i}" for i in range(len(targets))]
    rows = [{"class": class_names[c], "probability": float(targets[i, c]), "target": labels[i]}
            for i in range(len(targets)) for c in range(targets.shape[1])]
    fig, ax = new_figure(ax, figsize=(7, 3))
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

    fig, ax = new_figure(ax, figsize=(6, 3.5))
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


def plot_weight_quantization(weight: Tensor, quantized: Tensor, *, channel: int = 0, ax=None,
                             title: str | None = None):
    """One output channel of a weight: the FP values (histogram) and the levels its quantized copy
    takes (vertical lines)."""
    fig, ax = new_figure(ax, figsize=(6, 3))
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
    fig, ax = new_figure(ax, figsize=(6, 3))
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


def plot_speedups(rows: Sequence[Mapping], *, key: str = "throughput_speedup", ax=None, title: str | None = None):
    """Speed-up against the first row (bars from zero, a line at 1), one bar per row of a speed
    table (`benchmarks/bench_export.py` rows: runtime, bits, threads and the `key` ratio). Rows at
    several thread counts get one colour per thread count."""
    fig, ax = new_figure(ax, figsize=(BOOK_WIDTH, 0.35 * len(rows) + 1.2))
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
