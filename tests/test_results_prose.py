"""The results pages' sentences: each states what its rows show, and changes when they change."""
import pandas as pd
import pytest

from sardfq.analysis import results_prose, why_prose


def _row(model, contrast, d, lo, hi, bits="w3a3", seeds=3, images=10000):
    return {"model": model, "bits": bits, "contrast": contrast, "difference": d, "ci_low": lo, "ci_high": hi,
            "excludes_zero": lo > 0 or hi < 0, "seeds": seeds, "images": images}


def test_choice_sentences_say_when_held_out_images_cannot_choose():
    choice = pd.DataFrame([
        {"model": "a", "chosen": "apa_weight=10.0", "held-out top-1, chosen": 68.0, "held-out top-1, default": 65.3,
         "held-out margin": 2.7, "held-out seed sd": 0.6, "a choice": True, "test top-1, chosen": 64.6,
         "test top-1, default": 62.8},
        {"model": "b", "chosen": "apa_weight=1000.0", "held-out top-1, chosen": 63.2, "held-out top-1, default": 62.6,
         "held-out margin": 0.6, "held-out seed sd": 0.7, "a choice": False, "test top-1, chosen": 59.8,
         "test top-1, default": 59.6}])
    first, second = results_prose.choice_sentences(choice).split("\n\n")
    assert "a choice" in first and "4.50 times" in first
    assert "not a choice; the default stays" in second and "0.86 times" in second


def test_the_zoo_finding_counts_cells_and_names_the_tuned_change():
    gains = pd.DataFrame([_row("a", "sardfq - psaq", -3.1, -4.2, -2.0), _row("b", "sardfq - psaq", 0.3, -0.4, 1.0),
                          _row("a", "real - psaq", 0.5, -0.2, 1.3), _row("b", "real - psaq", 2.9, 2.2, 3.5)])
    comparison = pd.DataFrame([{"model": "a", "bits": "w3a3", "chosen - psaq": "-0.8 [-1.5, +0.0]",
                                "chosen side": "level", "default - psaq": "-3.1 [-4.2, -2.0]", "default side": "below",
                                "chosen - default": "+2.3 [+1.4, +3.2]", "change": 2.3,
                                "chosen vs default side": "above", "seeds": 3, "images": 10000}])
    ranks = pd.DataFrame([{"bits": "w3a3", "property": "depth", "rho": -0.82, "p_value": 0.13, "teachers": 5,
                           "smallest_p": 0.017}])
    text = results_prose.zoo_finding(gains, comparison, ranks)
    assert "ahead of PSAQ-ViT in 0 of the 2" in text and "behind in 1 and level in 1" in text
    assert "at most +2.9 points ahead of PSAQ-ViT, and ahead at all (interval above zero) in 1 of 2" in text
    assert "from -3.1 [-4.2, -2.0] to -0.8 [-1.5, +0.0]" in text
    assert "depth at w3a3, has rho -0.82 (exact p 0.13" in text
    assert "No teacher property" not in results_prose.zoo_finding(gains, comparison, ranks.assign(p_value=0.01))


def test_seed_differences_are_ranges_over_seeds_not_intervals():
    frame = pd.DataFrame([{"bits": "w4a4", "seed": s, "variant": v, "q_top1": q}
                          for s, (a, b) in enumerate(((70.0, 71.0), (72.0, 71.5), (69.0, 70.0)))
                          for v, q in (("sardfq", a), ("psaq", b))])
    row = results_prose.seed_differences(frame, "sardfq", "psaq").iloc[0]
    assert (row["ci_low"], row["ci_high"]) == (-1.0, 0.5) and row["difference"] == -0.5
    assert not row["excludes_zero"] and row["seeds"] == 3


def test_the_regime_finding_counts_harm_and_scores():
    gains = pd.DataFrame([_row("t", "sardfq - psaq", -11.0, -12.0, -10.0, bits="w4a4-attn2"),
                          _row("t", "real - psaq", 10.0, 9.0, 11.0, bits="w4a4-attn2"),
                          _row("t", "real - noise", 0.3, -0.4, 1.0, bits="w4a4-attn2")])
    zoo = pd.DataFrame([_row("t", "sardfq - psaq", -1.0, -1.5, -0.5)])
    scores = pd.DataFrame([{"hypothesis": "headroom", "claim": "", "cells": 1, "teachers": 1, "signs right": 0,
                            "signs wrong": 1, "level": 0, "rho": 0.0, "p_value": 1.0}])
    shares = pd.DataFrame([{"share": -1.1, "paper_share": 0.49}])
    text = results_prose.regime_finding(gains, zoo, scores, shares)
    assert "ahead of PSAQ-ViT in 0, behind in 1 and level (the interval holds zero) in 0" in text
    assert "`t` at W4A4 with the attention map at 2 bits, is -11.0 [-12.0, -10.0]: behind" in text
    assert "rank correlations +0.00, p ≥ 1.00" in text


# The words the intro's finding box (the regime finding, pasted) must not lean on undefined: a reader
# meets that box before any page defines them.
JARGON = ("headroom", "attn2", "resolved", "entropy gap", "share of the", "hypothesis")


def _regime_rows():
    cells = [("tiny", "w4a4-attn2", (8.2, -2.0, 16.1), (11.8, 1.9, 19.4), (-3.4, -9.8, 0.5), (4.0, -2.0, 9.0)),
             ("tiny", "w4a2", (-9.8, -13.9, -6.8), (5.6, 0.6, 9.7), (-5.0, -9.7, -1.6), (-24.6, -30.0, -19.0)),
             ("long", "w2a4", (-1.1, -2.7, 1.1), (3.1, 0.9, 6.1), (9.7, 8.5, 10.7), (-8.4, -10.0, -7.0))]
    rows = []
    for model, setting, gain, room, harm, below in cells:
        for contrast, (d, lo, hi) in (("sardfq - psaq", gain), ("real - psaq", room), ("real - noise", harm),
                                      ("sardfq - noise", below)):
            rows.append(_row(model, contrast, d, lo, hi, bits=setting, seeds=3 if setting != "w4a4-attn2" else 5))
    return pd.DataFrame(rows)


def test_the_regime_finding_says_its_words_plainly_and_names_the_cells_below_noise():
    gains = _regime_rows()
    zoo = pd.DataFrame([_row("t", "sardfq - psaq", -1.0, -1.5, -0.5), _row("t", "real - psaq", 2.9, 2.2, 3.5)])
    scores = pd.DataFrame([{"hypothesis": h, "claim": "", "cells": 3, "teachers": 2, "signs right": r, "signs wrong": 2 - r,
                            "level": 1, "rho": rho, "p_value": p} for h, r, rho, p in (("headroom", 0, 0.21, 0.62),
                                                                                      ("entropy gap", 2, 0.13, 0.77))])
    text = results_prose.regime_finding(gains, zoo, scores)
    assert "by +3.1 to +11.8 top-1 points (3-5 seeds × 10,000 test images" in text
    assert "`tiny` at W4A4 with the attention map at 2 bits, is +8.2 [-2.0, +16.1]: level." in text
    assert "below plain Gaussian-noise calibration in 2 of the 3 cells, by up to 24.6 points" in text
    assert "lead PSAQ-ViT by at most +2.9 points, it is ahead in 0 and behind in 1" in text
    assert "rank correlations +0.21 and +0.13, p ≥ 0.62" in text
    assert not [word for word in JARGON if word in text.lower()]
    assert "gain:" not in text and "largest gain" not in text  # a level cell is not called a gain


def test_the_cells_table_shows_every_contrast_the_finding_reads():
    table = results_prose.cells_table(_regime_rows(), labels={"tiny": "tiny"})
    assert list(table.columns) == ["real − psaq", "sardfq − psaq", "sardfq − noise", "real − noise", "seeds"]
    assert table.loc[("tiny", "w4a2"), "sardfq − noise"] == "-24.6 [-30.0, -19.0]"
    assert table.loc[("tiny", "w4a4-attn2"), "seeds"] == 5


def test_setting_words():
    assert results_prose.setting_words("w4a4") == "W4A4"
    assert results_prose.setting_words("w4a2-attn4") == "W4A2 with the attention map at 4 bits"


def _iters():
    return pd.DataFrame([{"method": m, "synth_iters": i, "q_top1": t, "heldout_q_top1": h}
                         for m, i, t, h in (("psaq", 80, 70.3, 71.7), ("psaq", 1000, 73.0, 75.1),
                                            ("sardfq", 80, 69.8, 71.8), ("sardfq", 1000, 72.1, 73.0),
                                            ("noise", 80, 69.5, 71.2))])


def test_a_longer_synthesis_is_read_on_both_splits():
    gaps = results_prose.iters_gaps(_iters())
    assert list(gaps.index) == [80, 1000] and gaps.loc[1000, "held-out gap"] == pytest.approx(-2.1)
    text = results_prose.iters_sentence(gaps)
    assert "PSAQ-ViT's test top-1 rises from 70.3 to 73.0 (held-out 71.7 to 75.1)" in text
    assert "from -0.5 to -0.9 points on the test images and from +0.1 to -2.1 on the held-out ones" in text
    assert "At 1000 iterations PSAQ-ViT has gained more than SARDFQ on both splits" in text
    closing = _iters().assign(q_top1=lambda f: f["q_top1"] + ((f["method"] == "sardfq") & (f["synth_iters"] == 1000)) * 3,
                              heldout_q_top1=lambda f: f["heldout_q_top1"]
                              + ((f["method"] == "sardfq") & (f["synth_iters"] == 1000)) * 3)
    assert "narrows the gap on both splits" in results_prose.iters_sentence(results_prose.iters_gaps(closing))


def test_synthesis_cost_pairs_runs_of_one_teacher_and_seed_once():
    frame = pd.DataFrame([{"model": m, "seed": s, "variant": v, "bits": b, "synth_ms_per_iter": ms}
                          for m in ("a", "b") for s in (0, 1) for b in ("w3a3", "w4a4")
                          for v, ms in (("psaq", 100.0 + s), ("sardfq", 240.0 + 10 * s + (m == "b") * 20))])
    cost = why_prose.synthesis_cost(frame)
    assert cost["pairs"] == 4 and 2.3 < cost["ratio"] < 2.7 and cost["low"] == pytest.approx(2.4)


def test_method_advice_favours_sardfq_only_where_it_is_ahead_and_never_behind():
    behind = pd.DataFrame([_row("a", "sardfq - psaq", -1.0, -1.5, -0.5), _row("b", "sardfq - psaq", 0.2, -0.5, 0.9)])
    level = pd.DataFrame([_row("c", "sardfq - psaq", 0.2, -0.5, 0.9, bits="w4a4-attn2")])
    advice = why_prose.method_advice(behind, level, {"pairs": 4, "ratio": 2.4, "low": 2.2, "high": 2.8})
    assert advice["method"] == "psaq"
    assert "ahead of PSAQ-ViT in 0 of the zoo's 2 cells and behind in 1" in advice["text"]
    assert "at 2.4 times PSAQ-ViT's cost per synthesis step" in advice["text"]
    ahead = pd.DataFrame([_row("a", "sardfq - psaq", 1.0, 0.5, 1.5)])
    assert why_prose.method_advice(ahead, level, {})["method"] == "sardfq"


def test_the_ablation_finding_says_the_one_thing():
    gains = pd.DataFrame([_row(m, c, d, lo, hi) for m in ("deep", "grid4", "shallow")
                          for c, d, lo, hi in (("sardfq - sardfq[msr+sl]", -0.3, -1.1, 0.5),
                                               ("sardfq[apa] - sardfq[none]", -0.8 if m == "deep" else 0.1,
                                                -1.2 if m == "deep" else -0.5, -0.3 if m == "deep" else 0.7),
                                               ("sardfq - sardfq[apa+sl]", 0.9 if m == "deep" else 0.0,
                                                0.2 if m == "deep" else -0.5, 1.6 if m == "deep" else 0.5))])
    choice = pd.DataFrame([{"model": "deep", "chosen": "apa_weight=10.0", "a choice": True},
                           {"model": "long", "chosen": "apa_weight=1000.0", "a choice": False}])
    first = pd.DataFrame([{"contrast": "sardfq[apa] - sardfq[none]", "difference": 0.4, "ci_low": -0.2, "ci_high": 1.0,
                           "seeds": 3, "images": 1000}])
    text = results_prose.ablation_finding(gains, choice, paper_alone=8.5, first_teacher=first)
    assert text.startswith("APA, the paper's largest single gain (+8.5 points alone on DeiT-S at W4A4), adds nothing "
                           "resolvable on these 3 teachers at W3A3: alone it costs on 1 and is level on 2 of 3 teachers; "
                           "in the full method it is level on 3 of 3 teachers")
    assert "Elsewhere only MSR in the full method on `deep` (adds +0.9 [+0.2, +1.6]) resolves." in text
    assert "at W4A4 on 1,000 test images" in text and "+0.4 points, from -0.2 to +1.0 over its 3 seeds" in text
    assert "on 1 of 2 teachers: `deep` apa_weight=10.0." in text
    assert text.count("adds on") == 0  # no list of six counts


def test_why_sentences_separate_what_is_known_from_what_would_settle_it():
    attention = pd.DataFrame({"entropy": [2.87, 2.93, 3.51, 3.46], "peaks": [5.45, 6.98, 6.49, 1.50]},
                             index=["real", "psaq", "sardfq", "GMM prior"])
    scores = pd.DataFrame([{"hypothesis": "entropy gap", "cells": 8, "signs right": 2, "signs wrong": 0, "rho": 0.13,
                            "p_value": 0.77}])
    text = why_prose.why_sentences(attention, scores, {"noise": 0.44, "real": 0.38, "psaq": 0.33, "sardfq": 0.31},
                                       {"pairs": 30, "ratio": 2.4, "low": 2.1, "high": 2.9},
                                       results_prose.iters_gaps(_iters()))
    known, open_, settle = text.split("**What they leave open.**")[0], *text.split("**What they leave open.**")[1].split(
        "**What would settle it.**")
    assert "5.5 separate peaks per map; APA's targets have 1.5" in known
    assert "3.51 nats of entropy, towards its targets' 3.46 and away from real images' 2.87" in known
    assert "keeps 31% of real images' attention mass, against 33% for PSAQ-ViT's and 38% for real images' (least: sardfq)" in known
    assert "2.4 times a PSAQ-ViT step" in known and "at 1000 iterations SARDFQ − PSAQ-ViT is -0.9" in known
    assert "right in 2 of the 2 cells" in open_ and "rank correlation +0.13, p 0.77" in open_
    assert "prior=real" in settle


def test_the_why_finding_reads_the_same_rows():
    attention = pd.DataFrame({"entropy": [2.87, 2.93, 3.51, 3.46], "peaks": [5.45, 6.98, 6.49, 1.50]},
                             index=["real", "psaq", "sardfq", "GMM prior"])
    scores = pd.DataFrame([{"hypothesis": "entropy gap", "cells": 8, "signs right": 2, "signs wrong": 0, "rho": 0.13,
                            "p_value": 0.77}])
    text = why_prose.why_finding(attention, {"pairs": 30, "ratio": 2.4, "low": 2.1, "high": 2.9},
                                     results_prose.iters_gaps(_iters()), scores, model="tiny")
    assert "`tiny` real images make the class token attend to 5.5 scattered peaks per map" in text
    assert "costs 2.4 times" in text and "At 1000 synthesis iterations SARDFQ − PSAQ-ViT is -0.9" in text
    assert "right in 2 of the 2 cells" in text and "(rank correlation +0.13)" in text
    assert "towards those targets, away from real images" in text  # read from the entropies, not asserted
    closer = why_prose.why_finding(attention.assign(entropy=[2.87, 2.93, 2.9, 3.46]), {}, pd.DataFrame(), scores)
    assert "no closer to those targets than to real images" in closer


def test_the_own_model_advice_of_the_readme_and_chapter_08_is_what_the_records_favour():
    """The README's "Quantize your own model" commands and chapter 08's default name the method the
    committed CIFAR-10 records favour (`method_advice`, the reading chapter 08 glues), the README's
    words agree with the counts, and its sizes are the paper's."""
    import json
    import re
    from pathlib import Path

    from sardfq.analysis import headroom, paper_anchors
    from sardfq.analysis.zoo import zoo_gains

    root = Path(__file__).resolve().parent.parent
    section = (root / "README.md").read_text().split("## Quantize your own model")[1].split("\n## ")[0]
    methods = set(re.findall(r"sardfq (?:synthesize|run) \S+ --method (\w+)", section))
    zoo = zoo_gains(root / "results" / "zoo_main", contrasts=(("sardfq", "psaq"),), n_boot=1000)
    cells = headroom.cell_gains(root / "results" / "headroom_cells", contrasts=(("sardfq", "psaq"),), n_boot=1000)
    advice = why_prose.method_advice(zoo, cells, {})
    assert methods == {advice["method"]}, f"the README recommends {methods}, the records favour {advice['method']}"
    chapter = json.loads((root / "notebooks" / "08_own_model.ipynb").read_text())
    parameters = next("".join(c["source"]) for c in chapter["cells"] if "parameters" in c["metadata"].get("tags", []))
    default = re.search(r'^method = "(\w+)"', parameters, re.MULTILINE).group(1)
    assert default == advice["method"], f"chapter 08's default method is {default}, the records favour {advice['method']}"
    counts = advice["counts"].values()
    if "ahead of PSAQ-ViT in none of the cells and behind in several" in " ".join(section.split()):
        assert sum(c["above"] for c in counts) == 0 and sum(c["below"] for c in counts) >= 2
    budget = paper_anchors.BUDGET
    assert f"--n {budget['images']} --iters {budget['synthesis_iterations']}" in section
    assert f"--recon-iters {budget['recon_iters']}" in section


def test_the_ablation_seed_note_says_why_the_two_intervals_of_one_comparison_differ():
    row = {"model": "tiny", "bits": "w4a4-attn2", "contrast": "sardfq - psaq", "difference": 5.3, "ci_low": -0.1,
           "ci_high": 14.5, "seeds": 3}
    cell = {**row, "difference": 3.9, "ci_low": -1.1, "ci_high": 10.2, "seeds": 5}
    text = results_prose.ablation_seed_note(pd.DataFrame([row]), pd.DataFrame([cell]))
    assert "+5.3 [-0.1, +14.5] here, on the 3 seeds" in text and "+3.9 [-1.1, +10.2] in the cell's row above, on 5" in text
    assert text.endswith("the same comparison on more seeds, hence the other interval.") and ".." not in text
    same = results_prose.ablation_seed_note(pd.DataFrame([row]), pd.DataFrame([{**cell, "seeds": 3}]))
    assert same.endswith("the same runs.")
