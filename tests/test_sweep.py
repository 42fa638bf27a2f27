"""The batch runner: grid expansion, skipping finished runs, atomic records, kill + resume, Dask."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import sardfq
from sardfq.experiments.sweep import SweepSpec, execute_run, expand_grid, load_sweep, run_sweep

TESTS = Path(__file__).resolve().parent


def fake_experiment(config, *, out_dir=None, progress=True):
    """A stand-in for run_experiment: sleeps a little, logs the call, returns a record."""
    delay = float(os.environ.get("SARDFQ_FAKE_DELAY", "0"))
    log = os.environ.get("SARDFQ_FAKE_LOG")
    if log:
        with open(log, "a") as fh:
            fh.write(config.run_id() + "\n")
    time.sleep(delay)
    if config.seed == 99:
        raise RuntimeError("seed 99 always fails")
    return {"kind": "experiment", "config": config.to_dict(), "variant": config.variant,
            "bits": config.bits, "fp": {"top1": 0.7, "top5": 0.9, "n_images": 10},
            "quantized": {"top1": 0.1 * config.seed, "top5": 0.5, "n_images": 10, "agreement": 0.5},
            "timings": {"synthesis": delay}, "pid": os.getpid()}


def _spec(tmp_path: Path, seeds=(0, 1, 2, 3, 4, 5), name="toy") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(textwrap.dedent(f"""\
        name: {name}
        experiment: test_sweep:fake_experiment
        fixed: {{synthesis: {{n: 4, iterations: 2}}, recon.iters: 0, eval_limit: 10}}
        grid:
          synthesis.method: [noise, sardfq]
          seed: {list(seeds)}
    """))
    return path


def test_grid_expansion_bits_switches_and_union():
    runs = expand_grid([
        {"synthesis.method": ["noise", "psaq"], "bits": ["w4a4", "w6a6"]},
        {"synthesis.method": "sardfq",
         "switches": [{"synthesis": {"apa": False, "msr": False, "sl": False}}, {"synthesis.apa": True}]},
        {"synthesis": [{"prior": "laplace"}, {"k_apa": 3}]},
    ], fixed={"synthesis": {"n": 8}, "seed": 1})
    assert len(runs) == 8
    assert runs[0] == {"synthesis": {"n": 8, "method": "noise"}, "seed": 1, "bits": "w4a4"}
    assert runs[4]["synthesis"] == {"n": 8, "method": "sardfq", "apa": False, "msr": False, "sl": False}
    assert runs[5]["synthesis"] == {"n": 8, "method": "sardfq", "apa": True}
    assert runs[6]["synthesis"] == {"n": 8, "prior": "laplace"} and runs[7]["synthesis"] == {"n": 8, "k_apa": 3}
    config = sardfq.ExperimentConfig.from_dict(runs[1])
    assert (config.synthesis.n, config.synthesis.method, config.bits, config.seed) == (8, "noise", "w6a6", 1)


def test_spec_runs_are_validated_and_deduplicated():
    spec = SweepSpec.from_dict({"name": "x", "grid": {"synthesis.method": ["noise", "noise"], "seed": [0]}})
    assert len(spec.runs()) == 1
    bad = SweepSpec.from_dict({"name": "x", "grid": {"methd": ["noise"]}})
    with pytest.raises(sardfq.ConfigError, match="sweep 'x'.*'methd' \\(did you mean 'synthesis.method'"):
        bad.runs()
    with pytest.raises(sardfq.ConfigError, match="no key 'grids' \\(did you mean 'grid'"):
        SweepSpec.from_dict({"name": "x", "grids": {}})
    with pytest.raises(sardfq.UnknownNameError, match="sweep 'x'.*SynthesisConfig.method"):
        SweepSpec.from_dict({"name": "x", "grid": {"synthesis.method": ["magic"]}}).runs()


@pytest.mark.parametrize("row,message", [
    ({"synthesis": {"a1": 10.0}}, "'a1' (did you mean 'apa_weight'?)"),
    ({"synthesis.prior": "gmm", "synthesis.k_ap": 3}, "'k_ap' (did you mean 'k_apa'?)"),
    ({"quant": {"w_bit": 4}}, "'w_bit' (did you mean 'w_bits'?)"),
    ({"synthesis_options": {"prior": "laplace"}}, "'synthesis_options' (did you mean 'synthesis'?)"),
])
def test_sweep_row_with_an_unknown_key_fails_before_any_run(row, message, tmp_path):
    spec = SweepSpec.from_dict({"name": "bad", "experiment": "test_sweep:fake_experiment",
                                "grid": [{"seed": [0]}, {"design": [row]}]})
    with pytest.raises(sardfq.ConfigError) as info:
        run_sweep(spec, allow_code=True, results_dir=tmp_path, progress=False)
    assert message in str(info.value)
    assert not (tmp_path / "bad").exists()


def test_sweep_runs_then_skips(tmp_path, monkeypatch):
    monkeypatch.setenv("SARDFQ_FAKE_LOG", str(tmp_path / "calls.log"))
    spec = _spec(tmp_path, seeds=(0, 1))
    report = run_sweep(spec, allow_code=True, results_dir=tmp_path / "results", progress=False)
    assert report.ok and len(report.completed) == 4 and not report.skipped
    records = sorted((tmp_path / "results" / "toy").glob("*.json"))
    assert len(records) == 4
    for path in records:
        record = json.loads(path.read_text())
        assert record["run_id"] == path.stem and record["sweep"] == "toy"
    again = run_sweep(spec, allow_code=True, results_dir=tmp_path / "results", progress=False)
    assert len(again.skipped) == 4 and not again.completed
    assert len((tmp_path / "calls.log").read_text().split()) == 4


def test_failed_run_is_recorded_apart_and_retried(tmp_path):
    spec = SweepSpec.from_dict({"name": "f", "experiment": "test_sweep:fake_experiment",
                                "grid": {"synthesis.method": "noise", "seed": [0, 99]}})
    report = run_sweep(spec, allow_code=True, results_dir=tmp_path, progress=False)
    assert len(report.completed) == 1 and list(report.failed.values()) == ["RuntimeError: seed 99 always fails"]
    failed = list((tmp_path / "f").glob("*.failed.json"))
    assert len(failed) == 1 and "seed 99" in json.loads(failed[0].read_text())["error"]
    again = run_sweep(spec, allow_code=True, results_dir=tmp_path, progress=False)
    assert len(again.failed) == 1  # retried, not skipped


def test_truncated_record_is_rerun(tmp_path):
    spec = load_sweep(_spec(tmp_path, seeds=(0,)))
    run_sweep(spec, allow_code=True, results_dir=tmp_path / "r", progress=False)
    victim = next((tmp_path / "r" / "toy").glob("*.json"))
    victim.write_text(victim.read_text()[:20])  # as if a non-atomic writer had been killed
    report = run_sweep(spec, allow_code=True, results_dir=tmp_path / "r", progress=False)
    assert report.completed == [victim.stem]
    assert json.loads(victim.read_text())["run_id"] == victim.stem


@pytest.mark.slow
def test_killed_sweep_resumes_with_remaining_runs_only(tmp_path):
    spec = _spec(tmp_path)  # 12 runs of 0.4 s each
    folder = tmp_path / "results" / "toy"
    log = tmp_path / "calls.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
           "SARDFQ_FAKE_DELAY": "0.4", "SARDFQ_FAKE_LOG": str(log)}
    cmd = [sys.executable, "-m", "sardfq", "sweep", str(spec), "--results", str(tmp_path / "results"),
           "--allow-code"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and len(list(folder.glob("*.json"))) < 3:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = {p.stem for p in folder.glob("*.json")}
    assert 3 <= len(done_before) < 12, "the sweep should have been killed midway"
    for path in folder.glob("*.json"):
        assert json.loads(path.read_text())["run_id"] == path.stem  # every record complete
    started_before = log.read_text().split()

    env["SARDFQ_FAKE_DELAY"] = "0"
    out = subprocess.run(cmd + ["--json"], env=env, capture_output=True, text=True, check=True)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert set(report["skipped"]) == done_before
    assert len(report["completed"]) == 12 - len(done_before) and not report["failed"]
    assert not set(report["completed"]) & done_before
    records = {p.stem: json.loads(p.read_text()) for p in folder.glob("*.json")}
    assert len(records) == 12 and all(r["run_id"] == k for k, r in records.items())
    reran = log.read_text().split()[len(started_before):]
    assert sorted(reran) == sorted(report["completed"])  # finished runs were not run again


@pytest.mark.slow
def test_sweep_on_worker_processes(tmp_path):
    spec = load_sweep(_spec(tmp_path, seeds=(0, 1)))
    report = run_sweep(spec, allow_code=True, results_dir=tmp_path, workers=2, progress=False)
    assert report.ok and len(report.completed) == 4
    pids = {json.loads(p.read_text())["pid"] for p in (tmp_path / "toy").glob("*.json")}
    assert os.getpid() not in pids


@pytest.mark.slow
def test_sweep_on_dask_local_cluster(tmp_path):
    distributed = pytest.importorskip("distributed")
    spec = load_sweep(_spec(tmp_path, seeds=(0, 1)))
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster:
        report = run_sweep(spec, allow_code=True, results_dir=tmp_path, scheduler=cluster.scheduler_address,
                           progress=False)
        assert report.ok and len(report.completed) == 4
        with distributed.Client(cluster) as client:  # an existing client works too; all skipped
            again = run_sweep(spec, allow_code=True, results_dir=tmp_path, client=client, progress=False)
    assert len(again.skipped) == 4
    assert len(list((tmp_path / "toy").glob("*.json"))) == 4


def test_execute_run_reports_errors_instead_of_raising():
    run = SweepSpec.from_dict({"name": "e", "grid": {"seed": 99}, "experiment": "test_sweep:fake_experiment"}).runs()[0]
    outcome = execute_run(run, experiment="test_sweep:fake_experiment", allow_code=True)
    assert "seed 99 always fails" in outcome["error"]


NOTEBOOK = {
    "cells": [
        {"cell_type": "code", "id": "params", "metadata": {"tags": ["parameters"]}, "source": "seed = 0\nresult_path = None",
         "outputs": [], "execution_count": None},
        {"cell_type": "code", "id": "body", "metadata": {}, "outputs": [], "execution_count": None, "source":
         "import json\nif result_path:\n    json.dump({'kind': 'toy', 'value': seed * 2}, open(result_path, 'w'))"},
    ],
    "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    "nbformat": 4, "nbformat_minor": 5,
}


@pytest.mark.slow
def test_notebook_sweep_writes_executed_notebook_and_record(tmp_path):
    nb = tmp_path / "toy.ipynb"
    nb.write_text(json.dumps(NOTEBOOK))
    spec = SweepSpec.from_dict({"name": "nb", "grid": {"seed": [3]}})
    report = run_sweep(spec, results_dir=tmp_path, notebook=str(nb), progress=False)
    assert report.ok, report.failed
    record_file = next((tmp_path / "nb").glob("*.json"))
    record = json.loads(record_file.read_text())
    assert record["value"] == 6 and record["params"] == {"seed": 3}
    assert Path(record["executed_notebook"]).is_file()
    bad = SweepSpec.from_dict({"name": "nb2", "grid": {"sed": [3]}})
    report = run_sweep(bad, results_dir=tmp_path, notebook=str(nb), progress=False)
    assert "sed" in next(iter(report.failed.values()))


@pytest.mark.parametrize("path", sorted((TESTS.parent / "sweeps").glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_sweep_files_expand_to_valid_runs(path):
    spec = load_sweep(path)
    runs = spec.runs()
    assert runs and spec.name == path.stem
    assert len({r.run_id for r in runs}) == len(runs)


def test_notebook_runs_get_the_chapters_parameter_names():
    import papermill

    notebook = TESTS.parent / "notebooks" / "05_w4a4_calibration.ipynb"
    spec = SweepSpec.from_dict({"name": "nb", "notebook": str(notebook), "fixed": {
        "synthesis": {"n": 4, "iterations": 4}, "recon.iters": 2, "bits": "w6a6"},
        "grid": {"synthesis.method": ["noise", "sardfq"], "seed": [0]}})
    runs = spec.runs()
    assert runs[0].params == {"n": 4, "synth_iters": 4, "recon_iters": 2, "bits": "w6a6",
                              "method": "noise", "seed": 0}
    assert set(runs[1].params) <= set(papermill.inspect_notebook(str(notebook)))


def test_select_keeps_only_the_runs_with_a_value(capsys):
    spec = SweepSpec.from_dict({"name": "zoo", "fixed": {"synthesis.n": 4},
                                "grid": [{"model": ["a", "b"], "seed": [0, 1]}, {"model": ["c"], "seed": [0]}]})
    chosen = spec.select("model", "b")
    assert sorted((r.params["model"], r.params["seed"]) for r in chosen.runs()) == [("b", 0), ("b", 1)]
    assert {r.run_id for r in chosen.runs()} <= {r.run_id for r in spec.runs()}
    assert spec.select("synthesis.n", 4) is spec
    with pytest.raises(sardfq.ConfigError, match="no run has model = 'z'"):
        spec.select("model", "z")
    with pytest.raises(sardfq.ConfigError, match="fixed to 4"):
        spec.select("synthesis.n", 8)


def test_cli_sweep_only_lists_one_teachers_runs(tmp_path, capsys):
    from sardfq.cli import main

    grid = tmp_path / "zoo.yaml"
    grid.write_text("name: zoo\nfixed: {synthesis.method: noise}\ngrid: {model: [a, b], seed: [0, 1, 2]}\n")
    assert main(["sweep", str(grid), "--only", "model=b", "--only", "seed=2", "--dry-run", "--json",
                 "--results", str(tmp_path)]) == 0
    runs = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["runs"]
    assert len(runs) == 1 and runs[0].startswith("b-noise") and "-s2-" in runs[0]
    assert main(["sweep", str(grid), "--only", "model", "--dry-run"]) == 2


def test_the_book_states_each_shipped_sweeps_run_count():
    import re

    root = Path(__file__).parent.parent
    rows = re.findall(r"^\| `(sweeps/[\w.]+\.yaml)` \|.*\| (\d+) \|$", (root / "book/rerun.md").read_text(), re.M)
    assert len(rows) >= 7
    for path, runs in rows:
        assert len(load_sweep(root / path).runs()) == int(runs), path
    assert f"({len(load_sweep(root / 'sweeps/zoo_main.yaml').runs())} runs)" in (root / "book/rerun.md").read_text()
