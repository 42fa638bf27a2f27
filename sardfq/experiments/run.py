"""One experiment, end to end: synthesize a calibration set, quantize, reconstruct, evaluate.

`run_experiment(ExperimentConfig(...))` is the single verb behind `sardfq run`, the quickstart, the
sweep runner and the results notebooks. It returns an `ExperimentResult` (`records`) whose
`to_dict()` holds every number the project reports; `save()` writes it as JSON atomically. Its
stages are functions of their own (`calibration_set`, `quantize_model`, `evaluate_model`).

The verbs behind the commands, each the whole sequence a command runs: `run_to_folder` (`sardfq
run --out`: the run's files in one folder, replaced whole), `synthesize_to_file` (`sardfq
synthesize`: a calibration set and its image grid), `quantize_to_folder` (`sardfq quantize`: a
saved calibration set in, a quantized model folder out), `evaluate_saved` (`sardfq eval`: a model,
a quantized folder or an exported .onnx file on its test set) and `run_quickstart`.

The full-precision accuracy depends only on the model, its weights and the evaluation subset, so it
is computed once and cached on disk (under `SARDFQ_CACHE`); a sweep over methods and bit-widths
does not evaluate the same model again and again.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from ..calibset import CalibrationSet
from ..data import cache_dir, eval_dataset, heldout_dataset
from ..errors import CheckpointError
from ..evaluate import evaluate, reference_outputs
from ..io import (atomic_folder, check_folder, check_output_file, check_output_folder, read_record,
                  write_json_atomic)
from ..models import (DEFAULT_MODEL, ModelInfo, device_description, load_model, model_fingerprint,
                      model_slug, resolve_device)
from ..quant.api import CONFIG_FILE as QUANTIZED_CONFIG
from ..quant.api import is_quantized_folder, load_quantized, quantize, save_quantized
from ..quant.config import QuantConfig, ReconConfig
from ..quant.reconstruction import reconstruct
from ..quant.runtime import load_onnx
from ..synthesis.config import SynthesisConfig
from ..synthesis.loop import save_image_grid, synthesize
from ..version import library_versions
from .config import EXPERIMENTS, ExperimentConfig
from .records import ExperimentResult

log = logging.getLogger(__name__)


@EXPERIMENTS.register("run_experiment")
def run_experiment(config: ExperimentConfig, *, out_dir: str | os.PathLike | None = None,
                   calibration_dir: str | os.PathLike | None = None, progress: bool = True,
                   keep_models: bool = False) -> ExperimentResult:
    """Run one experiment and return its record. The calibration set is saved as
    `calibration.safetensors` in `out_dir` (default `runs/<run-id>/`), or, given `calibration_dir`,
    as `<calibration_dir>/<synthesis-id>.safetensors`, where a later run with the same synthesis
    settings (another bit-width, say) loads it instead of synthesizing again. Save the record itself
    with `result.save(path)`. `keep_models=True` keeps the FP and quantized models on the result
    (for inspection in a notebook); they never enter the record."""
    device = resolve_device(config.device, what="ExperimentConfig.device")
    run_id = config.run_id()
    out = Path(out_dir) if out_dir is not None else Path("runs") / run_id
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    timings: dict[str, float] = {}

    def stage(name):
        return _Stage(name, timings)

    with stage("load"):
        fp_model, info = load_model(config.model, checkpoint=config.checkpoint, device=device)
        dataset = eval_dataset(info, fp_model, config.data_root, limit=config.eval_limit)
    with stage("fp_eval"):
        fp = fp_accuracy(fp_model, info, dataset, config, device=device, progress=progress)
    log.info("%s FP top-1 %.2f%% on %d images", config.model, 100 * fp["top1"], fp["n_images"])
    calib, calib_path = calibration_set(config, fp_model, info, out=out, calibration_dir=calibration_dir,
                                        device=device, progress=progress, timings=timings)
    q_model, reconstruction = quantize_model(fp_model, info, calib, config.quant, config.recon,
                                             seed=config.seed, progress=progress, timings=timings)
    with stage("q_eval"):
        quantized = evaluate_model(q_model, fp_model, dataset, name=f"{config.model} {config.quant.name}",
                                   batch_size=config.eval_batch_size, device=device, progress=progress,
                                   reference_logits=fp_logits(config, fp_model, dataset, device=device))
    log.info("%s %s %s top-1 %.2f%%", config.model, config.variant, config.quant.name, 100 * quantized["top1"])
    heldout = {}
    if config.heldout_limit:
        with stage("heldout_eval"):
            selection = heldout_dataset(info, config.data_root, limit=config.heldout_limit)
            heldout = {"fp": fp_accuracy(fp_model, info, selection, config, device=device,
                                         progress=progress, split="heldout"),
                       "quantized": evaluate_model(q_model, fp_model, selection,
                                                   name=f"{config.model} {config.quant.name} heldout",
                                                   batch_size=config.eval_batch_size, device=device,
                                                   progress=progress,
                                                   reference_logits=fp_logits(config, fp_model, selection,
                                                                              device=device, split="heldout"))}
    result = ExperimentResult(
        config=config, fp=fp, quantized=quantized, calibration_path=str(calib_path),
        calibration=_summarize_metadata(calib.metadata), timings=timings, versions=library_versions(),
        device=device_description(device), run_id=run_id, started=started,
        finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"), reconstruction=reconstruction, heldout=heldout)
    if keep_models:
        result.fp_model, result.q_model = fp_model, q_model
    else:
        del q_model
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return result


# ------------------------------------------------------------------------ runs that write folders
RUN_FILES = ("result.json", "calibration.safetensors")  # what marks a folder `run_to_folder` wrote
QUANTIZED_FILES = (QUANTIZED_CONFIG,)  # what marks a folder `quantize_to_folder` wrote


def run_to_folder(config: ExperimentConfig, out: str | os.PathLike, *, progress: bool = True,
                  what: str = "out") -> dict:
    """`run_experiment` with its files in the folder `out`: the calibration set, the quantized model
    (`out/quantized`, which `load_quantized` and `sardfq eval` read) and `result.json`. The folder
    is replaced whole when the run is done (`atomic_folder`): a run killed at any point leaves the
    previous run's folder as it was, never a mix of the two. Returns the record with
    `quantized_folder` added; `what` names `out` in errors (`--out` on the command line)."""
    out = Path(out)
    with atomic_folder(out, ours=RUN_FILES, what=what) as tmp:
        result = run_experiment(config, out_dir=tmp, progress=progress, keep_models=True)
        save_quantized(result.q_model, tmp / "quantized")
        # the record names where its files will be, not the temporary folder they are written in
        result.calibration_path = str(out / Path(result.calibration_path).relative_to(tmp))
        result.save(tmp / "result.json")
    return {**result.to_dict(), "quantized_folder": str(out / "quantized")}


def quantized_folder(config: ExperimentConfig, out: str | os.PathLike | None = None) -> Path:
    """Where `quantize_to_folder` writes: `out`, else `quantized/<model>-<bits>`."""
    return Path(out if out is not None else f"quantized/{model_slug(config.model)}-{config.quant.name}")


def quantize_to_folder(config: ExperimentConfig, calibration: str | os.PathLike,
                       out: str | os.PathLike | None = None, *, accuracy: bool = False,
                       limit: int | None = None, batch_size: int = 256, progress: bool = True,
                       what: str = "out") -> dict:
    """Quantize `config.model` (its `checkpoint`, on its `device`) on the calibration set saved at
    `calibration`, under `config.quant`, reconstructed under `config.recon` and seeded by
    `config.seed`; save the quantized model as a folder (`quantized_folder(config, out)`, checked
    before any work; `what` names it in errors), and with `accuracy` measure it on `limit` test
    images (None: all) of `config.data_root`, `batch_size` at a time. The synthesis fields of
    `config` are not used: the images are the saved set's.

    Returns the record `sardfq quantize --json` prints: model, out, bits, quant_config, calib,
    n_calib, seed, recon_iters, reconstruction (output MSE per block before and after), accuracy
    (None without `accuracy`) and timings (`<stage>_s`: load, quantize, reconstruct, save, eval,
    total)."""
    began = time.perf_counter()
    device = resolve_device(config.device, what="ExperimentConfig.device")
    out = check_output_folder(quantized_folder(config, out), what, ours=QUANTIZED_FILES)
    calib = CalibrationSet.load(calibration)  # a damaged set fails before the model loads
    fp_model, info = load_model(config.model, checkpoint=config.checkpoint, device=device)
    timings = {"load": time.perf_counter() - began}
    q_model, reconstruction = quantize_model(fp_model, info, calib, config.quant, config.recon, seed=config.seed,
                                             progress=progress, timings=timings)
    step = time.perf_counter()
    out = save_quantized(q_model, out)
    timings["save"] = time.perf_counter() - step
    record = {"model": config.model, "out": str(out), "bits": config.quant.name,
              "quant_config": config.quant.to_dict(), "calib": str(calibration), "n_calib": len(calib),
              "seed": config.seed, "recon_iters": config.recon.iters,
              "reconstruction": reconstruction.get("blocks", []), "accuracy": None}
    if accuracy:
        step = time.perf_counter()
        dataset = eval_dataset(info, fp_model, config.data_root, limit=limit)
        record["accuracy"] = evaluate(q_model, dataset, name=f"{config.model} {config.quant.name}",
                                      batch_size=batch_size, device=device, progress=progress).to_dict()
        timings["eval"] = time.perf_counter() - step
    timings["total"] = time.perf_counter() - began
    record["timings"] = {f"{k}_s": v for k, v in timings.items()}
    return record


def synthesis_file(model: str, config: SynthesisConfig, out: str | os.PathLike | None = None) -> Path:
    """Where `synthesize_to_file` writes: `out`, else `calib/<model>-<label>-seed<seed>.safetensors`."""
    return Path(out if out is not None else f"calib/{model_slug(model)}-{config.label}-seed{config.seed}.safetensors")


def synthesize_to_file(model: str, config: SynthesisConfig, out: str | os.PathLike | None = None, *,
                       checkpoint: str | os.PathLike | None = None, device="cpu",
                       data_root: str | os.PathLike | None = None, progress: bool = True,
                       what: str = "out") -> dict:
    """Synthesize a calibration set for `model` (its `checkpoint`) under `config` and save it to
    `synthesis_file(model, config, out)`, with a PNG grid of its images beside it (both paths
    checked before any work; `what` names `out` in errors). `data_root`: the images of the `real`
    method and prior. Returns the record `sardfq synthesize --json` prints: out, png, method,
    label, switches, n, iterations, seconds, final_losses."""
    out = synthesis_file(model, config, out)
    check_output_file(out, what)
    check_output_file(out.with_suffix(".png"), f"the image grid beside {what}")
    fp_model, info = load_model(model, checkpoint=checkpoint, device=device)
    calib = synthesize(fp_model, info, config, device=device, data_root=data_root, progress=progress)
    calib.save(out)
    png = save_image_grid(calib, info, out.with_suffix(".png"))
    meta = calib.metadata
    return {"out": str(out), "png": str(png), "method": config.method, "label": config.label,
            "switches": config.switches, "n": len(calib), "iterations": meta["iterations"],
            "seconds": meta["seconds"], "final_losses": meta["final_losses"]}


def load_saved(name: str, *, checkpoint: str | os.PathLike | None = None, device="cpu",
               threads: int | None = None) -> tuple[nn.Module, ModelInfo]:
    """What `sardfq eval` evaluates, by what `name` is: an .onnx file written by `export_onnx`
    (run in onnxruntime with `threads`), a folder written by `save_quantized`, else anything
    `load_model` takes (`checkpoint` replacing its weights, which the other two refuse)."""
    if str(name).endswith(".onnx"):
        if checkpoint is not None:
            raise CheckpointError("--checkpoint does not apply to an .onnx file")
        return load_onnx(name, threads=threads)
    if is_quantized_folder(name):
        if checkpoint is not None:
            raise CheckpointError("--checkpoint does not apply to a saved quantized model folder")
        return load_quantized(name, device=device)
    return load_model(name, checkpoint=checkpoint, device=device)


def evaluate_saved(name: str, *, data_root: str | os.PathLike | None = None, checkpoint=None,
                   limit: int | None = None, batch_size: int = 256, device="cpu",
                   threads: int | None = None):
    """Top-1/top-5 of what `load_saved(name)` loads on `limit` images (an even spread; None: all)
    of its test set under `data_root`, `batch_size` at a time; returns `(EvalResult, ModelInfo)`."""
    model, info = load_saved(name, checkpoint=checkpoint, device=device, threads=threads)
    dataset = eval_dataset(info, model, data_root, limit=limit)
    return evaluate(model, dataset, name=name, batch_size=batch_size, device=device), info


# ------------------------------------------------------------------------------------ stages
def calibration_set(config: ExperimentConfig, fp_model: nn.Module, info: ModelInfo, *, out: Path,
                    calibration_dir: str | os.PathLike | None, device, progress: bool = True,
                    timings: dict | None = None) -> tuple[CalibrationSet, Path]:
    """The experiment's calibration set and its file: loaded from `calibration_dir` when a set with
    its synthesis id is there (a damaged file is synthesized again, not trusted), else synthesized
    (timed as "synthesis") and saved there, or as `out/calibration.safetensors`."""
    path = out / "calibration.safetensors"
    if calibration_dir is not None:
        path = Path(calibration_dir) / f"{config.synthesis_id()}.safetensors"
        if path.is_file():
            try:
                calib = CalibrationSet.load(path)
                log.info("calibration set from %s", path)
                return calib, path
            except CheckpointError as exc:
                log.warning("%s; synthesizing it again", exc)
    with _Stage("synthesis", timings if timings is not None else {}):
        calib = synthesize(fp_model, info, config.synthesis, device=device, data_root=config.data_root,
                           progress=progress)
    calib.save(path)
    return calib, path


def quantize_model(fp_model: nn.Module, info: ModelInfo, calib: CalibrationSet, quant: QuantConfig,
                   recon: ReconConfig, *, seed: int, progress: bool = True,
                   timings: dict | None = None) -> tuple[nn.Module, dict]:
    """Calibrate a quantized copy of `fp_model` on `calib` (timed as "quantize") and, when
    `recon.iters` > 0, reconstruct it block by block ("reconstruct"); returns the quantized model
    and the reconstruction record (empty without reconstruction)."""
    timings = timings if timings is not None else {}
    with _Stage("quantize", timings):
        q_model = quantize(fp_model, info, quant, calib, seed=seed, progress=progress)
    reconstruction: dict = {}
    if recon.iters > 0:
        with _Stage("reconstruct", timings):
            reconstruction = reconstruct(q_model, fp_model, calib, recon, progress=progress).to_dict()
    return q_model, reconstruction


def evaluate_model(q_model: nn.Module, fp_model: nn.Module, dataset, *, name: str, batch_size: int,
                   device, progress: bool = True, reference_logits=None) -> dict:
    """The quantized model's accuracy on `dataset`, with its agreement with the FP model (or with
    the FP model's `reference_logits` on it) and each image's outcome (what `sardfq compare` pairs)."""
    return evaluate(q_model, dataset, name=name, batch_size=batch_size, reference=fp_model, device=device,
                    progress=progress, reference_logits=reference_logits).to_dict()


_FP_LOGITS: dict[tuple, torch.Tensor] = {}  # this process's FP outputs, by evaluation subset


def fp_logits(config: ExperimentConfig, fp_model: nn.Module, dataset, *, device, split: str = "test"):
    """The FP model's logits on the evaluation subset, computed once per process: every run of a
    sweep on the same model and images reuses them (the same numbers as running it again)."""
    key = (str(_fp_cache_path(config, split)), len(dataset), config.eval_batch_size, str(device))
    if key not in _FP_LOGITS:
        if len(_FP_LOGITS) >= 4:  # a sweep visits a few models; keep memory bounded
            _FP_LOGITS.pop(next(iter(_FP_LOGITS)))
        _FP_LOGITS[key] = reference_outputs(fp_model, dataset, batch_size=config.eval_batch_size, device=device)
    return _FP_LOGITS[key]


def run_or_load(config: ExperimentConfig, results_dir: str | os.PathLike | None = None, *,
                progress: bool = True) -> ExperimentResult:
    """Load if computed, else compute: the record `<results_dir>/<run-id>.json` when it exists (as
    written by a sweep or `sardfq quickstart --out`), else `run_experiment`, saving the record and
    the calibration set (`<results_dir>/<run-id>/`) there. Without `results_dir`, always runs."""
    if results_dir is not None:
        path = Path(results_dir) / f"{config.run_id()}.json"
        record = read_record(path)
        if record is not None and record.get("run_id") == config.run_id():
            log.info("loaded %s", path)
            return ExperimentResult.from_dict(record)
    out = None if results_dir is None else Path(results_dir) / config.run_id()
    result = run_experiment(config, out_dir=out, progress=progress)
    if results_dir is not None:
        result.save(Path(results_dir) / f"{config.run_id()}.json")
    return result


def _summarize_metadata(meta: Mapping) -> dict:
    """The calibration metadata without long per-iteration histories (those stay in the file)."""
    out = {}
    for key, value in meta.items():
        if isinstance(value, (list, dict)) and len(json.dumps(value, default=str)) > 2000:
            continue
        out[key] = value
    return out


class _Stage:
    """Times a `with` block into `timings[name]` (seconds)."""

    def __init__(self, name: str, timings: dict):
        self.name, self.timings = name, timings

    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.timings[self.name] = round(time.perf_counter() - self.start, 3)
        return False


def _fp_cache_path(config: ExperimentConfig, split: str = "test") -> Path:
    key = ({"model": config.model, "eval_limit": config.eval_limit} if split == "test"
           else {"model": config.model, "split": split, "limit": config.heldout_limit})
    if config.checkpoint:
        ckpt = Path(config.checkpoint)
        key["checkpoint"] = [str(ckpt.resolve()), ckpt.stat().st_mtime_ns if ckpt.exists() else None]
    root = config.data_root or os.environ.get("SARDFQ_DATA")
    key["data_root"] = str(Path(root).resolve()) if root else None
    key.update(model_fingerprint(config.model))  # a model folder: where it is, which weights
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir() / "fp-eval" / f"{model_slug(config.model)}-{digest}.json"


def fp_accuracy(model, info, dataset, config: ExperimentConfig, *, device, progress: bool = True,
                use_cache: bool = True, split: str = "test") -> dict:
    """The FP model's accuracy on `dataset`, read from the cache when this model, weights and
    evaluation subset were evaluated before (the embedded teacher's weights ship with the package,
    so its key is the model name)."""
    path = _fp_cache_path(config, split)
    if use_cache:
        cached = read_record(path)
        if cached is not None and cached.get("n_images") == len(dataset):
            log.info("FP accuracy of %s from cache %s", config.model, path)
            return {**cached, "cached": True}
    result = evaluate(model, dataset, name=f"{config.model} fp", batch_size=config.eval_batch_size,
                      device=device, progress=progress).to_dict()
    try:
        write_json_atomic(path, result)
    except OSError as exc:  # an unwritable cache only costs time
        log.warning("could not cache the FP accuracy at %s: %s", path, exc)
    return {**result, "cached": False}


# ------------------------------------------------------------------------------ quickstart
QUICKSTART = {"synthesis": {"n": 32, "iterations": 80}, "recon": {"iters": 20}, "eval_limit": 1000,
              "setting": "w4a4", "seed": 0}


def quickstart_configs(model: str = DEFAULT_MODEL, *, device: str = "cpu", data_root: str | None = None,
                       **overrides) -> list[ExperimentConfig]:
    """The quickstart's two experiments: Gaussian-noise calibration and SARDFQ, both W4A4, sized to
    finish in minutes on a laptop CPU (`QUICKSTART`). `overrides` change any field as in
    `ExperimentConfig.replace`, e.g. `synthesis={"iterations": 4}, recon={"iters": 2}`."""
    base = ExperimentConfig.from_dict({"model": model, "device": device, "data_root": data_root, **QUICKSTART})
    base = base.replace(**overrides)
    return [base.replace(synthesis={"method": method}) for method in ("noise", "sardfq")]


def run_quickstart(model: str = DEFAULT_MODEL, *, device: str = "cpu", data_root: str | None = None,
                   out: str | os.PathLike | None = None, progress: bool = True,
                   what: str = "out") -> list[ExperimentResult]:
    """Run the quickstart's experiments (`quickstart_configs`) and return their results; given
    `out`, each run's calibration set goes to `out/<run-id>/` and its record to `out/<run-id>.json`,
    the layout of a sweep's results folder (`what` names `out` in errors)."""
    if out is not None:
        check_folder(out, what)
    results = []
    for config in quickstart_configs(model, device=device, data_root=data_root):
        folder = Path(out) / config.run_id() if out is not None else None
        result = run_experiment(config, out_dir=folder, progress=progress)
        if out is not None:
            result.save(Path(out) / f"{config.run_id()}.json")
        results.append(result)
    return results
