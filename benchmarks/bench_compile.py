"""Does `torch.compile` make a synthesis step faster? The teacher eager and compiled
(`torch.compile(model, dynamic=True)`: the crop and token counts vary from step to step), the same
synthesis run back to back, twice, median ms per iteration. Compilation (minutes on a CPU) is
timed apart, in the first run.

    HF_HUB_OFFLINE=1 python benchmarks/bench_compile.py [--method psaq] [--iters 12] [--threads 1]

Prints one line per run; not a test.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

import sardfq  # noqa: E402
from sardfq.version import cpu_summary  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", default="psaq", choices=["psaq", "sardfq", "smi"])
    parser.add_argument("--iters", type=int, default=12)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, info = sardfq.load_model("vit_tiny_cifar10")
    config = sardfq.SynthesisConfig(method=args.method, n=32, iterations=args.iters)
    compiled = torch.compile(model, dynamic=True)
    print(f"torch {torch.__version__}, {args.threads} thread(s), {args.method}, 32 images; CPU: {cpu_summary()}")
    start = time.perf_counter()
    first = sardfq.synthesize(compiled, info, config, progress=False)
    print(f"compiled, first run (compilation included): {time.perf_counter() - start:.0f} s; "
          f"median {first.metadata['median_ms_per_iteration']:.0f} ms/iter", flush=True)
    for repeat in range(args.repeats):
        for name, m in (("eager", model), ("compiled", compiled)):
            meta = sardfq.synthesize(m, info, config, progress=False).metadata
            print(f"repeat {repeat}: {name:<9} median {meta['median_ms_per_iteration']:.0f} ms/iter", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
