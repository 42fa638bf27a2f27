"""The paper's budget on the CPU: one SARDFQ run on the default teacher at the paper's sizes (32
images, 1000 synthesis iterations, 100 reconstruction steps per block, W4A4), stage by stage, with
the speed-ups on and off in the same process.

    HF_HUB_OFFLINE=1 python benchmarks/bench_budget.py [--threads 2 1] [--iters 1000] [--recon-iters 100]
        [--method sardfq|psaq|smi] [--fraction 1] [--baseline-fraction 1] [--autocast bf16-mlp] [--sparse]
        [--roofline] [--eval 1000] [--json FILE]
    HF_HUB_OFFLINE=1 python benchmarks/bench_budget.py --profile [--threads 1]   # where a step's time goes

For each thread count, the plain path (`synthesize(..., shortcuts=False)`: the code before issue
20), the fast path (the bit-exact shortcuts on) and, with `--autocast POLICY`, a "mixed" path (the
fast path with that synthesis precision policy, numerics-changing) run the same experiment:
synthesis, calibration, reconstruction, evaluation on `--eval` CIFAR-10 test images (when
$SARDFQ_DATA holds them). Each stage runs path after path, back to back, so the speed-ups compare
times measured minutes apart at most. `--fraction f` runs every path for a fraction f of the
iterations and steps and scales the times up (a synthesis step and a reconstruction step cost the
same all through the schedule; the set-up and the fixed passes are timed and not scaled), to keep a
benchmark on a loaded machine short; `--baseline-fraction g` runs the plain path for g of that
again. When the plain and fast paths ran the same steps they must give the same images and
reconstructed weights bit for bit, and the script says whether they did. Wall and CPU seconds (the
process's, all threads) are printed with the load average before and after: on a shared machine
read the ratios. `--json` also writes the rows, the command and the machine. Prints tables; not a
test.

`--profile` instead prints, per path, the torch.profiler breakdown of `--profile-steps` synthesis
iterations and reconstruction steps by kind of operation.

`--sparse` adds a "sparse" path: the fast path with sparse inversion (`SynthesisConfig.sparse`, SMI's
schedule); its images differ, so it is scored, not compared bit for bit. `--method` chooses what
every path synthesizes (SARDFQ by default; PSAQ-ViT or SMI). `--roofline` also prints, per path,
the floating-point operations of a synthesis step (`torch.utils.flop_counter`, averaged over the
run, so a sparse run's shrinking passes count as they ran) and the share of the machine's measured
float32 matrix-product throughput (a 2048 x 2048 sgemm at the same threads) that the step reaches.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from collections import defaultdict

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

import sardfq  # noqa: E402
from sardfq import QuantConfig, ReconConfig, SynthesisConfig, quantize, reconstruct, synthesize  # noqa: E402

STAGES = ("synthesis", "calibration", "reconstruction")


class _Clock:
    """Wall and CPU (process, every thread) seconds of a `with` block."""

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu
        return False


def _eval_set(info, n: int):
    if not n:
        return None
    try:
        test = sardfq.load_cifar10("test")
    except sardfq.SardfqError:
        return None
    pick = torch.linspace(0, len(test) - 1, n).long()
    return sardfq.normalize(test.images[pick], info), test.labels[pick]


@torch.no_grad()
def _top1(model, data) -> float | None:
    if data is None:
        return None
    images, labels = data
    hits = sum((model(x).argmax(1) == y).sum().item() for x, y in zip(images.split(250), labels.split(250)))
    return hits / len(labels)


# the code before the shortcuts; its bit-exact shortcuts; + a precision policy; + sparse inversion
PATHS = ("plain", "fast", "mixed", "sparse")


def _scaled(clock: _Clock, fixed_wall: float, scale: float) -> tuple[float, float]:
    """(wall, CPU) of a stage whose `fixed_wall` seconds do not grow with its steps and whose other
    seconds do, those scaled by `scale`; the CPU seconds scaled as the wall seconds are."""
    wall = fixed_wall + (clock.wall - fixed_wall) * scale
    return wall, clock.cpu * wall / max(clock.wall, 1e-9)


def run_stages(fp_model, info, paths: dict[str, dict], *, iters: int, recon_iters: int, n: int, seed: int,
               bits: str, data, method: str = "sardfq", roofline: bool = False) -> dict[str, dict]:
    """One experiment per path, stage by stage: each stage runs path after path, back to back, so
    that the load of the shared machine drifts as little as possible between the paths. `paths`
    maps a path's name to {"fraction", "shortcuts", "autocast", "sparse"}. A path run for a fraction of the
    budget has its times scaled up: the synthesis beyond its set-up, and the reconstruction beyond
    its fixed passes (the FP targets and each block's before/after MSE, timed by a 0-step run),
    grow with the steps; the rest does not."""
    out, calib, q_models = {}, {}, {}
    for name, p in paths.items():
        it, rit = max(2, round(iters * p["fraction"])), max(1, round(recon_iters * p["fraction"]))
        out[name] = {"path": name, "shortcuts": p["shortcuts"], "autocast": p["autocast"], "iterations": it,
                     "recon_iters": rit, "fraction": p["fraction"], "sparse": p.get("sparse", False)}
    for name, p in paths.items():
        row = out[name]
        # a sparse run keeps SMI's schedule as fractions of the whole budget, so a shortened run stops
        # its patches at the iterations the full run would (scaled), and its times scale as the full run's
        s_cfg = SynthesisConfig(method=method, n=n, iterations=row["iterations"], seed=seed, autocast=p["autocast"],
                                sparse=p.get("sparse", False))
        with _Clock() as c:
            calib[name] = synthesize(fp_model, info, s_cfg, progress=False, shortcuts=p["shortcuts"])
        meta = calib[name].metadata
        row["synthesis"] = _scaled(c, c.wall - meta["loop_seconds"], iters / row["iterations"])
        row["median_ms_per_iteration"] = meta["median_ms_per_iteration"]
        row["ms_per_iteration"] = meta["ms_per_iteration"]
        row["crops_per_image"] = meta.get("mean_crops_per_image", 0.0)
        row["shortcuts_taken"] = meta["shortcuts"]
        row["token_fraction"] = (meta["sparse"] or {}).get("mean_token_fraction", 1.0)
        if roofline:
            row["gflop_per_iteration"] = _gflop_per_iteration(fp_model, info, s_cfg, p["shortcuts"])
    for name in paths:
        with _Clock() as c:
            q_models[name] = quantize(fp_model, info, QuantConfig.from_name(bits), calib[name], seed=seed)
        out[name]["calibration"] = (c.wall, c.cpu)
    for name in paths:
        row, q_model = out[name], q_models[name]
        fixed = 0.0
        if row["recon_iters"] < recon_iters:  # a 0-step run changes nothing: it times the fixed passes
            fixed = reconstruct(q_model, fp_model, calib[name], ReconConfig(iters=0, seed=seed),
                                progress=False).seconds
        with _Clock() as c:
            reconstruct(q_model, fp_model, calib[name], ReconConfig(iters=row["recon_iters"], seed=seed),
                        progress=False)
        row["reconstruction"] = _scaled(c, fixed, recon_iters / row["recon_iters"])
        row["top1"] = _top1(q_model, data)
        row["images"] = calib[name].images
        row["state"] = {k: v.detach().clone() for k, v in q_model.state_dict().items()}
    return out


def _gflop_per_iteration(fp_model, info, config: SynthesisConfig, shortcuts: bool) -> float:
    """Floating-point operations (GFLOP; a multiply-add counts 2) of one synthesis iteration,
    forward and backward, averaged over a run of `config` (counted by torch's FlopCounterMode, which
    counts matrix products and convolutions: the work a roofline is about)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        synthesize(fp_model, info, config, progress=False, shortcuts=shortcuts)
    return counter.get_total_flops() / config.iterations / 1e9


def sgemm_gflops(threads: int, size: int = 2048, repeats: int = 5) -> float:
    """The machine's float32 matrix-product throughput at `threads` threads: the best of `repeats`
    size x size products, in GFLOP/s."""
    torch.set_num_threads(threads)
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * size ** 3 / best / 1e9


def _bit_identical(a: dict, b: dict) -> bool:
    return (torch.equal(a["images"], b["images"]) and a["state"].keys() == b["state"].keys()
            and all(torch.equal(a["state"][k], b["state"][k]) for k in a["state"]))


def benchmark(args) -> list[dict]:
    fp_model, info = sardfq.load_model("vit_tiny_cifar10")
    data = _eval_set(info, args.eval)
    paths = {"plain": {"fraction": args.fraction * args.baseline_fraction, "shortcuts": False, "autocast": None},
             "fast": {"fraction": args.fraction, "shortcuts": True, "autocast": None}}
    if args.autocast:
        paths["mixed"] = {"fraction": args.fraction, "shortcuts": True, "autocast": args.autocast}
    if args.sparse:
        paths["sparse"] = {"fraction": args.fraction, "shortcuts": True, "autocast": None, "sparse": True}
    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        load_before = os.getloadavg()
        began = time.perf_counter()
        results = run_stages(fp_model, info, paths, iters=args.iters, recon_iters=args.recon_iters, n=args.n,
                             seed=args.seed, bits=args.bits, data=data, method=args.method, roofline=args.roofline)
        exact = _bit_identical(results["plain"], results["fast"]) if args.baseline_fraction == 1 else None
        rows.append({"threads": threads, **results, "bit_identical": exact, "load_before": load_before,
                     "load_after": os.getloadavg(), "wall_seconds": time.perf_counter() - began,
                     "sgemm_gflops": sgemm_gflops(threads) if args.roofline else None})
        _print_row(rows[-1], args)
    return rows


def _print_row(row: dict, args) -> None:
    names = [p for p in PATHS if p in row]
    print(f"\n{row['threads']} torch thread(s); load average {row['load_before'][0]:.1f} before, "
          f"{row['load_after'][0]:.1f} after (1-minute, {os.cpu_count()} CPUs)")
    for name in names:
        r = row[name]
        print(f"{name}: shortcuts {'on' if r['shortcuts'] else 'off'}, autocast {r['autocast']}, ran "
              f"{r['iterations']} iterations and {r['recon_iters']} steps per block"
              + (" (times scaled to the budget)" if r["fraction"] != 1 else ""))
    for k, unit in enumerate(("wall", "CPU")):
        print(f"{'stage':<16}" + "".join(f"{n + ' ' + unit + ' s':>15}" for n in names)
              + "".join(f"{n + ' speed-up':>16}" for n in names[1:]))
        for stage in (*STAGES, "synth + recon"):
            parts = ("synthesis", "reconstruction") if stage == "synth + recon" else (stage,)
            t = {n: sum(row[n][s][k] for s in parts) for n in names}
            print(f"{stage:<16}" + "".join(f"{t[n]:>15.1f}" for n in names)
                  + "".join(f"{t['plain'] / t[n]:>16.2f}" for n in names[1:]))
    print("synthesis step, median ms: " + ", ".join(f"{n} {row[n]['median_ms_per_iteration']:.0f}" for n in names)
          + "; MSR crops per image: " + ", ".join(f"{n} {row[n]['crops_per_image']:.2f}" for n in names))
    if row.get("sgemm_gflops"):
        peak = row["sgemm_gflops"]
        print(f"roofline: the machine's float32 sgemm (2048^3) reaches {peak:.1f} GFLOP/s at {row['threads']} "
              "thread(s); a synthesis step: " + "; ".join(
                  f"{n} {row[n]['gflop_per_iteration']:.2f} GFLOP in {row[n]['ms_per_iteration']:.0f} ms = "
                  f"{row[n]['gflop_per_iteration'] / row[n]['ms_per_iteration'] * 1e3:.1f} GFLOP/s, "
                  f"{100 * row[n]['gflop_per_iteration'] / row[n]['ms_per_iteration'] * 1e3 / peak:.0f}% of it"
                  for n in names))
    if "sparse" in names:
        print(f"sparse: patch tokens kept per pass {100 * row['sparse']['token_fraction']:.0f}% on average")
    if row["plain"]["top1"] is not None:
        print(f"{args.bits} top-1 on {args.eval} test images: "
              + ", ".join(f"{n} {100 * row[n]['top1']:.2f}%" for n in names))
    if row["bit_identical"] is not None:
        print(f"plain and fast: images and reconstructed weights bit-identical: {row['bit_identical']}")


# ------------------------------------------------------------------------------- the README's block
PATH_LABELS = {"plain": "dense, before the shortcut", "fast": "dense (default)", "mixed": "dense, bf16-mlp",
               "sparse": "sparse"}


def budget_report(records: list[dict]) -> str:
    """The README's paper-budget block from benchmark records (one per method): per method and
    thread count, each path's wall seconds (synthesis, reconstruction, both), the speed-up of both
    against the plain path, W4A4 top-1; then the roofline of the first record's two-thread row."""
    lines = ["| method | threads | path | synthesis s | reconstruction s | synth + recon s | speed-up | "
             "W4A4 top-1 (1,000 images) |", "|---|---|---|---|---|---|---|---|"]
    for record in records:
        method = record["settings"]["method"]
        for row in record["rows"]:
            base = row["plain"]["synthesis"][0] + row["plain"]["reconstruction"][0]
            for path in (p for p in PATHS if p in row):
                r = row[path]
                synth, recon = r["synthesis"][0], r["reconstruction"][0]
                label = "SMI" if method == "smi" and r.get("sparse") else PATH_LABELS[path]
                lines.append(f"| {method} | {row['threads']} | {label} | {synth:.0f} | {recon:.0f} | {synth + recon:.0f} "
                             f"| {base / (synth + recon):.2f} | {100 * r['top1']:.2f} |")
    row = max(records[0]["rows"], key=lambda r: r["threads"])
    if row.get("sgemm_gflops"):
        steps = "; ".join(f"{PATH_LABELS[n]} {row[n]['gflop_per_iteration']:.1f} GFLOP in "
                          f"{row[n]['ms_per_iteration']:.0f} ms, {row[n]['gflop_per_iteration'] / row[n]['ms_per_iteration'] * 1e3:.0f} "
                          f"GFLOP/s = {100 * row[n]['gflop_per_iteration'] / row[n]['ms_per_iteration'] * 1e3 / row['sgemm_gflops']:.0f}%"
                          for n in ("fast", "sparse") if n in row)
        lines += ["", f"Roofline, {records[0]['settings']['method']} at {row['threads']} threads: the machine's float32 "
                  f"sgemm (2048³) reaches {row['sgemm_gflops']:.0f} GFLOP/s; a synthesis step ({steps} of it). "
                  f"Sparse passes kept {100 * row['sparse']['token_fraction']:.0f}% of the patch tokens on average."]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------- profile
KINDS = (  # (kind, op-name fragments), first match wins
    ("matrix products", ("aten::mm", "aten::addmm", "aten::bmm")),
    ("fused attention (SDPA)", ("scaled_dot_product", "_flash_attention")),
    ("GELU", ("gelu",)),
    ("LayerNorm", ("layer_norm",)),
    ("softmax", ("softmax",)),
    ("copies, cat, roll, resize", ("copy_", "aten::cat", "roll", "upsample", "clone", "aten::flip")),
    ("fake quantization (div, round, clamp, where, compare)", ("aten::div", "aten::round", "aten::clamp",
                                                               "aten::where", "aten::ge", "aten::le",
                                                               "aten::gt", "aten::bitwise_and", "log2",
                                                               "exp2", "aten::neg")),
    ("Adam", ("Optimizer", "addcdiv", "addcmul", "lerp", "aten::sqrt")),
    ("other elementwise and reductions", ("aten::",)),
)


def _kinds(prof) -> dict[str, float]:
    out: dict[str, float] = defaultdict(float)
    for event in prof.key_averages():
        if not event.key.startswith(("aten::", "Optimizer")):
            continue
        kind = next(k for k, frags in KINDS if any(f in event.key for f in frags))
        if event.key.startswith("Optimizer"):  # the step's own time: its ops are counted as they run
            out["Adam"] += event.self_cpu_time_total
            continue
        out[kind] += event.self_cpu_time_total
    return out


def profile(args) -> None:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    fp_model, info = sardfq.load_model("vit_tiny_cifar10")
    torch.set_num_threads(args.threads[0])
    steps = args.profile_steps
    config = SynthesisConfig(n=args.n, iterations=steps, seed=args.seed)
    tables = {}
    for fast in (False, True):
        synthesize(fp_model, info, dataclasses.replace(config, iterations=2), progress=False, shortcuts=fast)
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            meta = synthesize(fp_model, info, config, progress=False, shortcuts=fast).metadata
        tables["synthesis " + ("fast" if fast else "plain")] = (_kinds(prof), meta["loop_seconds"] / steps)
    calib = synthesize(fp_model, info, dataclasses.replace(config, iterations=2), progress=False)
    q_model = quantize(fp_model, info, QuantConfig.from_name(args.bits), calib, seed=args.seed)
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        result = reconstruct(q_model, fp_model, calib, ReconConfig(iters=steps, seed=args.seed), progress=False)
    tables["reconstruction"] = (_kinds(prof), result.seconds / (steps * len(result.blocks)))
    print(f"{torch.get_num_threads()} torch thread(s); synthesis: {steps} SARDFQ iterations at batch {args.n}; "
          f"reconstruction: {steps} steps per block at batch 32 (with each block's before/after passes); "
          f"load average {os.getloadavg()[0]:.1f}")
    names = list(tables)
    print(f"{'kind of op (self CPU time, % of the stage)':<56}" + "".join(f"{n:>18}" for n in names))
    for kind, _ in KINDS:
        cells = []
        for name in names:
            kinds = tables[name][0]
            cells.append(f"{100 * kinds.get(kind, 0.0) / max(sum(kinds.values()), 1e-9):>17.1f}%")
        print(f"{kind:<56}" + "".join(cells))
    print(f"{'wall s per step (profiled)':<56}" + "".join(f"{tables[n][1]:>18.3f}" for n in names))


def _machine() -> dict:
    """The CPU (model, cores, the instruction sets its kernels use) and what else ran on it (the
    busiest processes, by CPU share)."""
    import platform
    import subprocess

    from sardfq.version import cpu_info

    try:
        top = subprocess.run(["ps", "-eo", "pcpu,args", "--sort=-pcpu"], capture_output=True, text=True,
                             timeout=10).stdout.splitlines()[1:6]
    except (OSError, subprocess.SubprocessError):
        top = []
    return {**cpu_info(), "platform": platform.platform(),
            "busiest_processes_at_end": [" ".join(line.split())[:160] for line in top]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, nargs="+", default=[2, 1], help="torch threads, one run each")
    parser.add_argument("--iters", type=int, default=1000, help="synthesis iterations [paper: 1000]")
    parser.add_argument("--recon-iters", type=int, default=100, help="reconstruction steps per block [paper notes: 100]")
    parser.add_argument("--n", type=int, default=32, help="calibration images [paper: 32]")
    parser.add_argument("--bits", default="w4a4")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fraction", type=float, default=1.0,
                        help="run every path for this fraction of the iterations and steps and scale its times")
    parser.add_argument("--baseline-fraction", type=float, default=1.0,
                        help="run the plain path for this fraction of the (--fraction) budget only")
    parser.add_argument("--autocast", default=None, help="also run a third path, 'mixed': the fast path with "
                                                         "this synthesis precision policy (e.g. bf16-mlp)")
    parser.add_argument("--method", default="sardfq", choices=["sardfq", "psaq", "smi"],
                        help="what every path synthesizes (default: sardfq)")
    parser.add_argument("--sparse", action="store_true", help="also run a 'sparse' path: the fast path with "
                                                                "sparse inversion (SMI's schedule)")
    parser.add_argument("--roofline", action="store_true", help="also count each path's FLOPs per synthesis "
                                                                  "step and measure the machine's sgemm throughput")
    parser.add_argument("--eval", type=int, default=1000, help="test images to score each path on (0: skip)")
    parser.add_argument("--profile", action="store_true", help="print where a step's time goes instead")
    parser.add_argument("--profile-steps", type=int, default=4)
    parser.add_argument("--json", help="also write the rows (times, top-1, load) to this JSON file")
    args = parser.parse_args(argv)
    for name in ("fraction", "baseline_fraction"):
        if not 0 < getattr(args, name) <= 1:
            parser.error(f"--{name.replace('_', '-')} must be in (0, 1]")
    print(f"sardfq {sardfq.__version__}, torch {torch.__version__}, vit_tiny_cifar10, {args.method}, {args.bits}, "
          f"{args.n} images, seed {args.seed}: {args.iters} synthesis iterations, {args.recon_iters} "
          f"reconstruction steps per block; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    if args.profile:
        profile(args)
        return 0
    rows = benchmark(args)
    if args.json:
        from sardfq.io import write_json_atomic
        from sardfq.version import library_versions

        kept = [{k: ({f: x for f, x in v.items() if f not in ("images", "state")} if k in PATHS else v)
                 for k, v in r.items()} for r in rows]
        write_json_atomic(args.json, {"kind": "benchmark", "benchmark": "budget", "settings": vars(args),
                                      "rows": kept, "machine": _machine(), "versions": library_versions(),
                                      "command": " ".join(["python", *sys.argv])})
    return 0


if __name__ == "__main__":
    sys.exit(main())
