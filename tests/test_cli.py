import json
import os
import subprocess
import sys

import pytest

import sardfq
from sardfq.cli import main


def _sardfq(*args, env=None):
    return subprocess.run([sys.executable, "-m", "sardfq", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=600)


@pytest.mark.slow
@pytest.mark.parametrize("name", sardfq.embedded_models())
def test_eval_of_each_shipped_teacher_reproduces_its_recorded_accuracy(name, cifar_root):
    proc = _sardfq("eval", name, "--data", str(cifar_root), "--json")
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout.strip().splitlines()[-1])
    recorded = json.loads((sardfq.models.weights_dir(name) / "config.json").read_text())["test_top1"]
    assert record["n_images"] == 10000
    assert abs(record["top1"] - recorded) <= 0.001
    assert record["model"] == name and record["seconds"] > 0 and record["top5"] > record["top1"]


def test_eval_limit_prints_a_summary(cifar_root, capsys):
    assert main(["eval", "vit_tiny_cifar10", "--data", str(cifar_root), "--limit", "50"]) == 0
    out = capsys.readouterr().out
    assert "vit_tiny_cifar10: top-1" in out and "top-5" in out and "on 50 images" in out


@pytest.mark.parametrize("args, message", [
    (["eval", "deit_tiny"], "unknown model 'deit_tiny'"),
    (["eval", "vit_tiny_cifar10", "--data", "/nonexistent/data"], "does not exist"),
    (["eval", "deit_tiny_patch16_224"], "HF_HUB_OFFLINE=1"),
    (["eval", "vit_tiny_cifar10", "--checkpoint", "/nonexistent.safetensors"], "does not exist"),
    (["eval", "vit_tiny_cifar10", "--limit", "0"], "--limit) must be a positive number of images"),
])
def test_bad_input_is_one_line_and_exit_2(args, message, capsys, monkeypatch, tmp_path):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path))
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


@pytest.mark.slow
def test_module_entry_point_and_version():
    proc = _sardfq("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("sardfq ")


class _Captured(Exception):
    pass


def test_bf16_flag_sets_autocast_for_synthesize_and_quantize(monkeypatch):
    import sardfq.calibset
    import sardfq.experiments.estimate
    import sardfq.experiments.run
    from sardfq.cli import main

    def capture(name):
        def fake(*args, **kwargs):
            raise _Captured([a for a in args if hasattr(a, "autocast")][0])
        return fake

    monkeypatch.setattr(sardfq.experiments.run, "load_model", lambda *a, **k: (None, None))
    for name in ("estimate_synthesis_of", "estimate_quantization"):  # no model here to time
        monkeypatch.setattr(sardfq.experiments.estimate, name, lambda *a, **k: None)
    monkeypatch.setattr(sardfq.experiments.run, "synthesize", capture("synthesize"))
    monkeypatch.setattr(sardfq.calibset.CalibrationSet, "load", staticmethod(lambda path: None))
    monkeypatch.setattr(sardfq.experiments.run, "quantize", lambda *a, **k: None)
    monkeypatch.setattr(sardfq.experiments.run, "reconstruct", capture("reconstruct"))
    for command in (["synthesize", "vit_tiny_cifar10"], ["quantize", "vit_tiny_cifar10", "--calib", "c"]):
        for flags, expected in (([], None), (["--bf16"], "bf16")):
            with pytest.raises(_Captured) as found:
                main(command + flags + ["--device", "cpu"])
            assert found.value.args[0].autocast == expected, (command, flags)
