"""One experiment, end to end: synthesize a calibration set, quantize, reconstruct, evaluate.

`run_experiment(ExperimentConfig(...))` is the single verb behind `sardfq run`, the quickstart, the
sweep runner and the results notebooks. It returns an `ExperimentResult` whose `to_dict()` holds
every number the project reports (full-precision and quantized top-1/top-5, the configuration, the
calibration-set file, per-stage timings, library versions, device), and `save()` writes it as JSON
atomically (temporary file + `os.replace`), so a record on disk is always complete.

The full-precision accuracy depends only on the model, its weights and the evaluation subset, so it
is computed once and cached on disk (under `SARDFQ_CACHE`); a sweep over methods and bit-widths
does not evaluate the same model again and again.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import platform
import re
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from .errors import CheckpointError, ConfigError
from .models import DEFAULT_MODEL

log = logging.getLogger(__name__)

METHODS = ("noise", "real", "psaq", "sardfq")
RECORD_VERSION = 1
_BITS = re.compile(r"^w(\d+)a(\d+)$")


def parse_bits(bits: str) -> tuple[int, int]:
    """'w4a4' -> (4, 4)."""
    match = _BITS.match(str(bits).strip().lower())
    if not match:
        raise ConfigError(f"bits must look like 'w4a4' (weights, activations), got {bits!r}")
    return int(match.group(1)), int(match.group(2))


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything that defines one experiment. Defaults are the paper's where it states one.

    `synthesis_options`, `quant_options` and `recon_options` pass extra keyword arguments to the
    synthesis, quantization and reconstruction configs (e.g. `{"prior": "laplace"}` or
    `{"autocast": "bf16"}`), so a sweep can vary any of their fields without this class listing
    them all.
    """

    model: str = DEFAULT_MODEL  # timm name or the embedded teacher
    method: str = "sardfq"  # calibration source: noise | real | psaq | sardfq
    apa: bool = True  # SARDFQ switches (ablations); ignored by the other methods
    msr: bool = True
    sl: bool = True
    w_bits: int = 4  # [paper] main table: W4A4
    a_bits: int = 4
    n: int = 32  # [paper] 32 synthetic images
    synth_iters: int = 1000  # [paper] 1000 iterations
    recon_iters: int = 1000  # [choice] block reconstruction steps (0 = calibration only)
    eval_limit: int | None = None  # evaluate on an even spread of this many test images (None: all)
    heldout_limit: int = 0  # also evaluate on this many held-out training images (0: skip), to
    #                         choose hyper-parameters without looking at the test set
    seed: int = 0
    device: str = "cpu"
    data_root: str | None = None  # None: $SARDFQ_DATA
    checkpoint: str | None = None  # local weights for a timm model
    eval_batch_size: int = 256
    synthesis_options: dict = field(default_factory=dict)
    quant_options: dict = field(default_factory=dict)
    recon_options: dict = field(default_factory=dict)  # e.g. {"autocast": "bf16"}

    def __post_init__(self):
        def need(cond: bool, name: str, what: str):
            if not cond:
                raise ConfigError(f"ExperimentConfig.{name}: {what}, got {getattr(self, name)!r}")

        need(isinstance(self.model, str) and bool(self.model), "model", "must be a model name")
        need(self.method in METHODS, "method", f"must be one of {', '.join(METHODS)}")
        for name in ("apa", "msr", "sl"):
            need(isinstance(getattr(self, name), bool), name, "must be true or false")
        for name in ("w_bits", "a_bits"):
            value = getattr(self, name)
            need(isinstance(value, int) and not isinstance(value, bool) and 2 <= value <= 8, name,
                 "must be an integer number of bits in 2..8")
        for name, low in (("n", 1), ("synth_iters", 1), ("recon_iters", 0), ("seed", 0),
                          ("eval_batch_size", 1), ("heldout_limit", 0)):
            value = getattr(self, name)
            need(isinstance(value, int) and not isinstance(value, bool) and value >= low, name,
                 f"must be an integer >= {low}")
        need(self.eval_limit is None or (isinstance(self.eval_limit, int) and self.eval_limit >= 1),
             "eval_limit", "must be a positive integer or null (the whole test set)")
        need(isinstance(self.device, str) and (self.device == "cpu" or self.device.startswith("cuda")
                                               or self.device == "mps"),
             "device", "must be 'cpu', 'cuda', 'cuda:N' or 'mps'")
        for name in ("data_root", "checkpoint"):
            need(getattr(self, name) is None or isinstance(getattr(self, name), str), name,
                 "must be a path or null")
        for name in ("synthesis_options", "quant_options", "recon_options"):
            need(isinstance(getattr(self, name), Mapping), name, "must be a mapping of option names to values")

    # -- conversions ---------------------------------------------------------------------------
    @property
    def bits(self) -> str:
        return f"w{self.w_bits}a{self.a_bits}"

    @property
    def variant(self) -> str:
        """The calibration source as one short name: 'sardfq', 'sardfq[apa+sl]', 'noise', ..."""
        if self.method != "sardfq" or (self.apa and self.msr and self.sl):
            return self.method
        on = [s for s in ("apa", "msr", "sl") if getattr(self, s)]
        return f"sardfq[{'+'.join(on) or 'none'}]"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["synthesis_options"] = dict(self.synthesis_options)
        d["quant_options"] = dict(self.quant_options)
        d["recon_options"] = dict(self.recon_options)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "ExperimentConfig":
        """Build from a plain mapping; unknown keys are an error naming them, 'bits' is accepted."""
        values = dict(values)
        if "bits" in values:
            values["w_bits"], values["a_bits"] = parse_bits(values.pop("bits"))
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            import difflib

            hints = []
            for name in unknown:
                close = difflib.get_close_matches(name, sorted(known), n=1)
                hints.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            raise ConfigError(f"ExperimentConfig has no field {', '.join(hints)}; "
                              f"fields: {', '.join(sorted(known))}")
        return cls(**values)

    @classmethod
    def from_json(cls, text: str) -> "ExperimentConfig":
        return cls.from_dict(json.loads(text))

    def replace(self, **changes) -> "ExperimentConfig":
        return dataclasses.replace(self, **changes)

    def run_id(self) -> str:
        """A readable, stable identifier: model-variant-bits-seed plus a hash of the whole config
        (device and data location excluded: they say where a run ran, not what it is)."""
        d = self.to_dict()
        for key in ("device", "data_root", "eval_batch_size"):
            d.pop(key)
        if not d["heldout_limit"]:  # added later: leave the identifiers of older runs unchanged
            d.pop("heldout_limit")
        if not d["recon_options"]:  # likewise
            d.pop("recon_options")
        return f"{self.model}-{self._slug()}-{self.bits}-s{self.seed}-{_digest(d)}"

    def synthesis_id(self) -> str:
        """Identifies the calibration set alone: runs that differ only in bit-width, reconstruction
        or evaluation share it (a sweep synthesizes it once)."""
        d = {"model": self.model, "checkpoint": self.checkpoint, "method": self.method, "n": self.n,
             "seed": self.seed, "synthesis_options": dict(self.synthesis_options)}
        if self.method in ("psaq", "sardfq"):  # noise and real images do not iterate
            d["synth_iters"] = self.synth_iters
        if self.method == "sardfq":
            d.update(apa=self.apa, msr=self.msr, sl=self.sl)
        return f"{self.model}-{self._slug()}-s{self.seed}-{_digest(d)}"

    def _slug(self) -> str:
        return self.variant.replace("[", "-").replace("]", "").replace("+", "-")


def _digest(d: Mapping) -> str:
    return hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:8]


@dataclass
class ExperimentResult:
    """The record of one experiment; `to_dict()` is what goes to JSON."""

    config: ExperimentConfig
    fp: dict  # EvalResult.to_dict() of the full-precision model (+ "cached")
    quantized: dict  # EvalResult.to_dict() of the quantized model (+ "agreement" with FP)
    calibration_path: str | None
    calibration: dict  # the calibration set's metadata (method, losses, ...)
    timings: dict  # seconds per stage
    versions: dict
    device: str
    run_id: str = ""
    started: str = ""
    finished: str = ""
    reconstruction: dict = field(default_factory=dict)  # per-block output MSE before/after
    heldout: dict = field(default_factory=dict)  # {"fp": ..., "quantized": ...} on held-out train images
    # the models themselves, kept only when run_experiment(keep_models=True); never serialized
    fp_model: Any = field(default=None, repr=False, compare=False)
    q_model: Any = field(default=None, repr=False, compare=False)

    @property
    def fp_top1(self) -> float:
        return self.fp["top1"]

    @property
    def q_top1(self) -> float:
        return self.quantized["top1"]

    def to_dict(self) -> dict:
        return {
            "record_version": RECORD_VERSION,
            "kind": "experiment",
            "run_id": self.run_id or self.config.run_id(),
            "config": self.config.to_dict(),
            "variant": self.config.variant,
            "bits": self.config.bits,
            "fp": dict(self.fp),
            "quantized": dict(self.quantized),
            "calibration_path": self.calibration_path,
            "calibration": dict(self.calibration),
            "reconstruction": dict(self.reconstruction),
            "heldout": dict(self.heldout),
            "timings": dict(self.timings),
            "versions": dict(self.versions),
            "device": self.device,
            "started": self.started,
            "finished": self.finished,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ExperimentResult":
        return cls(config=ExperimentConfig.from_dict(d["config"]), fp=d["fp"], quantized=d["quantized"],
                   calibration_path=d.get("calibration_path"), calibration=d.get("calibration", {}),
                   timings=d.get("timings", {}), versions=d.get("versions", {}), device=d.get("device", ""),
                   run_id=d.get("run_id", ""), started=d.get("started", ""), finished=d.get("finished", ""),
                   reconstruction=d.get("reconstruction", {}), heldout=d.get("heldout", {}))

    def save(self, path: str | os.PathLike) -> Path:
        return write_json_atomic(path, self.to_dict())


# ---------------------------------------------------------------------------------- files
def write_json_atomic(path: str | os.PathLike, record: Mapping) -> Path:
    """Write `record` as JSON to `path` so that `path` is either absent or complete: the text goes to
    a temporary file in the same folder, is flushed to disk, then renamed over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(record, fh, indent=1, sort_keys=False, default=_json_default)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def _json_default(obj):
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item"):  # numpy / torch scalars
        return obj.item()
    if isinstance(obj, (set, tuple)):
        return list(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def read_record(path: str | os.PathLike) -> dict | None:
    """A result record, or None when the file is absent or not a complete JSON object."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def load_results(paths: str | os.PathLike | Iterable = "results"):
    """Experiment records as a pandas DataFrame, one row per run: model, variant, method, switches,
    design (the non-default synthesis options; reconstruction options as recon_*), bits, seed,
    sizes, FP and quantized top-1/top-5 (in %), agreement, the same on held-out training images
    when measured, the synthesis cost (median ms per iteration), seconds, run id, file.

    `paths`: JSON files or folders (searched recursively), or `ExperimentResult` objects / record
    dicts. Records with the same run id are counted once (the last one read wins)."""
    import pandas as pd

    if isinstance(paths, (str, os.PathLike, ExperimentResult, Mapping)):
        paths = [paths]
    records: list[tuple[dict, str]] = []
    for item in paths:
        if isinstance(item, ExperimentResult):
            records.append((item.to_dict(), ""))
        elif isinstance(item, Mapping):
            records.append((dict(item), ""))
        else:
            p = Path(item)
            for f in (sorted(p.rglob("*.json")) if p.is_dir() else [p]):
                record = read_record(f)
                if record is not None:
                    records.append((record, str(f)))
    rows = {}
    for record, f in records:
        if record.get("kind") != "experiment":
            continue
        cfg, q = record["config"], record["quantized"]
        heldout, calib = record.get("heldout") or {}, record.get("calibration") or {}
        options = {**(cfg.get("synthesis_options") or {}),
                   **{f"recon_{k}": v for k, v in (cfg.get("recon_options") or {}).items()}}
        rows[record.get("run_id") or id(record)] = {
            "model": cfg["model"], "variant": record["variant"], "method": cfg["method"],
            "apa": cfg["apa"], "msr": cfg["msr"], "sl": cfg["sl"],
            "design": ", ".join(f"{k}={v}" for k, v in sorted(options.items())) or "default",
            "bits": record["bits"], "seed": cfg["seed"], "n": cfg["n"], "synth_iters": cfg["synth_iters"],
            "recon_iters": cfg["recon_iters"], "eval_images": q["n_images"],
            "fp_top1": 100 * record["fp"]["top1"], "fp_top5": 100 * record["fp"]["top5"],
            "q_top1": 100 * q["top1"], "q_top5": 100 * q["top5"],
            "agreement": 100 * q["agreement"] if q.get("agreement") is not None else None,
            "heldout_fp_top1": 100 * heldout["fp"]["top1"] if heldout else None,
            "heldout_q_top1": 100 * heldout["quantized"]["top1"] if heldout else None,
            "synth_ms_per_iter": calib.get("median_ms_per_iteration") or None,
            "calibration_path": _locate(record.get("calibration_path"), f),
            "seconds": sum(record.get("timings", {}).values()), "device": record.get("device"),
            "run_id": record.get("run_id"), "file": f,
        }
    columns = ["model", "variant", "method", "apa", "msr", "sl", "design", "bits", "seed", "n",
               "synth_iters", "recon_iters", "eval_images", "fp_top1", "fp_top5", "q_top1", "q_top5",
               "agreement", "heldout_fp_top1", "heldout_q_top1", "synth_ms_per_iter", "calibration_path",
               "seconds", "device", "run_id", "file"]
    return pd.DataFrame(list(rows.values()), columns=columns)


def _locate(path: str | None, record_file: str) -> str | None:
    """Find a record's calibration set from any working directory: the path as written, else the
    same name in the `calibration/` folder beside the record's sweep folder (where sweeps put it)."""
    if not path or Path(path).exists() or not record_file:
        return path
    sweep_root = Path(record_file).resolve().parent.parent
    for candidate in (sweep_root.parent / path, sweep_root / "calibration" / Path(path).name):
        if candidate.exists():
            return str(candidate)
    return path


def summarize_results(frame, by: tuple[str, ...] = ("model", "bits", "variant")):
    """Mean and standard deviation of quantized top-1 over seeds, with the FP top-1 and run count."""
    grouped = frame.groupby(list(by), sort=False)
    out = grouped.agg(fp_top1=("fp_top1", "mean"), q_top1=("q_top1", "mean"),
                      q_top1_std=("q_top1", "std"), runs=("q_top1", "size"))
    if frame["heldout_q_top1"].notna().any():
        out["heldout_q_top1"] = grouped["heldout_q_top1"].mean()
    return out.reset_index()


def mean_std_table(frame, index: str | list[str], columns: str | None = None, value: str = "q_top1",
                   digits: int = 1):
    """A table of 'mean ± std (runs)' strings of `value` over seeds, one row per `index` value and
    one column per `columns` value: how the book prints a number measured on several seeds."""
    keys = [index] if isinstance(index, str) else list(index)
    keys += [columns] if columns else []
    grouped = frame.groupby(keys, sort=False)[value].agg(["mean", "std", "size"])

    def cell(row):
        std = "" if row["size"] < 2 else f" ± {row['std']:.{digits}f}"
        return f"{row['mean']:.{digits}f}{std} ({int(row['size'])})"

    cells = grouped.apply(cell, axis=1)
    return cells.unstack(columns) if columns else cells.to_frame(value)


# ------------------------------------------------------------------------- image analysis
def patch_attention(model, images, blocks=None, *, batch_size: int = 64) -> dict:
    """{block: (N, heads, h*w)} patch attention of normalized `images` (CPU tensors), all blocks by
    default: what APA aligns with its priors."""
    from .attention import attention_blocks
    from .priors import real_attention_bank

    blocks = list(range(len(attention_blocks(model)))) if blocks is None else list(blocks)
    return real_attention_bank(model, images, blocks, batch_size=batch_size)


def attention_statistics(maps, grid: tuple[int, int]) -> dict:
    """How structured patch-attention maps (..., h*w) are: mean entropy (nats; uniform attention
    over P patches has log P), mean number of peaks (strict local maxima) and mean largest weight."""
    import torch

    from .priors import local_maxima

    maps = maps.float()
    entropy = -(maps * maps.clamp_min(1e-12).log()).sum(-1)
    return {"entropy": float(entropy.mean()), "uniform_entropy": float(torch.log(torch.tensor(float(maps.shape[-1])))),
            "peaks": float(local_maxima(maps, grid).float().mean()), "max_weight": float(maps.amax(-1).mean())}


def region_predictions(model, images, *, batch_size: int = 64):
    """The model's top-1 class of each quadrant of each image, cropped and resized as MSR does:
    (N, 4) int64, quadrant q = row q // 2, column q % 2."""
    import torch

    from .msr import QUADRANTS, crop_regions

    device = next(model.parameters()).device
    n = len(images)
    index = torch.arange(n).repeat_interleave(QUADRANTS)
    quadrant = torch.arange(QUADRANTS).repeat(n)
    crops = crop_regions(images.float(), index, quadrant)
    with torch.no_grad():
        logits = torch.cat([model(crops[i:i + batch_size].to(device)).cpu()
                            for i in range(0, len(crops), batch_size)])
    return logits.argmax(1).view(n, QUADRANTS)


# ------------------------------------------------------------------------------ environment
def library_versions() -> dict:
    import timm
    import torch

    from . import __version__

    return {"sardfq": __version__, "torch": torch.__version__, "timm": timm.__version__,
            "python": platform.python_version()}


def device_description(device) -> str:
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def resolve_device(name: str):
    """torch.device for an ExperimentConfig's `device` (CUDA without a GPU is a ConfigError)."""
    from .models import resolve_device as _resolve

    return _resolve(name, what="ExperimentConfig.device")


# ------------------------------------------------------------------------ full-precision cache
def _fp_cache_path(config: ExperimentConfig, split: str = "test") -> Path:
    from .data import cache_dir

    key = ({"model": config.model, "eval_limit": config.eval_limit} if split == "test"
           else {"model": config.model, "split": split, "limit": config.heldout_limit})
    if config.checkpoint:
        ckpt = Path(config.checkpoint)
        key["checkpoint"] = [str(ckpt.resolve()), ckpt.stat().st_mtime_ns if ckpt.exists() else None]
    root = config.data_root or os.environ.get("SARDFQ_DATA")
    key["data_root"] = str(Path(root).resolve()) if root else None
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir() / "fp-eval" / f"{config.model}-{digest}.json"


def fp_accuracy(model, info, dataset, config: ExperimentConfig, *, device, progress: bool = True,
                use_cache: bool = True, split: str = "test") -> dict:
    """The FP model's accuracy on `dataset`, read from the cache when this model, weights and
    evaluation subset were evaluated before (the embedded teacher's weights ship with the package,
    so its key is the model name)."""
    from .evaluate import evaluate

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


# ------------------------------------------------------------------------------ the pipeline
def _synthesis_config(config: ExperimentConfig):
    from .synthesis import SynthesisConfig

    return SynthesisConfig(method=config.method, apa=config.apa, msr=config.msr, sl=config.sl, n=config.n,
                           iterations=config.synth_iters, seed=config.seed,
                           **dict(config.synthesis_options))


def _quant_config(config: ExperimentConfig):
    from .quant import QuantConfig

    return QuantConfig(w_bits=config.w_bits, a_bits=config.a_bits, **dict(config.quant_options))


def _recon_config(config: ExperimentConfig):
    from .reconstruction import ReconConfig

    return ReconConfig(iters=config.recon_iters, seed=config.seed, **dict(config.recon_options))


def run_experiment(config: ExperimentConfig, *, out_dir: str | os.PathLike | None = None,
                   calibration_dir: str | os.PathLike | None = None, progress: bool = True,
                   keep_models: bool = False) -> ExperimentResult:
    """Run one experiment and return its record. The calibration set is saved as
    `calibration.safetensors` in `out_dir` (default `runs/<run-id>/`), or, given `calibration_dir`,
    as `<calibration_dir>/<synthesis-id>.safetensors`, where a later run with the same synthesis
    settings (another bit-width, say) loads it instead of synthesizing again. Save the record itself
    with `result.save(path)`. `keep_models=True` keeps the FP and quantized models on the result
    (for inspection in a notebook); they never enter the record."""
    import torch

    from .calibset import CalibrationSet
    from .data import eval_dataset, heldout_dataset
    from .evaluate import evaluate
    from .models import load_model
    from .quant import quantize
    from .synthesis import synthesize

    device = resolve_device(config.device)
    run_id = config.run_id()
    out = Path(out_dir) if out_dir is not None else Path("runs") / run_id
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    timings: dict[str, float] = {}

    def stage(name):
        return _Stage(name, timings)

    synth_config = _synthesis_config(config)  # validate both configs before any slow work
    quant_config = _quant_config(config)
    recon_config = _recon_config(config) if config.recon_iters > 0 else None
    reconstruction: dict = {}

    with stage("load"):
        fp_model, info = load_model(config.model, checkpoint=config.checkpoint, device=device)
        dataset = eval_dataset(info, fp_model, config.data_root, limit=config.eval_limit)
    with stage("fp_eval"):
        fp = fp_accuracy(fp_model, info, dataset, config, device=device, progress=progress)
    log.info("%s FP top-1 %.2f%% on %d images", config.model, 100 * fp["top1"], fp["n_images"])

    calib, calib_path = None, out / "calibration.safetensors"
    if calibration_dir is not None:
        calib_path = Path(calibration_dir) / f"{config.synthesis_id()}.safetensors"
        if calib_path.is_file():
            try:
                calib = CalibrationSet.load(calib_path)
                log.info("calibration set from %s", calib_path)
            except CheckpointError as exc:  # a damaged file is synthesized again, not trusted
                log.warning("%s; synthesizing it again", exc)
    if calib is None:
        with stage("synthesis"):
            calib = synthesize(fp_model, info, synth_config, device=device, data_root=config.data_root,
                               progress=progress)
        calib.save(calib_path)

    with stage("quantize"):
        q_model = quantize(fp_model, info, quant_config, calib, seed=config.seed, progress=progress)
    if recon_config is not None:
        from .reconstruction import reconstruct

        with stage("reconstruct"):
            reconstruction = reconstruct(q_model, fp_model, calib, recon_config, progress=progress).to_dict()
    with stage("q_eval"):
        quantized = evaluate(q_model, dataset, name=f"{config.model} {config.bits}",
                             batch_size=config.eval_batch_size, reference=fp_model, device=device,
                             progress=progress).to_dict()
    log.info("%s %s %s top-1 %.2f%%", config.model, config.variant, config.bits, 100 * quantized["top1"])
    heldout = {}
    if config.heldout_limit:
        with stage("heldout_eval"):
            selection = heldout_dataset(info, config.data_root, limit=config.heldout_limit)
            heldout = {"fp": fp_accuracy(fp_model, info, selection, config, device=device,
                                         progress=progress, split="heldout"),
                       "quantized": evaluate(q_model, selection, name=f"{config.model} {config.bits} heldout",
                                             batch_size=config.eval_batch_size, reference=fp_model,
                                             device=device, progress=progress).to_dict()}
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


# ------------------------------------------------------------------------------ quickstart
QUICKSTART = dict(n=32, synth_iters=80, recon_iters=20, eval_limit=1000, w_bits=4, a_bits=4, seed=0)


def quickstart_configs(model: str = DEFAULT_MODEL, *, device: str = "cpu", data_root: str | None = None,
                       **overrides) -> list[ExperimentConfig]:
    """The quickstart's two experiments: Gaussian-noise calibration and SARDFQ, both W4A4, sized to
    finish in minutes on a laptop CPU (`QUICKSTART`; any field can be overridden)."""
    sizes = {**QUICKSTART, **overrides}
    base = ExperimentConfig(model=model, device=device, data_root=data_root, **sizes)
    return [base.replace(method="noise"), base.replace(method="sardfq")]


def quickstart_table(results: list[ExperimentResult]) -> list[str]:
    """The quickstart's table as text lines: FP, then each method's quantized top-1."""
    first = results[0]
    n_images = first.fp["n_images"]
    header = (f"{first.config.model}, top-1 % on {n_images} CIFAR-10 test images (an even spread of the "
              f"10,000)" if first.config.model == DEFAULT_MODEL else
              f"{first.config.model}, top-1 % on {n_images} evaluation images")
    lines = [header, f"{'calibration':<16}{'bits':<6}{'top-1':>7}{'top-5':>7}{'seconds':>9}"]
    fp_seconds = "cached" if first.fp.get("cached") else f"{first.fp.get('seconds', 0.0):.1f}"
    lines.append(f"{'full precision':<16}{'fp32':<6}{100 * first.fp['top1']:>7.2f}"
                 f"{100 * first.fp['top5']:>7.2f}{fp_seconds:>9}")
    for r in results:
        lines.append(f"{r.config.variant:<16}{r.config.bits:<6}{100 * r.quantized['top1']:>7.2f}"
                     f"{100 * r.quantized['top5']:>7.2f}{sum(r.timings.values()):>9.1f}")
    return lines
