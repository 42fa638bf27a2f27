"""One pass over everything a GPU has to show, writing one JSON file (run through device_check.sh).

    python benchmarks/device_check.py [--device cuda] [--out $OUT] [--skip install,teacher] [--tiny]

Steps, each recorded (ok, seconds, the tail of its output) in `<out>/device_check.json`, which is
rewritten after every step so a run cut short still leaves what it measured:

1. install: `pip install -e .` as the README says, offline first against the packages already
   there (a GPU machine without network has its own torch; the project's pin is then noted, not
   enforced);
2. tests: `pytest -m gpu` (the CUDA-marked tests);
3. smoke: every command once on the device: `synthesize`, `quantize` with reconstruction, `eval`,
   `run`, `sweep` with two workers (tiny sizes on the embedded teacher);
4. timings on randomly initialised deit_tiny/small/base at 224 px (no ImageNet weights offline), 32
   images: ms per synthesis iteration (median of `--warmup + --iters` steps) for CE+TV, PSAQ-ViT and
   SARDFQ, float32 and bf16 autocast, the 1000-iteration projection, and the wall time of
   calibration and of block reconstruction (projected to 1000 steps per block);
5. teacher: `sardfq train-teacher --preset deit_tiny_cifar10_gpu` when that preset exists and real
   CIFAR-10 is at hand, its weights copied to `<out>` (files up to 16 MB come back from a lent GPU).

Without CIFAR-10 under `--data` / $SARDFQ_DATA, the smoke steps use a small random stand-in in the
same layout: they then test the code paths only, their accuracies mean nothing (noted in the JSON).
`--tiny` shrinks every size (deit at 32 px, depth 1) for a CPU dry run.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STEPS = ("install", "tests", "smoke", "timings", "teacher")
MODELS = ("deit_tiny_patch16_224", "deit_small_patch16_224", "deit_base_patch16_224")
VARIANTS = {  # label: SynthesisConfig overrides, as in bench_synthesis.py
    "CE+TV": dict(method="sardfq", apa=False, msr=False, sl=False),
    "psaq": dict(method="psaq"),
    "sardfq": dict(method="sardfq"),
}
TEACHER_PRESET = "deit_tiny_cifar10_gpu"
# PSAQ-ViT's own report: DeiT-B, 32 images, 1000 iterations, 227 s on an RTX 3090 (generation)
ANCHORS = {"psaq_vit_deit_base_1000_iters_rtx3090_s": 227.0,
           "goal_h100_class_sardfq_deit_base_s": 60.0, "goal_h100_class_psaq_deit_base_s": 45.0}
TAIL = 4000  # characters of each step's output kept in the JSON


class Report:
    """The JSON record, written atomically after every change."""

    def __init__(self, path: Path, data: dict):
        self.path, self.data = path, data
        self.save()

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1, default=str))
        os.replace(tmp, self.path)

    def step(self, name: str, **fields) -> None:
        self.data["steps"][name] = fields
        self.save()


def run_command(args: list[str], *, timeout: float, env: dict, cwd: Path = ROOT) -> dict:
    """Run one command; its status, seconds and output tail (never raises)."""
    began = time.perf_counter()
    try:
        done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
        ok, code, out = done.returncode == 0, done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired as exc:
        ok, code = False, None
        out = f"timed out after {timeout:.0f} s\n" + _text(exc.stdout) + _text(exc.stderr)
    result = {"ok": ok, "returncode": code, "seconds": round(time.perf_counter() - began, 2),
              "command": " ".join(args), "tail": out[-TAIL:]}
    if ok and "--json" in args:  # the command's own record: the last line of its standard output
        try:
            result["record"] = json.loads(done.stdout.strip().splitlines()[-1])
        except (IndexError, ValueError):
            result["ok"], result["error"] = False, "--json printed no JSON object on its last line"
    return result


def _text(value) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else (value or "")


# ------------------------------------------------------------------------------------- steps
def step_install(report: Report, env: dict) -> None:
    pip = [sys.executable, "-m", "pip", "install", "--no-build-isolation", "--no-index", "-e", str(ROOT)]
    first = run_command(pip, timeout=300, env=env)
    if first["ok"]:
        report.step("install", **first)
        return
    # No network: keep the torch/timm already installed (another version than the pin, perhaps)
    second = run_command(pip[:-2] + ["--no-deps", "-e", str(ROOT)], timeout=300, env=env)
    second["note"] = ("the project's pinned dependencies could not be installed offline; installed "
                      "with --no-deps over the packages already there")
    second["with_dependencies"] = {k: first[k] for k in ("returncode", "tail")}
    report.step("install", **second)


def step_tests(report: Report, env: dict, device: str) -> None:
    result = run_command([sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider",
                          str(ROOT / "tests")], timeout=240, env=env)
    # pytest exits 5 when no test is selected and 0 when all pass; on a CPU every gpu test skips
    result["ok"] = result["returncode"] == 0 or (device == "cpu" and result["returncode"] == 5)
    report.step("tests", **result)


def step_smoke(report: Report, env: dict, device: str, data: Path, work: Path, tiny: bool) -> None:
    """Every command once, on the device, tiny sizes: each a subcommand result under steps.smoke."""
    cli = [sys.executable, "-m", "sardfq"]
    n, iters, recon, limit = (2, 2, 1, 40) if tiny else (8, 10, 5, 500)
    calib = work / "calib.safetensors"
    qdir = work / "quantized"
    sweep = work / "sweep.yaml"
    sweep.write_text(
        "name: device_smoke\n"
        f"fixed: {{model: vit_tiny_cifar10, synthesis.method: sardfq, synthesis.n: {n}, "
        f"synthesis.iterations: {iters}, recon.iters: {recon}, eval_limit: {limit}, device: {device}, "
        f"data_root: {data}}}\n"
        "grid:\n  seed: [0, 1]\n")
    common = ["--device", device, "--no-progress", "--json"]
    commands = {
        "synthesize": cli + ["synthesize", "vit_tiny_cifar10", "--n", str(n), "--iters", str(iters),
                             "--bf16", "--out", str(calib)] + common,
        "quantize": cli + ["quantize", "vit_tiny_cifar10", "--calib", str(calib), "--recon-iters", str(recon),
                           "--bf16", "--out", str(qdir), "--data", str(data), "--limit", str(limit)] + common,
        "eval": cli + ["eval", str(qdir), "--data", str(data), "--limit", str(limit), "--device", device,
                       "--json"],
        "run": cli + ["run", "vit_tiny_cifar10", "--n", str(n), "--synth-iters", str(iters), "--recon-iters",
                      str(recon), "--limit", str(limit), "--data", str(data), "--out", str(work / "run")]
                + common,
        "sweep": cli + ["sweep", str(sweep), "--workers", "2", "--results", str(work / "results"),
                        "--no-progress", "--json"],
    }
    results = {}
    for name, args in commands.items():
        results[name] = run_command(args, timeout=240, env=env)
        report.step("smoke", ok=all(r["ok"] for r in results.values()), commands=results)


def step_timings(report: Report, args, device_name: str) -> None:
    import torch

    import sardfq

    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    models = [("vit_tiny_cifar10", {})] + [(m, {"pretrained": False}) for m in MODELS]
    if args.tiny:
        models = [(m, {"pretrained": False, "img_size": 32, "patch_size": 8, "depth": 1}) for m in MODELS]
    synthesis, quantization = [], []
    steps = args.warmup + args.iters
    for name, kwargs in models:
        torch.manual_seed(0)
        model, info = sardfq.load_model(name, device=device, **kwargs)
        label = name + ("" if "pretrained" not in kwargs else " random")
        calib = None
        for variant, overrides in VARIANTS.items():
            for autocast in (None, "bf16"):
                config = sardfq.SynthesisConfig(n=args.n, batch_size=args.n, iterations=steps,
                                                autocast=autocast, **overrides)
                began = time.perf_counter()
                result = sardfq.synthesize(model, info, config, device=device, progress=False)
                sync()
                meta = result.metadata
                synthesis.append({
                    "model": label, "image_size": info.image_size, "method": variant,
                    "autocast": autocast or "fp32", "n": args.n, "iterations": steps,
                    "ms_per_iteration": meta["median_ms_per_iteration"],
                    "mean_ms_per_iteration": meta["ms_per_iteration"],
                    "projected_1000_iterations_s": meta["median_ms_per_iteration"],  # ms x 1000 / 1000
                    "crops_per_image": meta.get("mean_crops_per_image", 0.0),
                    "wall_s": time.perf_counter() - began,
                    "final_losses": meta["final_losses"],
                })
                if variant == "sardfq" and autocast is None:
                    calib = result
                report.data["timings"] = {"synthesis": synthesis, "quantization": quantization}
                report.save()
        for autocast in (None, "bf16"):
            sync()
            began = time.perf_counter()
            q_model = sardfq.quantize(model, info, sardfq.QuantConfig(4, 4), calib)
            sync()
            calibration_s = time.perf_counter() - began
            recon = sardfq.reconstruct(q_model, model, calib,
                                       sardfq.ReconConfig(iters=args.recon_iters, autocast=autocast),
                                       progress=False)
            sync()
            per_step = recon.seconds / args.recon_iters  # fixed costs included: an upper bound
            quantization.append({
                "model": label, "bits": "w4a4", "n": len(calib), "autocast": autocast or "fp32",
                "calibration_s": calibration_s, "reconstruction_s": recon.seconds,
                "recon_iters_per_block": args.recon_iters, "blocks": len(recon.blocks),
                "projected_1000_recon_iters_s": per_step * 1000,
                "mse_after_last_block": recon.blocks[-1].mse_after,
            })
            del q_model
            report.data["timings"] = {"synthesis": synthesis, "quantization": quantization}
            report.save()
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
    report.step("timings", ok=True, device_name=device_name)


def step_teacher(report: Report, env: dict, args, data: Path, real_data: bool, work: Path) -> None:
    cli = [sys.executable, "-m", "sardfq", "train-teacher"]
    help_text = run_command(cli + ["--help"], timeout=120, env=env)["tail"]
    if "--preset" not in help_text:
        report.step("teacher", ok=True, skipped="`sardfq train-teacher` has no --preset option here")
        return
    if not real_data:
        report.step("teacher", ok=True, skipped="no real CIFAR-10 under --data: nothing to train on")
        return
    out = work / "teacher"
    result = run_command(cli + ["--preset", TEACHER_PRESET, "--data", str(data), "--out", str(out),
                                "--device", args.device, "--json"], timeout=args.teacher_timeout, env=env)
    if not result["ok"] and "preset" in result["tail"].lower() and "unknown" in result["tail"].lower():
        report.step("teacher", ok=True, skipped=f"preset {TEACHER_PRESET!r} unknown", **result)
        return
    copied = []  # the model folder (weights, config.json with its accuracy, README), not last.pt
    folder = Path(args.out) / TEACHER_PRESET
    for name in ("model.safetensors", "config.json", "README.md"):
        path = out / name
        if path.is_file() and path.stat().st_size <= 16 * 2**20:  # larger files do not come back
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, folder / name)
            copied.append(f"{folder.name}/{name}")
    report.step("teacher", preset=TEACHER_PRESET, weights=copied, **result)


# ------------------------------------------------------------------------------------ helpers
def has_cifar10(root: Path) -> bool:
    return any((root / sub / f"{split}.tar.gz").is_file() or (root / sub / split).is_dir()
               for sub in ("", "cifar10", "cifar-10") for split in ("test",))


def stand_in_cifar10(folder: Path, per_class: int = 12) -> Path:
    """Random 32x32 PNGs in CIFAR-10's folder layout (train/ and test/, one folder per class)."""
    import numpy as np
    from PIL import Image

    from sardfq.data import CIFAR10_CLASSES

    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for name in CIFAR10_CLASSES:
            (folder / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / split / name / f"{i:04d}.png")
    return folder


def device_name(device: str) -> str:
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    return f"cpu ({platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", default=os.environ.get("OUT") or "device_out")
    parser.add_argument("--data", default=os.environ.get("SARDFQ_DATA"),
                        help="folder holding cifar10/ (default: $SARDFQ_DATA; else a random stand-in)")
    parser.add_argument("--skip", default="", help=f"comma-separated steps to skip, of {','.join(STEPS)}")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes for a CPU dry run")
    parser.add_argument("--n", type=int, default=32, help="images per synthesis batch")
    parser.add_argument("--warmup", type=int, default=2, help="synthesis steps before the timed ones")
    parser.add_argument("--iters", type=int, default=10, help="timed synthesis steps")
    parser.add_argument("--recon-iters", type=int, default=20, help="reconstruction steps per block")
    parser.add_argument("--teacher-timeout", type=float, default=300.0,
                        help="seconds for the teacher (its preset is sized for about 5 minutes on an H100/H200)")
    args = parser.parse_args(argv)
    skip = {s for s in args.skip.split(",") if s}
    if skip - set(STEPS):
        parser.error(f"--skip: unknown step(s) {sorted(skip - set(STEPS))}; choose among {STEPS}")
    if args.tiny:
        args.n, args.warmup, args.iters, args.recon_iters = min(args.n, 4), 1, 1, 1

    began = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    sys.path.insert(0, str(ROOT))
    report = Report(out / "device_check.json", {
        "kind": "device_check", "device": args.device, "device_name": None,
        "settings": {k: v for k, v in vars(args).items() if k != "out"}, "anchors": ANCHORS,
        "steps": {}, "timings": {}, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join([Path(sys.argv[0]).name] + (argv if argv is not None else sys.argv[1:]))})
    if "install" not in skip:
        step_install(report, env)

    import torch

    import sardfq

    if args.tiny:
        torch.set_num_threads(1)
        env.setdefault("OMP_NUM_THREADS", "1")
    report.data.update(device_name=device_name(args.device), torch=torch.__version__,
                       sardfq=sardfq.__version__, python=platform.python_version())
    report.save()
    with tempfile.TemporaryDirectory(prefix="sardfq-device-") as tmp:
        work = Path(tmp)
        real_data = args.data is not None and has_cifar10(Path(args.data))
        data = Path(args.data) if real_data else stand_in_cifar10(work / "stand-in")
        env["SARDFQ_DATA"], env["SARDFQ_CACHE"] = str(data), str(work / "cache")
        report.data["data"] = str(data) if real_data else "random stand-in (accuracies meaningless)"
        if "tests" not in skip:
            step_tests(report, env, args.device)
        if "smoke" not in skip:
            step_smoke(report, env, args.device, data, work, args.tiny)
        if "timings" not in skip:
            try:
                step_timings(report, args, report.data["device_name"])
            except Exception as exc:  # recorded, and the later steps still run
                report.step("timings", ok=False, error=f"{type(exc).__name__}: {exc}")
        if "teacher" not in skip:
            step_teacher(report, env, args, data, real_data, work)
    report.data["seconds"] = round(time.perf_counter() - began, 1)
    report.data["ok"] = all(s.get("ok") for s in report.data["steps"].values())
    report.save()
    for name, s in report.data["steps"].items():
        print(f"{name:<9} {'ok' if s.get('ok') else 'FAILED'}  {s.get('seconds', '')}  {s.get('skipped', '')}")
    print(f"wrote {report.path} ({report.data['seconds']} s)")
    return 0 if report.data["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
