"""The calibration-set study's figures (chapter 07): sets projected on their features' principal
components, metrics against accuracy, their correlations with intervals, and the paired effects
of a method's parts against the claims made for them."""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from ..stats import spearman
from .style import BOOK_WIDTH, FONT, METHOD_COLORS, TITLE_FONT, draw_intervals, new_figure, source_style


def plot_feature_projection(features: Mapping[str, Tensor], *, ax=None, title: str | None = None):
    """Features of several sets ({source: (N, D)}, e.g. `sardfq.inspect.class_token_features`)
    projected on the first two principal components of all of them together, one colour and marker
    per source (a reference set, named "... reference", as black crosses): synthetic sets far from
    the real cloud are semantically distorted. The legend sits outside the data."""
    fig, ax = new_figure(ax, figsize=(6, 3.3))
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
                draw_intervals(ax, y[part], rows[part], color=colours[real], label=None, horizontal=True)
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
                draw_intervals(ax, y[mask], part[mask], color=palette[claim], label=claim, horizontal=True)
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
