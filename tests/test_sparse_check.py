"""The sparse-versus-dense check: each sparse run paired with the dense run of its teacher, setting
and method, and the seed-spread rule a sparse default must pass."""
import numpy as np
import pandas as pd
import pytest

import sardfq
from sardfq.analysis.sparse_check import sparse_differences, sparse_table
from sardfq.evaluate import PerImage
from sardfq.io import write_json_atomic

N = 2000


def _record(method, seed, correct, **synthesis):
    values = {"model": "vit_tiny_cifar10", "synthesis.method": method, "seed": seed, "bits": "w4a4",
              **{f"synthesis.{k}": v for k, v in synthesis.items()}}
    config = sardfq.ExperimentConfig.from_dict(values)
    per_image = PerImage(correct=correct, labels_sha1="same", agree=correct, kl=np.zeros(N, np.float32))
    return {"kind": "experiment", "run_id": config.run_id(), "config": config.to_dict(), "variant": config.variant,
            "bits": config.bits, "fp": {"top1": 0.8, "top5": 0.99},
            "quantized": {"top1": float(correct.mean()), "top5": 0.9, "agreement": float(correct.mean()),
                          "n_images": N, "per_image": per_image.to_dict()},
            "calibration_path": None, "calibration": {}, "timings": {}}


def test_sparse_runs_pair_with_their_dense_runs_and_face_the_seed_spread(tmp_path):
    rng = np.random.default_rng(0)
    dense_top1 = []
    for seed, dense_rate in enumerate((0.70, 0.72, 0.68)):  # the dense runs' seed sd: about 2 points
        base = rng.random(N)
        runs = [("psaq", base < dense_rate, {}), ("psaq", base < dense_rate - 0.01, {"sparse": True}),  # -1: inside
                ("sardfq", base < dense_rate, {}), ("sardfq", base < dense_rate - 0.06, {"sparse": True}),  # -6: outside
                ("sardfq", base < dense_rate + 0.01, {"sparse": True, "stopped": "frozen"})]
        dense_top1.append(100 * (base < dense_rate).mean())
        for method, correct, synthesis in runs:
            record = _record(method, seed, correct, **synthesis)
            write_json_atomic(tmp_path / f"{record['run_id']}.json", record)
    table = sparse_differences(tmp_path, n_boot=200).set_index(["method", "kind"])
    assert sorted(table.index) == [("psaq", "sparse"), ("sardfq", "sparse"), ("sardfq", "sparse, stopped frozen")]
    assert table.loc[("psaq", "sparse"), "difference"] == pytest.approx(-1.0, abs=0.3)
    assert table.loc[("psaq", "sparse"), "dense_seed_sd"] == pytest.approx(np.std(dense_top1, ddof=1))
    assert table.loc[("psaq", "sparse"), "inside_spread"] and not table.loc[("sardfq", "sparse"), "inside_spread"]
    assert table.loc[("sardfq", "sparse"), "ci_high"] < 0 and table.loc[("sardfq", "sparse"), "seeds"] == 3
    assert table.loc[("sardfq", "sparse, stopped frozen"), "difference"] > 0
    markdown = sparse_table(table.reset_index())
    assert markdown.count("\n") == 4 and "| no |" in markdown and "3 × 2,000" in markdown


def test_a_folder_without_synthetic_records_is_refused(tmp_path):
    record = _record("noise", 0, np.ones(N, bool))
    write_json_atomic(tmp_path / "r.json", record)
    with pytest.raises(sardfq.ConfigError, match="no PSAQ-ViT, SARDFQ or SMI records"):
        sparse_differences(tmp_path)


def test_the_finding_states_the_speed_and_each_methods_cells(tmp_path):
    rng = np.random.default_rng(1)
    for seed in range(3):
        base = rng.random(N)
        for method, correct, synthesis in (("psaq", base < 0.7, {}), ("psaq", base < 0.6, {"sparse": True})):
            record = _record(method, seed, correct, **synthesis)
            write_json_atomic(tmp_path / f"{record['run_id']}.json", record)
    from sardfq.analysis.sparse_check import finding

    text = finding(sparse_differences(tmp_path, n_boot=200), speedup=2.54, method="psaq")
    assert text.startswith("Inverting psaq sparsely made a synthesis step 2.5 times faster")
    assert "psaq (sparse) stays inside the dense runs' seed spread in 0 of 1" in text
    assert "below dense beyond its 95% interval in 1" in text and "3 seeds × 2,000" in text
    assert "not measured here yet" in finding(sparse_differences(tmp_path, n_boot=200).iloc[:0], speedup=2.0,
                                              method="psaq")
    (tmp_path / "up").mkdir()
    for seed in range(2):
        base = rng.random(N)
        for method, correct, synthesis in (("psaq", base < 0.6, {}), ("psaq", base < 0.7, {"sparse": True})):
            record = _record(method, seed, correct, **synthesis)
            write_json_atomic(tmp_path / "up" / f"{record['run_id']}.json", record)
    up = finding(sparse_differences(tmp_path / "up", n_boot=200), speedup=2.0, method="psaq")
    assert "largest loss" not in up and "above dense in every cell, the least by +10." in up
    assert "above dense beyond its 95% interval in 1" in up and "(2 seeds ×" in up


def test_the_spread_is_the_dense_runs_own_and_one_dense_seed_is_not_judged(tmp_path):
    rng = np.random.default_rng(2)
    dense_top1 = []
    for seed, rate in enumerate((0.70, 0.74, 0.66)):
        base = rng.random(N)
        runs = [("psaq", base < rate, {})] + ([("psaq", base < rate - 0.01, {"sparse": True})] if seed == 0 else [])
        dense_top1.append(100 * (base < rate).mean())
        for method, correct, synthesis in runs:
            record = _record(method, seed, correct, **synthesis)
            write_json_atomic(tmp_path / f"{record['run_id']}.json", record)
    row = sparse_differences(tmp_path, n_boot=200).iloc[0]
    assert row["seeds"] == 1 and row["dense_seed_sd"] == pytest.approx(np.std(dense_top1, ddof=1))
    assert row["inside_spread"] == True  # noqa: E712  (-1 point against a spread of about 4)
    (tmp_path / "one").mkdir()
    for method, correct, synthesis in (("psaq", rng.random(N) < 0.7, {}), ("psaq", rng.random(N) < 0.7, {"sparse": True})):
        record = _record(method, 0, correct, **synthesis)
        write_json_atomic(tmp_path / "one" / f"{record['run_id']}.json", record)
    one = sparse_differences(tmp_path / "one", n_boot=200)
    assert pd.isna(one.iloc[0]["inside_spread"]) and "one dense seed: no spread" in sparse_table(one)
    from sardfq.analysis.sparse_check import finding

    text = finding(one, speedup=2.0, method="psaq")
    assert "in 0 of 0 teacher and bit-width cells (1 more with one dense seed, no spread to judge)" in text
