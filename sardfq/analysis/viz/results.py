"""The results pages' figures (chapter 06 and the zoo): differences with their 95% intervals
(`plot_intervals`, per teacher in `plot_zoo_gains`, against teacher properties), the headroom map
and the gain against the headroom, the ablation's heat maps and our numbers beside the paper's."""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

from .style import (BOOK_WIDTH, FONT, METHOD_COLORS, TITLE_FONT, data_points, draw_intervals, method_color,
                    new_figure, place_labels)


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
    fig, ax = new_figure(ax, figsize=(6, 3.5))
    sns.barplot(data=pd.DataFrame(rows), x="method", y="top1", hue="source", ax=ax, errorbar=None, saturation=1,
                palette={"this project": METHOD_COLORS["sardfq"], "paper": METHOD_COLORS["paper"]})
    sns.move_legend(ax, "upper center", bbox_to_anchor=(0.5, -0.1), ncols=2, frameon=False, title=None,
                    fontsize=FONT)  # below the axes: never over a bar
    ax.set_xlabel("")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=TITLE_FONT)
    return fig


def plot_zoo_gains(gains, *, ax=None, title: str | None = None):
    """Paired differences with their 95% CIs (`sardfq.zoo.zoo_gains` rows): one row per teacher and
    bit-width, one marker colour per contrast, a line at zero. A bar whose interval crosses zero
    shows no difference; filled markers are the intervals that exclude it."""
    rows = gains.assign(label=gains["model"] + "  " + gains["bits"])
    labels = list(dict.fromkeys(rows["label"]))
    contrasts = list(dict.fromkeys(rows["contrast"]))
    fig, ax = new_figure(ax, figsize=(BOOK_WIDTH, 0.9 + 0.45 * len(labels) * max(1, len(contrasts)) ** 0.5))
    step = 0.8 / max(1, len(contrasts))
    for k, contrast in enumerate(contrasts):
        part = rows[rows["contrast"] == contrast]
        y = np.array([labels.index(v) for v in part["label"]]) + (k - (len(contrasts) - 1) / 2) * step
        color = method_color(contrast.split(" - ")[1] if contrast.startswith("sardfq") else contrast.split(" - ")[0])
        draw_intervals(ax, y, part, color=color, label=contrast, horizontal=True)
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
            draw_intervals(ax, part[prop].to_numpy(float), part, color=palette[bits], label=bits, horizontal=False)
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
    for ax, prop in zip(axes.flat, properties):  # names last, where the laid-out figure leaves them clear
        tops = [points.loc[points["difference"].idxmax()] for _, points in rows.groupby("model", sort=False)]
        place_labels(ax, [(float(t[prop]), float(t["difference"])) for t in tops],
                     [(labels or {}).get(t["model"], t["model"]) for t in tops])
    return fig


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
    fig, ax = new_figure(None, figsize=(BOOK_WIDTH, 0.9 + 0.32 * len(labels) * max(1, len(groups)) ** 0.5))
    step = 0.7 / max(1, len(groups))
    palette = ["#0173b2", "#d55e00", "#029e73", "#cc78bc", "#ca9161", "#949494"]
    for k, name in enumerate(groups):
        part = rows if name is None else rows[rows[group] == name]
        y = np.array([labels.index(v) for v in part[label]], float) + (k - (len(groups) - 1) / 2) * step
        color = (colors or {}).get(name, palette[k % len(palette)])
        draw_intervals(ax, y, pd.DataFrame(part), color=color, label=str(name) if name is not None else "", horizontal=True)
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


def _drawn_points(ax, per_segment: int = 12):
    """Display positions of what `ax` shows: its data markers and points along its error bars and other
    line collections (an inset must not hide an interval any more than a marker)."""
    points = [data_points(ax)]
    for coll in ax.collections:
        if type(coll).__name__ == "LineCollection":
            for seg in coll.get_segments():
                seg = np.asarray(seg, float)
                if len(seg) >= 2:
                    t = np.linspace(0.0, 1.0, per_segment)[:, None]
                    line = seg[0] + t * (seg[-1] - seg[0])
                    points.append(coll.get_transform().transform(line))
    return np.concatenate([p for p in points if len(p)]) if any(len(p) for p in points) else np.empty((0, 2))


def _quiet_corner(ax, points, size=(0.32, 0.34)):
    """The axes-fraction rectangle (x0, y0, w, h) in a corner of `ax` that covers the fewest of the
    display `points` (ties: lower right first, where a rising fit line is farthest), leaving room
    inside the axes for the inset's own tick labels (left, below) and title (above)."""
    w, h = size
    left, right, low, high = 0.08, 0.98 - w, 0.09, 0.92 - h
    corners = [(right, low), (right, high), (left, high), (left, low)]
    to_axes = ax.transAxes.inverted()
    inside = to_axes.transform(points) if len(points) else np.empty((0, 2))
    margin = 0.02  # the tick labels and title around the inset count as covering too
    return min(corners, key=lambda c: sum(c[0] - margin <= x <= c[0] + w and c[1] - margin <= y <= c[1] + h + margin
                                          for x, y in inside)) + (w, h)


def plot_gain_vs_headroom(cells, *, fit: tuple[float, float] | None = None, group: str = "group",
                          labels: Mapping[str, str] | None = None, title: str | None = None,
                          label_from: float = 4.0, zoom: str | None = None):
    """SARDFQ - PSAQ-ViT against real - PSAQ-ViT, every cell with both 95% CIs (rows with
    headroom, headroom_low, headroom_high, gain, gain_low, gain_high, model, setting and `group`),
    one colour per group, the line a hypothesis fitted before (`fit`: intercept, slope) dashed, and
    the line where SARDFQ would close the whole headroom (gain = headroom) dotted. Cells with at
    least `label_from` points of headroom are named, each where its name covers no marker; the group
    `zoom` (default: the first), which piles up near the origin, is drawn again, enlarged, in an
    inset in the quietest corner."""
    fig, ax = new_figure(None, figsize=(BOOK_WIDTH, 4.4))
    palette = ["#949494", "#0173b2", "#d55e00", "#029e73"]
    groups = list(dict.fromkeys(cells[group]))
    colour = {name: palette[k % 4] for k, name in enumerate(groups)}

    def draw(target, part, name, **kwargs):
        x, y = part["headroom"].to_numpy(float), part["gain"].to_numpy(float)
        target.errorbar(x, y, xerr=[x - part["headroom_low"], part["headroom_high"] - x],
                        yerr=[y - part["gain_low"], part["gain_high"] - y], fmt="o", color=colour[name],
                        ecolor=colour[name], elinewidth=0.8, capsize=2, markersize=5, **kwargs)

    for name, part in cells.groupby(group, sort=False):
        draw(ax, part, name, label=str(name))
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
    avoid = []
    zoom = groups[0] if zoom is None and groups else zoom
    near = cells[cells[group] == zoom] if zoom is not None else cells.iloc[:0]
    if len(near) > 1:
        fig.canvas.draw()
        inset = ax.inset_axes(_quiet_corner(ax, _drawn_points(ax)))
        for name, part in cells.groupby(group, sort=False):
            draw(inset, part, name)
        pad_x = 0.1 * (near["headroom_high"].max() - near["headroom_low"].min()) + 0.1
        pad_y = 0.1 * (near["gain_high"].max() - near["gain_low"].min()) + 0.1
        inset.set_xlim(near["headroom_low"].min() - pad_x, near["headroom_high"].max() + pad_x)
        inset.set_ylim(near["gain_low"].min() - pad_y, near["gain_high"].max() + pad_y)
        inset.axhline(0, color="black", linewidth=0.6)
        inset.axvline(0, color="black", linewidth=0.4, linestyle=":")
        inset.tick_params(labelsize=FONT - 1)
        inset.set_title(f"{zoom}, enlarged", fontsize=FONT - 1, pad=2)
        ax.indicate_inset_zoom(inset, edgecolor="0.5")
        fig.canvas.draw()
        avoid.append(inset.get_tightbbox(fig.canvas.get_renderer()))
    named = cells[cells["headroom"] >= label_from]
    place_labels(ax, list(zip(named["headroom"].astype(float), named["gain"].astype(float))),
                 [f"{(labels or {}).get(r.model, r.model)} {r.setting}" for r in named.itertuples()],
                 fontsize=FONT - 1, avoid=avoid)
    return fig
