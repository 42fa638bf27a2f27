"""The study of calibration sets: every set behind a results folder's records inspected
(`sardfq.analysis.diagnostics`), each metric set beside the quantized accuracy the set gave
(`study`, `correlations`), and the SARDFQ ablation read as paired effects of its switches
(`switch_effects`, `describe_effects`). `recreate_sets` re-makes sets that are not on disk.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Mapping

import numpy as np
from tqdm.auto import tqdm

from ..compat import renamed_keywords
from ..errors import CheckpointError, ConfigError
from ..experiments.config import ExperimentConfig
from ..experiments.run import run_experiment
from ..io import read_record, write_json_atomic
from ..models import load_model
from .stats import bootstrap_ci, bootstrap_mean_ci, permutation_p_value, sign_flip_p_value, spearman
from .diagnostics import FLAT_STD, N_REFERENCE, REFERENCE_SEED, InspectReport, inspect_calibration, needs_real_data

log = logging.getLogger(__name__)


def locate(path: str, results_dir: str | os.PathLike) -> Path:
    """A record's calibration path: as written when it exists from the working directory, else
    relative to `results_dir` or a folder above it (records say `results/calibration/...`)."""
    results_dir = Path(results_dir)
    if Path(path).is_absolute() or Path(path).exists():
        return Path(path)
    for base in (results_dir, *results_dir.parents):
        if (base / path).exists():
            return base / path
    return Path(path)


def _records(results_dir: Path, setting: str, sweeps, kinds=("experiment",)):
    """(file, record) of the records at bit setting `setting` in `results_dir`, or only in its
    `sweeps` folders: those whose `bits` field is `setting`, at any bits of the attention map."""
    folders = [results_dir] if sweeps is None else [results_dir / name for name in sweeps]
    for folder in folders:
        for f in sorted(folder.rglob("*.json")):
            record = read_record(f)
            if record and record.get("kind") in kinds and record.get("bits") == setting:
                yield f, record


def _report_path(cache_dir: Path, calib_path: str, options: Mapping) -> Path:
    digest = hashlib.sha1(json.dumps(dict(options), sort_keys=True).encode()).hexdigest()[:8]
    return cache_dir / f"{Path(calib_path).stem}-{digest}.json"


@renamed_keywords(bits="setting")
def study(results_dir: str | os.PathLike = "results", *, setting: str = "w4a4", sweeps=None, model=None,
          info=None, n_ref: int = N_REFERENCE, reference_seed: int = REFERENCE_SEED, data_root=None,
          cache_dir: str | os.PathLike | None = None, limit: int | None = None, progress: bool = True):
    """Inspect every calibration set behind the experiment records in `results_dir` (or in its
    `sweeps` folders only; the sets that exist on disk, see `recreate_sets` for the others) and
    join each set's metrics with the quantized accuracy of its records at bit setting `setting` (old
    name: `bits`; records at any bits of the attention map).

    Returns a pandas DataFrame, one row per set: model, variant, seed, path, q_top1 / agreement
    (mean over the set's records at `setting`, in %), runs, recreated (whether the accuracy is a rerun's,
    see `recreate_sets`), record_top1 (the sweep records' own top-1, what the results chapters
    report: it differs from q_top1 only for a re-created set), then every metric as `group.metric`.
    Reports are cached as JSON in `cache_dir` (default `<results_dir>/inspect/`) and read back when
    present (even when the set itself is gone), so a rerun only inspects new sets; delete them to
    measure again after changing the metrics. `limit`: at most this many sets (for quick runs).
    """
    import pandas as pd

    results_dir = Path(results_dir)
    cache = Path(cache_dir) if cache_dir is not None else results_dir / "inspect"
    records: dict[str, list[dict]] = {}
    reruns: dict[str, list[dict]] = {}
    for _, record in _records(results_dir, setting, sweeps):
        records.setdefault(record["calibration_path"], []).append(record)
    for _, record in _records(results_dir / RERUN_FOLDER, setting, None, kinds=("rerun",)):
        if record["calibration_path"] in records:
            reruns.setdefault(record["calibration_path"], []).append(record)
    if not records:
        raise CheckpointError(f"no experiment records at {setting} under {results_dir}"
                              + (f" in {', '.join(sweeps)}" if sweeps else ""))
    swept = {path: list(runs) for path, runs in records.items()}
    records.update(reruns)  # a re-created set is judged by its own rerun, not the lost set's record
    # the cache key of the reports inspected so far: it keeps the name the setting had then
    options = {"bits": setting, "n_ref": n_ref, "reference_seed": reference_seed, "flat": FLAT_STD}
    # a set counts when it is on disk or was inspected before (its report keeps every metric)
    paths = [p for p in sorted(records)
             if locate(p, results_dir).is_file() or _report_path(cache, p, options).is_file()]
    missing = len(records) - len(paths)
    if missing:
        log.warning("%d of %d calibration sets at %s are not on disk (recreate_sets makes them)",
                    missing, len(records), setting)
    if limit is not None:
        paths = paths[:limit]
    loaded: dict[str, tuple] = {}
    rows = []
    for path in tqdm(paths, desc="study", disable=not progress):
        first = records[path][0]
        name = first["config"]["model"]
        out = _report_path(cache, path, options)
        cached = read_record(out)
        if cached is not None and cached.get("kind") == "inspect":
            report = InspectReport.from_dict(cached)
        else:
            if model is not None and info is not None and info.name == name:
                loaded[name] = (model, info)
            if name not in loaded:
                loaded[name] = load_model(name, checkpoint=first["config"].get("checkpoint"))
            report = inspect_calibration(*loaded[name], locate(path, results_dir), n_ref=n_ref,
                                         reference_seed=reference_seed, setting=setting, data_root=data_root,
                                         seed=first["config"]["seed"])
            write_json_atomic(out, report.to_dict())
        runs = records[path]
        rows.append({"model": name, "variant": first["variant"], "seed": first["config"]["seed"],
                     "path": path, "q_top1": 100 * float(np.mean([r["quantized"]["top1"] for r in runs])),
                     "agreement": 100 * float(np.mean([r["quantized"]["agreement"] for r in runs])),
                     "runs": len(runs), "recreated": runs[0]["kind"] == "rerun",
                     "record_top1": 100 * float(np.mean([r["quantized"]["top1"] for r in swept[path]])),
                     **report.values()})
    return pd.DataFrame(rows)


def correlations(frame, target: str = "q_top1", *, n_boot: int = 2000, seed: int = 0):
    """Spearman correlation of every metric column of a `study` frame with `target`, with a
    percentile-bootstrap 95% CI and a two-sided permutation p-value: one row per metric (metric,
    needs_real_data, spearman, ci_low, ci_high, p_value, n), strongest first. With a handful of sets
    the intervals are wide."""
    import pandas as pd

    rows = []
    for column in [c for c in frame.columns if "." in c]:
        data = frame[[column, target]].dropna()
        low, high = bootstrap_ci(data[column], data[target], n_boot=n_boot, seed=seed)
        rows.append({"metric": column, "needs_real_data": needs_real_data(column),
                     "spearman": spearman(data[column], data[target]), "ci_low": low, "ci_high": high,
                     "p_value": permutation_p_value(data[column], data[target], seed=seed), "n": len(data)})
    out = pd.DataFrame(rows)
    return out.reindex(out["spearman"].abs().sort_values(ascending=False).index).reset_index(drop=True)


SWITCHES = ("apa", "msr", "sl")


def switches(variant: str) -> frozenset | None:
    """The SARDFQ components a variant name turns on (`sardfq` all three, `sardfq[none]` none,
    `sardfq[apa+sl]` those two); None for other methods."""
    if variant == "sardfq":
        return frozenset(SWITCHES)
    if not (variant.startswith("sardfq[") and variant.endswith("]")):
        return None
    on = frozenset() if variant == "sardfq[none]" else frozenset(variant[7:-1].split("+"))
    if not on <= set(SWITCHES):
        raise ConfigError(f"unknown SARDFQ components in variant {variant!r}: "
                          f"{', '.join(sorted(on - set(SWITCHES)))}")
    return on


def switch_effects(frame, components, metrics, *, n_boot: int = 2000, seed: int = 0):
    """Paired effect of turning `components` (e.g. ["apa"] or ["msr", "sl"]) on together, from a
    `study` frame of SARDFQ ablation sets. A pair is two sets of the same seed whose variants differ
    only in `components` (all of them on against all off), the other switches equal; sets without a
    partner are left out (no pair at all: ConfigError). One row per metric: off / on (mean over the
    pairs), diff (mean of the paired on - off differences), sd (their standard deviation, NaN for
    one pair), low / high (the smallest and largest difference), up / down (how many pairs have
    on > off / on < off), ci_low / ci_high (percentile bootstrap 95% interval of diff, resampling
    pairs), p_value (exact two-sided sign-flip p of diff over the pairs), pairs, seeds.
    The interval and p treat the pairs as independent. They are not fully: the pairs of one seed
    start from the same noise and labels. A test that took the seed as its unit could not go below
    2 / 2^seeds (0.25 with three seeds)."""
    import pandas as pd

    components = frozenset(components)
    if not components or not components <= set(SWITCHES):
        raise ConfigError(f"components must be among {', '.join(SWITCHES)}, got {sorted(components)}")
    by_key = {}
    for row in frame.to_dict("records"):
        on = switches(row["variant"])
        if on is not None:
            by_key[(int(row["seed"]), on)] = row
    pairs = [(by_key[(seed, on - components)], row) for (seed, on), row in sorted(
        by_key.items(), key=lambda kv: (kv[0][0], sorted(kv[0][1]))) if components <= on
        and (seed, on - components) in by_key]
    if not pairs:
        raise ConfigError(f"no two sets of one seed differ only in {'+'.join(sorted(components))}")
    out = []
    for metric in metrics:
        diff = np.array([b[metric] - a[metric] for a, b in pairs], dtype=float)
        low, high = bootstrap_mean_ci(diff, n_boot=n_boot, seed=seed)
        out.append({"metric": metric, "off": float(np.mean([a[metric] for a, _ in pairs])),
                    "on": float(np.mean([b[metric] for _, b in pairs])), "diff": diff.mean(),
                    "sd": diff.std(ddof=1) if len(diff) > 1 else np.nan, "low": diff.min(),
                    "high": diff.max(), "up": int((diff > 0).sum()), "down": int((diff < 0).sum()),
                    "ci_low": low, "ci_high": high, "p_value": sign_flip_p_value(diff, seed=seed),
                    "pairs": len(diff), "seeds": sorted({int(b["seed"]) for _, b in pairs})})
    return pd.DataFrame(out)


def describe_effects(effects, label: str, signs: Mapping[str, int], claim: str) -> list[str]:
    """One markdown line per metric in `signs` of a `switch_effects` table: the means without and
    with `label`, the paired difference with its spread, and in how many pairs it points the way
    the sign calls `claim` (`signs[metric]`: +1 when a higher value means `claim`, -1 when lower;
    tied pairs are counted apart). States the numbers only, no test."""
    rows = effects.set_index("metric")
    lines = []
    for metric, sign in signs.items():
        r = rows.loc[metric]
        agree, tied = (r["down"] if sign < 0 else r["up"]), r["pairs"] - r["up"] - r["down"]
        spread = f"sd {r['sd']:.3g}, " if r["pairs"] > 1 else ""
        lines.append(f"- `{metric}`: {r['off']:.3g} without {label}, {r['on']:.3g} with it; paired difference "
                     f"{r['diff']:+.3g} ({spread}from {r['low']:+.3g} to {r['high']:+.3g}); {claim} in {agree} "
                     f"of {r['pairs']} pairs" + (f" ({tied} tied)." if tied else "."))
    return lines


RERUN_FOLDER = "inspect/reruns"  # <results>/inspect/reruns/<run-id>.json: records of re-created sets


@renamed_keywords(bits="setting")
def recreate_sets(results_dir: str | os.PathLike = "results", *, setting: str = "w4a4", sweeps=None,
                  seeds=None, variants=None, only_missing: bool = True, progress: bool = True) -> list[dict]:
    """Re-create the calibration sets of the records in `results_dir` (at `setting`, optionally only
    those of the `sweeps` folders, `seeds` and `variants`) that are not on disk, by re-running their
    experiment with the sweep's shared calibration folder (`run_experiment(..., calibration_dir=...)`):
    it synthesizes the set again where the record says, then quantizes and evaluates as the record did.

    A re-synthesized set is not bit-identical to the lost one (float results differ between CPUs and
    thread counts), so the rerun's own record is saved under `<results_dir>/inspect/reruns/` with
    kind "rerun" (which `load_results` ignores) and `study` pairs the set with it, not with the
    original record. `only_missing=False` also reruns sets that exist (loading them), for sets
    re-created before their rerun records were kept. Returns one summary per rerun."""
    results_dir = Path(results_dir)
    done, out = set(), []
    for f, record in _records(results_dir, setting, sweeps):
        path = locate(record["calibration_path"], results_dir)
        rerun_path = results_dir / RERUN_FOLDER / f"{record['run_id']}.json"
        if str(path) in done or rerun_path.is_file() or (only_missing and path.is_file()):
            continue
        if (seeds is not None and record["config"]["seed"] not in seeds) or \
                (variants is not None and record["variant"] not in variants):
            continue
        config = ExperimentConfig.from_dict(record["config"])
        with tempfile.TemporaryDirectory() as tmp:
            result = run_experiment(config, out_dir=tmp, calibration_dir=path.parent, progress=progress)
        rerun = {**result.to_dict(), "kind": "rerun", "calibration_path": record["calibration_path"],
                 "recreated_from": str(f)}
        write_json_atomic(rerun_path, rerun)
        done.add(str(path))
        out.append({"path": str(path), "record_top1": record["quantized"]["top1"],
                    "rerun_top1": result.quantized["top1"], "rerun": str(rerun_path)})
        log.info("re-created %s (top-1 %.3f, record %.3f)", path, out[-1]["rerun_top1"],
                 out[-1]["record_top1"])
    return out
