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
