"""The time estimate of a long run: said before it starts, skipped for short runs, and never a change
to the run's numbers."""
import logging

import pytest
import torch

import sardfq
import sardfq.experiments.estimate as estimate
from sardfq import QuantConfig, ReconConfig, SynthesisConfig, quantize, reconstruct, synthesize

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return sardfq.load_model("deit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, depth=2)


def test_durations_read_as_a_person_says_them():
    assert [estimate.format_seconds(s) for s in (40, 240, 3 * 3600)] == ["40 s", "4 min", "3.0 h"]


def test_short_runs_are_not_estimated(tiny):
    model, info = tiny
    assert estimate.synthesis_steps(SynthesisConfig(n=64, batch_size=32, iterations=80)) == 160
    assert estimate.synthesis_steps(SynthesisConfig(method="noise")) == 0
    assert estimate.estimate_synthesis(model, info, SynthesisConfig(n=2, iterations=80)) is None
    assert estimate.estimate_synthesis(model, info, SynthesisConfig(method="noise", n=2)) is None
    calib = torch.randn(4, *info.input_size)
    assert estimate.estimate_reconstruction(model, info, calib, QuantConfig(), ReconConfig(iters=20)) is None
    assert estimate.estimate_reconstruction(model, info, calib, QuantConfig(), ReconConfig(iters=0),
                                            force=True) is None


def test_a_synthesis_estimate_leaves_the_run_as_it_was(tiny):
    model, info = tiny
    config = SynthesisConfig(n=4, iterations=300, seed=4)
    short = SynthesisConfig(n=4, iterations=3, seed=4)
    before = synthesize(model, info, short, progress=False)
    found = estimate.estimate_synthesis(model, info, config)
    after = synthesize(model, info, short, progress=False)
    assert torch.equal(before.images, after.images)
    assert all(p.requires_grad for p in model.parameters())
    assert found.seconds["synthesis"] > 0 and found.work["synthesis"] == "300 iterations x 4 images"
    assert found.warmup_images.shape == (4, *info.input_size)
    text = str(found)
    assert "synthesis (300 iterations x 4 images) about" in text and "on this machine" in text


def test_a_reconstruction_estimate_leaves_the_models_as_they_were(tiny):
    model, info = tiny
    calib = torch.randn(8, *info.input_size, generator=torch.Generator().manual_seed(1))
    fp_state = {k: v.clone() for k, v in model.state_dict().items()}

    def run():
        q = quantize(model, info, QuantConfig.from_name("w4a4"), calib, seed=0)
        reconstruct(q, model, calib, ReconConfig(iters=2, seed=0), progress=False)
        return q.state_dict()

    before = run()
    found = estimate.estimate_reconstruction(model, info, calib, QuantConfig.from_name("w4a4"),
                                             ReconConfig(iters=150), n_images=32)
    after = run()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(torch.equal(fp_state[k], v) for k, v in model.state_dict().items())
    assert set(found.seconds) == {"calibration", "reconstruction"} and found.total > 0
    assert found.work["reconstruction"] == "150 steps x 2 blocks" and found.work["calibration"] == "w4a4 on 32 images"


def test_cli_says_the_estimate_of_a_long_synthesis_before_it_starts(tmp_path, monkeypatch, caplog):
    import sardfq.experiments.run as experiment
    from sardfq.cli import main

    monkeypatch.setattr(estimate, "LONG_STEPS", 3)  # the CLI's short run counts as long here
    order = []
    for module, name in ((estimate, "estimate_synthesis"), (experiment, "synthesize")):
        real = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *a, real=real, name=name, **k: order.append(name) or real(*a, **k))
    with caplog.at_level(logging.INFO, logger="sardfq"):
        assert main(["synthesize", "vit_tiny_cifar10", "--method", "sardfq", "--n", "1", "--iters", "3",
                     "--device", "cpu", "--no-progress", "--out", str(tmp_path / "c.safetensors")]) == 0
    said = [r.getMessage() for r in caplog.records if "estimated:" in r.getMessage()]
    assert len(said) == 1 and "synthesis (3 iterations x 1 images) about" in said[0]
    assert order == ["estimate_synthesis", "synthesize"]


def test_experiment_estimate_covers_synthesis_calibration_and_reconstruction(monkeypatch):
    monkeypatch.setattr(estimate, "LONG_STEPS", 3)
    config = sardfq.ExperimentConfig.from_dict({"synthesis": {"n": 2, "iterations": 3}, "recon": {"iters": 1},
                                                "bits": "w4a4"})
    found = estimate.estimate_experiment(config)
    assert list(found.seconds) == ["synthesis", "calibration", "reconstruction"]
    assert "in all about" in str(found)
    monkeypatch.setattr(estimate, "LONG_STEPS", 10 ** 6)
    assert estimate.estimate_experiment(config) is None


def test_cli_run_and_quantize_say_the_estimate_before_the_slow_work(tmp_path, monkeypatch, caplog):
    import sardfq.experiments.run as experiment
    from sardfq.calibset import CalibrationSet
    from sardfq.cli import main

    monkeypatch.setattr(estimate, "LONG_STEPS", 3)  # these short runs count as long here
    order = []

    class _Stop(Exception):
        pass

    def stop(name):
        def fake(*a, **k):
            order.append(name)
            raise _Stop  # the slow work itself is not what is tested
        return fake

    monkeypatch.setattr(experiment, "run_experiment", stop("run_experiment"))
    monkeypatch.setattr(experiment, "quantize_model", stop("quantize_model"))
    images = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    CalibrationSet(images, torch.zeros(4, dtype=torch.long), None, {}).save(tmp_path / "c.safetensors")
    commands = {"run": ["run", "vit_tiny_cifar10", "--n", "2", "--synth-iters", "3", "--recon-iters", "1",
                        "--bits", "w4a4", "--device", "cpu", "--no-progress"],
                "quantize": ["quantize", "vit_tiny_cifar10", "--calib", str(tmp_path / "c.safetensors"),
                             "--recon-iters", "1", "--device", "cpu", "--no-progress", "--out", str(tmp_path / "q")]}
    said = {}
    for name, argv in commands.items():
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="sardfq"), pytest.raises(_Stop):
            main(argv)
        said[name] = [r.getMessage() for r in caplog.records if "estimated:" in r.getMessage()]
    assert order == ["run_experiment", "quantize_model"]  # each reached after its estimate
    assert len(said["run"]) == 1 and "synthesis (3 iterations x 2 images) about" in said["run"][0]
    assert "reconstruction (1 steps x " in said["run"][0] and "in all about" in said["run"][0]
    assert len(said["quantize"]) == 1 and "calibration (w4a4 on 4 images)" in said["quantize"][0]
    assert "synthesis" not in said["quantize"][0]
