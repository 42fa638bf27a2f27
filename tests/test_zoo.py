import math

import pytest

from sardfq.zoo import teacher_properties


def test_teacher_properties_measure_the_teacher_and_its_priors(cifar_root, one_torch_thread):
    p = teacher_properties("vit_tiny_cifar10", root=cifar_root, n_images=16)
    assert (p["depth"], p["width"], p["heads"], p["grid"], p["apa_blocks"]) == (6, 192, 3, 8, 4)  # APA: blocks 3..6 of 6
    assert p["uniform_entropy"] == pytest.approx(math.log(64))
    for kind in ("real", "prior"):
        assert 0 < p[f"{kind}_entropy"] < p["uniform_entropy"]
        assert 1 / 64 < p[f"{kind}_max_weight"] <= 1 and p[f"{kind}_peaks"] >= 1
    assert p["entropy_gap"] == pytest.approx(p["prior_entropy"] - p["real_entropy"])
    # priors are random: another seed draws other maps, the teacher's attention does not change
    q = teacher_properties("vit_tiny_cifar10", root=cifar_root, n_images=16, seed=1)
    assert q["real_entropy"] == p["real_entropy"] and q["prior_entropy"] != p["prior_entropy"]


def _record(model, method, seed, bits, correct):
    import numpy as np

    import sardfq
    from sardfq.evaluate import PerImage

    config = sardfq.ExperimentConfig.from_dict({"model": model, "synthesis.method": method, "seed": seed,
                                                "bits": bits})
    per_image = PerImage(correct=correct, labels_sha1="same", agree=correct, kl=np.zeros(len(correct), np.float32))
    return {"kind": "experiment", "run_id": config.run_id(), "config": config.to_dict(), "variant": method,
            "bits": bits, "fp": {"top1": 0.8, "top5": 0.99},
            "quantized": {"top1": float(correct.mean()), "top5": 0.9, "agreement": float(correct.mean()),
                          "n_images": len(correct), "per_image": per_image.to_dict()},
            "calibration_path": None, "calibration": {}, "timings": {}}


def test_zoo_gains_pairs_each_teacher_and_bit_width_and_joins_properties(tmp_path):
    import json

    import numpy as np

    from sardfq.zoo import zoo_gains, zoo_table

    rng = np.random.default_rng(0)
    gain = {"t1": 0.15, "t2": 0.0}  # SARDFQ fixes 15% of the images PSAQ-ViT gets wrong on t1 only
    for model in gain:
        for seed in range(3):
            base = rng.random(1000) < 0.5
            sets = {"noise": base & (rng.random(1000) < 0.5), "psaq": base,
                    "sardfq": base | (rng.random(1000) < gain[model]) if gain[model] else base.copy()}
            for method, correct in sets.items():
                record = _record(model, method, seed, "w4a4", correct)
                (tmp_path / f"{record['run_id']}.json").write_text(json.dumps(record))
    gains = zoo_gains(tmp_path, n_boot=300)
    assert set(gains["contrast"]) == {"sardfq - psaq", "sardfq - noise"}  # no real-image records
    row = gains.set_index(["model", "contrast"])
    assert row.loc[("t1", "sardfq - psaq"), "ci_low"] > 0
    assert row.loc[("t2", "sardfq - psaq"), "difference"] == 0 and not row.loc[("t2", "sardfq - psaq"), "excludes_zero"]
    assert (gains["seeds"] == 3).all() and (gains["images"] == 1000).all()
    table = zoo_table(gains, [{"model": "t1", "depth": 3}, {"model": "t2", "depth": 10}])
    assert table.set_index(["model", "contrast"]).loc[("t2", "sardfq - noise"), "depth"] == 10
