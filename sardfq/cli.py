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

    if Path(model).is_dir():  # a folder written by `sardfq quantize` / sardfq.save_quantized
        from .quant import load_quantized

        if checkpoint is not None:
            raise SardfqError("--checkpoint does not apply to a saved quantized model folder")
        return load_quantized(model, device=device)
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


# ----------------------------------------------------------------------------- run, quickstart
def _add_run(sub) -> None:
    from .experiments import ExperimentConfig

    d = ExperimentConfig()
    S = argparse.SUPPRESS  # options not typed stay out of args: --config or the defaults fill them
    p = sub.add_parser("run", help="one experiment: synthesize, quantize, reconstruct, evaluate",
                       argument_default=S)
    p.add_argument("model", nargs="?", help=f"model name (default: {d.model})")
    p.add_argument("--method", help="noise, real, psaq or sardfq (default: sardfq)")
    for switch in ("apa", "msr", "sl"):
        p.add_argument(f"--no-{switch}", dest=switch, action="store_false",
                       help=f"SARDFQ without {switch.upper()} (ablation)")
    p.add_argument("--bits", help="weight/activation bits as wXaY (default: w4a4)")
    p.add_argument("--n", type=int, help=f"calibration images (default: {d.n})")
    p.add_argument("--synth-iters", dest="synth_iters", type=int, help=f"default: {d.synth_iters}")
    p.add_argument("--recon-iters", dest="recon_iters", type=int,
                   help=f"block reconstruction steps, 0: calibration only (default: {d.recon_iters})")
    p.add_argument("--limit", dest="eval_limit", type=int,
                   help="evaluate on this many test images (an even spread; default: all)")
    p.add_argument("--heldout", dest="heldout_limit", type=int,
                   help="also evaluate on this many training images held out of calibration, the "
                        "split for choosing hyper-parameters (CIFAR-10 models; default: 0, skip)")
    p.add_argument("--seed", type=int, help=f"default: {d.seed}")
    p.add_argument("--data", dest="data_root", help="data folder (default: $SARDFQ_DATA)")
    p.add_argument("--checkpoint", help="local weights file for a timm model")
    p.add_argument("--config", help="a JSON file of ExperimentConfig fields (options override it)")
    p.add_argument("--out", default=None, help="folder for the calibration set and result.json")
    p.add_argument("--quickstart", action="store_true", default=False,
                   help="FP vs noise vs SARDFQ W4A4 on the embedded teacher, in minutes on a CPU")
    _add_common_run_options(p)
    p.set_defaults(func=_run_run)
    q = sub.add_parser("quickstart", help="FP vs noise vs SARDFQ W4A4 top-1 on the embedded teacher "
                                          "(same as `sardfq run --quickstart`)")
    q.add_argument("model", nargs="?", default=d.model, help=f"model name (default: {d.model})")
    q.add_argument("--data", dest="data_root", help="data folder (default: $SARDFQ_DATA)")
    q.add_argument("--out", help="folder for the calibration sets and records (<run-id>.json, as in a "
                                 "sweep's results folder)")
    _add_common_run_options(q)
    q.set_defaults(func=_run_quickstart)


def _add_common_run_options(p) -> None:
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--no-progress", dest="progress", action="store_false", default=True,
                   help="no progress bars")
    p.add_argument("--json", action="store_true", default=False,
                   help="print one JSON object on the last line")


_RUN_FIELDS = ("model", "method", "apa", "msr", "sl", "bits", "n", "synth_iters", "recon_iters",
               "eval_limit", "heldout_limit", "seed", "data_root", "checkpoint")


def _run_run(args: argparse.Namespace) -> None:
    from .experiments import ExperimentConfig, run_experiment

    if args.quickstart:
        args.model = getattr(args, "model", None) or ExperimentConfig().model
        args.data_root = getattr(args, "data_root", None)
        return _run_quickstart(args)
    values = json.loads(Path(args.config).read_text()) if getattr(args, "config", None) else {}
    values.update({k: getattr(args, k) for k in _RUN_FIELDS if getattr(args, k, None) is not None})
    if args.device is not None or "device" not in values:
        values["device"] = str(_device(args.device))
    config = ExperimentConfig.from_dict(values)
    result = run_experiment(config, out_dir=args.out, progress=args.progress)
    if args.out:
        result.save(Path(args.out) / "result.json")
    r = result.to_dict()
    _emit(args, r, [
        f"{config.model} {config.variant} {config.bits} (seed {config.seed}), "
        f"{r['quantized']['n_images']} test images:",
        f"  full precision top-1 {100 * r['fp']['top1']:.2f}%  top-5 {100 * r['fp']['top5']:.2f}%",
        f"  quantized      top-1 {100 * r['quantized']['top1']:.2f}%  top-5 {100 * r['quantized']['top5']:.2f}%",
        *([f"  held-out training images ({r['heldout']['quantized']['n_images']}): full precision "
           f"top-1 {100 * r['heldout']['fp']['top1']:.2f}%, quantized {100 * r['heldout']['quantized']['top1']:.2f}%"]
          if r["heldout"] else []),
        f"  calibration set: {r['calibration_path']}",
        "  seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in r["timings"].items()),
    ])


def _run_quickstart(args: argparse.Namespace) -> None:
    import time

    from .experiments import quickstart_configs, quickstart_table, run_experiment

    start = time.perf_counter()
    results = []
    for config in quickstart_configs(args.model, device=str(_device(args.device)),
                                      data_root=args.data_root):
        out = Path(args.out) / config.run_id() if args.out else None  # the layout of a sweep
        result = run_experiment(config, out_dir=out, progress=args.progress)
        if out is not None:
            result.save(Path(args.out) / f"{config.run_id()}.json")
        results.append(result)
    lines = quickstart_table(results) + [f"total {time.perf_counter() - start:.0f} s"]
    _emit(args, {"runs": [r.to_dict() for r in results], "seconds": time.perf_counter() - start}, lines)


# ---------------------------------------------------------------------------------------- sweep
def _add_sweep(sub) -> None:
    p = sub.add_parser("sweep", help="run a grid of experiments (or notebooks) from a YAML file")
    p.add_argument("grid", help="sweep file (YAML): name, fixed parameters, grid")
    p.add_argument("--workers", type=int, default=1, help="parallel runs (default: 1)")
    p.add_argument("--scheduler", help="'local' for a Dask LocalCluster, or a Dask scheduler address")
    p.add_argument("--notebook", help="run this notebook with papermill per run, instead of the "
                                      "experiment function")
    p.add_argument("--results", default="results", help="results folder (default: results)")
    p.add_argument("--dry-run", action="store_true", help="list the runs and whether each is done")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.add_argument("--json", action="store_true", help="print one JSON object on the last line")
    p.set_defaults(func=_run_sweep)


def _run_sweep(args: argparse.Namespace) -> None:
    import dataclasses

    from .sweep import is_complete, load_sweep, record_path, run_sweep

    spec = load_sweep(args.grid)
    if args.notebook:
        spec = dataclasses.replace(spec, notebook=args.notebook)
    if args.dry_run:
        runs = spec.runs()
        done = [r.run_id for r in runs if is_complete(record_path(args.results, spec, r), r)]
        _emit(args, {"name": spec.name, "runs": [r.run_id for r in runs], "done": done},
              [f"{'done' if r.run_id in done else 'todo'}  {r.run_id}" for r in runs]
              + [f"{len(runs)} runs, {len(done)} done"])
        return
    report = run_sweep(spec, results_dir=args.results, workers=args.workers, scheduler=args.scheduler,
                       progress=args.progress)
    lines = [f"sweep {report.name}: {len(report.completed)} run, {len(report.skipped)} already done, "
             f"{len(report.failed)} failed ({report.seconds:.0f} s); records in "
             f"{Path(report.results_dir) / report.name}"]
    lines += [f"  failed {run_id}: {error}" for run_id, error in report.failed.items()]
    _emit(args, report.to_dict(), lines)
    if report.failed:
        raise SardfqError(f"{len(report.failed)} run(s) failed; see the .failed.json files; rerun to retry")


# ----------------------------------------------------------------------------------- synthesize
def _add_synthesize(sub) -> None:
    p = sub.add_parser("synthesize", help="synthesize a calibration set (safetensors + PNG grid)")
    p.add_argument("model", help="model name (e.g. vit_tiny_cifar10, deit_tiny_patch16_224)")
    p.add_argument("--method", default="sardfq", help="noise, real, psaq or sardfq (default: sardfq)")
    for switch in ("apa", "msr", "sl"):
        p.add_argument(f"--no-{switch}", dest=switch, action="store_false",
                       help=f"SARDFQ without {switch.upper()} (ablation)")
    p.add_argument("--n", type=int, default=32, help="number of images (default: 32)")
    p.add_argument("--iters", type=int, default=1000, help="optimization steps (default: 1000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--apa-weight", type=float, default=None,
                   help="APA weight a1 (default: chosen for the model's patch grid)")
    p.add_argument("--prior", default="gmm", help="attention prior: gmm, laplace or real")
    p.add_argument("--out", help="output .safetensors file (default: calib/MODEL-LABEL-seedS.safetensors)")
    p.add_argument("--data", help="data folder for --method real / --prior real (default: $SARDFQ_DATA)")
    _add_model_run_options(p)
    p.set_defaults(func=_run_synthesize)


def _run_synthesize(args: argparse.Namespace) -> None:
    from .models import load_model
    from .synthesis import SynthesisConfig, save_image_grid, synthesize

    config = SynthesisConfig(method=args.method, n=args.n, iterations=args.iters, seed=args.seed,
                             apa=args.apa, msr=args.msr, sl=args.sl, apa_weight=args.apa_weight,
                             prior=args.prior)
    device = _device(args.device)
    model, info = load_model(args.model, checkpoint=args.checkpoint, device=device)
    calib = synthesize(model, info, config, device=device, data_root=args.data, progress=args.progress)
    out = Path(args.out or f"calib/{args.model}-{config.label}-seed{config.seed}.safetensors")
    calib.save(out)
    png = save_image_grid(calib, info, out.with_suffix(".png"))
    meta = calib.metadata
    record = {"out": str(out), "png": str(png), "method": config.method, "label": config.label,
              "switches": config.switches, "n": len(calib), "iterations": meta["iterations"],
              "seconds": meta["seconds"], "final_losses": meta["final_losses"]}
    losses = ", ".join(f"{k} {v:.4g}" for k, v in meta["final_losses"].items()) or "none"
    _emit(args, record, [f"{len(calib)} {config.label} images for {args.model} -> {out} "
                         f"(grid: {png}) in {meta['seconds']:.1f} s; final losses: {losses}"])


# ------------------------------------------------------------------------------------- quantize
def _bits(value: str):
    """A bit-width from the command line: an integer, or fp / none for full precision."""
    return None if value.strip().lower() in ("fp", "none", "full") else int(value)


def _add_quantize(sub) -> None:
    p = sub.add_parser("quantize", help="quantize a model on a calibration set, optionally reconstruct "
                                        "and evaluate; saves a folder that `sardfq eval DIR` reads")
    p.add_argument("model", help="model name (e.g. vit_tiny_cifar10, deit_tiny_patch16_224)")
    p.add_argument("--calib", required=True, help="calibration set file (from `sardfq synthesize`)")
    p.add_argument("--w-bits", type=_bits, default=4, help="weight bits, 2..8 or fp (default: 4)")
    p.add_argument("--a-bits", type=_bits, default=4, help="activation bits, 2..8 or fp (default: 4)")
    p.add_argument("--attn-bits", type=_bits, default=None,
                   help="post-softmax attention bits (default: the activation bits)")
    p.add_argument("--embed-bits", type=_bits, default=8, help="patch embedding bits (default: 8)")
    p.add_argument("--head-bits", type=_bits, default=8, help="classifier head bits (default: 8)")
    p.add_argument("--recon-iters", type=int, default=0,
                   help="block reconstruction steps per block (default: 0, calibration only)")
    p.add_argument("--recon-lr", type=float, default=4e-5, help="reconstruction learning rate")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="output folder (default: quantized/MODEL-BITS)")
    p.add_argument("--data", help="evaluate on this data folder's test set after quantizing")
    p.add_argument("--limit", type=int, help="evaluate on this many test images (implies evaluating)")
    p.add_argument("--batch-size", type=int, default=256, help="evaluation batch size")
    _add_model_run_options(p)
    p.set_defaults(func=_run_quantize)


def _run_quantize(args: argparse.Namespace) -> None:
    import time

    from .calibset import CalibrationSet
    from .models import load_model
    from .quant import QuantConfig, quantize, save_quantized
    from .reconstruction import ReconConfig, reconstruct

    timings = {}
    began = time.perf_counter()
    extra = {} if args.attn_bits is None else {"attn_bits": args.attn_bits}
    config = QuantConfig(w_bits=args.w_bits, a_bits=args.a_bits, embed_bits=args.embed_bits,
                         head_bits=args.head_bits, **extra)
    recon_config = ReconConfig(iters=args.recon_iters, lr=args.recon_lr, seed=args.seed)
    device = _device(args.device)
    calib = CalibrationSet.load(args.calib)
    fp_model, info = load_model(args.model, checkpoint=args.checkpoint, device=device)
    timings["load_s"] = time.perf_counter() - began
    step = time.perf_counter()
    q_model = quantize(fp_model, info, config, calib, seed=args.seed, progress=args.progress)
    timings["quantize_s"] = time.perf_counter() - step
    blocks = []
    if args.recon_iters > 0:
        step = time.perf_counter()
        blocks = reconstruct(q_model, fp_model, calib, recon_config, progress=args.progress).to_dict()["blocks"]
        timings["reconstruct_s"] = time.perf_counter() - step
    step = time.perf_counter()
    out = save_quantized(q_model, args.out or f"quantized/{args.model}-{config.name}")
    timings["save_s"] = time.perf_counter() - step
    record = {"model": args.model, "out": str(out), "bits": config.name, "quant_config": config.to_dict(),
              "calib": args.calib, "n_calib": len(calib), "seed": args.seed,
              "recon_iters": args.recon_iters, "reconstruction": blocks, "accuracy": None}
    lines = [f"{args.model} at {config.name} calibrated on {len(calib)} images from {args.calib} -> {out}"]
    lines += [f"  {b['block']}: output MSE {b['mse_before']:.4g} -> {b['mse_after']:.4g}" for b in blocks]
    if args.data is not None or args.limit is not None:
        from .data import eval_dataset
        from .evaluate import evaluate

        step = time.perf_counter()
        dataset = eval_dataset(info, fp_model, args.data, limit=args.limit)
        result = evaluate(q_model, dataset, name=f"{args.model} {config.name}", batch_size=args.batch_size,
                          device=device, progress=args.progress)
        timings["eval_s"] = time.perf_counter() - step
        record["accuracy"] = result.to_dict()
        lines.append(f"  top-1 {100 * result.top1:.2f}%  top-5 {100 * result.top5:.2f}% "
                     f"on {result.n_images} test images")
    timings["total_s"] = time.perf_counter() - began
    record["timings"] = timings
    lines.append("  " + ", ".join(f"{k[:-2]} {v:.1f} s" for k, v in timings.items()))
    _emit(args, record, lines)


# -------------------------------------------------------------------------------------- inspect
def _add_inspect(sub) -> None:
    from .inspect import N_REFERENCE

    p = sub.add_parser("inspect", help="measure a calibration set against real images: attention, "
                                       "features, content, and the ranges calibration picks")
    p.add_argument("model", help="model name (e.g. vit_tiny_cifar10)")
    p.add_argument("calib", help="calibration set file (.safetensors, from `sardfq synthesize`)")
    p.add_argument("--reference", default="real",
                   help="'real' (training images drawn as the real method draws them, never the "
                        "held-out split) or another calibration set file (default: real)")
    p.add_argument("--n-ref", type=int, default=N_REFERENCE,
                   help=f"real reference images (default: {N_REFERENCE})")
    p.add_argument("--bits", default="w4a4", help="quantization whose ranges are compared (default: w4a4)")
    p.add_argument("--data", help="data folder for the real reference (default: $SARDFQ_DATA)")
    _add_model_run_options(p)
    p.set_defaults(func=_run_inspect)


def _run_inspect(args: argparse.Namespace) -> None:
    from .calibset import CalibrationSet
    from .inspect import inspect_calibration
    from .models import load_model

    if args.n_ref < 2:
        raise SardfqError(f"--n-ref must be at least 2, got {args.n_ref}")
    calib = CalibrationSet.load(args.calib)  # a missing or damaged file fails before the model loads
    model, info = load_model(args.model, checkpoint=args.checkpoint, device=_device(args.device))
    report = inspect_calibration(model, info, calib, args.reference, n_ref=args.n_ref, bits=args.bits,
                                 data_root=args.data, progress=args.progress)
    report.set["path"] = args.calib
    _emit(args, report.to_dict(), report.lines())


# ------------------------------------------------------------------------------------- helpers
def _add_model_run_options(p) -> None:
    """Options shared by the commands that load a model and run a long job on it."""
    p.add_argument("--checkpoint", help="local weights file for a timm model")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    p.add_argument("--json", action="store_true", help="print one JSON object on the last line")


def _device(name: str | None):
    from .models import resolve_device

    return resolve_device(name, what="--device")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="sardfq", description="Data-free quantization of Vision Transformers (SARDFQ).")
    parser.add_argument("--version", action="version", version=f"sardfq {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at debug level")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_eval, _add_train_teacher, _add_run, _add_sweep, _add_synthesize, _add_quantize,
                _add_inspect):
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
