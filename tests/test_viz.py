"""Plot helpers return figures, take an axis, keep one colour per method; paper anchors as data."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import sardfq  # noqa: E402
from sardfq import viz  # noqa: E402
from sardfq.analysis import paper_anchors  # noqa: E402


@pytest.fixture(scope="module")
def info():
    return sardfq.load_model("vit_tiny_cifar10")[1]


def test_method_colours_are_fixed_and_distinct():
    names = ["fp", "real", "noise", "psaq", "sardfq", "sardfq[apa]", "sardfq[msr+sl]", "sardfq[none]"]
    colours = [viz.method_color(n) for n in names]
    assert len(set(colours)) == len(colours)
    assert viz.method_color("sardfq") == viz.METHOD_COLORS["sardfq"]


def test_image_and_attention_figures(info):
    g = torch.Generator().manual_seed(0)
    images = torch.randn(6, 3, 32, 32, generator=g)
    fig = viz.show_images(images, info, labels=[0, 1, 2, 3, 4, 5], ncols=3)
    assert fig.axes[0].get_title() == "airplane"
    wide = viz.show_images(torch.randn(16, 3, 32, 32), info, labels=list(range(10)) * 2, ncols=16)
    assert wide.get_figwidth() <= viz.BOOK_WIDTH  # never shrunk below its font size in the book
    assert all(ax.title.get_fontsize() >= viz.FONT for ax in wide.axes)
    pixels = viz.to_display(images, info)
    assert pixels.shape == (6, 32, 32, 3) and pixels.min() >= 0 and pixels.max() <= 1
    maps = torch.rand(2, 3, 64)
    fig = viz.show_attention(maps, (8, 8), row_titles=["a", "b"], col_titles=["h0", "h1", "h2"])
    assert len(fig.axes) == 6 + 2  # the maps, and one colour bar per row
    for row, maps_row in enumerate(maps):  # each row on one scale from 0 to its largest weight
        assert fig.axes[3 * row].images[0].get_clim() == pytest.approx((0.0, float(maps_row.max())))
    fig = viz.show_images_with_attention(images[:2], torch.rand(2, 64), info, (8, 8))
    assert len(fig.axes) == 4 + 1  # and a colour bar
    regions = viz.show_regions(images[:2], info, torch.tensor([0, 0, 1]), torch.tensor([0, 3, 2]))
    assert len(regions.axes[0].patches) == 2
    plt.close("all")


def test_plots_draw_on_a_given_axis(info):
    fig, ax = plt.subplots()
    history = [{"chunk": 0, "iteration": i, "total": 1.0 / i, "apa": 0.5 / i} for i in range(1, 5)]
    assert viz.plot_loss_history(history, ax=ax) is fig
    assert [line.get_label() for line in ax.lines] == ["total", "apa"]  # a line per term, its values
    assert list(ax.lines[1].get_xdata()) == [1, 2, 3, 4] and list(ax.lines[1].get_ydata()) == [0.5 / i for i in range(1, 5)]
    runs = viz.plot_loss_history({"sardfq": history, "psaq": history}, terms=["total"]).axes[0]
    assert [line.get_label() for line in runs.lines] == ["sardfq total", "psaq total"]  # a line per run
    assert [line.get_color() for line in runs.lines] == [viz.METHOD_COLORS["sardfq"], viz.METHOD_COLORS["psaq"]]
    frame = pd.DataFrame({"variant": ["noise", "sardfq", "sardfq"], "q_top1": [10.0, 50.0, 52.0]})
    fig = viz.plot_accuracy(frame, fp=70.0)
    colours = {tuple(p.get_facecolor()[:3]) for p in fig.axes[0].patches}
    assert matplotlib.colors.to_rgb(viz.METHOD_COLORS["sardfq"]) in colours
    fig, ax = plt.subplots()
    targets = torch.stack([torch.eye(10)[3], torch.full((10,), 0.1)])  # one-hot, and uniform
    assert viz.plot_soft_targets(targets, info.class_names, labels=["one-hot", "soft"], ax=ax) is fig
    heights = [[bar.get_height() for bar in bars] for bars in ax.containers]  # a bar per target and class
    assert np.allclose(heights, targets.numpy())
    fig, ax = plt.subplots()
    assert viz.plot_versus_paper({"sardfq": 50.0}, {"noise": 1.0, "sardfq": 60.0}, ax=ax) is fig
    bars = {(bar.get_height(), matplotlib.colors.to_hex(bar.get_facecolor())) for bars in ax.containers
            for bar in bars}
    # the methods both sides report, ours beside the paper's, each in its source's colour
    assert bars == {(50.0, viz.METHOD_COLORS["sardfq"]), (60.0, viz.METHOD_COLORS["paper"])}
    plt.close("all")


def test_accuracy_bars_have_error_bars_over_seeds_and_heatmaps_place_each_variant():
    frame = pd.DataFrame({"variant": ["noise", "noise", "sardfq", "sardfq"], "q_top1": [10.0, 14.0, 50.0, 50.0]})
    ax = viz.plot_accuracy(frame).axes[0]
    # one error bar per source, spanning mean ± sd: noise 12 ± 2.83
    spans = sorted((np.nanmin(line.get_ydata()), np.nanmax(line.get_ydata())) for line in ax.lines)
    assert spans == [pytest.approx((12 - 8 ** 0.5, 12 + 8 ** 0.5)), pytest.approx((50, 50))]
    fig = viz.plot_ablation_heatmaps({"ours": {"sardfq[none]": 1.0, "sardfq[apa+sl]": 2.0, "sardfq": 3.0}})
    cells = fig.axes[0].collections[0].get_array().reshape(2, 4)
    assert cells[0, 0] == 1.0 and cells[1, 2] == 2.0 and cells[1, 3] == 3.0
    assert np.ma.is_masked(cells[0, 1])  # not run: left blank
    assert len(fig.axes) == 2 and fig.axes[1].get_ylabel() == "top-1 (%)"  # the colour bar
    plt.close("all")


def test_paper_anchor_tables_lay_out_the_paper_numbers():
    table = paper_anchors.w4a4_table()
    # a row per model, labelled with its short name, the methods in the paper's column order
    assert list(table.index) == list(paper_anchors.W4A4)
    assert list(table.columns) == ["model", *paper_anchors.W4A4_COLUMNS]
    for model, row in paper_anchors.W4A4.items():
        assert tuple(table.loc[model, list(paper_anchors.W4A4_COLUMNS)]) == row
        assert table.loc[model, "model"] == paper_anchors.MODEL_LABELS[model]
    # every model a chapter names has a short label (06_paper maps the W6A6 rows through them)
    named = {*paper_anchors.W6A6, *paper_anchors.REAL_W4A4, paper_anchors.ABLATION_MODEL}
    assert named <= set(paper_anchors.MODEL_LABELS)
    # the ablation: its eight variants are the eight on/off combinations of the three switches,
    # each read off the variant's name
    ablation = paper_anchors.ablation_table().set_index("variant")
    switches = ablation[["apa", "msr", "sl"]]
    assert len(switches) == len({tuple(row) for row in switches.values}) == 8
    assert not switches.loc["sardfq[none]"].any() and switches.loc["sardfq"].all()
    assert switches.loc["sardfq[apa+sl]"].tolist() == [True, False, True]
    assert switches.loc["sardfq[msr]"].tolist() == [False, True, False]
    assert ablation["top1"].to_dict() == paper_anchors.ABLATION


def test_reconstruction_plot_pairs_before_and_after_per_block():
    blocks = [{"block": "blocks.0", "mse_before": 0.4, "mse_after": 0.3},
              {"block": "blocks.1", "mse_before": 0.5, "mse_after": 0.45}]
    ax = viz.plot_reconstruction(blocks).axes[0]
    heights = [p.get_height() for p in ax.patches]
    assert heights == pytest.approx([0.4, 0.5, 0.3, 0.45]) and ax.get_ylim()[0] == 0
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "1"]
    plt.close("all")


def test_weight_quantization_plot():
    weight = torch.randn(4, 32)
    levels = (weight * 2).round() / 2
    fig = viz.plot_weight_quantization(weight, levels, channel=1, title="w")
    assert len(fig.axes[0].lines) == len(torch.unique(levels[1]))
    plt.close("all")


def test_zoo_gains_plot_has_a_row_per_teacher_and_bits_and_an_interval_per_contrast():
    import pandas as pd

    from sardfq import viz

    gains = pd.DataFrame([
        {"model": m, "bits": b, "contrast": c, "difference": d, "ci_low": d - 1, "ci_high": d + 1,
         "excludes_zero": abs(d) > 1}
        for m in ("a", "b") for b in ("w3a3", "w4a4")
        for c, d in (("sardfq - psaq", -2.0), ("sardfq - noise", 0.5))])
    fig = viz.plot_zoo_gains(gains)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a  w3a3", "a  w4a4", "b  w3a3", "b  w4a4"]
    segments = [seg for coll in ax.collections if hasattr(coll, "get_segments") for seg in coll.get_segments()]
    spans = sorted({(round(s[0][0], 3), round(s[1][0], 3)) for s in segments if len(s) == 2 and s[0][1] == s[1][1]})
    assert spans == [(-3.0, -1.0), (-0.5, 1.5)]  # each contrast's interval, at every row
    assert {t.get_text() for t in ax.get_legend().get_texts()} == {"sardfq - psaq", "sardfq - noise"}


def test_gain_vs_property_has_a_panel_per_property_and_a_point_per_teacher_and_bits():
    import pandas as pd

    from sardfq import viz

    table = pd.DataFrame([
        {"model": m, "bits": b, "contrast": "sardfq - psaq", "difference": d, "ci_low": d - 1, "ci_high": d + 1,
         "excludes_zero": abs(d) > 1, "depth": depth, "entropy_gap": gap}
        for m, depth, gap, d in (("tiny", 6, 0.58, -3.0), ("shallow", 3, 0.16, 1.5))
        for b in ("w3a3", "w4a4")])
    fig = viz.plot_gain_vs_property(table, ["depth", "entropy_gap"], labels={"entropy_gap": "entropy gap"})
    assert len(fig.axes) == 2 and fig.axes[1].get_xlabel() == "entropy gap"
    names = [t.get_text() for t in fig.axes[0].texts]
    assert sorted(names) == ["shallow", "tiny"]  # one name per teacher
    points = sorted(tuple(map(float, o)) for coll in fig.axes[0].collections if hasattr(coll, "get_offsets")
                    for o in coll.get_offsets() if len(coll.get_offsets()))
    assert (3.0, 1.5) in points and (6.0, -3.0) in points
    plt.close("all")


def _legend_clear_of_axes(fig) -> bool:
    fig.canvas.draw()
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend()] + list(fig.legends)
    return bool(legends) and not any(legend.get_window_extent().overlaps(ax.get_window_extent())
                                     for legend in legends for ax in fig.axes)


def test_legends_sit_outside_the_data_of_the_chapters_plots():
    history = [{"iteration": i, "ce": 1.0 / i, "apa": 0.1 / i} for i in range(1, 20)]
    figures = [viz.plot_loss_history({"sardfq": history}, terms=["ce", "apa"]),
               viz.plot_reconstruction([{"block": "blocks.0", "mse_before": 0.4, "mse_after": 0.3}]),
               viz.plot_weight_quantization(torch.randn(2, 16), torch.randn(2, 16).round(), channel=0),
               viz.plot_soft_targets(torch.softmax(torch.randn(2, 4), 1), list("abcd"), labels=["x", "y"])]
    assert all(_legend_clear_of_axes(fig) for fig in figures)
    fig, ax = plt.subplots(figsize=(6, 3.5), layout="constrained")  # a line a notebook adds joins the legend
    ax.plot([0, 1], [0, 1], label="curve")
    ax.axhline(0.5, label="floor")
    viz.legend_below(ax)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["curve", "floor"] and _legend_clear_of_axes(fig)
    plt.close("all")


def test_intervals_headroom_map_and_gain_vs_headroom_figures():
    import matplotlib

    matplotlib.use("Agg")
    import pandas as pd

    rows = pd.DataFrame([{"label": l, "group": g, "difference": d, "ci_low": d - 1, "ci_high": d + 1,
                          "excludes_zero": abs(d) > 1} for l, g, d in (("a", "x", 2.0), ("b", "x", 0.5), ("a", "y", -3.0))])
    fig = viz.plot_intervals(rows, label="label", group="group", title="t")
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["a", "b"]
    assert fig.get_size_inches()[0] <= viz.BOOK_WIDTH
    table = pd.DataFrame([{"model": m, "setting": s, "recon_iters": r, "headroom": h}
                          for m, s, r, h in (("t1", "w4a4", 0, 1.0), ("t1", "w4a2", 0, 9.0), ("t2", "w4a4", 0, -2.0),
                                             ("t1", "w4a4", 20, 0.5), ("t2", "w4a2", 20, 5.0))])
    fig = viz.plot_headroom_map(table, settings=["w4a4", "w4a2"])
    maps = [ax for ax in fig.axes if ax.get_title()]
    assert len(maps) == 2 and maps[0].collections[0].get_clim() == maps[1].collections[0].get_clim()  # one scale
    points = pd.DataFrame([{"model": "t1", "setting": "w4a2", "group": "cells", "headroom": 9.0, "headroom_low": 8.0,
                            "headroom_high": 10.0, "gain": -5.0, "gain_low": -6.0, "gain_high": -4.0}])
    fig = viz.plot_gain_vs_headroom(points, fit=(-1.65, 0.74))
    assert any("fitted" in t.get_text() for t in fig.legends[0].get_texts()) if fig.legends else \
        any("fitted" in t.get_text() for t in fig.axes[0].get_legend().get_texts())


def test_speedup_plot_has_a_bar_per_row_from_zero():
    rows = [{"runtime": "pytorch eager", "bits": "fp32", "threads": 1, "throughput_speedup": 1.0},
            {"runtime": "onnxruntime", "bits": "w8a8", "threads": 1, "throughput_speedup": 2.5}]
    ax = viz.plot_speedups(rows, title="t").axes[0]
    assert [p.get_width() for p in ax.patches] == pytest.approx([1.0, 2.5]) and ax.get_xlim()[0] == 0
    ticks = {t.get_text(): t.get_position()[1] for t in ax.get_yticklabels()}
    assert ticks["pytorch eager, fp32"] > ticks["onnxruntime, w8a8"]  # the first row on top
    plt.close("all")


def test_attention_overlays_keep_the_image_bright_where_attention_is_low(info):
    images = torch.zeros(2, 3, 32, 32)  # the dataset's mean colour everywhere
    maps = torch.zeros(2, 64)
    maps[:, 0] = 1.0  # all attention on the first patch
    for fig in (viz.show_images_with_attention(images, maps, info, (8, 8)),
                viz.show_attention_rows({"set": (images, maps)}, info, (8, 8))):
        ax = next(a for a in fig.axes if len(a.images) == 2)
        overlay = np.asarray(ax.images[1].get_array())
        assert overlay[-1, -1, 3] == 0  # no attention: the overlay is transparent, the image as it is
        assert overlay[0, 0, 3] > 0.5  # the heavy patch is coloured
    plt.close("all")


def _cells(group, rows):
    return pd.DataFrame([{"model": m, "setting": s, "group": group, "headroom": h, "headroom_low": h - dh,
                          "headroom_high": h + dh, "gain": g, "gain_low": g - dg, "gain_high": g + dg}
                         for m, s, h, dh, g, dg in rows])


def test_the_gain_vs_headroom_figure_enlarges_the_pile_and_names_cells_clear_of_markers():
    zoo = _cells("the zoo (10 cells)", [(f"t{i}", "w3a3", 0.2 * i, 0.7, -0.3 * (i % 4), 0.6) for i in range(10)])
    new = _cells("the headroom cells", [("tiny", "w4a4-attn2", 11.8, 8.0, 8.2, 9.0), ("shallow", "w4a4-attn2", 11.9, 6.0, 3.9, 5.0),
                                        ("tiny", "w4a2", 5.6, 4.5, -9.8, 3.5), ("tiny", "w3a2", 9.1, 3.0, -10.1, 3.8),
                                        ("shallow", "w2a4", 6.1, 1.5, -0.6, 1.8), ("long", "w2a4", 3.1, 2.0, -1.1, 1.9)])
    fig = viz.plot_gain_vs_headroom(pd.concat([zoo, new], ignore_index=True), fit=(-1.65, 0.74))
    ax = fig.axes[0]
    assert len(ax.child_axes) == 1  # the zoo's pile, enlarged
    inset = ax.child_axes[0]
    assert inset.get_xlim()[1] < 3 and inset.get_ylim()[0] > -3
    named = sorted(f"{m} {s}" for m, s, h in zip(new["model"], new["setting"], new["headroom"]) if h >= 4)
    assert sorted(t.get_text() for t in ax.texts) == named  # the cells that leave room, no zoo cell
    assert viz.text_overlaps(fig) == []
    plt.close("all")


def test_teacher_names_do_not_pile_up_where_teachers_share_a_property_value():
    table = pd.DataFrame([
        {"model": m, "bits": b, "contrast": "sardfq - psaq", "difference": d + (0.3 if b == "w4a4" else 0),
         "ci_low": d - 0.6, "ci_high": d + 0.9, "excludes_zero": d < -0.9, "grid": grid, "depth": depth}
        for m, grid, depth, d in (("tiny", 8, 6, -3.1), ("deep", 8, 10, -1.4), ("long", 8, 4, 0.0),
                                  ("shallow", 8, 3, 0.0), ("grid4", 4, 6, -0.6))
        for b in ("w3a3", "w4a4")])
    fig = viz.plot_gain_vs_property(table, ["grid", "depth"])
    assert sorted(t.get_text() for t in fig.axes[0].texts) == ["deep", "grid4", "long", "shallow", "tiny"]
    overlaps = [p for p in viz.text_overlaps(fig) if "overlaps" in p]
    assert overlaps == []  # no name on another name
    plt.close("all")


def test_text_overlaps_flags_a_label_on_a_marker_and_a_legend_on_a_label():
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([0, 1], [0, 1], "o", label="points")
    ax.annotate("on the point", (0, 0), ha="center", va="center")
    assert any("data marker" in p for p in viz.text_overlaps(fig))
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([0, 1], [0, 1], "o", label="points")
    ax.legend(loc="upper left")
    ax.text(0.0, 0.95, "under the legend", transform=ax.transAxes, va="top")
    assert any("overlaps" in p for p in viz.text_overlaps(fig))
    plt.close("all")
