"""The `sardfq` command line: parsing only, over the same library verbs the notebooks use.

Every subcommand prints a human-readable summary, or with `--json` one JSON object on the last line
of standard output. Progress bars and logs go to standard error. Errors caused by the input (unknown
model, missing data, bad checkpoint, ...) print one line and exit with status 2.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from .errors import SardfqError


def _emit(args: argparse.Namespace, record: dict, lines: list[str]) -> None:
    if args.json:
        print(json.dumps(record))
    else:
        print("\n".join(lines))


# ---------------------------------------------------------------------------------------- eval
def _add_eval(sub) -> None:
    p = sub.add_parser("eval", help="top-1/top-5 accuracy of a model on its test set")
    p.add_argument("model", help="model name (e.g. vit_tiny_cifar10, deit_tiny_patch16_224) or a "
                                 "folder saved by `sardfq quantize`")
    p.add_argument("--data", help="data folder (default: $SARDFQ_DATA)")
    p.add_argument("--checkpoint", help="local weights file for a timm model")
    p.add_argument("--limit", type=int, help="evaluate on this many images only (an even spread)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--json", action="store_true", help="print one JSON object on the last line")
    p.set_defaults(func=_run_eval)


def _run_eval(args: argparse.Namespace) -> None:
    from .data import eval_dataset
    from .evaluate import evaluate
    from .models import load_model

    device = _device(args.device)
    model, info = _load_for_eval(args.model, args.checkpoint, device)
    dataset = eval_dataset(info, model, args.data, limit=args.limit)
    result = evaluate(model, dataset, name=args.model, batch_size=args.batch_size, device=device)
    record = result.to_dict()
    _emit(args, record, [
        f"{args.model}: top-1 {100 * result.top1:.2f}%  top-5 {100 * result.top5:.2f}%  "
        f"on {result.n_images} images ({result.seconds:.1f} s)"
    ])


def _load_for_eval(model: str, checkpoint: str | None, device):
    from .models import load_model

    return load_model(model, checkpoint=checkpoint, device=device)


# ------------------------------------------------------------------------------- train-teacher
def _add_train_teacher(sub) -> None:
    p = sub.add_parser("train-teacher", help="re-create the embedded CIFAR-10 teacher from scratch")
    p.add_argument("--data", help="data folder (default: $SARDFQ_DATA)")
    p.add_argument("--out", default="teacher", help="output folder (resumes from its checkpoint)")
    p.add_argument("--epochs", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, help="train on this many images only (smoke tests)")
    p.add_argument("--device", default=None)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_run_train_teacher)


def _run_train_teacher(args: argparse.Namespace) -> None:
    from .teacher import TeacherRecipe, train_teacher

    recipe = TeacherRecipe(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed)
    result = train_teacher(recipe, root=args.data, out=args.out, device=_device(args.device),
                           limit=args.limit)
    _emit(args, result, [f"teacher saved to {args.out}: CIFAR-10 test top-1 "
                         f"{100 * result['test_top1']:.2f}% after {result['epochs_done']} epochs"])


# ------------------------------------------------------------------------------------- helpers
def _device(name: str | None):
    import torch

    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SardfqError(f"--device {name} asked for, but this machine has no CUDA GPU; use --device cpu")
    return torch.device(name)


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="sardfq", description="Data-free quantization of Vision Transformers (SARDFQ).")
    parser.add_argument("--version", action="version", version=f"sardfq {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at debug level")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_eval, _add_train_teacher):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        args.func(args)
    except SardfqError as exc:
        print(f"sardfq {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
