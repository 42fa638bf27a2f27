"""The sentences the book binds to its outputs (sardfq.analysis.inspect_prose) and the figures of chapter
07: each sentence follows the numbers, direction included, and each legend sits outside the data
(the paired-difference statistics behind them: tests/test_stats.py)."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from sardfq import viz  # noqa: E402
from sardfq.analysis import inspect_prose  # noqa: E402
from sardfq.analysis.study import correlations, switch_effects, switches  # noqa: E402

VARIANTS = ("sardfq", "sardfq[none]", "sardfq[apa]", "sardfq[msr]", "sardfq[sl]", "sardfq[apa+msr]",
            "sardfq[apa+sl]", "sardfq[msr+sl]")
METRICS = [*inspect_prose.DISTORTION, *inspect_prose.CONTENT, "q_top1"]


def _ablation(effect: dict[str, float], seeds=(0, 1, 2)):
    """A frame of the eight switch combinations per seed; each metric = its APA effect when APA is
    on, give or take 0.01 by seed (+, -, 0): a metric without an effect moves up in one seed's pairs,
    down in another's and not at all in the third's."""
    rows = []
    for seed in seeds:
        for v in VARIANTS:
            on = switches(v)
            rows.append({"model": "t", "variant": v, "seed": seed, "q_top1": 70.0, **{
                m: ("apa" in on) * (effect.get(m, 0.0) + 0.01 * (1, -1, 0)[seed % 3]) for m in METRICS[:-1]}})
    return pd.DataFrame(rows)


def test_switch_effects_give_an_interval_and_a_sign_flip_p_over_the_pairs():
    frame = _ablation({"attention.entropy_w1": 0.4})
    row = switch_effects(frame, ["apa"], ["attention.entropy_w1"], n_boot=200).iloc[0]
    assert row["pairs"] == 12 and row["ci_low"] < row["diff"] < row["ci_high"]
    assert row["ci_low"] == pytest.approx(0.4, abs=0.011) and row["ci_high"] == pytest.approx(0.4, abs=0.011)
    assert row["p_value"] == pytest.approx(2 / 2 ** 12)  # every pair the same way: the smallest of 2^12


def test_verdicts_read_the_interval_against_the_sign_of_the_claim():
    # APA raises the distance to real attention entropy (claimed lower: against) and the cosine
    # similarity to real features (claimed higher: as claimed); the rest does not move
    frame = _ablation({"attention.entropy_w1": 0.4, "features.cosine_to_reference": 0.05})
    effects = switch_effects(frame, ["apa"], METRICS, n_boot=200)
    table = inspect_prose.verdicts(effects, "APA").set_index("metric")
    assert table.loc["attention.entropy_w1", "verdict"] == "against"
    assert table.loc["attention.entropy_w1", "against"] == 12
    assert table.loc["features.cosine_to_reference", "verdict"] == "as claimed"
    assert table.loc["features.frechet", "verdict"] == "no clear difference"
    assert list(table["asked"])[:len(inspect_prose.DISTORTION)] == [True] * len(inspect_prose.DISTORTION)  # asked claim first
    sentence = inspect_prose.claim_sentence(inspect_prose.verdicts(effects, "APA"), "APA", brief=True)
    assert "Against it: distance to real attention entropy" in sentence
    assert "With it: cosine similarity to real features" in sentence and "12 of 12 pairs" in sentence
    flipped = switch_effects(_ablation({"attention.entropy_w1": -0.4}), ["apa"], METRICS, n_boot=200)
    assert "Against it" not in inspect_prose.claim_sentence(inspect_prose.verdicts(flipped, "APA"), "APA")
    rows = inspect_prose.claim_effects({"APA": effects}, frame).set_index("metric")
    assert rows.loc["attention.entropy_w1", "difference"] < 0 < rows.loc["features.cosine_to_reference", "difference"]


def _study(real_flat: float):
    """Twelve sets: real ones accurate and, by `real_flat`, flat; noise worst."""
    rows = []
    for seed in range(3):
        for v, top1, flat, div in (("noise", 68.0, 0.0, 0.1), ("psaq", 70.0, 0.0, 0.6), ("sardfq", 69.5, 0.0, 0.5),
                                   ("real", 72.0, real_flat, 0.7)):
            rows.append({"model": "vit_tiny_cifar10", "variant": v, "seed": seed, "q_top1": top1 + 0.1 * seed,
                         "record_top1": top1, "runs": 1, "recreated": seed > 0,
                         "content.flat_share": flat + 0.001 * seed, "content.set_diversity": div + 0.01 * seed,
                         "features.frechet": 10 - top1 / 10 + 0.01 * seed})
    return pd.DataFrame(rows)


def test_the_finding_says_when_real_images_are_the_flattest_and_flatness_tracks_accuracy():
    frame = _study(real_flat=0.12)
    corr = {"all sets": correlations(frame, n_boot=200),
            "synthetic sets only": correlations(frame[frame["variant"] != "real"], n_boot=200)}
    effects = {"APA": switch_effects(_ablation({"attention.entropy_w1": 0.4}), ["apa"], METRICS, n_boot=200)}
    text = inspect_prose.finding(frame, corr, effects, bits="w4a4", zoo_models=["vit_tiny_cifar10", "a", "b"])
    assert text.startswith("One teacher, `vit_tiny_cifar10`, of the zoo's 3")
    assert "Real images have the most near-flat patches" in text and "against the paper's reading" in text
    assert "p = " in text or "p < " in text
    assert "`content.set_diversity`" in text  # the data-free metric that tracks top-1 among synthetic sets
    # when the real sets hold no flat patch at all, the sentence no longer says so
    level = _study(real_flat=0.0)
    level.loc[level["variant"] == "psaq", "content.flat_share"] = 0.5
    corr = {"all sets": correlations(level, n_boot=200),
            "synthetic sets only": correlations(level[level["variant"] != "real"], n_boot=200)}
    assert "Real images have" not in inspect_prose.flat_sentence(level, corr["all sets"], corr["synthetic sets only"])


def test_the_rerun_note_sets_this_studys_top1_beside_the_sweep_records():
    note = inspect_prose.rerun_note(_study(0.1), ["noise", "real"])
    assert note.startswith("8 of the 12 sets") and "noise 68.1 against 68.0" in note
    assert inspect_prose.rerun_note(_study(0.1).assign(recreated=False), ["noise"]).startswith("Every set")


class _Result:
    def __init__(self, top1, device):
        self.quantized, self.device, self.run_id = {"top1": top1, "n_images": 1000}, device, "r"


def test_rerun_of_says_same_or_by_how_many_images():
    assert inspect_prose.rerun_of(_Result(0.698, "a"), _Result(0.698, "b")).endswith("the same.")
    text = inspect_prose.rerun_of(_Result(0.698, "cpu (2 threads)"), _Result(0.696, "cpu (1 threads)"))
    assert "-0.2 points, 2 of 1000 test images" in text and "cpu (2 threads)" in text
    assert "None" in inspect_prose.rerun_of(None, _Result(0.7, "a"))
    same = _Result(0.698, "cpu (2 threads)")
    same.started = "2026-11-27T13:23:28+0000"
    text = inspect_prose.rerun_of(same, _Result(0.696, "cpu (2 threads)"))  # one machine: only the code can differ
    assert "made on 2026-11-27" in text and "thread count" not in text and "change to the code" in text


def _outside(fig, legend, axes) -> bool:
    fig.canvas.draw()
    box = legend.get_window_extent()
    return not any(box.overlaps(ax.get_window_extent()) for ax in axes)


def test_the_figures_of_chapter_07_keep_legends_outside_the_data_and_one_scale_per_comparison():
    frame = _study(0.12)
    corr = {"all sets": correlations(frame, n_boot=100),
            "synthetic sets only": correlations(frame[frame["variant"] != "real"], n_boot=100)}
    fig = viz.plot_correlations(corr)
    assert len(fig.axes) == 2 and fig.get_figwidth() <= viz.BOOK_WIDTH
    assert _outside(fig, fig.legends[0], fig.axes)
    effects = {"APA": switch_effects(_ablation({"attention.entropy_w1": 0.4}), ["apa"], METRICS, n_boot=100)}
    fig = viz.plot_claim_effects(inspect_prose.claim_effects(effects, _ablation({})))
    assert _outside(fig, fig.legends[0], fig.axes)
    g = torch.Generator().manual_seed(0)
    fig = viz.plot_feature_projection({"psaq": torch.randn(8, 4, generator=g), "real": torch.randn(8, 4, generator=g),
                                       "real reference": torch.randn(20, 4, generator=g)})
    assert _outside(fig, fig.axes[0].get_legend(), fig.axes)
    colours = [viz.source_style(n) for n in ("noise", "psaq", "sardfq", "real", "real reference")]
    assert len(set(colours)) == 5 and viz.source_style("real reference")[0] == "black"
    from sardfq import load_model

    info = load_model("vit_tiny_cifar10")[1]
    images = torch.randn(3, 3, 32, 32, generator=g)
    maps = {"a": (images, torch.rand(3, 64, generator=g)), "b": (images, 3 * torch.rand(3, 64, generator=g))}
    fig = viz.show_attention_rows(maps, info, (8, 8))
    limits = {ax.images[-1].get_clim() for ax in fig.axes if ax.images}
    assert len(limits) == 1  # every map on one colour scale
    fig = viz.show_image_rows({"a": images, "b": images[:2]}, info, captions={"a": ["x"] * 3, "b": ["y"] * 2})
    assert fig.axes[0].get_ylabel() == "a" and fig.axes[0].get_xlabel() == "x"
    plt.close("all")
