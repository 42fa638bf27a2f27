"""The calibration-set inspector: its statistics, that it tells Gaussian noise from real images in
the right direction, the `sardfq inspect` command, and the study over result records."""
import json

import numpy as np
import pytest
import torch

import sardfq
from sardfq.cli import main
import sardfq.analysis.study
from sardfq.analysis.diagnostics import (GROUPS, flat_patch_share, frechet_distance, inspect_calibration,
                                         mean_pairwise_cosine_distance, needs_real_data, reference_images,
                                         shrunk_covariance, wasserstein_1d)
from sardfq.analysis.study import correlations, describe_effects, study, switch_effects, switches

DATA_FREE = {"attention.entropy", "attention.max_weight", "attention.peaks", "features.confidence",
             "features.class_entropy", "content.patch_diversity", "content.flat_share",
             "content.set_diversity"}


# ------------------------------------------------------------------------------- statistics
def test_wasserstein_of_shifted_samples_is_the_shift():
    a = np.array([0.0, 1.0, 2.0, 3.0])
    assert wasserstein_1d(a, a + 0.5) == pytest.approx(0.5)
    assert wasserstein_1d(a, a) == 0.0
    # unequal sizes: {0, 1} against {0, 0, 1, 1} is the same distribution
    assert wasserstein_1d([0.0, 1.0], [0.0, 0.0, 1.0, 1.0]) == pytest.approx(0.0)


def test_shrunk_covariance_is_full_rank_when_samples_are_few():
    x = torch.randn(32, 192, generator=torch.Generator().manual_seed(0))
    cov, shrink = shrunk_covariance(x)
    assert 0.0 < shrink <= 1.0
    assert torch.linalg.eigvalsh(cov).min() > 0  # the sample covariance has rank 31 here


def test_frechet_distance_grows_with_a_mean_shift():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(64, 16, generator=g), torch.randn(64, 16, generator=g)
    same, shifted = frechet_distance(a, b), frechet_distance(a, b + 3.0)
    assert same < 3.0 and shifted > 16 * 9 * 0.8  # ||shift||^2 = 16 * 3^2


def test_switches_of_variant_names():
    assert switches("sardfq") == {"apa", "msr", "sl"}
    assert switches("sardfq[none]") == frozenset()
    assert switches("sardfq[apa+sl]") == {"apa", "sl"}
    assert switches("psaq") is None
    with pytest.raises(sardfq.ConfigError, match="unknown SARDFQ components"):
        switches("sardfq[apa+xyz]")


def test_switch_effects_pairs_sets_that_differ_only_in_the_components():
    import pandas as pd

    # metric = 10 * apa + msr + sl + seed, so APA adds exactly 10 in every pair, MSR+SL add 2
    rows = [{"variant": v, "seed": seed, "m": 10 * ("apa" in switches(v)) + len(switches(v) - {"apa"}) + seed}
            for seed in (0, 1) for v in ("sardfq", "sardfq[none]", "sardfq[apa]", "sardfq[msr]",
                                         "sardfq[sl]", "sardfq[apa+msr]", "sardfq[apa+sl]", "sardfq[msr+sl]")]
    rows.append({"variant": "psaq", "seed": 0, "m": 99.0})  # not an ablation set: ignored
    frame = pd.DataFrame(rows[:-2] + rows[-1:])  # seed 1's sardfq[msr+sl] is missing: its pairs drop
    apa = switch_effects(frame, ["apa"], ["m"]).iloc[0]
    assert apa["diff"] == 10 and apa["sd"] == 0 and apa["up"] == apa["pairs"] == 7 and apa["down"] == 0
    assert apa["seeds"] == [0, 1] and apa["on"] - apa["off"] == 10
    assert apa["ci_low"] == apa["ci_high"] == 10 and apa["p_value"] == pytest.approx(2 / 2 ** 7)
    both = switch_effects(frame, ["msr", "sl"], ["m"]).iloc[0]
    assert both["pairs"] == 3 and both["diff"] == 2 and both["low"] == both["high"] == 2
    lines = describe_effects(switch_effects(frame, ["apa"], ["m", "seed"]), "APA", {"m": -1, "seed": +1}, "better")
    assert lines[0].startswith("- `m`:") and "paired difference +10 (sd 0, from +10 to +10)" in lines[0]
    assert lines[0].endswith("better in 0 of 7 pairs.")  # m went up; the sign asked for lower
    assert lines[1].endswith("better in 0 of 7 pairs (7 tied).")  # pairs share their seed
    with pytest.raises(sardfq.ConfigError, match="components must be"):
        switch_effects(frame, ["xyz"], ["m"])
    with pytest.raises(sardfq.ConfigError, match="no two sets"):
        switch_effects(frame[frame["variant"] == "psaq"], ["apa"], ["m"])


def test_pairwise_cosine_distance_and_flat_share(teacher):
    _, info = teacher
    assert float(mean_pairwise_cosine_distance(torch.ones(5, 8))) == pytest.approx(0.0, abs=1e-9)
    assert float(mean_pairwise_cosine_distance(torch.eye(4))) == pytest.approx(1.0)
    flat = sardfq.normalize(torch.full((2, 3, 32, 32), 0.5), info)
    noise = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert flat_patch_share(flat, info).tolist() == [1.0, 1.0]
    assert flat_patch_share(noise, info).tolist() == [0.0, 0.0]


# -------------------------------------------------------------------- noise against real images
@pytest.fixture(scope="module")
def reports(cifar_root):
    torch.set_num_threads(1)
    model, info = sardfq.load_model("vit_tiny_cifar10")
    real = reference_images(info, 16, seed=7, data_root=cifar_root)  # another draw than the reference
    noise = torch.randn(16, *info.input_size, generator=torch.Generator().manual_seed(0))
    kw = dict(n_ref=32, data_root=cifar_root)
    return (inspect_calibration(model, info, real, **kw).to_dict(),
            inspect_calibration(model, info, noise, **kw).to_dict())


def test_distortion_metrics_separate_noise_from_real_images(reports):
    real, noise = reports
    for block, fd in noise["features"]["frechet"]["per_block"].items():  # every block
        assert real["features"]["frechet"]["per_block"][block] < 0.5 * fd
    for stat in ("entropy_w1", "max_weight_w1", "peaks_w1"):
        assert real["attention"][stat]["value"] < 0.5 * noise["attention"][stat]["value"]
    assert real["calibration"]["output_kl"]["value"] < noise["calibration"]["output_kl"]["value"]
    ratio = "range_log2_ratio"
    assert real["calibration"][ratio]["value"] < noise["calibration"][ratio]["value"]


def test_content_metrics_separate_noise_from_real_images(reports):
    real, noise = reports
    assert real["content"]["set_diversity"]["value"] > 2 * noise["content"]["set_diversity"]["value"]
    assert noise["content"]["flat_share"]["value"] == 0.0 < real["content"]["flat_share"]["value"]
    assert real["features"]["class_entropy"]["value"] > noise["features"]["class_entropy"]["value"]


def test_report_layout_and_data_free_labels(reports):
    real, _ = reports
    assert set(GROUPS) | {"set", "reference"} <= set(real)
    assert real["reference"] == {"source": "real", "n": 32, "seed": 1000}
    labels = {f"{g}.{m}": v["needs_real_data"] for g in GROUPS for m, v in real[g].items()}
    assert {k for k, v in labels.items() if not v} == DATA_FREE | {"features.class_histogram"}
    assert all(needs_real_data(k) == v for k, v in labels.items())
    assert sum(real["features"]["class_histogram"]["counts"]) == 16
    ranges = real["calibration"]["range_log2_ratio"]["quantizers"]
    assert ranges and all(r["set"][0] <= 0 <= r["set"][1] for r in ranges.values())
    assert set(real["calibration"]["block_mse"]["per_block"]) == {f"blocks.{i}" for i in range(6)}


# ----------------------------------------------------------------------------------- the CLI
@pytest.fixture
def noise_sets(tmp_path, teacher):
    _, info = teacher
    paths = []
    for seed in (0, 1):
        g = torch.Generator().manual_seed(seed)
        calib = sardfq.CalibrationSet(torch.randn(6, *info.input_size, generator=g),
                                      torch.randint(0, 10, (6,), generator=g), metadata={"method": "noise"})
        paths.append(str(calib.save(tmp_path / f"noise{seed}.safetensors")))
    return paths


def test_cli_json_prints_one_object_with_the_metric_groups(noise_sets, capsys, one_torch_thread):
    assert main(["inspect", "vit_tiny_cifar10", noise_sets[0], "--reference", noise_sets[1],
                 "--json", "--no-progress", "--device", "cpu"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["kind"] == "inspect" and set(GROUPS) <= set(record)
    assert record["set"]["path"] == noise_sets[0] and record["reference"]["source"] == noise_sets[1]
    assert all("needs_real_data" in m and "value" in m for g in GROUPS for m in record[g].values())


@pytest.mark.parametrize("make, message", [
    (lambda tmp: tmp / "absent.safetensors", "does not exist"),
    (lambda tmp: (tmp / "bad.safetensors").write_bytes(b"not a set") and tmp / "bad.safetensors",
     "could not read"),
    (lambda tmp: sardfq.CalibrationSet(torch.zeros(2, 3, 16, 16), torch.zeros(2, dtype=torch.long))
     .save(tmp / "small.safetensors"), "takes (3, 32, 32)"),
])
def test_cli_bad_sets_are_one_line_errors(tmp_path, capsys, make, message):
    path = make(tmp_path)
    assert main(["inspect", "vit_tiny_cifar10", str(path), "--reference", str(path), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err


# ---------------------------------------------------------------------------------- the study
def _record(path, seed, top1):
    config = sardfq.ExperimentConfig.from_dict({"synthesis": {"method": "noise", "n": 6}, "seed": seed})
    return {"kind": "experiment", "run_id": config.run_id(), "config": config.to_dict(), "variant": "noise",
            "bits": "w4a4", "fp": {"top1": 0.75, "top5": 0.98},
            "quantized": {"top1": top1, "top5": 0.9, "agreement": top1 + 0.1, "n_images": 100},
            "calibration_path": path, "calibration": {}, "timings": {}}


def test_study_joins_metrics_with_accuracy_and_caches_reports(tmp_path, noise_sets, cifar_root,
                                                              monkeypatch, one_torch_thread):
    results = tmp_path / "results"
    for i, (path, top1) in enumerate(zip(noise_sets + [noise_sets[0]], (0.6, 0.7, 0.62))):
        sardfq.io.write_json_atomic(results / f"run{i}.json", _record(path, i, top1))
    frame = study(results, n_ref=8, data_root=cifar_root, progress=False)
    assert len(frame) == 2  # two sets; the first behind two records
    first = frame.set_index("path").loc[noise_sets[0]]
    assert first["runs"] == 2 and first["q_top1"] == pytest.approx(61.0)
    assert len(list((results / "inspect").glob("*.json"))) == 2
    monkeypatch.setattr(sardfq.analysis.study, "inspect_calibration", lambda *a, **k: pytest.fail("not cached"))
    again = study(results, n_ref=8, data_root=cifar_root, progress=False)
    assert again.equals(frame)
    table = correlations(frame, n_boot=50)
    assert set(table["metric"]) == {c for c in frame.columns if "." in c}
    assert table["spearman"].abs().max() <= 1.0


def test_recreate_sets_resynthesizes_a_lost_set_and_study_pairs_it_with_its_rerun(tmp_path, cifar_root,
                                                                                   one_torch_thread):
    results = tmp_path / "results"
    config = sardfq.ExperimentConfig.from_dict({"synthesis": {"method": "noise", "n": 4}, "recon": {"iters": 0},
                                                "seed": 3, "eval_limit": 20, "data_root": str(cifar_root)})
    lost = results / "calibration" / f"{config.synthesis_id()}.safetensors"
    record = {**_record(str(lost), 3, 0.5), "config": config.to_dict(), "run_id": config.run_id()}
    sardfq.io.write_json_atomic(results / "sweep" / f"{config.run_id()}.json", record)
    done = sardfq.analysis.study.recreate_sets(results, sweeps=["sweep"], progress=False)
    assert [d["path"] for d in done] == [str(lost)] and lost.is_file()
    assert sardfq.CalibrationSet.load(lost).metadata["seed"] == 3
    assert sardfq.analysis.study.recreate_sets(results, sweeps=["sweep"], progress=False) == []  # nothing left
    frame = study(results, sweeps=["sweep"], n_ref=8, data_root=cifar_root, progress=False)
    assert frame["recreated"].tolist() == [True]
    assert frame["q_top1"].iloc[0] == pytest.approx(100 * done[0]["rerun_top1"])


def test_plots_of_the_study():
    import matplotlib

    matplotlib.use("Agg")
    import pandas as pd

    from sardfq import viz

    g = torch.Generator().manual_seed(0)
    fig = viz.plot_feature_projection({"real": torch.randn(10, 8, generator=g),
                                       "noise": torch.randn(5, 8, generator=g) + 4})
    assert [len(c.get_offsets()) for c in fig.axes[0].collections] == [10, 5]
    frame = pd.DataFrame({"variant": ["noise", "real", "psaq", "sardfq"], "q_top1": [68.0, 72.0, 70.0, 70.5],
                          "content.set_diversity": [0.1, 0.7, 0.6, 0.5], "features.frechet": [9.0, 1.0, 4.0, 3.0]})
    fig = viz.plot_metric_scatter(frame, ["content.set_diversity", "features.frechet"])
    assert "Spearman -1.00" in fig.axes[1].get_title()
    table = correlations(frame, n_boot=50)
    assert table["p_value"].between(0, 1).all()
    fig = viz.plot_correlations(table)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == list(table["metric"])  # a row per metric
