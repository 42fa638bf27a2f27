"""Figures for the notebooks and the book (matplotlib + seaborn), as `sardfq.viz`.

Every helper takes `ax=None` (or a figure size) and returns the matplotlib Figure; images are
denormalized with the model's own mean/std (`ModelInfo`); each calibration source keeps one colour
everywhere (`method_color`).

The book's figure standard, which every helper follows: at most `BOOK_WIDTH` inches wide (the
book's text column, so a figure is never shrunk on a desktop), no text under `FONT` points, a
colour bar on every heat map, a legend wherever colour or line style carries meaning, and value
axes that start at zero for bars (differences too small to see there are for a table, not a bar).

The rooms, by what they draw (every name is re-exported here, so `viz.NAME` reaches all of them):

- `style`: the standard itself (colours, markers, sizes, the legend below, labels placed clear of
  the data and `text_overlaps`, the check that they are) and the pieces the figures share;
- `images`: pictures: model inputs, attention maps, MSR regions, what a sparse inversion stopped;
- `runs`: line and bar plots of runs: losses, kept tokens, soft targets, accuracy, weights,
  reconstruction, speed-ups;
- `inspection`: the calibration-set study (chapter 07): projections, metrics, correlations, claims;
- `results`: the results pages (chapter 06, the zoo): intervals, the headroom, the ablation, the paper.
"""
from .images import (dim_stopped, show_attention, show_attention_rows, show_image_rows, show_images,
                     show_images_with_attention, show_regions, to_display)
from .inspection import plot_claim_effects, plot_correlations, plot_feature_projection, plot_metric_scatter
from .results import (plot_ablation_heatmaps, plot_gain_vs_headroom, plot_gain_vs_property, plot_headroom_map,
                      plot_intervals, plot_versus_paper, plot_zoo_gains)
from .runs import (plot_accuracy, plot_kept_tokens, plot_loss_history, plot_reconstruction, plot_soft_targets,
                   plot_speedups, plot_weight_quantization)
from .style import (ABLATION_COLORS, BOOK_WIDTH, FONT, METHOD_COLORS, SOURCE_MARKERS, TITLE_FONT, bare_axes,
                    data_points, draw_intervals, image_grid, legend_below, method_color, new_figure, place_labels,
                    source_style, text_overlaps)

__all__ = [
    "ABLATION_COLORS", "BOOK_WIDTH", "FONT", "METHOD_COLORS", "SOURCE_MARKERS", "TITLE_FONT", "bare_axes",
    "data_points", "dim_stopped", "draw_intervals", "image_grid", "legend_below", "method_color", "new_figure",
    "plot_ablation_heatmaps", "plot_accuracy", "plot_claim_effects", "plot_correlations", "plot_feature_projection",
    "plot_gain_vs_headroom", "plot_gain_vs_property", "plot_headroom_map", "plot_intervals", "plot_kept_tokens",
    "plot_loss_history", "plot_metric_scatter", "plot_reconstruction", "plot_soft_targets", "plot_speedups",
    "place_labels", "plot_versus_paper", "plot_weight_quantization", "plot_zoo_gains", "show_attention", "show_attention_rows",
    "show_image_rows", "show_images", "show_images_with_attention", "show_regions", "source_style", "text_overlaps",
    "to_display",
]
