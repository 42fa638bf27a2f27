"""What exactness costs: the W8A8 file with uint8 weight codes (what `sardfq export` writes) against
the same model with int8 weight codes (the layout before December 2026: each code shifted by -128,
its zero point with it), on the CPU this runs on. For each layout: how far the file's logits are
from the fake-quantized PyTorch model's (`verify_export` on 64 check images: median relative
difference and top-1 agreement), its top-1 on `--n-eval` CIFAR-10 test images (the teacher only, when
$SARDFQ_DATA holds them) beside the PyTorch model's, and its batch-1 latency and batch-32 throughput in onnxruntime,
round-robin over `--repeats` rounds so that a shared machine's load falls on both alike.

    HF_HUB_OFFLINE=1 python benchmarks/bench_weight_codes.py [--threads 1] [--repeats 9] [--n-eval 1000] [--no-deit]

On an x86 CPU without VNNI, onnxruntime's uint8 x int8 kernel saturates (see sardfq.quant.kernels),
so the int8 file differs from its model there; with VNNI both layouts are exact. Prints a table;
not a test. The int8 layout exists only here, to be measured.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

import sardfq  # noqa: E402
from sardfq.data import real_images  # noqa: E402
from sardfq.quant import kernels  # noqa: E402
from sardfq.quant.export import check_images, load_onnx, verify_export  # noqa: E402
from sardfq.version import cpu_summary  # noqa: E402


@contextmanager
def int8_weight_codes():
    """Export integer linears with int8 codes (code - 128, zero point - 128): the same dequantized
    weights, the layout onnxruntime's uint8 x int8 kernels read."""
    init = kernels.IntegerLinear.__init__

    def shifted(self, *args):
        init(self, *args)
        self.weight_codes = (self.weight_codes.to(torch.int16) - 128).to(torch.int8)
        self.weight_zero_point = (self.weight_zero_point.to(torch.int16) - 128).to(torch.int8)

    kernels.IntegerLinear.__init__ = shifted
    try:
        yield
    finally:
        kernels.IntegerLinear.__init__ = init


def _models(deit: bool):
    teacher, info = sardfq.load_model("vit_tiny_cifar10")
    calib = real_images(info, 32, generator=torch.Generator().manual_seed(0))[0]
    out = [("vit_tiny_cifar10", sardfq.quantize(teacher, info, sardfq.QuantConfig.from_name("w8a8"), calib), info)]
    if deit:
        model, info = sardfq.load_model("deit_tiny_patch16_224", pretrained=False)
        noise = torch.randn(4, *info.input_size, generator=torch.Generator().manual_seed(0))
        out.append(("deit_tiny_patch16_224 (random weights)",
                    sardfq.quantize(model, info, sardfq.QuantConfig.from_name("w8a8"), noise), info))
    return out


def _time(model, images, repeats: int) -> float:
    start = time.perf_counter()
    for _ in range(repeats):
        model(images)
    return (time.perf_counter() - start) / repeats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--no-deit", dest="deit", action="store_false", help="skip the 224-px model")
    parser.add_argument("--n-eval", type=int, default=1000, help="test images for the teacher's top-1 (0: skip)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"onnxruntime {__import__('onnxruntime').__version__}, {args.threads} thread(s); CPU: {cpu_summary()}; "
          f"load average {os.getloadavg()[0]:.1f}")
    print("| model | weight codes | median relative logit difference | top-1 agreement | test top-1 (PyTorch) | "
          "batch-1 ms | batch-32 images/s | uint8 / int8 throughput |")
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="sardfq-codes-") as tmp:
        for name, q_model, info in _models(args.deit):
            files = {}
            for layout in ("uint8", "int8"):
                path = Path(tmp) / f"{layout}.onnx"
                if layout == "int8":
                    with int8_weight_codes():
                        sardfq.export_onnx(q_model, path, verify=False)
                else:
                    sardfq.export_onnx(q_model, path, verify=False)
                files[layout] = path
            check = {k: verify_export(p, q_model, info, check_images(info, 64)) for k, p in files.items()}
            runtimes = {k: load_onnx(p, threads=args.threads)[0] for k, p in files.items()}
            one, batch = check_images(info, 1), check_images(info, 32, seed=1)
            latency = {k: [] for k in files}
            throughput = {k: [] for k in files}
            for _ in range(args.repeats):  # round-robin: both layouts meet the same load
                for k, m in runtimes.items():
                    latency[k].append(_time(m, one, 3))
                    throughput[k].append(32 / _time(m, batch, 1))
            ratio = statistics.median(throughput["uint8"]) / statistics.median(throughput["int8"])
            top1 = {k: "" for k in files}
            if args.n_eval and name == "vit_tiny_cifar10":
                try:
                    dataset = sardfq.eval_dataset(info, q_model, limit=args.n_eval)
                except sardfq.SardfqError:
                    dataset = None
                if dataset is not None:
                    fake = sardfq.evaluate(q_model, dataset, progress=False).top1
                    top1 = {k: f"{100 * sardfq.evaluate(m, dataset, progress=False).top1:.2f}% "
                               f"({100 * fake:.2f}%) on {len(dataset):,}" for k, m in runtimes.items()}
            for k in files:
                print(f"| {name} | {k} | {100 * check[k].relative_difference:.2f}% | {100 * check[k].agreement:.0f}% | "
                      f"{top1[k]} | "
                      f"{1000 * statistics.median(latency[k]):.1f} | {statistics.median(throughput[k]):.1f} | "
                      f"{f'{ratio:.2f}' if k == 'uint8' else ''} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
