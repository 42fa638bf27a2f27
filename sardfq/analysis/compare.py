"""Is calibration source A better than B? A paired difference with a 95% confidence interval.

Two sources are compared on the records of runs that differ only in the calibration source:
paired by seed (the same seed draws the same priors, labels and reconstruction order) and, within
a seed, by test image (every run is evaluated on the same images; `PerImage.labels_sha1` checks it).

Statistics (paired bootstrap, percentile intervals, 95%):
- per seed: the mean over images of a - b, with images resampled;
- over seeds: the mean of the per-seed differences, with a two-stage bootstrap that resamples seeds
  and, independently, images (the images are shared by every seed), so the interval holds both
  the calibration-set randomness and the test-set sampling. With three seeds the seed stage can
  only take ten distinct draws: such an interval is a floor on the uncertainty, not a ceiling.
"A beats B" is said only where the interval over seeds excludes zero.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from ..compat import renamed_keywords
from ..errors import ConfigError
from ..evaluate import PerImage
from ..experiments.records import bad_record, read_records, record_setting

METRICS = {  # name: (per-image values of a record's quantized model, unit, scale, higher is better)
    "top1": ("correct", "pp", 100.0, True),
    "agreement": ("agree", "pp", 100.0, True),
    "kl": ("kl", "nats", 1.0, False),
}


MAX_BOOT = 1_000_000  # [choice] bootstrap resamples: 500 times the default, seconds per image-seed


def check_boot(n_boot) -> int:
    """The number of bootstrap resamples, 1..MAX_BOOT; else a ConfigError naming --boot."""
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or not 1 <= n_boot <= MAX_BOOT:
        raise ConfigError(f"n_boot (--boot) must be a number of bootstrap resamples from 1 to {MAX_BOOT:,} "
                          f"(2000 is plenty for a 95% interval), got {n_boot!r}")
    return n_boot


@dataclass
class Comparison:
    """`a - b` of one metric, over the seeds both sources have."""

    metric: str
    a: str
    b: str
    unit: str
    higher_is_better: bool
    seeds: list[int]
    n_images: int
    difference: float  # mean over seeds of the per-seed mean difference
    ci: tuple[float, float]  # two-stage bootstrap over seeds and images
    per_seed: list[dict] = field(default_factory=list)  # {"seed", "a", "b", "difference", "ci"}
    n_boot: int = 0

    @property
    def excludes_zero(self) -> bool:
        return self.ci[0] > 0 or self.ci[1] < 0

    @property
    def verdict(self) -> str:
        """Which source is better by this metric, or that the interval cannot tell."""
        if not self.excludes_zero:
            return "no difference shown (the interval contains 0)"
        a_better = (self.difference > 0) == self.higher_is_better
        if len(self.seeds) == 1:
            caveat = " on this seed (one seed: the interval covers the test images, not the calibration set)"
        elif len(self.seeds) < 3:
            caveat = f" on these {len(self.seeds)} seeds (too few for the interval to hold the seed-to-seed spread)"
        else:
            caveat = ""
        return f"{self.a if a_better else self.b} better{caveat}"

    def to_dict(self) -> dict:
        return {**asdict(self), "excludes_zero": self.excludes_zero, "verdict": self.verdict}

    def __str__(self) -> str:
        lo, hi = self.ci
        return (f"{self.metric}: {self.a} - {self.b} = {self.difference:+.2f} {self.unit} "
                f"[95% CI {lo:+.2f}, {hi:+.2f}] over {len(self.seeds)} seeds x {self.n_images} images: "
                f"{self.verdict}")


def compare_per_image(a: Mapping[int, PerImage], b: Mapping[int, PerImage], *, metric: str = "top1",
                      names: tuple[str, str] = ("a", "b"), n_boot: int = 2000, seed: int = 0) -> Comparison:
    """Compare per-image outcomes `{seed: PerImage}` of two sources (see the module docstring)."""
    if metric not in METRICS:
        raise ConfigError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    check_boot(n_boot)
    attr, unit, scale, higher = METRICS[metric]
    seeds = sorted(set(a) & set(b))
    if not seeds:
        raise ConfigError(f"{names[0]} (seeds {sorted(a)}) and {names[1]} (seeds {sorted(b)}) share no seed to pair")
    digests = {x.labels_sha1 for s in seeds for x in (a[s], b[s])}
    if len(digests) != 1:
        raise ConfigError("the runs were evaluated on different images (labels differ); compare runs "
                          "with the same evaluation subset (eval_limit)")
    rows = []
    for s in seeds:
        va, vb = getattr(a[s], attr), getattr(b[s], attr)
        if va is None or vb is None:
            raise ConfigError(f"seed {s}: a record has no per-image {metric} (it was evaluated without "
                              "the FP reference)")
        rows.append(va.astype(np.float64) - vb.astype(np.float64))
        rows[-1] *= scale
    diff = np.stack(rows)  # seeds, images
    means = {s: (scale * getattr(a[s], attr).mean(), scale * getattr(b[s], attr).mean()) for s in seeds}
    rng = np.random.default_rng(seed)
    n_seeds, n_images = diff.shape
    boot = np.empty(n_boot)
    seed_boot = np.empty((n_seeds, n_boot))
    chunk = max(1, 2_000_000 // n_images)  # bounded memory for the index matrices
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        images = rng.integers(0, n_images, size=(stop - start, n_images))
        seed_weights = rng.multinomial(n_seeds, np.full(n_seeds, 1 / n_seeds), size=stop - start) / n_seeds
        pooled = seed_weights @ diff  # boots, images: the seed-resampled mean difference per image
        boot[start:stop] = np.take_along_axis(pooled, images, axis=1).mean(1)
        for k in range(n_seeds):
            seed_boot[k, start:stop] = diff[k][images].mean(1)
    per_seed = [{"seed": s, "a": float(means[s][0]), "b": float(means[s][1]),
                 "difference": float(diff[k].mean()),
                 "ci": tuple(float(v) for v in np.percentile(seed_boot[k], [2.5, 97.5]))}
                for k, s in enumerate(seeds)]
    return Comparison(metric=metric, a=names[0], b=names[1], unit=unit, higher_is_better=higher, seeds=seeds,
                      n_images=n_images, difference=float(diff.mean()),
                      ci=tuple(float(v) for v in np.percentile(boot, [2.5, 97.5])), per_seed=per_seed,
                      n_boot=n_boot)


def per_image_by_seed(records: Iterable[Mapping], *, name: str = "") -> dict[int, PerImage]:
    """`{seed: PerImage}` of the quantized models of experiment records (one record per seed)."""
    out: dict[int, PerImage] = {}
    for record in records:
        try:
            seed, per_image = record["config"]["seed"], record["quantized"].get("per_image")
        except (KeyError, TypeError, AttributeError) as exc:
            raise bad_record(f"record {record.get('run_id')}", exc) from None
        if seed in out:
            raise ConfigError(f"{name or 'a source'} has several records for seed {seed} "
                              f"(e.g. {record.get('run_id')}): narrow the selection (--results, --model, --bits)")
        if not per_image:
            raise ConfigError(f"record {record.get('run_id')} has no per-image results (written before they "
                              "were kept): run it again to compare it")
        try:
            out[seed] = PerImage.from_dict(per_image)
        except ConfigError as exc:
            raise bad_record(f"record {record.get('run_id')}", exc) from None
    return out


@renamed_keywords(bits="setting")
def select_records(results: str | os.PathLike | Iterable, variant: str, *, model: str | None = None,
                   setting: str | None = None, where=None) -> list[dict]:
    """Experiment records under `results` (folders searched recursively, or record dicts) of one
    calibration source (`variant`, e.g. "sardfq", "psaq", "sardfq[apa+sl]"), model and bit setting
    (`setting`: `w4a4`, or `w4a4-attn2` for the attention map at other bits; see
    `QuantConfig.label`; `bits=` is its old name)."""
    paths = [results] if isinstance(results, (str, os.PathLike, Mapping)) else list(results)
    for item in paths:
        if not isinstance(item, Mapping) and not Path(item).exists():
            raise ConfigError(f"results path {item} does not exist")
    chosen = []
    for r, f in read_records(paths):
        if r.get("kind") != "experiment" or r.get("variant") != variant:
            continue
        if not isinstance(r.get("config"), Mapping):
            raise bad_record(f or f"record {r.get('run_id')}", KeyError("config"))
        in_setting = setting is None or (r.get("bits") == setting.split("-")[0]
                                         and record_setting(r) == setting)
        if (model is None or r["config"].get("model") == model) and in_setting:
            chosen.append(r)
    if not chosen:
        raise ConfigError(f"no experiment record of {variant!r}"
                          f"{f' for {model}' if model else ''}{f' at {setting}' if setting else ''} in {where or results}")
    return chosen


@renamed_keywords(bits="setting")
def compare(results, a: str, b: str, *, model: str | None = None, setting: str | None = None,
            metrics: Iterable[str] = ("top1", "agreement", "kl"), n_boot: int = 2000,
            seed: int = 0) -> list[Comparison]:
    """Compare calibration sources `a` and `b` (variants) on the records under `results` (of
    `model` and bit `setting`, e.g. `w4a4`, when given; `bits=` is the setting's old name):
    `a - b` per metric with 95% CIs, paired by seed and image."""
    check_boot(n_boot)  # before reading any record
    if isinstance(results, (str, os.PathLike)) and not Path(results).exists():
        raise ConfigError(f"results path {results} does not exist")
    records = [r for r, _ in read_records(results)]  # read once, for both sources
    by_seed = {v: per_image_by_seed(select_records(records, v, model=model, setting=setting, where=results), name=v)
               for v in (a, b)}
    return [compare_per_image(by_seed[a], by_seed[b], metric=m, names=(a, b), n_boot=n_boot, seed=seed)
            for m in metrics]


@renamed_keywords(bits="settings")
def cell_differences(results, *, contrasts, models=None, settings=None, n_boot: int = 2000):
    """One row per (model, bit setting, contrast a - b) with the top-1 difference in points, its
    95% CI, the seeds and images behind it: a pandas DataFrame, whose column `bits` holds the
    setting (`QuantConfig.label`: `w4a4`, or `w4a4-attn2` with the attention map at other bits).
    `models` and `settings` (old name: `bits`) keep only those. Pairs that lack records are left out."""
    import pandas as pd

    from ..experiments.records import load_results

    check_boot(n_boot)
    frame = load_results(results)
    if frame.empty:
        raise ConfigError(f"no experiment records in {results}")
    rows = []
    for (model, setting), group in frame.groupby(["model", "setting"], sort=False):  # w4a4, or e.g. w4a4-attn2
        if (models is not None and model not in models) or (settings is not None and setting not in settings):
            continue
        have = set(group["variant"])
        for a, b in contrasts:
            if a not in have or b not in have:
                continue
            c = compare(list(group["file"]), a, b, model=model, setting=setting, metrics=("top1",), n_boot=n_boot)[0]
            rows.append({"model": model, "bits": setting, "contrast": f"{a} - {b}", "difference": c.difference,
                         "ci_low": c.ci[0], "ci_high": c.ci[1], "excludes_zero": c.excludes_zero,
                         "seeds": len(c.seeds), "images": c.n_images, "verdict": c.verdict})
    return pd.DataFrame(rows, columns=["model", "bits", "contrast", "difference", "ci_low", "ci_high",
                                       "excludes_zero", "seeds", "images", "verdict"])


def ci_side(gains):
    """Per `zoo_gains` row, where its 95% CI lies: 'above' zero, 'below' zero, or 'level' (it holds
    zero): the one reading of an interval that the verdicts, the headline and the book share."""
    import numpy as np
    import pandas as pd

    excludes = gains["excludes_zero"].astype(bool)
    return pd.Series(np.where(excludes & (gains["ci_low"] > 0), "above",
                              np.where(excludes, "below", "level")), index=gains.index)


def interval(row) -> str:
    """'+1.2 [+0.3, +2.1]' for a row with difference, ci_low and ci_high (points)."""
    return f"{row['difference']:+.1f} [{row['ci_low']:+.1f}, {row['ci_high']:+.1f}]"
