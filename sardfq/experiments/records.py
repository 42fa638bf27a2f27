"""The record of an experiment and the tables made from many of them.

`ExperimentResult.to_dict()` is what `sardfq run`, sweeps and `run_or_load` write as JSON: the
record version, the configuration (`ExperimentConfig.to_dict()`, the three nested configs whole),
full-precision and quantized accuracy (`EvalResult.to_dict()`), the calibration set's file and
metadata, reconstruction, per-stage timings, library versions and device.
`ExperimentConfig.from_dict(record["config"])` rebuilds the experiment.

Record versions: 1, the configuration flat (`synth_iters`, `recon_iters`, `w_bits`, ... and
`synthesis_options` / `quant_options` dicts); 2, the configuration nested. Both are read.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..errors import ConfigError
from ..io import read_record, write_json_atomic
from ..models import DEFAULT_MODEL
from .config import ExperimentConfig, non_default

RECORD_VERSION = 2


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
            "bits": self.config.quant.name,
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
        """Write the record as JSON, atomically (a record on disk is always complete)."""
        return write_json_atomic(path, self.to_dict())


def read_records(paths) -> list[tuple[dict, str]]:
    """(record, file) for `paths`: JSON files or folders (searched recursively; files that are not
    complete JSON objects skipped), `ExperimentResult` objects or record dicts (file "")."""
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
    return records


def bad_record(where: str, exc: Exception) -> ConfigError:
    """The error for an experiment record that cannot be read (a key missing, a damaged value):
    it names the file (or run) and what to do about it."""
    return ConfigError(f"{where or 'a record'} is not a readable experiment record ({type(exc).__name__}: "
                       f"{exc}); rerun that run, or move the file out of the results folder")


def load_results(paths: str | os.PathLike | Iterable = "results"):
    """Experiment records as a pandas DataFrame, one row per run: model, variant, method, switches,
    design (the non-default synthesis options, then reconstruction's as `recon_*`), bits, seed, sizes, FP and quantized top-1/top-5 (in
    %), agreement, the same on held-out training images when measured, the synthesis cost (median
    ms per iteration), seconds, run id, file.

    `paths`: JSON files or folders (searched recursively), or `ExperimentResult` objects / record
    dicts. Records with the same run id are counted once (the last one read wins)."""
    import pandas as pd

    rows = {}
    for record, f in read_records(paths):
        if record.get("kind") != "experiment":
            continue
        try:
            rows[record.get("run_id") or id(record)] = _row(record, f)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:  # ConfigError included
            raise bad_record(f or str(record.get("run_id", "")), exc) from None
    columns = ["model", "variant", "method", "apa", "msr", "sl", "design", "bits", "setting", "seed", "n",
               "synth_iters", "recon_iters", "eval_images", "fp_top1", "fp_top5", "q_top1", "q_top5",
               "agreement", "heldout_fp_top1", "heldout_q_top1", "synth_ms_per_iter", "calibration_path",
               "seconds", "device", "run_id", "file"]
    return pd.DataFrame(list(rows.values()), columns=columns)


def record_setting(record: Mapping) -> str:
    """A record's bit setting as `QuantConfig.label` names it (`w4a4`, `w4a4-attn2`)."""
    return ExperimentConfig.from_dict(record["config"]).setting


def _row(record: Mapping, f: str) -> dict:
    """One `load_results` row of an experiment record."""
    cfg = ExperimentConfig.from_dict(record["config"])  # any record version
    s, q = cfg.synthesis, record["quantized"]
    heldout, calib = record.get("heldout") or {}, record.get("calibration") or {}
    return {
        "model": cfg.model, "variant": cfg.variant, "method": s.method,
        "apa": s.apa, "msr": s.msr, "sl": s.sl,
        "design": design_label(cfg),
        "bits": cfg.quant.name, "setting": cfg.setting, "seed": cfg.seed, "n": s.n, "synth_iters": s.iterations,
        "recon_iters": cfg.recon.iters, "eval_images": q["n_images"],
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
        lines.append(f"{r.config.variant:<16}{r.config.quant.name:<6}{100 * r.quantized['top1']:>7.2f}"
                     f"{100 * r.quantized['top5']:>7.2f}{sum(r.timings.values()):>9.1f}")
    return lines


def run_summary(record: Mapping) -> list[str]:
    """An experiment record (`ExperimentResult.to_dict()`, with `quantized_folder` when
    `run_to_folder` wrote one) as the lines `sardfq run` prints: FP and quantized accuracy, the
    held-out images' when measured, where its files are, and the seconds of each stage."""
    r, config = record, ExperimentConfig.from_dict(record["config"])
    heldout = r.get("heldout")
    return [
        f"{config.model} {config.variant} {config.quant.name} (seed {config.seed}), "
        f"{r['quantized']['n_images']} test images:",
        f"  full precision top-1 {100 * r['fp']['top1']:.2f}%  top-5 {100 * r['fp']['top5']:.2f}%",
        f"  quantized      top-1 {100 * r['quantized']['top1']:.2f}%  top-5 {100 * r['quantized']['top5']:.2f}%",
        *([f"  held-out training images ({heldout['quantized']['n_images']}): full precision "
           f"top-1 {100 * heldout['fp']['top1']:.2f}%, quantized {100 * heldout['quantized']['top1']:.2f}%"]
          if heldout else []),
        f"  calibration set: {r['calibration_path']}",
        *([f"  quantized model: {r['quantized_folder']}"] if "quantized_folder" in r else []),
        "  seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in r["timings"].items()),
    ]


def design_label(cfg) -> str:
    """The settings that set a run apart from the defaults of its method and sizes, as text
    (`default`, `apa_weight=10.0`, ...): the `design` column of `load_results`."""
    recon = {f"recon_{k}": v for k, v in non_default(cfg.recon, skip=("iters", "seed")).items()}
    return ", ".join(f"{k}={v}" for k, v in [*sorted(cfg.design.items()), *sorted(recon.items())]) or "default"
