"""What a teacher's training epoch costs on this machine: a few training steps of each preset (forward,
backward, AdamW, at the preset's batch size, on random images of its data set's size), float32 and
bf16 autocast, and the epoch they add up to. The CPU and its flags are printed with the figures:
bf16 is fast only where the CPU has AVX-512 BF16 (or AMX).

    HF_HUB_OFFLINE=1 python benchmarks/bench_teacher.py [--presets vit_tiny_tin200 vit_deep12_tin200]
        [--threads 1] [--steps 3] [--no-bf16]

Prints a table; not a test. Each step is timed alone; the fastest of `--steps` (after one warm-up)
stands for the step, since a shared machine only ever slows a step down.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from sardfq.teacher import PRESETS  # noqa: E402
from sardfq.version import cpu_summary  # noqa: E402

TRAIN_IMAGES = {"cifar10": 50_000, "tinyimagenet": 100_000}


def step_seconds(preset, *, bf16: bool, steps: int) -> float:
    """The fastest of `steps` training steps of `preset` (after a warm-up step)."""
    torch.manual_seed(0)
    model = preset.build().train()
    for block in model.blocks:
        block.attn.fused_attn = preset.recipe.fused_attention
    optimizer = torch.optim.AdamW(model.parameters(), lr=preset.recipe.lr)
    size, batch = preset.data.img_size, preset.recipe.batch_size
    images = torch.randn(batch, 3, size, size)
    labels = torch.randint(0, preset.data.num_classes, (batch,))
    best = float("inf")
    for i in range(steps + 1):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(images)
        loss = F.cross_entropy(logits.float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if i:
            best = min(best, time.perf_counter() - start)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["vit_tiny_tin200", "vit_deep12_tin200"],
                        choices=PRESETS.names())
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per preset and precision")
    parser.add_argument("--no-bf16", dest="bf16", action="store_false", help="float32 only")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s); CPU: {cpu_summary()}; "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"{'preset':<24}{'precision':<11}{'batch':>6}{'s/step':>9}{'min/epoch':>11}")
    for name in args.presets:
        preset = PRESETS.get(name)
        steps_per_epoch = TRAIN_IMAGES[preset.dataset] // preset.recipe.batch_size
        for bf16 in (False, True) if args.bf16 else (False,):
            s = step_seconds(preset, bf16=bf16, steps=args.steps)
            print(f"{name:<24}{'bf16' if bf16 else 'float32':<11}{preset.recipe.batch_size:>6}{s:>9.2f}"
                  f"{s * steps_per_epoch / 60:>11.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
