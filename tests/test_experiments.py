"""The experiment runner: config validation and JSON round trip, atomic records, the result table."""
import json
import os
from pathlib import Path

import pytest
import torch

import sardfq
from sardfq import QuantConfig, ReconConfig, SynthesisConfig
from sardfq.experiments.config import ExperimentConfig
from sardfq.experiments.run import quickstart_configs
from sardfq.io import read_record
from sardfq.quant.config import parse_bits
from sardfq.experiments.records import RECORD_VERSION, ExperimentResult, load_results, quickstart_table, summarize_results

RESULTS = Path(__file__).resolve().parent.parent / "results"


def test_config_json_round_trip():
    config = ExperimentConfig(synthesis=SynthesisConfig(msr=False, apa_weight=10.0, betas=(0.4, 0.8)),
                              quant=QuantConfig(w_bits=6, a_bits=6, overrides={"head": {"w_bits": 8}}),
                              recon=ReconConfig(iters=5, train=("weights",)), eval_limit=100, data_root="/data")
    again = ExperimentConfig.from_json(config.to_json())
    assert again == config and again.run_id() == config.run_id()
    d = json.loads(config.to_json())
    assert d["synthesis"]["apa_weight"] == 10.0 and d["synthesis"]["msr"] is False
    assert d["quant"]["w_bits"] == 6 and d["quant"]["overrides"] == {"head": {"w_bits": 8}}
    assert d["recon"] == {**ReconConfig().to_dict(), "iters": 5, "train": ["weights"]}
    assert set(d) == {"model", "checkpoint", "seed", "synthesis", "quant", "recon", "eval_limit",
                      "heldout_limit", "eval_batch_size", "device", "data_root"}


def test_nested_seeds_follow_the_experiment_seed():
    config = ExperimentConfig(seed=3)
    assert config.synthesis.seed == config.recon.seed == 3
    assert config.replace(seed=4).synthesis.seed == 4
    with pytest.raises(sardfq.ConfigError, match="synthesis.seed"):
        ExperimentConfig.from_dict({"seed": 1, "synthesis": {"seed": 2}})
    with pytest.raises(sardfq.ConfigError, match="recon.seed"):
        ExperimentConfig(seed=1, recon=ReconConfig(seed=2))


@pytest.mark.parametrize("field,value", [
    ("eval_limit", 0), ("device", "tpu"), ("seed", 1.5), ("heldout_limit", -1), ("synthesis", [1]),
    ("model", ""),
])
def test_config_errors_name_the_field(field, value):
    with pytest.raises(sardfq.ConfigError, match=f"ExperimentConfig.{field}"):
        ExperimentConfig(**{field: value})


@pytest.mark.parametrize("values,message", [
    ({"synthesis": {"n": 0}}, "SynthesisConfig.n"),
    ({"synthesis.iterations": 0}, "SynthesisConfig.iterations"),
    ({"quant": {"w_bits": 1}}, "QuantConfig.w_bits"),
    ({"bits": "w16a4"}, "QuantConfig.w_bits"),
    ({"recon": {"iters": -1}}, "ReconConfig.iters"),
])
def test_nested_values_are_validated_when_built(values, message):
    with pytest.raises(sardfq.ConfigError, match=message):
        ExperimentConfig.from_dict(values)


def test_config_methods_come_from_the_methods_registry():
    assert ExperimentConfig.from_dict({"synthesis.method": "psaq"}).synthesis.method == "psaq"
    with pytest.raises(sardfq.UnknownNameError, match="Did you mean: psaq"):
        ExperimentConfig.from_dict({"synthesis": {"method": "psqa"}})


def test_config_from_dict_accepts_bits_and_dotted_keys():
    config = ExperimentConfig.from_dict({"bits": "W6A8", "seed": 2, "synthesis.apa_weight": 10.0,
                                         "synthesis": {"prior": "laplace"}})
    assert (config.quant.w_bits, config.quant.a_bits, config.quant.attn_bits, config.bits) == (6, 8, 8, "w6a8")
    assert (config.synthesis.apa_weight, config.synthesis.prior) == (10.0, "laplace")
    assert config.design == {"apa_weight": 10.0, "prior": "laplace"}
    with pytest.raises(sardfq.ConfigError, match="wXaY|w<bits>a<bits>"):
        parse_bits("4/4")


def test_the_bit_setting_is_named_setting_and_bits_is_its_old_name():
    config = ExperimentConfig.from_dict({"setting": "w4a4-attn2"})
    assert (config.setting, config.bits, config.quant.attn_bits) == ("w4a4-attn2", "w4a4", 2)
    assert ExperimentConfig.from_dict({"bits": "w4a4", "quant.attn_bits": 2}) == config  # a sweep's spelling
    assert ExperimentConfig.from_dict({"setting": config.setting}) == config  # read back as it is written
    assert config.replace(setting="w8a8").quant.w_bits == config.replace(bits="w8a8").quant.w_bits == 8
    assert ExperimentConfig.from_dict({"setting": "w4a4"}, {"bits": "w6a6"}).setting == "w6a6"  # later wins
    with pytest.raises(sardfq.ConfigError, match="given twice"):
        ExperimentConfig.from_dict({"setting": "w4a4", "bits": "w6a6"})


@pytest.mark.parametrize("values,message", [
    ({"recon_iter": 3}, r"ExperimentConfig has no field 'recon_iter' \(did you mean 'recon.iters'"),
    ({"method": "noise"}, r"no field 'method' \(did you mean 'synthesis.method'"),
    ({"synth_iters": 3}, r"did you mean 'synthesis.iterations'"),
    ({"a1": 3}, r"did you mean 'synthesis.apa_weight'"),
    ({"synthesis": {"a1": 3}}, r"ExperimentConfig.synthesis \(SynthesisConfig\) has no field 'a1' "
                               r"\(did you mean 'apa_weight'"),
    ({"synthesis.prio": "gmm"}, r"no field 'prio' \(did you mean 'prior'"),
    ({"quant": {"wbits": 4}}, r"ExperimentConfig.quant \(QuantConfig\) has no field 'wbits' "
                              r"\(did you mean 'w_bits'"),
    ({"recon": {"iterations": 4}}, r"ExperimentConfig.recon \(ReconConfig\) has no field 'iterations'"),
])
def test_unknown_options_anywhere_name_the_field(values, message):
    with pytest.raises(sardfq.ConfigError, match=message):
        ExperimentConfig.from_dict(values)


def test_replace_changes_nested_fields_only_where_asked():
    base = ExperimentConfig.from_dict({"synthesis": {"n": 8, "apa_weight": 10.0}, "bits": "w4a4"})
    noise = base.replace(synthesis={"method": "noise"})
    assert (noise.synthesis.method, noise.synthesis.n, noise.synthesis.apa_weight) == ("noise", 8, 10.0)
    w8 = base.replace(bits="w8a8")
    assert (w8.quant.w_bits, w8.quant.a_bits, w8.quant.attn_bits) == (8, 8, 8)  # attention follows
    whole = base.replace(synthesis=SynthesisConfig(method="psaq"))
    assert whole.synthesis == SynthesisConfig(method="psaq")
    assert base.replace(**{"recon.iters": 0}).recon.iters == 0


def test_one_default_for_reconstruction_steps():
    from sardfq.cli import build_parser
    from sardfq.quant.config import RECON_ITERS

    assert ReconConfig().iters == ExperimentConfig().recon.iters == RECON_ITERS
    for command in (["run"], ["quantize", "m", "--calib", "c"]):
        args = build_parser().parse_args(command)
        assert "recon.iters" not in vars(args)  # not typed: the dataclass default applies


def test_run_has_an_option_for_every_config_field():
    import dataclasses

    from sardfq.cli import build_parser
    from sardfq.experiments.config import NESTED

    given = set(build_parser().parse_args(["run"]).config_fields)
    expected = {f"{name}.{f.name}" for name, kind in NESTED.items() for f in dataclasses.fields(kind)
                if f.name != "seed"} - {"quant.overrides"}  # seeds follow `seed`; overrides: --config
    expected |= {f.name for f in dataclasses.fields(ExperimentConfig)} - set(NESTED) - {"model", "device"}
    assert given == expected
    args = build_parser().parse_args(["run", "--a1", "5", "--no-deep-only", "--betas", "0.4", "0.8",
                                      "--attn-bits", "fp", "--recon-train", "weights", "--limit", "none"])
    assert (getattr(args, "synthesis.apa_weight"), getattr(args, "synthesis.deep_only")) == (5.0, False)
    assert getattr(args, "synthesis.betas") == [0.4, 0.8] and getattr(args, "quant.attn_bits") is None
    assert getattr(args, "recon.train") == ["weights"] and args.eval_limit is None


def test_run_id_is_stable_readable_and_ignores_where_it_runs():
    a = ExperimentConfig(synthesis=SynthesisConfig(apa=False))
    assert a.run_id() == a.replace(device="cuda", data_root="/x", eval_batch_size=8).run_id()
    assert a.run_id() != a.replace(seed=1).run_id()
    assert a.run_id().startswith("vit_tiny_cifar10-sardfq-msr-sl-w4a4-s0-")
    assert ExperimentConfig(synthesis=SynthesisConfig(method="noise")).variant == "noise"
    assert ExperimentConfig.from_dict({"synthesis": dict(apa=False, msr=False, sl=False)}).variant == "sardfq[none]"
    # the held-out evaluation is part of a run only when asked for
    assert a.replace(heldout_limit=0).run_id() == a.run_id() != a.replace(heldout_limit=100).run_id()
    # reconstruction settings beyond the steps are part of the run
    assert a.replace(recon={"lr": 1e-4}).run_id() != a.run_id()
    # bf16 autocast makes another run and another calibration set; float32 (the default) the same ones
    bf16 = a.replace(synthesis={"autocast": "bf16"}, recon={"autocast": "bf16"})
    assert a.replace(synthesis={"autocast": None}).run_id() == a.run_id() != bf16.run_id()
    assert bf16.synthesis_id() != a.synthesis_id()
    assert a.replace(synthesis={"prior_scale": 0.2}).synthesis_id() != a.synthesis_id()


def test_ids_of_version_1_configurations_are_unchanged():
    """Records and calibration sets written before the nesting are found under the same names
    (identifiers computed by the version-1 code for these configurations)."""
    cases = [
        ({}, "vit_tiny_cifar10-sardfq-w4a4-s0-9a1db255", "vit_tiny_cifar10-sardfq-s0-bb8f0006"),
        ({"synthesis.method": "noise", "seed": 2, "eval_limit": 100},
         "vit_tiny_cifar10-noise-w4a4-s2-d3f0fe41", "vit_tiny_cifar10-noise-s2-b29772e0"),
        ({"synthesis.apa": False, "bits": "w6a6", "heldout_limit": 10},
         "vit_tiny_cifar10-sardfq-msr-sl-w6a6-s0-f0201848", "vit_tiny_cifar10-sardfq-msr-sl-s0-727362e2"),
        ({"synthesis": {"prior": "laplace"}, "quant": {"w_search": "minmax"}},
         "vit_tiny_cifar10-sardfq-w4a4-s0-7e011938", "vit_tiny_cifar10-sardfq-s0-7aef7ac0"),
        ({"synthesis": {"method": "psaq", "iterations": 7}, "recon.iters": 0, "checkpoint": "/x"},
         "vit_tiny_cifar10-psaq-w4a4-s0-afbf7b08", "vit_tiny_cifar10-psaq-s0-d8c44601"),
    ]
    for values, run_id, synthesis_id in cases:
        config = ExperimentConfig.from_dict(values)
        assert (config.run_id(), config.synthesis_id()) == (run_id, synthesis_id)


def test_synthesis_id_is_shared_by_runs_that_only_quantize_differently():
    a = ExperimentConfig(seed=1)
    same = [a.replace(bits="w8a8"), a.replace(recon={"iters": 3}, eval_limit=10, heldout_limit=5)]
    assert {c.synthesis_id() for c in same} == {a.synthesis_id()}
    different = [a.replace(seed=2), a.replace(synthesis={"msr": False}), a.replace(synthesis={"iterations": 5}),
                 a.replace(synthesis={"n": 8}), a.replace(synthesis={"method": "psaq"}),
                 a.replace(synthesis={"prior": "laplace"})]
    assert len({c.synthesis_id() for c in different} | {a.synthesis_id()}) == len(different) + 1
    # noise does not iterate and has no switches: those fields do not split its calibration set
    noise = ExperimentConfig(synthesis=SynthesisConfig(method="noise"))
    assert noise.synthesis_id() == noise.replace(synthesis={"iterations": 7, "apa": False}).synthesis_id()


def test_synthesis_id_names_the_device_kind_except_the_cpu():
    """Only CPU synthesis is deterministic: a set made on a GPU is never reused on the CPU."""
    cpu = ExperimentConfig(device="cpu")
    cuda = cpu.replace(device="cuda")
    assert cuda.synthesis_id() != cpu.synthesis_id()
    assert cuda.synthesis_id() == cpu.replace(device="cuda:1").synthesis_id()
    assert cuda.run_id() == cpu.run_id()
    assert cpu.synthesis_id() == "vit_tiny_cifar10-sardfq-s0-bb8f0006"  # as before the device counted


def _result(method, seed, q_top1):
    config = ExperimentConfig(synthesis=SynthesisConfig(method=method), seed=seed, eval_limit=10)
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
    noise, sardfq_config = quickstart_configs(synthesis={"iterations": 5}, recon={"iters": 2})
    assert (noise.synthesis.method, sardfq_config.synthesis.method) == ("noise", "sardfq")
    assert noise.bits == sardfq_config.bits == "w4a4"
    assert (sardfq_config.synthesis.iterations, sardfq_config.synthesis.n, sardfq_config.recon.iters) == (5, 32, 2)


def test_cuda_on_a_machine_without_it_is_a_config_error():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    from sardfq.models import resolve_device

    with pytest.raises(sardfq.ConfigError, match="device"):
        resolve_device("cuda")


@pytest.mark.slow
def test_run_experiment_end_to_end_on_the_teacher(cifar_root, tmp_path):
    from sardfq.experiments.run import run_experiment

    config = ExperimentConfig.from_dict({"synthesis": {"n": 4, "iterations": 2}, "recon.iters": 2,
                                         "eval_limit": 50, "data_root": str(cifar_root)})
    result = run_experiment(config, out_dir=tmp_path, progress=False)
    record = result.to_dict()
    assert record["fp"]["n_images"] == record["quantized"]["n_images"] == 50
    assert 0 <= record["quantized"]["top1"] <= 1 and record["fp"]["top1"] > 0.5
    assert os.path.isfile(record["calibration_path"])
    assert set(record["timings"]) >= {"load", "fp_eval", "synthesis", "quantize", "reconstruct", "q_eval"}
    assert set(record["versions"]) == {"sardfq", "torch", "timm", "python"}
    assert record["config"]["recon"]["iters"] == 2 and record["config"]["synthesis"]["n"] == 4
    rebuilt = ExperimentConfig.from_dict(json.loads(json.dumps(record["config"])))
    assert rebuilt == config and rebuilt.run_id() == record["run_id"]
    again = run_experiment(config.replace(synthesis={"method": "noise"}, recon={"iters": 0}), progress=False,
                           out_dir=tmp_path / "noise")
    assert again.fp["cached"] is True and again.fp["top1"] == result.fp["top1"]
    assert "reconstruct" not in again.timings


@pytest.mark.slow
def test_runs_share_a_calibration_dir_and_report_the_heldout_split(cifar_root, tmp_path):
    from sardfq.calibset import CalibrationSet
    from sardfq.experiments.run import run_experiment

    calib_dir = tmp_path / "calibration"
    config = ExperimentConfig.from_dict({"synthesis": {"n": 2, "iterations": 2}, "recon.iters": 0,
                                         "eval_limit": 20, "heldout_limit": 30, "data_root": str(cifar_root)})
    first = run_experiment(config, calibration_dir=calib_dir, progress=False)
    assert first.calibration_path == str(calib_dir / f"{config.synthesis_id()}.safetensors")
    assert "synthesis" in first.timings
    assert first.heldout["fp"]["n_images"] == first.heldout["quantized"]["n_images"] == 30
    w8 = run_experiment(config.replace(bits="w8a8"), calibration_dir=calib_dir, progress=False)
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
    import sardfq.experiments.estimate as estimate
    import sardfq.experiments.run as experiment
    from sardfq.cli import main

    seen = []

    def fake_run(config, *, out_dir=None, progress=True):
        seen.append(config)
        return _result(config.synthesis.method, config.seed, 0.25)

    monkeypatch.setattr(experiment, "run_experiment", fake_run)
    monkeypatch.setattr(estimate, "estimate_experiment", lambda config: None)  # the default run is long
    (tmp_path / "c.json").write_text(json.dumps({"synthesis": {"method": "psaq", "n": 8, "prior": "laplace"},
                                                 "recon.iters": 7, "seed": 3}))
    assert main(["run", "--config", str(tmp_path / "c.json"), "--bits", "w6a6", "--limit", "10",
                 "--heldout", "20", "--no-msr", "--a1", "50", "--k-apa", "3", "--recon-lr", "1e-4",
                 "--synth-iters", "9", "--device", "cpu", "--json", "--no-progress"]) == 0
    config = seen[0]
    s = config.synthesis
    assert (s.method, s.n, s.prior, s.msr, s.apa_weight, s.k_apa, s.iterations) == \
        ("psaq", 8, "laplace", False, 50.0, 3, 9)
    assert (config.seed, config.bits, config.eval_limit, config.heldout_limit) == (3, "w6a6", 10, 20)
    assert (config.recon.iters, config.recon.lr) == (7, 1e-4)
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert record["quantized"]["top1"] == 0.25
    # options not typed keep the dataclass defaults
    assert main(["run", "--device", "cpu", "--no-progress"]) == 0
    assert seen[-1] == ExperimentConfig()
    capsys.readouterr()
    assert main(["run", "--bits", "4bit", "--device", "cpu"]) == 2  # input errors: one line, status 2
    assert "w<bits>a<bits>" in capsys.readouterr().err


@pytest.mark.parametrize("content,message", [
    ('{"synthesis": {"method": "psaq", "a1": 10}}', "has no field 'a1' (did you mean 'apa_weight'?)"),
    ('{"quant": {"w_bits": 4, "wbits": 4}}', "has no field 'wbits' (did you mean 'w_bits'?)"),
    ('{"synthesis_options": {"k_apaa": 3}, "quant_options": {}}', "has no field 'k_apaa'"),
    ('{"recon": {"iters": 2, "lrr": 1}}', "has no field 'lrr' (did you mean 'lr'?)"),
    ('{"synthesis": ', "is not valid JSON"),
    ('[1, 2]', "must hold a JSON object"),
])
def test_cli_run_bad_config_file_is_one_line_before_any_work(content, message, tmp_path, monkeypatch, capsys):
    import sardfq.experiments.run as experiment
    import sardfq.models as models
    from sardfq.cli import main

    monkeypatch.setattr(experiment, "run_experiment", lambda *a, **k: pytest.fail("ran an experiment"))
    monkeypatch.setattr(models, "load_model", lambda *a, **k: pytest.fail("loaded a model"))
    path = tmp_path / "config.json"
    path.write_text(content)
    assert main(["run", "--config", str(path), "--device", "cpu", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_record_rebuilds_the_same_experiment():
    result = _result("sardfq", 2, 0.5)
    result.config = ExperimentConfig.from_dict({"seed": 2, "synthesis": {"apa_weight": 10.0, "k_msr": 2},
                                                "quant": {"a_search": "minmax"}, "recon.iters": 3})
    record = json.loads(json.dumps(result.to_dict()))
    assert record["record_version"] == RECORD_VERSION == 2
    assert record["config"]["synthesis"] == result.config.synthesis.to_dict() | {
        "betas": [0.5, 0.9], "jitter_px": [15, 30], "prune_at": [0.05, 0.1, 0.2, 0.3]}  # tuples come back as lists
    assert record["config"]["quant"]["a_search"] == "minmax" and record["config"]["recon"]["iters"] == 3
    again = ExperimentConfig.from_dict(record["config"])
    assert again == result.config and again.run_id() == record["run_id"] == result.config.run_id()


def test_version_1_records_load():
    """A record written before the nesting (flat fields, option dicts) loads as the same experiment."""
    v1 = {"record_version": 1, "kind": "experiment", "run_id": "vit_tiny_cifar10-sardfq-w6a6-s1-a6b2be40",
          "config": {"model": "vit_tiny_cifar10", "method": "sardfq", "apa": True, "msr": False, "sl": True,
                     "w_bits": 6, "a_bits": 6, "n": 32, "synth_iters": 80, "recon_iters": 20, "eval_limit": 1000,
                     "heldout_limit": 0, "seed": 1, "device": "cpu", "data_root": None, "checkpoint": None,
                     "eval_batch_size": 256, "synthesis_options": {"apa_weight": 10.0},
                     "quant_options": {"a_search": "minmax"}},
          "variant": "sardfq[apa+sl]", "bits": "w6a6", "fp": {"top1": 0.8, "top5": 0.99, "n_images": 1000},
          "quantized": {"top1": 0.6, "top5": 0.9, "n_images": 1000, "agreement": 0.7},
          "calibration_path": "c.safetensors", "timings": {"synthesis": 1.0}}
    config = ExperimentResult.from_dict(v1).config
    assert config == ExperimentConfig.from_dict({
        "seed": 1, "bits": "w6a6", "eval_limit": 1000, "recon.iters": 20, "quant.a_search": "minmax",
        "synthesis": {"msr": False, "n": 32, "iterations": 80, "apa_weight": 10.0}})
    row = load_results(v1).iloc[0]
    assert (row["variant"], row["design"], row["synth_iters"], row["recon_iters"]) == \
        ("sardfq[apa+sl]", "apa_weight=10.0", 80, 20)


def test_committed_records_load_with_their_ids_and_calibration_sets():
    """The project's records (version 1) keep their run ids, and the seed-0 calibration sets the
    results chapter shows are found under their synthesis ids."""
    frame = load_results(RESULTS)
    assert len(frame) >= 100
    for file, run_id in zip(frame["file"], frame["run_id"]):
        record = read_record(file)
        config = ExperimentConfig.from_dict(record["config"])
        assert config.run_id() == run_id == Path(file).stem
        calib = Path(record["calibration_path"])
        if calib.parent.name == "calibration":
            assert calib.stem == config.synthesis_id()
    shown = frame[(frame["seed"] == 0) & (frame["bits"] == "w4a4") & frame["file"].str.contains("teacher_main")]
    assert {Path(p).is_file() for p in shown["calibration_path"]} == {True}


def test_run_or_load_reuses_a_saved_record(tmp_path, monkeypatch):
    import sardfq.experiments.run as experiment

    saved = _result("noise", 0, 0.3)
    saved.save(tmp_path / f"{saved.config.run_id()}.json")
    monkeypatch.setattr(experiment, "run_experiment", lambda *a, **k: pytest.fail("should load"))
    loaded = sardfq.run_or_load(saved.config, tmp_path)
    assert loaded.config == saved.config and loaded.q_top1 == 0.3
    ran = []
    monkeypatch.setattr(experiment, "run_experiment",
                        lambda config, **k: ran.append(config) or _result("psaq", 1, 0.4))
    other = saved.config.replace(synthesis={"method": "psaq"}, seed=1)
    assert sardfq.run_or_load(other, tmp_path).q_top1 == 0.4 and ran == [other]
    assert (tmp_path / f"{other.run_id()}.json").is_file()
