"""Sparse inversion against dense, run by run: what a sparse default must pass (`results/sparse_check`,
`sweeps/sparse_check.yaml`).

Each sparse run pairs, seed by seed and image by image, with the dense run of the same teacher,
setting and method (`compare_per_image`). [choice] A method may invert sparsely by default only
where its sparse top-1 stays inside the dense runs' seed spread: the mean paired difference is no
lower than minus the standard deviation of the dense runs' top-1 over seeds (the rule the bf16
precision policy was held to, `results/bf16_mlp_check`).
"""
from __future__ import annotations

import statistics

from ..errors import ConfigError
from ..experiments.config import ExperimentConfig
from ..experiments.records import read_records, record_setting
from .compare import compare_per_image, per_image_by_seed


def _kind(config: ExperimentConfig) -> str:
    """'dense', 'sparse' (stopped patches black) or 'sparse, stopped frozen'."""
    s = config.synthesis
    if not s.is_sparse:
        return "dense"
    return "sparse" if s.stopped == "zero" else f"sparse, stopped {s.stopped}"


def sparse_differences(results, *, n_boot: int = 2000):
    """One row per (teacher, setting, method, sparse kind) that has dense runs beside it: the top-1
    of each (mean over the paired seeds, %), sparse - dense in points with its paired 95% CI, the
    seeds and images behind it, the dense runs' seed spread (over all their seeds) and whether the
    sparse runs stay inside it (None where the dense runs have one seed). A pandas DataFrame."""
    import pandas as pd

    groups: dict[tuple, list[dict]] = {}
    for record, _ in read_records(results):
        if record.get("kind") != "experiment":
            continue
        config = ExperimentConfig.from_dict(record["config"])
        if config.synthesis.method not in ("psaq", "sardfq", "smi"):
            continue
        key = (config.model, record_setting(record), config.synthesis.method, _kind(config))
        groups.setdefault(key, []).append(record)
    if not groups:
        raise ConfigError(f"no PSAQ-ViT, SARDFQ or SMI records in {results}")
    rows = []
    for (model, setting, method, kind), records in sorted(groups.items()):
        dense = groups.get((model, setting, method, "dense"))
        if kind == "dense" or not dense:
            continue
        a, b = per_image_by_seed(records, name=kind), per_image_by_seed(dense, name="dense")
        seeds = sorted(set(a) & set(b))
        if not seeds:
            continue
        c = compare_per_image({s: a[s] for s in seeds}, {s: b[s] for s in seeds}, names=(kind, "dense"),
                              n_boot=n_boot)
        dense_top1 = [100 * r["quantized"]["top1"] for r in dense if r["config"]["seed"] in seeds]
        # the spread is the dense runs' own, over every seed they have (a sparse run on fewer seeds
        # is still judged against it); a single dense seed has none, and the rule cannot judge (None)
        every_seed = [100 * r["quantized"]["top1"] for r in dense]
        spread = statistics.stdev(every_seed) if len(every_seed) > 1 else float("nan")
        rows.append({"model": model, "setting": setting, "method": method, "kind": kind,
                     "sparse_top1": statistics.mean(100 * r["quantized"]["top1"] for r in records
                                                    if r["config"]["seed"] in seeds),
                     "dense_top1": statistics.mean(dense_top1), "difference": c.difference,
                     "ci_low": c.ci[0], "ci_high": c.ci[1], "seeds": len(seeds), "images": c.n_images,
                     "dense_seed_sd": spread,
                     "inside_spread": None if spread != spread else bool(c.difference >= -spread)})
    return pd.DataFrame(rows, columns=["model", "setting", "method", "kind", "sparse_top1", "dense_top1",
                                       "difference", "ci_low", "ci_high", "seeds", "images", "dense_seed_sd",
                                       "inside_spread"])


def sparse_table(differences) -> str:
    """`sparse_differences` as a Markdown table (points, 95% CIs)."""
    lines = ["| teacher | setting | method | sparse | sparse − dense [95% CI] | dense seed sd | inside the spread "
             "| seeds × images |", "|---|---|---|---|---|---|---|---|"]
    for r in differences.to_dict("records"):
        inside = {True: "yes", False: "no"}.get(r["inside_spread"], "one dense seed: no spread")
        lines.append(f"| `{r['model']}` | {r['setting']} | {r['method']} | {r['kind']} | {r['difference']:+.2f} "
                     f"[{r['ci_low']:+.2f}, {r['ci_high']:+.2f}] | {r['dense_seed_sd']:.2f} | {inside} | "
                     f"{r['seeds']} × {r['images']:,} |")
    return "\n".join(lines)


def finding(differences, *, speedup: float, method: str) -> str:
    """Chapter 10's finding: the speed-up a chapter's own run measured for `method`, and what the
    paired records say of accuracy, cell by cell (`sparse_differences`), in plain words."""
    speed = (f"Inverting {method} sparsely made a synthesis step {speedup:.1f} times faster in this chapter's "
             "run on the CPU.")
    if differences is None or len(differences) == 0:
        return speed + " Whether it costs accuracy is not measured here yet (no paired sparse and dense records)."
    parts = []
    for (name, kind), rows in differences.groupby(["method", "kind"], sort=True):
        judged = rows[rows["inside_spread"].notna()]
        inside = int((judged["inside_spread"] == True).sum())  # noqa: E712  (None is not judged)
        below, above = int((rows["ci_high"] < 0).sum()), int((rows["ci_low"] > 0).sum())
        worst = rows.loc[rows["difference"].idxmin()]
        where = (f"{worst['difference']:+.1f} points [{worst['ci_low']:+.1f}, {worst['ci_high']:+.1f}] "
                 f"(`{worst['model']}` {worst['setting']})")
        unjudged = len(rows) - len(judged)
        text = (f"{name} ({kind}) stays inside the dense runs' seed spread in {inside} of {len(judged)} "
                "teacher and bit-width cells")
        if unjudged:
            text += f" ({unjudged} more with one dense seed, no spread to judge)"
        if worst["difference"] < 0:
            text += f"; its largest loss is {where}"
        else:
            text += f"; its mean is above dense in every cell, the least by {where}"
        counts = [f"below dense beyond its 95% interval in {below}" if below else "",
                  (f"above dense beyond {'it' if below else 'its 95% interval'} in {above}") if above else ""]
        if any(counts):
            text += "; it is " + " and ".join(c for c in counts if c)
        parts.append(text + ".")
    low, high = int(differences["seeds"].min()), int(differences["seeds"].max())
    seeds = f"{low}" if low == high else f"{low}-{high}"
    images = int(differences["images"].min())
    return (speed + f" Against dense inversion, paired by seed and image ({seeds} seeds × {images:,} test images "
            "per cell, 95% CIs): " + " ".join(parts))
