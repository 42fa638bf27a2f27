"""The experiment runner: config validation and JSON round trip, atomic records, the result table."""
import json
import os

import pytest
import torch

import sardfq
from sardfq.experiments import (ExperimentConfig, ExperimentResult, load_results, parse_bits,
                                quickstart_configs, quickstart_table, read_record, summarize_results,
                                write_json_atomic)


def test_config_json_round_trip():
    config = ExperimentConfig(method="sardfq", msr=False, w_bits=6, a_bits=6, eval_limit=100,
                              synthesis_options={"a1": 10.0}, data_root="/data")
    again = ExperimentConfig.from_json(config.to_json())
    assert again == config
    assert json.loads(config.to_json())["synthesis_options"] == {"a1": 10.0}


@pytest.mark.parametrize("field,value", [
    ("method", "magic"), ("apa", 1), ("w_bits", 1), ("a_bits", "4"), ("n", 0), ("w_bits", 16),
    ("eval_limit", 0), ("synth_iters", 0), ("device", "tpu"), ("seed", 1.5), ("synthesis_options", [1]),
    ("recon_options", "bf16"),
])
def test_config_errors_name_the_field(field, value):
    with pytest.raises(sardfq.ConfigError, match=f"ExperimentConfig.{field}"):
        ExperimentConfig(**{field: value})


def test_config_from_dict_accepts_bits_and_names_unknown_fields():
    config = ExperimentConfig.from_dict({"bits": "W6A8", "seed": 2})
    assert (config.w_bits, config.a_bits, config.bits) == (6, 8, "w6a8")
    with pytest.raises(sardfq.ConfigError, match="'recon_iter' \\(did you mean 'recon_iters'"):
        ExperimentConfig.from_dict({"recon_iter": 3})
    with pytest.raises(sardfq.ConfigError, match="wXaY|w4a4"):
        parse_bits("4/4")


def test_run_id_is_stable_readable_and_ignores_where_it_runs():
    a = ExperimentConfig(method="sardfq", apa=False)
    assert a.run_id() == ExperimentConfig(method="sardfq", apa=False, device="cuda", data_root="/x").run_id()
    assert a.run_id() != a.replace(seed=1).run_id()
    assert a.run_id().startswith("vit_tiny_cifar10-sardfq-msr-sl-w4a4-s0-")
    assert ExperimentConfig(method="noise").variant == "noise"
    assert ExperimentConfig(apa=False, msr=False, sl=False).variant == "sardfq[none]"
    # the held-out evaluation is part of a run only when asked for
    assert a.replace(heldout_limit=0).run_id() == a.run_id() != a.replace(heldout_limit=100).run_id()
    # likewise reconstruction options: bf16 reconstruction is another run, no options the same one
    assert a.replace(recon_options={}).run_id() == a.run_id() != a.replace(recon_options={"autocast": "bf16"}).run_id()


def test_options_reach_the_synthesis_and_reconstruction_configs():
    from sardfq.experiments import _recon_config, _synthesis_config

    config = ExperimentConfig(synthesis_options={"autocast": "bf16"}, recon_options={"autocast": "bf16"})
    assert _synthesis_config(config).autocast == "bf16" and _recon_config(config).autocast == "bf16"
    assert ExperimentConfig.from_json(config.to_json()) == config
    with pytest.raises(sardfq.ConfigError, match="ReconConfig.autocast"):
        _recon_config(config.replace(recon_options={"autocast": "fp8"}))



def test_result_table_names_synthesis_and_reconstruction_options_in_design():
    base = {"kind": "experiment", "variant": "sardfq", "bits": "w4a4", "fp": {"top1": 0.7, "top5": 0.9},
            "quantized": {"top1": 0.6, "top5": 0.9, "n_images": 10}}
    records = [{**base, "run_id": str(i), "config": ExperimentConfig(seed=i, **options).to_dict()}
               for i, options in enumerate([{}, {"synthesis_options": {"autocast": "bf16"}},
                                            {"synthesis_options": {"autocast": "bf16"},
                                             "recon_options": {"autocast": "bf16"}}])]
    assert list(load_results(records)["design"]) == ["default", "autocast=bf16",
                                                     "autocast=bf16, recon_autocast=bf16"]


def test_synthesis_id_is_shared_by_runs_that_only_quantize_differently():
    a = ExperimentConfig(method="sardfq", seed=1)
    same = [a.replace(w_bits=8, a_bits=8), a.replace(recon_iters=3, eval_limit=10, heldout_limit=5)]
    assert {c.synthesis_id() for c in same} == {a.synthesis_id()}
    different = [a.replace(seed=2), a.replace(msr=False), a.replace(synth_iters=5), a.replace(n=8),
                 a.replace(method="psaq"), a.replace(synthesis_options={"prior": "laplace"})]
    assert len({c.synthesis_id() for c in different} | {a.synthesis_id()}) == len(different) + 1
    # noise does not iterate and has no switches: those fields do not split its calibration set
    noise = ExperimentConfig(method="noise")
    assert noise.synthesis_id() == noise.replace(synth_iters=7, apa=False).synthesis_id()


def test_write_json_atomic_leaves_no_temporaries(tmp_path):
    path = write_json_atomic(tmp_path / "sub" / "r.json", {"a": 1})
    assert read_record(path) == {"a": 1}
    assert os.listdir(tmp_path / "sub") == ["r.json"]
    with pytest.raises(TypeError):
        write_json_atomic(path, {"a": object()})
    assert read_record(path) == {"a": 1}  # the old record survives a failed write
    assert os.listdir(tmp_path / "sub") == ["r.json"]
    (tmp_path / "bad.json").write_text('{"a": ')
    assert read_record(tmp_path / "bad.json") is None


def _result(method, seed, q_top1):
    config = ExperimentConfig(method=method, seed=seed, eval_limit=10)
    return ExperimentResult(config=config, fp={"top1": 0.7, "top5": 0.95, "n_images": 10, "seconds": 1.0},
                            quantized={"top1": q_top1, "top5": 0.9, "n_images": 10, "seconds": 1.0,
                                       "agreement": 0.8},
                            calibration_path="c.safetensors", calibration={"method": method},
                            timings={"synthesis": 2.0, "q_eval": 1.0}, versions={"torch": "x"}, device="cpu")


def test_result_round_trip_and_table(tmp_path):
    results = [_result("noise", 0, 0.2), _result("sardfq", 0, 0.5), _result("sardfq", 1, 0.6)]
    for r in results:
        r.save(tmp_path / "sweep" / f"{r.config.run_id()}.json")
    (tmp_path / "sweep" / "other.json").write_text('{"kind": "something else"}')
    again = ExperimentResult.from_dict(json.loads(next((tmp_path / "sweep").glob("*noise*.json")).read_text()))
    assert again.config == results[0].config and again.q_top1 == 0.2
    frame = load_results(tmp_path)
    assert len(frame) == 3 and set(frame["variant"]) == {"noise", "sardfq"}
    summary = summarize_results(frame)
    sardfq_row = summary[summary["variant"] == "sardfq"].iloc[0]
    assert sardfq_row["runs"] == 2 and sardfq_row["q_top1"] == pytest.approx(55.0)
    cells = sardfq.mean_std_table(frame, "variant")["q_top1"]
    assert cells["sardfq"] == "55.0 ± 7.1 (2)" and cells["noise"] == "20.0 (1)"
    assert set(frame["design"]) == {"default"} and frame["heldout_q_top1"].isna().all()
    lines = quickstart_table(results[:2])
    assert "10 CIFAR-10 test images" in lines[0]
    assert lines[2].split()[-3:-1] == ["70.00", "95.00"] and "50.00" in lines[-1]


def test_quickstart_configs_are_noise_then_sardfq_at_w4a4():
    noise, sardfq_config = quickstart_configs(synth_iters=5)
    assert (noise.method, sardfq_config.method) == ("noise", "sardfq")
    assert noise.bits == sardfq_config.bits == "w4a4" and sardfq_config.synth_iters == 5


def test_cuda_on_a_machine_without_it_is_a_config_error():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    from sardfq.experiments import resolve_device

    with pytest.raises(sardfq.ConfigError, match="device"):
        resolve_device("cuda")


@pytest.mark.slow
def test_run_experiment_end_to_end_on_the_teacher(cifar_root, tmp_path):
    from sardfq.experiments import run_experiment

    config = ExperimentConfig(method="sardfq", n=4, synth_iters=2, recon_iters=2, eval_limit=50,
                              data_root=str(cifar_root))
    result = run_experiment(config, out_dir=tmp_path, progress=False)
    record = result.to_dict()
    assert record["fp"]["n_images"] == record["quantized"]["n_images"] == 50
    assert 0 <= record["quantized"]["top1"] <= 1 and record["fp"]["top1"] > 0.5
    assert os.path.isfile(record["calibration_path"])
    assert set(record["timings"]) >= {"load", "fp_eval", "synthesis", "quantize", "reconstruct", "q_eval"}
    assert set(record["versions"]) == {"sardfq", "torch", "timm", "python"}
    again = run_experiment(config.replace(method="noise", recon_iters=0), progress=False,
                           out_dir=tmp_path / "noise")
    assert again.fp["cached"] is True and again.fp["top1"] == result.fp["top1"]
    assert "reconstruct" not in again.timings


@pytest.mark.slow
def test_runs_share_a_calibration_dir_and_report_the_heldout_split(cifar_root, tmp_path):
    from sardfq.calibset import CalibrationSet
    from sardfq.experiments import run_experiment

    calib_dir = tmp_path / "calibration"
    config = ExperimentConfig(method="sardfq", n=2, synth_iters=2, recon_iters=0, eval_limit=20,
                              heldout_limit=30, data_root=str(cifar_root))
    first = run_experiment(config, calibration_dir=calib_dir, progress=False)
    assert first.calibration_path == str(calib_dir / f"{config.synthesis_id()}.safetensors")
    assert "synthesis" in first.timings
    assert first.heldout["fp"]["n_images"] == first.heldout["quantized"]["n_images"] == 30
    w8 = run_experiment(config.replace(w_bits=8, a_bits=8), calibration_dir=calib_dir, progress=False)
    assert "synthesis" not in w8.timings and w8.calibration_path == first.calibration_path
    assert w8.heldout["fp"]["cached"] is True
    # a damaged shared file is synthesized again rather than trusted
    with open(first.calibration_path, "r+b") as fh:
        fh.truncate(100)
    again = run_experiment(config, calibration_dir=calib_dir, progress=False)
    assert "synthesis" in again.timings
    assert torch.equal(CalibrationSet.load(again.calibration_path).images,
                       CalibrationSet.load(first.calibration_path).images)


def test_cli_run_builds_the_config_from_options_and_a_config_file(tmp_path, monkeypatch, capsys):
    import sardfq.experiments as experiments
    from sardfq.cli import main

    seen = []

    def fake_run(config, *, out_dir=None, progress=True):
        seen.append(config)
        return _result(config.method, config.seed, 0.25)

    monkeypatch.setattr(experiments, "run_experiment", fake_run)
    (tmp_path / "c.json").write_text(json.dumps({"method": "psaq", "n": 8, "seed": 3}))
    assert main(["run", "--config", str(tmp_path / "c.json"), "--bits", "w6a6", "--limit", "10",
                 "--heldout", "20", "--no-msr", "--device", "cpu", "--json", "--no-progress"]) == 0
    config = seen[0]
    assert (config.method, config.n, config.seed, config.bits, config.eval_limit, config.msr) == \
        ("psaq", 8, 3, "w6a6", 10, False)
    assert config.heldout_limit == 20
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert record["quantized"]["top1"] == 0.25
    assert main(["run", "--bits", "4bit", "--device", "cpu"]) == 2  # input errors: one line, status 2
    assert "w4a4" in capsys.readouterr().err


def test_run_or_load_reuses_a_saved_record(tmp_path, monkeypatch):
    import sardfq.experiments as experiments

    saved = _result("noise", 0, 0.3)
    saved.save(tmp_path / f"{saved.config.run_id()}.json")
    monkeypatch.setattr(experiments, "run_experiment", lambda *a, **k: pytest.fail("should load"))
    loaded = sardfq.run_or_load(saved.config, tmp_path)
    assert loaded.config == saved.config and loaded.q_top1 == 0.3
    ran = []
    monkeypatch.setattr(experiments, "run_experiment",
                        lambda config, **k: ran.append(config) or _result("psaq", 1, 0.4))
    other = saved.config.replace(method="psaq", seed=1)
    assert sardfq.run_or_load(other, tmp_path).q_top1 == 0.4 and ran == [other]
    assert (tmp_path / f"{other.run_id()}.json").is_file()
