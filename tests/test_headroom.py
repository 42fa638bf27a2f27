"""The paper's regime: the headroom map, the cells it picks, the predictions and their scores, the
share of the headroom closed, the README block, and the attention-quantizer diagnostic."""
import json

import numpy as np
import pandas as pd
import pytest

import sardfq
from sardfq.analysis import headroom
from sardfq.evaluate import PerImage
from sardfq.io import write_json_atomic

N = 1000


def _record(model, method, seed, setting, correct, design=None, recon_iters=20):
    bits, _, attn = setting.partition("-attn")
    values = {"model": model, "synthesis.method": method, "seed": seed, "bits": bits, "recon.iters": recon_iters}
    if attn:
        values["quant.attn_bits"] = int(attn)
    values.update(design or {})
    config = sardfq.ExperimentConfig.from_dict(values)
    per_image = PerImage(correct=correct, labels_sha1="same", agree=correct, kl=np.zeros(len(correct), np.float32))
    return {"kind": "experiment", "run_id": config.run_id(), "config": config.to_dict(), "variant": config.variant,
            "bits": config.bits, "fp": {"top1": 0.8, "top5": 0.99},
            "quantized": {"top1": float(correct.mean()), "top5": 0.9, "agreement": float(correct.mean()),
                          "n_images": len(correct), "per_image": per_image.to_dict()},
            "calibration_path": None, "calibration": {}, "timings": {}}


def _correct(rate, seed):
    return np.random.default_rng(seed).random(N) < rate


def _write_cells(folder, rates, seeds=(0, 1, 2), tuned=None):
    """rates: {(model, setting): {method: top-1 rate}}; tuned: {(model, setting): rate} of SARDFQ a1 = 10."""
    for (model, setting), by_method in rates.items():
        for method, rate in by_method.items():
            for seed in seeds:
                r = _record(model, method, seed, setting, _correct(rate, hash((model, setting, method, seed)) % 2**32))
                write_json_atomic(folder / f"{r['run_id']}.json", r)
        for seed in seeds if tuned and (model, setting) in tuned else ():
            r = _record(model, "sardfq", seed, setting, _correct(tuned[(model, setting)], seed + 100),
                        design={"synthesis.apa_weight": 10.0})
            write_json_atomic(folder / f"{r['run_id']}.json", r)


def test_quant_config_labels_a_setting_by_its_attention_bits_too():
    assert sardfq.QuantConfig.from_name("w4a4").label == "w4a4"
    assert sardfq.QuantConfig.from_name("w4a4", attn_bits=2).label == "w4a4-attn2"
    assert sardfq.QuantConfig.from_name("w4a4", attn_bits=None).label == "w4a4-attnfp"


def test_the_map_reads_headroom_per_setting_and_picks_the_cells(tmp_path):
    _write_cells(tmp_path, {("t", "w4a4"): {"noise": 0.6, "real": 0.72, "psaq": 0.70},
                            ("t", "w4a4-attn2"): {"noise": 0.55, "real": 0.55, "psaq": 0.40}}, seeds=(0,))
    table = headroom.headroom_map(tmp_path)
    row = table.set_index("setting")
    assert row.loc["w4a4-attn2", "headroom"] == pytest.approx(row.loc["w4a4-attn2", "real"] - row.loc["w4a4-attn2", "psaq"])
    assert row.loc["w4a4-attn2", "headroom"] > 10 > row.loc["w4a4", "headroom"]
    assert table.iloc[0]["setting"] == "w4a4-attn2"  # largest headroom first
    cells = headroom.regime_cells(table, recon_iters=20, min_headroom=5.0)
    assert list(cells["setting"]) == ["w4a4-attn2"]
    # the two settings share bits and seed, and compare keeps them apart; `bits=` is the setting's old name
    (c,) = sardfq.compare(tmp_path, "real", "psaq", model="t", setting="w4a4-attn2", metrics=("top1",), n_boot=50)
    (old,) = sardfq.compare(tmp_path, "real", "psaq", model="t", bits="w4a4-attn2", metrics=("top1",), n_boot=50)
    assert old.to_dict() == c.to_dict()
    with pytest.raises(TypeError, match="pass setting= only"):
        sardfq.compare(tmp_path, "real", "psaq", setting="w4a4", bits="w4a4")
    assert c.difference > 10 and c.seeds == [0]


def test_predictions_follow_their_fits_and_scores_count_resolved_signs_only():
    fit = pd.DataFrame({"model": ["a", "a", "b", "b"], "headroom": [0.0, 1.0, 2.0, 3.0], "gain": [-1.0, 0.0, 1.0, 2.0]})
    cells = pd.DataFrame({"model": ["a", "b", "b"], "setting": ["x", "x", "y"], "headroom": [10.0, 5.0, 0.5]})
    gaps = {"a": 0.6, "b": 0.1}
    predicted = headroom.predict(fit, cells, gaps)
    assert predicted["headroom: predicted"].tolist() == pytest.approx([9.0, 4.0, -0.5])
    assert predicted["headroom: sign"].tolist() == [1, 1, -1]
    assert predicted["headroom: rank"].tolist() == [1.0, 2.0, 3.0]
    assert predicted.attrs["fits"]["headroom"]["slope"] == pytest.approx(1.0)
    # the gap line through the fitted cells: a (gap 0.6) has the lower gains, so the slope is negative
    assert predicted.attrs["fits"]["entropy gap"]["slope"] < 0
    assert predicted["entropy gap: sign"].tolist()[1] == predicted["entropy gap: sign"].tolist()[2]  # one teacher
    measured = pd.DataFrame({"model": ["a", "b", "b"], "setting": ["x", "x", "y"], "gain": [-5.0, 3.0, 0.1],
                             "ci_low": [-6.0, 2.0, -1.0], "ci_high": [-4.0, 4.0, 1.2]})
    scores = headroom.score(predicted, measured).set_index("hypothesis")
    assert scores.loc["headroom", "signs right"] == 1 and scores.loc["headroom", "signs wrong"] == 1
    assert scores.loc["headroom", "level"] == 1 and scores.loc["headroom", "teachers"] == 2
    # the paper's share: its ImageNet ratio of each cell's headroom, positive wherever real images lead
    assert predicted["paper's share: predicted"].tolist() == pytest.approx([headroom.PAPER_SHARE * h for h in (10, 5, 0.5)])
    assert predicted.attrs["fits"]["paper's share"]["cells"] == 0
    assert scores.loc["paper's share", "signs right"] == 1 and scores.loc["paper's share", "signs wrong"] == 1
    # predictions written before this hypothesis existed are scored on the hypotheses they hold
    older = predicted.drop(columns=[c for c in predicted if c.startswith("paper's share")])
    assert list(headroom.score(older, measured)["hypothesis"]) == ["headroom", "entropy gap"]
    with pytest.raises(sardfq.ConfigError, match="entropy gap"):
        headroom.predict(fit, cells.assign(model=["a", "c", "c"]), gaps)


def test_cells_keep_the_tuned_design_apart_and_the_share_closed_has_an_interval(tmp_path):
    rates = {("t", "w4a2"): {"noise": 0.40, "real": 0.40, "psaq": 0.28, "sardfq": 0.34}}
    _write_cells(tmp_path, rates, tuned={("t", "w4a2"): 0.30})
    gains = headroom.cell_gains(tmp_path, n_boot=200)
    row = gains.set_index("contrast")
    assert {"real - psaq", "sardfq - psaq", "real - noise", "sardfq (apa_weight=10.0) - psaq"} <= set(row.index)
    assert row.loc["sardfq - psaq", "difference"] > row.loc["sardfq (apa_weight=10.0) - psaq", "difference"]
    share = headroom.share_closed(tmp_path, model="t", setting="w4a2", n_boot=300)
    assert headroom.share_closed(tmp_path, model="t", bits="w4a2", n_boot=300) == share  # the old keyword
    assert share["share"] == pytest.approx(share["gain"] / share["headroom"])
    assert share["ci_low"] < share["share"] < share["ci_high"] and 0.2 < share["share"] < 0.8
    assert share["seeds"] == 3 and share["images"] == N
    block = headroom.headline_report(gains, pd.DataFrame([share]))
    assert "| `t` | w4a2 |" in block and f"{100 * share['share']:.0f}%" in block


def test_written_predictions_read_back(tmp_path):
    predicted = headroom.predict(pd.DataFrame({"model": ["a", "b"], "headroom": [0.0, 2.0], "gain": [0.0, 1.0]}),
                                 pd.DataFrame({"model": ["a"], "setting": ["x"], "headroom": [6.0]}), {"a": 0.2, "b": 0.4})
    record = headroom.prediction_record(predicted, fit_source="zoo", map_source="map")
    write_json_atomic(tmp_path / "p.json", record)
    back, cells = headroom.read_predictions(tmp_path / "p.json")
    assert back["fits"]["headroom"]["cells"] == 2 and cells.iloc[0]["headroom: predicted"] == pytest.approx(3.0)
    (tmp_path / "q.json").write_text(json.dumps({"kind": "experiment"}))
    with pytest.raises(sardfq.ConfigError, match="not a predictions record"):
        headroom.read_predictions(tmp_path / "q.json")


def test_the_readme_block_is_what_sardfq_headroom_prints():
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    folder = root / "results" / "headroom_cells"
    if not any(folder.glob("vit_*.json")):
        pytest.skip("no headroom-cell records yet")
    readme = (root / "README.md").read_text()
    start, end = "<!-- sardfq headroom: begin -->\n", "\n<!-- sardfq headroom: end -->"
    assert start in readme, "the README has no headroom block"
    block = readme[readme.index(start) + len(start):readme.index(end)]
    assert block == headroom.report(folder, folder / "predictions.json")["markdown"], (
        "README's headroom block is stale: paste the output of `sardfq headroom`")


@pytest.mark.slow
def test_attention_quantizer_table_tells_peaked_attention_from_flat(one_torch_thread):
    import torch

    from sardfq.analysis.diagnostics import attention_quantizer_table

    model, info = sardfq.load_model("vit_tiny_cifar10")
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(8, 3, 32, 32, generator=g)
    table = attention_quantizer_table(model, info, {"noise": noise, "scaled": 3 * noise}, noise,
                                      config=sardfq.QuantConfig.from_name("w4a4", attn_bits=2))
    assert set(table["set"]) == {"noise", "scaled"} and len(table) == 2 * info.num_blocks
    assert ((table["real mass kept"] > 0) & (table["real mass kept"] <= 1.0 + 1e-6)).all()
    assert (table["scale"] <= table["set max"] + 1e-6).all()  # the scale is max * 2^-t, t in [0, 1)


def test_the_ablation_in_a_cell_reads_each_switch_and_psaq_from_the_cells(tmp_path):
    from sardfq.analysis import results_prose

    ablation, cells = tmp_path / "ablation", tmp_path / "cells"
    combos = {"sardfq": {}, "sardfq[none]": {"apa": False, "msr": False, "sl": False},
              "sardfq[msr+sl]": {"apa": False}, "sardfq[apa]": {"msr": False, "sl": False}}
    rates = {"sardfq": 0.60, "sardfq[none]": 0.50, "sardfq[msr+sl]": 0.45, "sardfq[apa]": 0.58}
    for name, off in combos.items():
        for seed in (0, 1):
            r = _record("t", "sardfq", seed, "w4a4-attn2", _correct(rates[name], seed + 7 * len(name)),
                        design={f"synthesis.{k}": v for k, v in off.items()})
            assert r["variant"] == name
            write_json_atomic(ablation / f"{r['run_id']}.json", r)
    _write_cells(cells, {("t", "w4a4-attn2"): {"psaq": 0.40}, ("t", "w4a2"): {"psaq": 0.9}}, seeds=(0, 1))
    gains = headroom.ablation_gains(ablation, cells, n_boot=200).set_index("contrast")
    # APA in the full method (+15 points) and alone (+8), no switch and all three against PSAQ-ViT (+10, +20)
    assert gains.loc["sardfq - sardfq[msr+sl]", "difference"] == pytest.approx(15, abs=4)
    assert gains.loc["sardfq[apa] - sardfq[none]", "difference"] == pytest.approx(8, abs=4)
    assert gains.loc["sardfq - psaq", "difference"] == pytest.approx(20, abs=4)  # the w4a4-attn2 PSAQ-ViT, not w4a2's
    assert set(gains["seeds"]) == {2} and "sardfq[msr] - sardfq[none]" not in gains.index
    text = results_prose.cell_switch_sentences(gains.reset_index())
    assert "APA in the full method adds +1" in text and "With all three" in text and "2 seeds" in text
    r = _record("u", "sardfq", 0, "w4a4", _correct(0.5, 1))
    write_json_atomic(ablation / f"{r['run_id']}.json", r)
    with pytest.raises(sardfq.ConfigError, match="more than one teacher"):
        headroom.ablation_gains(ablation, cells, n_boot=10)
