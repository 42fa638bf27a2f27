import json

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

import sardfq
from sardfq.cli import main
from sardfq.analysis.compare import compare_per_image
from sardfq.evaluate import PerImage


def _per_image(correct, labels_sha1="x", kl=None):
    correct = np.asarray(correct, bool)
    return PerImage(correct=correct, labels_sha1=labels_sha1, agree=correct.copy(),
                    kl=np.full(len(correct), 0.5, np.float32) if kl is None else kl)


def test_per_image_round_trips_through_json():
    rng = np.random.default_rng(0)
    p = PerImage(correct=rng.random(1001) < 0.7, labels_sha1="abc", agree=rng.random(1001) < 0.9,
                 kl=rng.random(1001).astype(np.float32))
    back = PerImage.from_dict(json.loads(json.dumps(p.to_dict())))
    assert np.array_equal(back.correct, p.correct) and np.array_equal(back.agree, p.agree)
    np.testing.assert_allclose(back.kl, p.kl, rtol=1e-3, atol=1e-4)  # stored as float16
    assert len(p.to_dict()["correct"]) < 200  # packed bits: about 1001 / 6 base64 characters


def test_evaluate_keeps_each_images_outcome_and_kl_against_the_reference():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    data = TensorDataset(torch.randn(50, 4), torch.randint(0, 3, (50,)))
    same = sardfq.evaluate(model, data, reference=model, progress=False, batch_size=16)
    assert same.kl == pytest.approx(0, abs=1e-6) and same.agreement == 1.0
    assert same.per_image.correct.sum() == round(same.top1 * 50)
    other = torch.nn.Linear(4, 3)
    result = sardfq.evaluate(other, data, reference=model, progress=False, batch_size=16)
    p, q = model(data.tensors[0]).softmax(1), other(data.tensors[0]).softmax(1)
    expected = (p * (p.log() - q.log())).sum(1)
    np.testing.assert_allclose(result.per_image.kl, expected.detach().numpy(), rtol=1e-4, atol=1e-6)
    assert result.per_image.labels_sha1 == same.per_image.labels_sha1


def test_a_consistent_gain_is_found_and_an_absent_one_is_not():
    rng = np.random.default_rng(1)
    n = 2000
    base = {s: rng.random(n) < 0.6 for s in range(3)}
    flips = {s: rng.random(n) < 0.10 for s in range(3)}  # a fixes 10% of the images b gets wrong
    a = {s: _per_image(base[s] | flips[s]) for s in range(3)}
    b = {s: _per_image(base[s]) for s in range(3)}
    gain = compare_per_image(a, b, names=("a", "b"), n_boot=500)
    true_gain = 100 * np.mean([(a[s].correct.astype(float) - b[s].correct).mean() for s in range(3)])
    assert gain.difference == pytest.approx(true_gain) and gain.ci[0] > 0 and gain.verdict == "a better"
    assert all(r["ci"][0] > 0 for r in gain.per_seed) and gain.n_images == n and gain.seeds == [0, 1, 2]
    # two independent draws of the same accuracy: the interval must contain zero
    c = {s: _per_image(rng.random(n) < 0.6) for s in range(3)}
    d = {s: _per_image(rng.random(n) < 0.6) for s in range(3)}
    none = compare_per_image(c, d, n_boot=500)
    assert none.ci[0] < 0 < none.ci[1] and not none.excludes_zero
    one_seed = compare_per_image({0: a[0]}, {0: b[0]}, names=("a", "b"), n_boot=200)
    assert one_seed.verdict.startswith("a better on this seed (one seed")
    two_seeds = compare_per_image({s: a[s] for s in (0, 1)}, {s: b[s] for s in (0, 1)}, n_boot=200)
    assert two_seeds.verdict.startswith("a better on these 2 seeds (too few")
    # lower KL is better: a with the lower KL wins although its difference is negative
    low = {s: _per_image(base[s], kl=np.full(n, 0.1, np.float32)) for s in range(3)}
    kl = compare_per_image(low, b, metric="kl", names=("low", "b"), n_boot=200)
    assert kl.difference == pytest.approx(-0.4) and kl.verdict == "low better"


def test_unpairable_runs_are_refused():
    a = {0: _per_image([1, 0, 1])}
    with pytest.raises(sardfq.ConfigError, match="share no seed"):
        compare_per_image(a, {1: _per_image([1, 0, 1])})
    with pytest.raises(sardfq.ConfigError, match="different images"):
        compare_per_image(a, {0: _per_image([1, 0, 1], labels_sha1="y")})
    with pytest.raises(sardfq.ConfigError, match="metric"):
        compare_per_image(a, a, metric="top7")


def _record(variant, seed, correct, bits="w4a4"):
    method = variant.split("[")[0]
    return {"kind": "experiment", "run_id": f"{variant}-{seed}", "variant": variant, "bits": bits,
            "config": {"model": "m", "method": method, "seed": seed},
            "quantized": {"top1": float(np.mean(correct)), "per_image": _per_image(correct).to_dict()}}


def test_cli_compare_prints_a_ci_from_records(tmp_path, capsys):
    rng = np.random.default_rng(2)
    for seed in range(3):
        base = rng.random(500) < 0.5
        for variant, correct in (("sardfq", base | (rng.random(500) < 0.2)), ("psaq", base)):
            (tmp_path / f"{variant}-{seed}.json").write_text(json.dumps(_record(variant, seed, correct)))
    assert main(["compare", "sardfq", "psaq", "--results", str(tmp_path), "--metric", "top1", "--json",
                 "--boot", "300"]) == 0
    found = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["comparisons"][0]
    assert found["metric"] == "top1" and found["ci"][0] > 0 and found["verdict"] == "sardfq better"
    assert main(["compare", "sardfq", "noise", "--results", str(tmp_path)]) == 2
    assert "no experiment record of 'noise'" in capsys.readouterr().err
    old = _record("noise", 0, [True, False])
    del old["quantized"]["per_image"]
    (tmp_path / "old.json").write_text(json.dumps(old))
    assert main(["compare", "sardfq", "noise", "--results", str(tmp_path)]) == 2
    assert "no per-image results" in capsys.readouterr().err
