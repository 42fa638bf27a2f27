"""The book's figure standard, shared by every figure: one colour (and marker) per calibration
source everywhere (`method_color`, `source_style`), the sizes (`BOOK_WIDTH` inches at most, no text
under `FONT` points), the legend under the data (`legend_below`), and the pieces several figures
draw alike (a new figure or the axis given, a grid of image cells, differences with their 95%
intervals)."""
from __future__ import annotations

import math

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
ABLATION_COLORS = ["#56b4e9", "#d55e00", "#ca9161", "#fbafe4", "#ece133", "#8c564b", "#17becf"]


def method_color(name: str) -> str:
    """The colour of a calibration source (`noise`, `psaq`, `sardfq`, `sardfq[apa+sl]`, ...)."""
    if name in METHOD_COLORS:
        return METHOD_COLORS[name]
    key = name.lower()
    if key.startswith("sardfq[") or key.startswith("sardfq-"):
        variants = ["sardfq[none]", "sardfq[apa]", "sardfq[msr]", "sardfq[sl]", "sardfq[apa+msr]",
                    "sardfq[apa+sl]", "sardfq[msr+sl]"]
        if key in variants:
            return ABLATION_COLORS[variants.index(key)]
    digest = sum(map(ord, name))
    return ABLATION_COLORS[digest % len(ABLATION_COLORS)]


SOURCE_MARKERS = {"noise": "s", "psaq": "^", "sardfq": "o", "real": "D", "smi": "v"}


def source_style(name: str) -> tuple[str, str]:
    """(colour, marker) of a calibration source: its `method_color` and a marker of its own, so
    sources stay apart in grey scale too; a reference set ("real reference", ...) is black crosses,
    never a colour a source has."""
    if name.endswith("reference"):
        return "black", "x"
    return method_color(name), SOURCE_MARKERS.get(name.split("[")[0], "o")


def new_figure(ax=None, figsize=(5, 3.5)):
    """(figure, axis): the axis given and its figure, else a new figure of `figsize` inches."""
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=figsize, layout="constrained")
        return fig, ax
    return ax.figure, ax


def image_grid(n: int, ncols: int, *, size: float = 1.2, figsize=None):
    """A figure of `n` image cells, `ncols` a row, each `size` inches at most (the row within
    `BOOK_WIDTH`), axes off; returns (figure, the cells' axes)."""
    import matplotlib.pyplot as plt

    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    size = min(size, BOOK_WIDTH / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=figsize or (size * ncols, (size + 0.15) * nrows + 0.3),
                             squeeze=False, layout="constrained")
    for ax in axes.flat:
        ax.set_axis_off()
    return fig, axes.flat


def bare_axes(axes) -> None:
    """No ticks and no frame on any of `axes` (a grid of images: empty cells stay blank)."""
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)


def draw_intervals(ax, position, rows, *, color: str, label: str, horizontal: bool) -> None:
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


def legend_below(ax) -> None:
    """The axis's legend (every labelled artist, those a notebook adds included) under its x label,
    outside the data (constrained layout makes room), side by side where the axis is wide enough."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        wide = ax.get_position().width * ax.figure.get_figwidth() > 4.5  # inches: room for entries side by side
        ax.legend(handles, labels, fontsize=FONT, loc="upper center", bbox_to_anchor=(0.5, -0.2),
                  ncols=min(len(labels), 3) if wide else 1, frameon=False)
