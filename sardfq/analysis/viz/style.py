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


_NOT_DATA_MARKERS = {None, "", "None", " ", "none", "_", "|"}  # error-bar caps are not data


def data_points(ax):
    """The display positions (pixels) of the data markers drawn on `ax`: scatter points and the
    markers of lines (error-bar caps excluded). Call after the figure is drawn."""
    import numpy as np

    points = []
    for coll in ax.collections:
        offsets = np.asarray(coll.get_offsets())
        if offsets.ndim == 2 and len(offsets) and coll.get_offset_transform() is not None \
                and type(coll).__name__ == "PathCollection":
            points.append(coll.get_offset_transform().transform(offsets))
    for line in ax.lines:
        if line.get_marker() not in _NOT_DATA_MARKERS and line.get_visible():
            xy = np.column_stack(line.get_data()).astype(float)
            if len(xy):
                points.append(line.get_transform().transform(xy))
    return np.concatenate(points) if points else np.empty((0, 2))


def _boxes(fig, renderer):
    """(name, display bbox, axes it belongs to or None) of every text a reader must read in `fig`
    (annotations and other axes texts, legends) and of every inset axes."""
    boxes = []
    for ax in fig.axes:
        boxes += [(f"text {t.get_text()!r}", t.get_window_extent(renderer), ax) for t in ax.texts
                  if t.get_visible() and t.get_text()]
        if ax.get_legend() is not None:
            boxes.append(("legend", ax.get_legend().get_window_extent(renderer), ax))
        boxes += [("inset", child.get_window_extent(renderer), child) for child in ax.child_axes]
    boxes += [("figure legend", legend.get_window_extent(renderer), None) for legend in fig.legends]
    return boxes


def _inside(inner, outer) -> bool:
    return outer.x0 <= inner.x0 and inner.x1 <= outer.x1 and outer.y0 <= inner.y0 and inner.y1 <= outer.y1


def _covers(box, point) -> bool:
    return box.x0 <= point[0] <= box.x1 and box.y0 <= point[1] <= box.y1


def text_overlaps(fig) -> list[str]:
    """What a reader could not read in `fig`: a text or legend box (or an inset) overlapping another
    one, or lying over a data marker (an inset's own markers lie in it by design). Empty when every
    label sits clear. Tick labels and titles are laid out by matplotlib and not checked."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = _boxes(fig, renderer)
    problems = []
    for i, (name, box, owner) in enumerate(boxes):
        for other, other_box, other_owner in boxes[i + 1:]:
            inset_text = {name, other} & {"inset"} and (owner is other_owner)
            if box.overlaps(other_box) and not inset_text:
                problems.append(f"{name} overlaps {other}")
    for ax in fig.axes:
        points = data_points(ax)
        for name, box, owner in boxes:
            if name == "inset" and owner is ax:
                continue
            hidden = sum(_covers(box, p) for p in points)
            if hidden:
                problems.append(f"{name} lies over {hidden} data marker(s)")
    return problems


OFFSETS = ((5, 4, "left", "bottom"), (5, -4, "left", "top"), (-5, 4, "right", "bottom"), (-5, -4, "right", "top"),
           (8, 12, "left", "bottom"), (8, -12, "left", "top"), (-8, 12, "right", "bottom"), (-8, -12, "right", "top"),
           (14, 0, "left", "center"), (-14, 0, "right", "center"), (10, 22, "left", "bottom"),
           (10, -22, "left", "top"), (-10, 22, "right", "bottom"), (-10, -22, "right", "top"),
           (24, 8, "left", "bottom"), (24, -8, "left", "top"), (-24, 8, "right", "bottom"), (-24, -8, "right", "top"))


def place_labels(ax, anchors, texts, *, fontsize=FONT, avoid=(), offsets=OFFSETS):
    """Annotate each anchor (x, y in data) with its text where the text's box covers no data marker
    of the figure, no label placed before, nothing in `avoid` (display bboxes) and stays inside the
    axes, trying `offsets` (points from the anchor, then alignment) in turn; where no place is clear,
    the least crowded one, with a thin line to its anchor. Returns the annotations."""
    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    points = [p for a in fig.axes for p in data_points(a)]
    frame = ax.get_window_extent(renderer)
    taken = list(avoid)
    placed = []
    for (x, y), text in zip(anchors, texts):
        best = None
        for dx, dy, ha, va in offsets:
            ann = ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points", ha=ha, va=va,
                              fontsize=fontsize)
            ann.set_in_layout(False)  # labels never move the axes: the places measured stay true
            box = ann.get_window_extent(renderer)
            conflicts = (sum(_covers(box, p) for p in points) + sum(box.overlaps(t) for t in taken)
                         + 10 * (not _inside(box, frame)))
            if best is None or conflicts < best[0]:
                if best is not None:
                    best[1].remove()
                best = (conflicts, ann, box, (dx, dy, ha, va))
            else:
                ann.remove()
            if conflicts == 0:
                break
        conflicts, ann, box, (dx, dy, ha, va) = best
        if conflicts:  # tie the label to its point so the reader can tell which it names
            ann.remove()
            ann = ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points", ha=ha, va=va,
                              fontsize=fontsize, arrowprops={"arrowstyle": "-", "color": "0.4", "linewidth": 0.6})
            ann.set_in_layout(False)
        taken.append(box)
        placed.append(ann)
    return placed
