"""The results pages' sentences: each states what its rows show, and changes when they change."""
import pandas as pd

from sardfq.analysis import results_prose


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
    assert "+0.5 to +2.9" in text and "from -3.1 [-4.2, -2.0] to -0.8 [-1.5, +0.0]" in text
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
    assert "ahead of PSAQ-ViT in 0, behind in 1 and level in 0" in text
    assert "In 1 of the 1 cells real images are not ahead of Gaussian noise" in text
    assert "gets 0 of 1 resolved signs right" in text and "-110%" in text and "49%" in text
