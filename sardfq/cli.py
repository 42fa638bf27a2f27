"""The `sardfq` command line: parsing only, over the same library verbs the notebooks use.

Every subcommand prints a human-readable summary, or with `--json` one JSON object on the last line
of standard output. Progress bars and logs go to standard error. Errors caused by the input (unknown
model, missing data, bad checkpoint, an output path it may not replace, ...) print one line and exit
with status 2, before any long work where the input can be checked first; Ctrl-C prints
"interrupted" and exits with 130. Only the command run gets its options built (`build_parser`), and
each command imports what it needs when it runs: `sardfq eval` refuses a model folder that its own
files condemn (`sardfq.model_files`) before torch loads. The options read off the config dataclasses
are `cli_options`'; the sequences the commands run are verbs of `sardfq.experiments`.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from .cli_options import add_config_options, config_values
from .errors import ConfigError, SardfqError
from .io import check_output_file, check_output_folder
from .model_files import check_model_folder


def _device(name: str | None):
    """`--device` read as every command reads it (`sardfq.models.resolve_device`, imported when a
    command runs, not when the parser is built)."""
    from .models import resolve_device

    return resolve_device(name, what="--device")


def _emit(args: argparse.Namespace, record: dict, lines: list[str]) -> None:
    if args.json:
        print(json.dumps(record))
    else:
        print("\n".join(lines))


_FORCE_HELP = "synthesize more calibration images than sardfq.synthesis.config.MAX_IMAGES (a job of hours)"
_MODEL_HELP = ("model: an embedded name (vit_tiny_cifar10), a timm ViT/DeiT/Swin name or tag, an "
               "hf-hub: id in the local cache, or a model folder (config.json + model.safetensors)")


# ---------------------------------------------------------------------------------------- eval
def _eval_options(p) -> None:
    p.add_argument("model", help=_MODEL_HELP + ", a folder saved by `sardfq quantize`, or an .onnx file "
                                            "written by `sardfq export` (run in onnxruntime on the CPU)")
    p.add_argument("--data", help="data folder (default: $SARDFQ_DATA)")
    p.add_argument("--checkpoint", help="local weights file replacing the model's")
    p.add_argument("--limit", type=int, help="evaluate on this many images only (an even spread)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available; an .onnx "
                                                  "file runs on the CPU)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's / onnxruntime's)")
    p.add_argument("--json", action="store_true", help="print one JSON object on the last line")
    p.set_defaults(func=_run_eval)


def _run_eval(args: argparse.Namespace) -> None:
    if args.threads is not None and args.threads < 1:
        raise ConfigError(f"--threads must be at least 1, got {args.threads}")
    onnx_file = str(args.model).endswith(".onnx")
    if onnx_file and args.device not in (None, "cpu"):
        raise ConfigError(f"--device {args.device}: an .onnx file runs in onnxruntime on the CPU; drop --device")
    if args.device in (None, "cpu"):  # no device error can come first: a bad folder is refused before torch loads
        check_model_folder(args.model, weights=args.checkpoint is None)
    import torch

    from .experiments.run import evaluate_saved

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = _device("cpu" if onnx_file else args.device)
    result, info = evaluate_saved(args.model, data_root=args.data, checkpoint=args.checkpoint, limit=args.limit,
                                  batch_size=args.batch_size, device=device, threads=args.threads)
    record = result.to_dict()
    if onnx_file:  # onnxruntime's integer kernels depend on the CPU: say which one ran them
        from .version import cpu_info

        record["cpu"] = cpu_info()
    # with 5 classes or fewer every image is a top-5 hit: the summary line leaves top-5 out (JSON keeps it)
    top5 = f"top-5 {100 * result.top5:.2f}%  " if info.num_classes > 5 else ""
    _emit(args, record, [
        f"{args.model}: top-1 {100 * result.top1:.2f}%  {top5}on {result.n_images} images ({result.seconds:.1f} s)"
    ])


# -------------------------------------------------------------------------------------- export
def _export_options(p) -> None:
    from .quant.export import MODES

    p.add_argument("quantized", help="a folder saved by `sardfq quantize --out DIR` (or DIR/quantized of "
                                     "`sardfq run --out DIR`)")
    p.add_argument("--format", default="onnx", choices=["onnx"], help="output format (default: onnx)")
    p.add_argument("--out", default=None, help="the .onnx file to write (default: QUANTIZED/model.onnx)")
    p.add_argument("--mode", default="integer", choices=MODES,
                   help="integer: what onnxruntime's CPU provider runs as integers (8-bit activations, or "
                        "weight-only); emulate: activations below 8 bits too, on 8-bit kernels, for "
                        "checking accuracy only (default: integer)")
    p.add_argument("--no-check", dest="verify", action="store_false",
                   help="skip the check that runs the file beside the PyTorch model on 16 fixed images and "
                        "refuses to write it where their logits differ beyond the tolerance on this CPU")
    p.add_argument("--json", action="store_true", help="print one JSON object on the last line")
    p.set_defaults(func=_run_export)


def _run_export(args: argparse.Namespace) -> None:
    from .quant.export import export_onnx, integer_op_counts

    result = export_onnx(args.quantized, args.out, mode=args.mode, verify=args.verify)
    fused = integer_op_counts(result.path)  # what onnxruntime actually runs, after its fusions
    record = {**result.to_dict(), "onnxruntime_integer_ops": fused}
    record.pop("metadata")
    ops = ", ".join(f"{n} {op}" for op, n in sorted(fused.items())) or "none"
    check = f"  checked against the PyTorch model {result.check.summary()}" if result.check else \
        "  not checked (--no-check)"
    _emit(args, record, [f"{result.model} {result.setting} -> {result.path} ({result.file_bytes / 1e6:.2f} MB, "
                         f"mode {result.mode}): {result.metadata['sardfq.summary']}",
                         f"  onnxruntime CPU integer kernels after fusion: {ops}", check])


# ------------------------------------------------------------------------------- train-teacher
def _train_teacher_options(p) -> None:
    from .teacher import PRESETS

    p.add_argument("--preset", default="vit_tiny_cifar10", choices=PRESETS.names(),
                   help="architecture and recipe (default: the embedded teacher's)")
    p.add_argument("--data", help="data folder (default: $SARDFQ_DATA)")
    p.add_argument("--out", default="teacher", help="output model folder (resumes from its last.pt)")
    p.add_argument("--epochs", type=int, help="override the preset's number of epochs")
    p.add_argument("--batch-size", type=int, help="override the preset's batch size")
    p.add_argument("--lr", type=float, help="override the preset's learning rate")
    p.add_argument("--seed", type=int, help="override the preset's seed")
    p.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None,
                   help="bf16 autocast of the forward pass (default: the preset's)")
    p.add_argument("--limit", type=int, help="train on this many images only (smoke tests)")
    p.add_argument("--device", default=None)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_run_train_teacher)


def _run_train_teacher(args: argparse.Namespace) -> None:
    from .teacher import PRESETS, train_teacher

    preset = PRESETS.get(args.preset)
    overrides = {k: v for k, v in (("epochs", args.epochs), ("batch_size", args.batch_size), ("lr", args.lr),
                                   ("seed", args.seed), ("bf16", args.bf16)) if v is not None}
    if args.epochs is not None:  # a shorter run keeps its warm-up inside it
        overrides["warmup_epochs"] = min(preset.recipe.warmup_epochs, args.epochs)
    result = train_teacher(preset, recipe=preset.recipe.replace(**overrides), root=args.data, out=args.out,
                           device=_device(args.device), limit=args.limit)
    _emit(args, result, [f"{args.preset} saved to {args.out}: {preset.data.title} test top-1 "
                         f"{100 * result['test_top1']:.2f}% on {result['test_images']} images after "
                         f"{result['epochs_done']} epochs"])


# ------------------------------------------------------------------------------------ compare
def _compare_options(p) -> None:
    from .analysis.compare import METRICS

    p.add_argument("a", help="calibration source (variant), e.g. sardfq, psaq, noise, real, sardfq[apa+sl]")
    p.add_argument("b", help="the source it is compared with: the result is a - b")
    p.add_argument("--results", default="results", help="folder of experiment records (searched recursively)")
    p.add_argument("--model", help="only records of this model")
    p.add_argument("--bits", help="only records at this bit-width, e.g. w4a4")
    p.add_argument("--metric", choices=[*METRICS, "all"], default="all")
    p.add_argument("--boot", type=int, default=2000, help="bootstrap resamples")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_run_compare)


def _run_compare(args: argparse.Namespace) -> None:
    from .analysis.compare import METRICS, compare

    metrics = list(METRICS) if args.metric == "all" else [args.metric]
    found = compare(args.results, args.a, args.b, model=args.model, setting=args.bits, metrics=metrics,
                    n_boot=args.boot)
    lines = [str(c) for c in found]
    for c in found[:1]:
        lines += [f"  seed {r['seed']}: {r['a']:.2f} vs {r['b']:.2f}, {r['difference']:+.2f} "
                  f"[{r['ci'][0]:+.2f}, {r['ci'][1]:+.2f}] {c.unit}" for r in c.per_seed]
    _emit(args, {"comparisons": [c.to_dict() for c in found]}, lines)


def _zoo_options(p) -> None:
    p.add_argument("--results", default="results/zoo_main", help="folder of the zoo's experiment records")
    p.add_argument("--boot", type=int, default=2000, help="bootstrap resamples")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_run_zoo)


def _run_zoo(args: argparse.Namespace) -> None:
    from .analysis.zoo import headline_report, zoo_gains

    gains = zoo_gains(args.results, n_boot=args.boot)
    _emit(args, {"gains": gains.to_dict("records")}, [headline_report(gains)])


def _headroom_options(p) -> None:
    p.add_argument("--results", default="results/headroom_cells", help="folder of the cells' experiment records")
    p.add_argument("--predictions", default=None,
                   help="predictions written before the runs (default: RESULTS/predictions.json when present)")
    p.add_argument("--boot", type=int, default=2000, help="bootstrap resamples")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_run_headroom)


def _run_headroom(args: argparse.Namespace) -> None:
    from .analysis.headroom import report

    predictions = args.predictions or Path(args.results) / "predictions.json"
    found = report(args.results, predictions if Path(predictions).is_file() else None, n_boot=args.boot)
    record = {"gains": found["gains"].to_dict("records"), "shares": found["shares"].to_dict("records"),
              "scores": None if found["scores"] is None else found["scores"].to_dict("records")}
    _emit(args, record, [found["markdown"]])


# ----------------------------------------------------------------------------- run, quickstart
def _run_options(p) -> None:
    from .experiments.config import ExperimentConfig

    d = ExperimentConfig()
    p.add_argument("model", nargs="?", help=f"{_MODEL_HELP} (default: {d.model})")
    p.add_argument("--config", help="a JSON file of ExperimentConfig fields, nested "
                                    '({"synthesis": {"apa_weight": 10}}) or dotted ("synthesis.apa_weight"); '
                                    "options given here override it")
    p.add_argument("--bits", help=f"weight/activation bits as wXaY, sets --w-bits and --a-bits "
                                  f"(default: {d.setting})")
    p.add_argument("--out", default=None, help="folder for the calibration set, result.json and the "
                                               "quantized model (OUT/quantized, read by `sardfq eval`)")
    p.add_argument("--quickstart", action="store_true", default=False,
                   help="FP vs noise vs SARDFQ W4A4 on the embedded teacher, in minutes on a CPU")
    p.add_argument("--force", action="store_true", default=False, help=_FORCE_HELP)
    _add_common_run_options(p)
    add_config_options(p, ExperimentConfig, hide=("model", "device"))
    p.set_defaults(func=_run_run)


def _quickstart_options(q) -> None:
    from .experiments.config import ExperimentConfig

    d = ExperimentConfig()
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


def _run_run(args: argparse.Namespace) -> None:
    from .experiments.config import ExperimentConfig, read_config_file
    from .experiments.estimate import estimate_experiment, log_estimate
    from .experiments.records import run_summary
    from .experiments.run import RUN_FILES, run_experiment, run_to_folder

    if args.quickstart:
        args.model = getattr(args, "model", None) or ExperimentConfig().model
        args.data_root = getattr(args, "data_root", None)
        return _run_quickstart(args)
    file_values = read_config_file(args.config, "--config") if getattr(args, "config", None) else {}
    typed = config_values(args)  # dotted field names, only the options typed
    if getattr(args, "model", None) is not None:
        typed["model"] = args.model
    if getattr(args, "bits", None) is not None:
        typed["setting"] = args.bits
    if args.device is not None or "device" not in file_values:
        typed["device"] = str(_device(args.device))
    # one road: the file, then the options typed, nested, merged and checked once
    config = ExperimentConfig.from_dict(file_values, typed)  # every option checked before any slow work
    config.synthesis.check_size(force=args.force)
    if args.out is not None:  # refused before the estimate's warm-up too (and again when written)
        check_output_folder(args.out, "--out", ours=RUN_FILES)
    log_estimate(estimate_experiment(config))
    if args.out is None:
        r = run_experiment(config, progress=args.progress).to_dict()
    else:
        r = run_to_folder(config, args.out, progress=args.progress, what="--out")
    _emit(args, r, run_summary(r))


def _run_quickstart(args: argparse.Namespace) -> None:
    import time

    from .experiments.records import quickstart_table
    from .experiments.run import run_quickstart

    start = time.perf_counter()
    results = run_quickstart(args.model, device=str(_device(args.device)),
                             data_root=args.data_root, out=args.out or None, progress=args.progress, what="--out")
    lines = quickstart_table(results) + [f"total {time.perf_counter() - start:.0f} s"]
    _emit(args, {"runs": [r.to_dict() for r in results], "seconds": time.perf_counter() - start}, lines)


# ---------------------------------------------------------------------------------------- sweep
def _sweep_options(p) -> None:
    p.add_argument("grid", help="sweep file (YAML): name, fixed parameters, grid")
    p.add_argument("--workers", type=int, default=1, help="parallel runs (default: 1)")
    p.add_argument("--scheduler", help="'local' for a Dask LocalCluster, or a Dask scheduler address")
    p.add_argument("--notebook", help="run this notebook with papermill per run, instead of the "
                                      "experiment function")
    p.add_argument("--results", default="results", help="results folder (default: results)")
    p.add_argument("--dry-run", action="store_true", help="list the runs and whether each is done")
    p.add_argument("--only", action="append", default=[], metavar="KEY=VALUE",
                   help="only the runs with this value, e.g. --only model=vit_shallow_cifar10 (repeatable)")
    p.add_argument("--allow-code", action="store_true",
                   help="let the sweep file name code to run: an 'experiment: module:function' plugin "
                        "(imported, a .py file of the working folder too) or a 'notebook:' key. Without "
                        "it a sweep runs only registered experiments (run_experiment)")
    p.add_argument("--force", action="store_true", help=_FORCE_HELP)
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.add_argument("--json", action="store_true", help="print one JSON object on the last line")
    p.set_defaults(func=_run_sweep)


def _run_sweep(args: argparse.Namespace) -> None:
    import dataclasses

    from .experiments.sweep import is_complete, load_sweep, record_path, run_sweep

    spec = load_sweep(args.grid).only(args.only, "--only")
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
                       notebook=args.notebook, allow_code=args.allow_code, force=args.force,
                       progress=args.progress)
    lines = [f"sweep {report.name}: {len(report.completed)} run, {len(report.skipped)} already done, "
             f"{len(report.failed)} failed ({report.seconds:.0f} s); records in "
             f"{Path(report.results_dir) / report.name}"]
    lines += [f"  failed {run_id}: {error}" for run_id, error in report.failed.items()]
    _emit(args, report.to_dict(), lines)
    if report.failed:
        raise SardfqError(f"{len(report.failed)} run(s) failed; see the .failed.json files; rerun to retry")


# ----------------------------------------------------------------------------------- synthesize
def _synthesize_options(p) -> None:
    from .synthesis.config import SynthesisConfig

    p.add_argument("model", help=_MODEL_HELP)
    p.add_argument("--out", default=None,
                   help="output .safetensors file (default: calib/MODEL-LABEL-seedS.safetensors)")
    p.add_argument("--data", default=None,
                   help="data folder for --method real / --prior real (default: $SARDFQ_DATA)")
    p.add_argument("--force", action="store_true", default=False, help=_FORCE_HELP)
    _add_model_run_options(p)
    add_config_options(p, SynthesisConfig, prefix="synthesis.")
    p.set_defaults(func=_run_synthesize)


def _run_synthesize(args: argparse.Namespace) -> None:
    from .experiments.config import nest
    from .experiments.estimate import estimate_synthesis_of, log_estimate
    from .experiments.run import synthesis_file, synthesize_to_file
    from .synthesis import SynthesisConfig

    values = nest(config_values(args)).get("synthesis", {})
    if args.bf16:
        values["autocast"] = "bf16"
    config = SynthesisConfig.from_dict(values)
    config.check_size(force=args.force)
    device = _device(args.device)
    out = synthesis_file(args.model, config, args.out or None)
    check_output_file(out, "--out")  # both files checked before the estimate's warm-up and the work
    check_output_file(out.with_suffix(".png"), "the image grid beside --out")
    log_estimate(estimate_synthesis_of(args.model, config, checkpoint=args.checkpoint, device=device,
                                       data_root=args.data))
    r = synthesize_to_file(args.model, config, out, checkpoint=args.checkpoint, device=device, data_root=args.data,
                           progress=args.progress, what="--out")
    losses = ", ".join(f"{k} {v:.4g}" for k, v in r["final_losses"].items()) or "none"
    _emit(args, r, [f"{r['n']} {config.label} images for {args.model} -> {out} "
                    f"(grid: {r['png']}) in {r['seconds']:.1f} s; final losses: {losses}"])


# ------------------------------------------------------------------------------------- quantize
def _quantize_options(p) -> None:
    from .quant.config import QuantConfig, ReconConfig

    p.add_argument("model", help=_MODEL_HELP)
    p.add_argument("--calib", required=True, help="calibration set file (from `sardfq synthesize`)")
    p.add_argument("--bits", help="weight/activation bits as wXaY, sets --w-bits and --a-bits (default: w4a4)")
    p.add_argument("--seed", type=int, default=0, help="seeds calibration and reconstruction (default: 0)")
    p.add_argument("--out", default=None, help="output folder (default: quantized/MODEL-BITS)")
    p.add_argument("--data", default=None, help="evaluate on this data folder's test set after quantizing")
    p.add_argument("--limit", type=int, default=None,
                   help="evaluate on this many test images (implies evaluating)")
    p.add_argument("--batch-size", type=int, default=256, help="evaluation batch size")
    _add_model_run_options(p)
    add_config_options(p, QuantConfig, prefix="quant.")
    add_config_options(p, ReconConfig, prefix="recon.", hide=("seed",))
    p.set_defaults(func=_run_quantize)


def _run_quantize(args: argparse.Namespace) -> None:
    from .experiments.config import ExperimentConfig
    from .experiments.estimate import estimate_quantization, log_estimate
    from .experiments.run import QUANTIZED_FILES, quantize_to_folder, quantized_folder

    typed = {**config_values(args), "model": args.model, "seed": args.seed}
    for key, value in (("setting", getattr(args, "bits", None)), ("checkpoint", args.checkpoint),
                       ("data_root", args.data)):
        if value is not None:
            typed[key] = value
    if args.bf16:
        typed["recon.autocast"] = "bf16"
    # the quantization and reconstruction settings through the same road as `sardfq run`'s
    config = ExperimentConfig.from_dict(typed)
    config = config.replace(device=str(_device(args.device)))
    # the output folder, before the estimate's warm-up and the work (and again when written)
    check_output_folder(quantized_folder(config, args.out or None), "--out", ours=QUANTIZED_FILES)
    log_estimate(estimate_quantization(config, args.calib))
    r = quantize_to_folder(config, args.calib, args.out or None,
                           accuracy=args.data is not None or args.limit is not None, limit=args.limit,
                           batch_size=args.batch_size, progress=args.progress, what="--out")
    lines = [f"{r['model']} at {r['bits']} calibrated on {r['n_calib']} images from {r['calib']} -> {r['out']}"]
    lines += [f"  {b['block']}: output MSE {b['mse_before']:.4g} -> {b['mse_after']:.4g}" for b in r["reconstruction"]]
    if r["accuracy"] is not None:
        lines.append(f"  top-1 {100 * r['accuracy']['top1']:.2f}%  top-5 {100 * r['accuracy']['top5']:.2f}% "
                     f"on {r['accuracy']['n_images']} test images")
    lines.append("  " + ", ".join(f"{k.removesuffix('_s')} {v:.1f} s" for k, v in r["timings"].items()))
    _emit(args, r, lines)


# -------------------------------------------------------------------------------------- inspect
def _inspect_options(p) -> None:
    from .analysis.diagnostics import N_REFERENCE

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
    from .analysis.diagnostics import inspect_calibration
    from .calibset import CalibrationSet
    from .models import load_model

    if args.n_ref < 2:
        raise SardfqError(f"--n-ref must be at least 2, got {args.n_ref}")
    calib = CalibrationSet.load(args.calib)  # a missing or damaged file fails before the model loads
    model, info = load_model(args.model, checkpoint=args.checkpoint, device=_device(args.device))
    report = inspect_calibration(model, info, calib, args.reference, n_ref=args.n_ref, setting=args.bits,
                                 data_root=args.data, progress=args.progress)
    report.set["path"] = args.calib
    _emit(args, report.to_dict(), report.lines())


# ------------------------------------------------------------------------------------- helpers
def _add_model_run_options(p) -> None:
    """Options shared by the commands that load a model and run a long job on it."""
    p.add_argument("--checkpoint", default=None, help="local weights file replacing the model's")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--bf16", action="store_true", default=False,
                   help="bf16 autocast of the synthesis / reconstruction forward passes (default: float32)")
    p.add_argument("--no-progress", dest="progress", action="store_false", default=True,
                   help="no progress bars")
    p.add_argument("--json", action="store_true", default=False, help="print one JSON object on the last line")


def _command_parsers(sub) -> dict[str, argparse.ArgumentParser]:
    """Every command's parser with its name and help, in the order `sardfq --help` lists them; the
    options come from `_OPTIONS`, added only to the parser of the command run (a command imports
    only what it needs: `sardfq eval` can refuse a model folder before torch loads)."""
    return {
        "eval": sub.add_parser("eval", help="top-1/top-5 accuracy of a model on its test set"),
        "export": sub.add_parser("export", help="write a saved quantized model to ONNX that onnxruntime runs with "
                                 "integer kernels"),
        "train-teacher": sub.add_parser("train-teacher", help="train a teacher of the zoo (CIFAR-10 or "
                                        "Tiny-ImageNet-200) from scratch (resumable)"),
        # options not typed stay out of args: --config or the defaults fill them
        "run": sub.add_parser("run", help="one experiment: synthesize, quantize, reconstruct, evaluate",
                              argument_default=argparse.SUPPRESS, description="Options not given take their "
                              "values from --config, else the defaults of ExperimentConfig and its nested configs."),
        "quickstart": sub.add_parser("quickstart", help="FP vs noise vs SARDFQ W4A4 top-1 on the embedded teacher "
                                     "(same as `sardfq run --quickstart`)"),
        "sweep": sub.add_parser("sweep", help="run a grid of experiments (or notebooks) from a YAML file"),
        "synthesize": sub.add_parser("synthesize", help="synthesize a calibration set (safetensors + PNG grid)",
                                     argument_default=argparse.SUPPRESS),
        "quantize": sub.add_parser("quantize", help="quantize a model on a calibration set, optionally reconstruct "
                                   "and evaluate; saves a folder that `sardfq eval DIR` reads",
                                   argument_default=argparse.SUPPRESS),
        "compare": sub.add_parser("compare", help="difference between two calibration sources with a 95%% CI, "
                                  "paired by seed and test image"),
        "zoo": sub.add_parser("zoo", help="the teacher zoo's headline: per teacher and bit-width, "
                              "SARDFQ - PSAQ-ViT, SARDFQ - noise and real - noise with 95%% CIs, as a Markdown table"),
        "headroom": sub.add_parser("headroom", help="the paper's regime: per headroom cell, real - PSAQ-ViT, "
                                   "SARDFQ - PSAQ-ViT and the share of the headroom SARDFQ closes, with 95%% CIs; "
                                   "the predictions scored"),
        "inspect": sub.add_parser("inspect", help="measure a calibration set against real images: attention, "
                                  "features, content, and the ranges calibration picks"),
    }


_OPTIONS = {"eval": _eval_options, "export": _export_options, "train-teacher": _train_teacher_options,
            "run": _run_options, "quickstart": _quickstart_options, "sweep": _sweep_options,
            "synthesize": _synthesize_options, "quantize": _quantize_options, "compare": _compare_options,
            "zoo": _zoo_options, "headroom": _headroom_options, "inspect": _inspect_options}


def _command(argv: list[str]) -> str | None:
    """The command `argv` runs: its first word that is not an option (the top-level options take no
    values); None when there is none or it is no command (argparse then says so, naming them all)."""
    word = next((a for a in argv if not a.startswith("-")), None)
    return word if word in _OPTIONS else None


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The `sardfq` parser; with `command`, only that command's options are added (the others keep
    their name and help), else every command's."""
    from .version import __version__

    parser = argparse.ArgumentParser(
        prog="sardfq", description="Data-free quantization of Vision Transformers (SARDFQ).")
    parser.add_argument("--version", action="version", version=f"sardfq {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at debug level")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, p in _command_parsers(sub).items():
        if command in (None, name):
            _OPTIONS[name](p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(_command(argv)).parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        args.func(args)
    except SardfqError as exc:
        print(f"sardfq {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # every output is atomic: an interrupted command leaves nothing half-written
        print(f"sardfq {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
