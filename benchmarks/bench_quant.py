"""Benchmark quantization on the embedded teacher: calibration time, reconstruction time per block,
and evaluation throughput of the fake-quantized model against full precision, in one run.

    python benchmarks/bench_quant.py [--bits w4a4 w8a8] [--recon-iters 50] [--n-eval 1000]
                                     [--threads N] [--device cpu|cuda] [--bf16]

Uses real CIFAR-10 images from $SARDFQ_DATA when present (32 training images to calibrate, test
images to evaluate), else Gaussian noise for both (timings only, accuracy then meaningless).
With `--bf16`, reconstruction also runs with bf16 autocast (`ReconConfig.autocast`) from the same
calibrated model: a `+recon bf16` row beside the float32 one.
Prints a table; not a test.
"""
from __future__ import annotations

import argparse
import os
import time

import torch

import sardfq


def _images(info, n_eval: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    try:
        train, test = sardfq.load_cifar10("train"), sardfq.load_cifar10("test")
    except sardfq.SardfqError:
        noise = torch.randn(32 + n_eval, *info.input_size, generator=g)
        return noise[:32], noise[32:], None, "noise"
    calib = sardfq.normalize(train.images[torch.randperm(len(train), generator=g)[:32]], info)
    pick = torch.linspace(0, len(test) - 1, n_eval).long()
    return calib, sardfq.normalize(test.images[pick], info), test.labels[pick], "cifar10"


@torch.no_grad()
def _throughput(model, images, labels, batch_size: int, device) -> tuple[float, float | None]:
    model(images[:batch_size].to(device))  # warm-up
    hits, start = 0, time.perf_counter()
    for i in range(0, len(images), batch_size):
        logits = model(images[i:i + batch_size].to(device))
        if labels is not None:
            hits += (logits.argmax(1).cpu() == labels[i:i + batch_size]).sum().item()
    seconds = time.perf_counter() - start
    return len(images) / seconds, (hits / len(images) if labels is not None else None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bits", nargs="+", default=["w8a8", "w4a4"])
    parser.add_argument("--recon-iters", type=int, default=50)
    parser.add_argument("--n-eval", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bf16", action="store_true", help="also reconstruct with bf16 autocast")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    fp_model, info = sardfq.load_model(device=device)
    calib, images, labels, source = _images(info, args.n_eval, args.seed)

    rows = []
    fp_rate, fp_acc = _throughput(fp_model, images, labels, args.batch_size, device)
    rows.append(("fp", "-", "-", f"{fp_rate:.0f}", "1.00", fp_acc))
    recon_rows = []
    for bits in args.bits:
        config = sardfq.QuantConfig.from_name(bits)
        q_model = sardfq.quantize(fp_model, info, config, calib, seed=args.seed)
        cal = q_model.sardfq_quant["calibration"]
        rate, acc = _throughput(q_model, images, labels, args.batch_size, device)
        rows.append((bits, f"{cal['seconds']:.2f}", "-", f"{rate:.0f}", f"{rate / fp_rate:.2f}", acc))
        for autocast in ((None, "bf16") if args.bf16 else (None,)) if args.recon_iters > 0 else ():
            if autocast:  # the same calibrated starting point as the float32 reconstruction
                q_model = sardfq.quantize(fp_model, info, config, calib, seed=args.seed)
                cal = q_model.sardfq_quant["calibration"]
            result = sardfq.reconstruct(q_model, fp_model, calib,
                                        sardfq.ReconConfig(iters=args.recon_iters, seed=args.seed,
                                                           autocast=autocast),
                                        progress=False)
            name = f"{bits}+recon" + (f" {autocast}" if autocast else "")
            for b in result.blocks:
                recon_rows.append((name, b.block, f"{b.seconds:.1f}", f"{b.seconds / args.recon_iters * 1e3:.0f}",
                                   f"{b.mse_before:.4g}", f"{b.mse_after:.4g}"))
            rate, acc = _throughput(q_model, images, labels, args.batch_size, device)
            rows.append((name, f"{cal['seconds']:.2f}", f"{result.seconds:.1f}", f"{rate:.0f}",
                         f"{rate / fp_rate:.2f}", acc))

    threads = torch.get_num_threads()
    print(f"sardfq {sardfq.__version__} quantization benchmark: {info.name} on {device} "
          f"({threads} threads, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}), "
          f"32 calibration images, {len(images)} {source} evaluation images, batch {args.batch_size}, "
          f"{args.recon_iters} reconstruction steps per block")
    print()
    head = ("model", "calib s", "recon s", "images/s", "vs fp", "top-1")
    print(f"{head[0]:<19}{head[1]:>9}{head[2]:>9}{head[3]:>10}{head[4]:>7}{head[5]:>8}")
    for name, cal, rec, rate, rel, acc in rows:
        acc_text = f"{100 * acc:.2f}" if acc is not None else "-"
        print(f"{name:<19}{cal:>9}{rec:>9}{rate:>10}{rel:>7}{acc_text:>8}")
    if recon_rows:
        print()
        head = ("bits", "block", "seconds", "ms/step", "MSE before", "MSE after")
        print(f"{head[0]:<19}{head[1]:<10}{head[2]:>9}{head[3]:>9}{head[4]:>12}{head[5]:>12}")
        for row in recon_rows:
            print(f"{row[0]:<19}{row[1]:<10}{row[2]:>9}{row[3]:>9}{row[4]:>12}{row[5]:>12}")


if __name__ == "__main__":
    main()
