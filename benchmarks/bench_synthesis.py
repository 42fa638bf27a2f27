"""Cost of one synthesis iteration per method, against a plain CE + TV iteration.

    HF_HUB_OFFLINE=1 python benchmarks/bench_synthesis.py [--iters 4 --repeats 3] [--deit-iters 3] [--threads 1]
        [--no-bf16] [--json results/bench/synthesis_cpu.json]   # also write the rows (the results chapter plots them)

For each model (the embedded teacher, and a randomly initialized timm deit_tiny at 224 px), every
method runs `--iters` optimization steps on a batch of 32, `--repeats` times interleaved with the
other methods, and reports the fastest run's median milliseconds per step. `vs CE+TV` divides by a plain CE + TV step (sardfq with every switch off); `vs floor` divides
by that step's time x (1 + mean MSR crops per image), the cost of simply pushing the extra crop
rows through the model. The goal for SARDFQ is at most 1.2x its floor.

Unless `--no-bf16`, CE+TV, psaq and sardfq also run with bf16 autocast (`SynthesisConfig.autocast`),
interleaved with the float32 runs, in a second table: the speed-up over float32 and the same ratios.
"""
from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

import sardfq  # noqa: E402
from sardfq import SynthesisConfig, synthesize  # noqa: E402

VARIANTS = [  # (label, config overrides)
    ("CE+TV", dict(method="sardfq", apa=False, msr=False, sl=False)),
    ("psaq", dict(method="psaq")),
    ("sardfq", dict(method="sardfq")),
    ("sardfq-no-msr", dict(method="sardfq", msr=False)),
    ("sardfq-no-apa", dict(method="sardfq", apa=False)),
]
BF16_VARIANTS = ("CE+TV", "psaq", "sardfq")  # also timed with bf16 autocast


def bench_model(name: str, model, info, *, batch: int, iters: int, repeats: int, seed: int,
                device: str, bf16: bool = True) -> tuple[list[dict], list[dict]]:
    """Variants (and their bf16 runs) go round-robin `repeats` times, so a busy machine slows them
    alike; each keeps the fastest of its per-run median step times, and the mean crops per image
    over its runs. Returns (float32 rows, bf16 rows)."""
    runs = [(label, overrides, None) for label, overrides in VARIANTS]
    if bf16:
        runs += [(label, overrides, "bf16") for label, overrides in VARIANTS if label in BF16_VARIANTS]
    best = {(label, a): float("inf") for label, _, a in runs}
    crops = {(label, a): [] for label, _, a in runs}
    for rep in range(repeats):
        for label, overrides, autocast in runs:
            config = SynthesisConfig(n=batch, batch_size=batch, iterations=max(iters, 2),
                                     seed=seed + rep, autocast=autocast, **overrides)
            meta = synthesize(model, info, config, device=device, progress=False).metadata
            best[label, autocast] = min(best[label, autocast], meta["median_ms_per_iteration"])
            crops[label, autocast].append(meta.get("mean_crops_per_image", 0.0))
    tables = []
    for autocast in (None, "bf16") if bf16 else (None,):
        rows = [{"model": name, "method": label, "ms": best[label, a],
                 "crops": sum(crops[label, a]) / len(crops[label, a])} for label, _, a in runs if a == autocast]
        base = rows[0]["ms"]
        for row in rows:
            row["vs_cetv"] = row["ms"] / base
            row["vs_floor"] = row["ms"] / (base * (1 + row["crops"]))
            if autocast:
                row["fp32_ms"] = best[row["method"], None]
                row["speedup"] = row["fp32_ms"] / row["ms"]
        tables.append(rows)
    return tables[0], (tables[1] if bf16 else [])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iters", type=int, default=4, help="steps per run on the teacher")
    parser.add_argument("--repeats", type=int, default=3, help="runs per method on the teacher")
    parser.add_argument("--deit-iters", type=int, default=3, help="steps per run on deit_tiny (0: skip)")
    parser.add_argument("--deit-repeats", type=int, default=1, help="runs per method on deit_tiny")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-bf16", dest="bf16", action="store_false",
                        help="skip the bf16 autocast runs")
    parser.add_argument("--json", help="also write the rows, with the settings, to this JSON file")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows, bf16_rows = [], []
    model, info = sardfq.load_model("vit_tiny_cifar10", device=args.device)
    fp32, bf16 = bench_model("vit_tiny_cifar10 (32 px)", model, info, batch=args.batch, iters=args.iters,
                             repeats=args.repeats, seed=args.seed, device=args.device, bf16=args.bf16)
    rows, bf16_rows = rows + fp32, bf16_rows + bf16
    if args.deit_iters:
        torch.manual_seed(args.seed)
        model, info = sardfq.load_model("deit_tiny_patch16_224", pretrained=False, device=args.device)
        fp32, bf16 = bench_model("deit_tiny random (224 px)", model, info, batch=args.batch,
                                 iters=args.deit_iters, repeats=args.deit_repeats, seed=args.seed,
                                 device=args.device, bf16=args.bf16)
        rows, bf16_rows = rows + fp32, bf16_rows + bf16
    print(f"device {args.device}, torch threads {torch.get_num_threads()}, batch {args.batch}")
    print(f"{'model':<27}{'method':<15}{'ms/iter':>10}{'crops/img':>11}{'vs CE+TV':>10}{'vs floor':>10}")
    for r in rows:
        print(f"{r['model']:<27}{r['method']:<15}{r['ms']:>10.1f}{r['crops']:>11.2f}"
              f"{r['vs_cetv']:>10.2f}{r['vs_floor']:>10.2f}")
    if bf16_rows:
        print("\nbf16 autocast (ratios against the bf16 CE+TV step)")
        print(f"{'model':<27}{'method':<15}{'fp32 ms':>10}{'bf16 ms':>10}{'speed-up':>10}"
              f"{'vs CE+TV':>10}{'vs floor':>10}")
        for r in bf16_rows:
            print(f"{r['model']:<27}{r['method']:<15}{r['fp32_ms']:>10.1f}{r['ms']:>10.1f}{r['speedup']:>10.2f}"
                  f"{r['vs_cetv']:>10.2f}{r['vs_floor']:>10.2f}")
    if args.json:
        from sardfq.version import library_versions
        from sardfq.io import write_json_atomic

        settings = {k: v for k, v in vars(args).items() if k != "json"}
        write_json_atomic(args.json, {"kind": "benchmark", "benchmark": "synthesis", "settings": settings,
                                      "torch_threads": torch.get_num_threads(), "rows": rows,
                                      "bf16_rows": bf16_rows,
                                      "versions": library_versions(), "command": " ".join(sys.argv)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
