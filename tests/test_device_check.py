"""The GPU device check, dry-run on the CPU at tiny sizes: the same script a lent GPU runs."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_device_check_dry_run_writes_every_measurement(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "SARDFQ_DATA"}  # the stand-in data path
    env.update(OUT=str(tmp_path / "out"), PYTHON=sys.executable, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])))
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "device_check.sh"), "--device", "cpu", "--tiny",
                           "--skip", "install,tests"], env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    record = json.loads((tmp_path / "out" / "device_check.json").read_text())
    assert record["ok"] and record["device"] == "cpu" and record["device_name"].startswith("cpu")
    assert record["data"].startswith("random stand-in")
    assert set(record["steps"]) == {"smoke", "timings", "teacher"}
    smoke = record["steps"]["smoke"]["commands"]
    assert set(smoke) == {"synthesize", "quantize", "eval", "run", "sweep"}
    assert all(c["ok"] and c["returncode"] == 0 for c in smoke.values()), smoke
    assert len(smoke["sweep"]["record"]["completed"]) == 2 and not smoke["sweep"]["record"]["failed"]
    assert smoke["run"]["record"]["config"]["device"] == "cpu"
    teacher = record["steps"]["teacher"]
    assert teacher["ok"] and ("skipped" in teacher or teacher["returncode"] == 0)

    synthesis = record["timings"]["synthesis"]
    models = {"deit_tiny_patch16_224 random", "deit_small_patch16_224 random", "deit_base_patch16_224 random"}
    assert {(r["model"], r["method"], r["autocast"]) for r in synthesis} == {
        (m, v, a) for m in models for v in ("CE+TV", "psaq", "sardfq") for a in ("fp32", "bf16")}
    for row in synthesis:
        assert row["ms_per_iteration"] > 0 and row["projected_1000_iterations_s"] == pytest.approx(row["ms_per_iteration"])
    quantization = record["timings"]["quantization"]
    assert {(r["model"], r["autocast"]) for r in quantization} == {(m, a) for m in models for a in ("fp32", "bf16")}
    assert all(r["calibration_s"] > 0 and r["reconstruction_s"] > 0 and r["blocks"] == 1 for r in quantization)
    assert record["anchors"]["psaq_vit_deit_base_1000_iters_rtx3090_s"] == 227.0
    assert (tmp_path / "out" / "device_check.log").is_file()
