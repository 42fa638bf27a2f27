import math

import pytest

from sardfq.analysis.zoo import teacher_properties


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
    from sardfq.analysis.zoo import zoo_gains, zoo_table

    _write_zoo(tmp_path, {"t1": 0.15, "t2": 0.0})  # SARDFQ fixes 15% of the images PSAQ-ViT gets wrong on t1 only
    gains = zoo_gains(tmp_path, n_boot=300)
    assert set(gains["contrast"]) == {"sardfq - psaq", "sardfq - noise"}  # no real-image records
    row = gains.set_index(["model", "contrast"])
    assert row.loc[("t1", "sardfq - psaq"), "ci_low"] > 0
    assert row.loc[("t2", "sardfq - psaq"), "difference"] == 0 and not row.loc[("t2", "sardfq - psaq"), "excludes_zero"]
    assert (gains["seeds"] == 3).all() and (gains["images"] == 1000).all()
    table = zoo_table(gains, [{"model": "t1", "depth": 3}, {"model": "t2", "depth": 10}])
    assert table.set_index(["model", "contrast"]).loc[("t2", "sardfq - noise"), "depth"] == 10


def test_claim_verdicts_read_each_interval_as_holds_reversed_or_not_resolved():
    import pandas as pd

    from sardfq.analysis.zoo import claim_verdicts

    gains = pd.DataFrame([
        {"model": "t", "bits": "w3a3", "contrast": c, "difference": d, "ci_low": lo, "ci_high": hi,
         "excludes_zero": lo > 0 or hi < 0}
        for c, d, lo, hi in (("sardfq - psaq", -3.0, -4.2, -2.0), ("psaq - noise", 7.0, 6.0, 8.0),
                             ("real - sardfq", 0.4, -0.3, 1.1))])
    table = claim_verdicts(gains)
    assert list(table.index) == ["psaq > noise", "sardfq > psaq", "real > sardfq"]  # the paper's order
    cells = table[("t", "w3a3")]
    assert cells["psaq > noise"].startswith("holds: +7.0 [+6.0, +8.0]")
    assert cells["sardfq > psaq"].startswith("reversed: -3.0")
    assert cells["real > sardfq"].startswith("not resolved")


def test_rank_agreement_gives_the_exact_permutation_p_value():
    from sardfq.analysis.zoo import rank_agreement

    same = rank_agreement([0.1, 0.5, 0.9], [-3.0, 0.0, 1.4])
    assert same["rho"] == pytest.approx(1.0)
    assert same["p_value"] == pytest.approx(2 / 6) == same["smallest_p"]  # 3 teachers: never below 1/3
    opposite = rank_agreement([1, 2, 3, 4], [4, 3, 2, 1])
    assert opposite["rho"] == pytest.approx(-1.0) and opposite["p_value"] == pytest.approx(2 / 24)
    assert rank_agreement([1, 2, 3, 4], [2, 1, 4, 3])["p_value"] > 0.3
    with pytest.raises(Exception, match="equal-length"):
        rank_agreement([1, 2], [1, 2, 3])


def test_held_out_choice_picks_on_held_out_images_never_on_test():
    import pandas as pd

    from sardfq.analysis.zoo import held_out_choice

    frame = pd.DataFrame([
        {"model": "t", "bits": "w3a3", "design": d, "seed": s, "heldout_q_top1": h + s, "q_top1": t}
        for d, h, t in (("default", 60.0, 50.0), ("apa_weight=10.0", 62.0, 40.0), ("apa_weight=1000.0", 55.0, 70.0))
        for s in range(3)])
    row = held_out_choice(frame).iloc[0]
    assert row["chosen"] == "apa_weight=10.0"  # best held-out, although its test score is the worst
    assert (row["test top-1, chosen"], row["test top-1, default"], row["seeds"]) == (40.0, 50.0, 3)
    assert row["held-out margin"] == pytest.approx(2.0) and row["held-out seed sd"] == pytest.approx(1.0)
    assert row["a choice"]  # a margin of 2 beyond a spread of 1
    with pytest.raises(Exception, match="heldout_limit"):
        held_out_choice(frame.assign(heldout_q_top1=float("nan")))


def _write_zoo(folder, gain):
    import json

    import numpy as np

    rng = np.random.default_rng(0)
    for model in gain:
        for seed in range(3):
            base = rng.random(1000) < 0.5
            sets = {"noise": base & (rng.random(1000) < 0.5), "psaq": base,
                    "sardfq": base | (rng.random(1000) < gain[model]) if gain[model] else base.copy()}
            for method, correct in sets.items():
                record = _record(model, method, seed, "w4a4", correct)
                (folder / f"{record['run_id']}.json").write_text(json.dumps(record))


def test_sardfq_zoo_prints_the_headline_table(tmp_path, capsys):
    from sardfq.cli import main

    _write_zoo(tmp_path, {"t1": 0.15, "t2": 0.0})
    main(["zoo", "--results", str(tmp_path), "--boot", "300"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "| teacher | bits | sardfq − psaq | sardfq − noise | real − noise | seeds × images |"
    t1, t2 = (next(line for line in lines if f"`{m}`" in line).split(" | ") for m in ("t1", "t2"))
    assert t1[2].startswith("+") and not t1[2].startswith("+0.0")  # SARDFQ fixes 15% of PSAQ's misses
    assert t2[2].startswith("+0.0 [+0.0, +0.0]") and t1[4] == "n/a" and t1[5] == "3 × 1,000 |"
    assert lines[-1] == ("**sardfq** is ahead of psaq in 1 (`t1` w4a4), behind it in 0, not distinguishable in 1 "
                         "(`t2` w4a4) of 2 teacher × bit-width cells.")


def test_smi_takes_its_columns_and_its_sentence_where_its_records_exist(tmp_path, capsys):
    import json

    import numpy as np

    from sardfq.cli import main
    from sardfq.evaluate import PerImage

    _write_zoo(tmp_path, {"t1": 0.15, "t2": 0.0})
    rng = np.random.default_rng(1)
    for seed in range(3):  # SMI on t1 only: it misses what PSAQ-ViT gets right on a fifth of the images
        psaq = next(json.loads(f.read_text()) for f in tmp_path.glob(f"t1-psaq-w4a4-s{seed}-*.json"))
        correct = PerImage.from_dict(psaq["quantized"]["per_image"]).correct & (rng.random(1000) > 0.2)
        record = _record("t1", "smi", seed, "w4a4", correct)
        (tmp_path / f"{record['run_id']}.json").write_text(json.dumps(record))
    main(["zoo", "--results", str(tmp_path), "--boot", "300"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == ("| teacher | bits | sardfq − psaq | smi − psaq | sardfq − smi | sardfq − noise | real − noise "
                        "| seeds × images |")
    t1, t2 = (next(line for line in lines if f"`{m}`" in line).split(" | ") for m in ("t1", "t2"))
    assert t1[3].startswith("-") and t1[4].startswith("+") and t2[3] == t2[4] == "n/a"
    assert lines[-1].startswith("**smi** is ahead of psaq in 0, behind it in 1 (`t1` w4a4)") and "of 1 teacher" in lines[-1]


def test_the_readme_headline_is_what_sardfq_zoo_prints_from_the_committed_records():
    from pathlib import Path

    from sardfq.analysis.zoo import headline_report, zoo_gains

    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    begin, end = "<!-- sardfq zoo: begin -->\n", "<!-- sardfq zoo: end -->"
    assert begin in readme and end in readme, "the README's zoo table lost its markers"
    block = readme.split(begin)[1].split(end)[0].strip()
    assert block == headline_report(zoo_gains(root / "results" / "zoo_main")), (
        "README's zoo table is stale: paste `sardfq zoo --results results/zoo_main` between its markers")


def test_zoo_tuned_reruns_exactly_the_choices_held_out_images_make():
    from pathlib import Path

    from sardfq import load_results
    from sardfq.analysis.zoo import held_out_choice

    root = Path(__file__).resolve().parents[1]
    choice = held_out_choice(load_results(root / "results" / "zoo_design"))
    made = choice[choice["a choice"]]
    tuned = load_results(root / "results" / "zoo_tuned")
    tuned = tuned[tuned["variant"] == "sardfq"]
    assert (tuned.groupby("model")["design"].nunique() == 1).all()
    assert tuned.groupby("model")["design"].first().to_dict() == dict(zip(made["model"], made["chosen"]))
