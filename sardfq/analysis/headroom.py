"""The paper's regime: where PSAQ-ViT leaves headroom to real calibration images, and what SARDFQ
does there.

SARDFQ claims to close part of a large gap that PSAQ-ViT leaves to real images (ImageNet ViT-B,
W4A4: PSAQ-ViT 36.3, SARDFQ 51.8, real 68.2; 49% of the gap). Where PSAQ-ViT already matches real
images there is nothing to close. The verbs:

- a cell is a teacher and a bit setting (`setting`: the bits, plus the post-softmax map's bits where
  they differ from the activations', `w4a4-attn2`, as `sardfq.experiments.records.record_setting`
  reads it off a record);
- `headroom_map(results)`: per teacher, setting and reconstruction length, each source's top-1 and
  the headroom real - PSAQ-ViT (the map sweep: one seed, a subset of the test images);
- `predict(fit_cells, cells, gaps)`: what two hypotheses predict for SARDFQ - PSAQ-ViT in new cells,
  each as a line fitted on cells measured before (headroom: the gain rises with real - PSAQ-ViT;
  entropy gap: it falls as the teacher's real attention is more peaked than APA's priors);
- `score(predictions, measured)`: per hypothesis, signs right and the rank agreement (Spearman's rho
  with its permutation p-value) between predicted and measured gains;
- `share_closed(results, ...)`: (SARDFQ - PSAQ-ViT) / (real - PSAQ-ViT) with a paired two-stage
  bootstrap interval over seeds and test images, the paper's 49% beside it;
- `ablation_gains(ablation, cells, ...)`: SARDFQ's component ablation in one headroom cell: what each
  switch adds to the full method and alone, and the method with no switch against PSAQ-ViT.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Mapping

import numpy as np

from ..compat import renamed_keywords
from ..errors import ConfigError
from ..experiments.records import load_results
from .stats import permutation_p_value, spearman
from .attention_stats import teacher_properties
from .compare import cell_differences, interval, per_image_by_seed, select_records

MAP_SOURCES = ("noise", "real", "psaq")
PAPER_SHARE = (51.84 - 36.32) / (68.16 - 36.32)  # ImageNet ViT-B, W4A4: SARDFQ, PSAQ-ViT, real images
MIN_HEADROOM = 5.0  # points of real - PSAQ-ViT that make a cell "the paper's regime" at CPU scale [choice]


def headroom_map(results):
    """One row per (model, setting, recon_iters) of the records under `results`: the mean top-1
    (in %) over seeds of each calibration source there, `headroom` = real - PSAQ-ViT, `data_matters`
    = real - noise, the seeds and test images behind them. A pandas DataFrame, largest headroom first."""
    frame = load_results(results)
    if frame.empty:
        raise ConfigError(f"no experiment records in {results}")
    table = frame.pivot_table(index=["model", "setting", "recon_iters"], columns="variant", values="q_top1",
                              aggfunc="mean")
    counts = frame.groupby(["model", "setting", "recon_iters"]).agg(seeds=("seed", "nunique"),
                                                                    images=("eval_images", "min"))
    table = table.join(counts)
    for source in MAP_SOURCES:
        if source not in table:
            table[source] = np.nan
    table["headroom"] = table["real"] - table["psaq"]
    table["data_matters"] = table["real"] - table["noise"]
    return table.reset_index().sort_values("headroom", ascending=False, ignore_index=True)


def regime_cells(table, *, recon_iters: int, min_headroom: float = MIN_HEADROOM):
    """The (model, setting) cells of a `headroom_map` whose headroom at `recon_iters` is at least
    `min_headroom` points: where the paper's claim can be tested."""
    rows = table[(table["recon_iters"] == recon_iters) & (table["headroom"] >= min_headroom)]
    return rows[["model", "setting", "headroom"]].reset_index(drop=True)


def fit_line(x, y) -> tuple[float, float]:
    """Least-squares intercept and slope of y on x."""
    slope, intercept = np.polyfit(np.asarray(x, float), np.asarray(y, float), 1)
    return float(intercept), float(slope)


HYPOTHESES = {
    "headroom": "SARDFQ - PSAQ-ViT rises with the headroom real - PSAQ-ViT",
    "entropy gap": "SARDFQ - PSAQ-ViT falls as the teacher's real attention is more peaked than APA's priors",
    # not fitted on our records: the paper's ImageNet ratio carried over (sign +, wherever real images lead)
    "paper's share": "SARDFQ - PSAQ-ViT is the paper's share of the headroom real - PSAQ-ViT",
}


def predict(fit_cells, cells, gaps: Mapping[str, float]):
    """What each hypothesis predicts for SARDFQ - PSAQ-ViT in `cells` (rows with model, setting,
    headroom), from a line fitted on `fit_cells` (rows with model, headroom, gain: cells measured
    before) against the headroom, and against the teacher's entropy gap (`gaps`: model -> gap);
    and the paper's share of the headroom (`PAPER_SHARE`, its ImageNet ratio, fitted on nothing of
    ours). Returns `cells` with, per hypothesis, the predicted gain, its sign and its rank (1: the
    largest predicted gain), and the three lines in `.attrs["fits"]`."""
    fit_cells = fit_cells.assign(gap=fit_cells["model"].map(gaps))
    missing = sorted(set(cells["model"]) - set(gaps))
    if missing or fit_cells["gap"].isna().any():
        raise ConfigError(f"no entropy gap for {', '.join(missing) or 'a fitted cell'}; measure it with "
                          "sardfq.analysis.attention_stats.teacher_properties")
    fits = {"headroom": fit_line(fit_cells["headroom"], fit_cells["gain"]),
            "entropy gap": fit_line(fit_cells["gap"], fit_cells["gain"]),
            "paper's share": (0.0, PAPER_SHARE)}
    out = cells.copy()
    out["gap"] = out["model"].map(gaps)
    for name, column in (("headroom", "headroom"), ("entropy gap", "gap"), ("paper's share", "headroom")):
        a, b = fits[name]
        predicted = a + b * out[column]
        out[f"{name}: predicted"] = predicted
        out[f"{name}: sign"] = np.sign(predicted).astype(int)
        out[f"{name}: rank"] = predicted.rank(ascending=False, method="average")
    out.attrs["fits"] = {name: {"intercept": a, "slope": b, "cells": 0 if name == "paper's share" else len(fit_cells)}
                         for name, (a, b) in fits.items()}
    return out


def score(predictions, measured):
    """Per hypothesis of `predict`, against `measured` (rows with model, setting, gain, ci_low,
    ci_high): in how many cells the predicted sign is the measured one, counting only cells whose CI
    excludes zero as measured signs (the others are 'level'); Spearman's rho between predicted and
    measured gains with its permutation p-value; the cells and distinct teachers behind it."""
    import pandas as pd

    joined = predictions.merge(measured, on=["model", "setting"], how="inner")
    if joined.empty:
        raise ConfigError("no measured cell matches a predicted one (model, setting)")
    side = np.where(joined["ci_low"] > 0, 1, np.where(joined["ci_high"] < 0, -1, 0))
    rows = []
    for name in [n for n in HYPOTHESES if f"{n}: predicted" in joined]:  # those written down then
        predicted = joined[f"{name}: predicted"]
        sign = joined[f"{name}: sign"].to_numpy()
        rho = spearman(predicted, joined["gain"])
        rows.append({"hypothesis": name, "claim": HYPOTHESES[name], "cells": len(joined),
                     "teachers": joined["model"].nunique(),
                     "signs right": int(np.sum((side != 0) & (sign == side))),
                     "signs wrong": int(np.sum((side != 0) & (sign == -side))),
                     "level": int(np.sum(side == 0)),
                     "rho": 0.0 if math.isnan(rho) else rho,
                     "p_value": permutation_p_value(predicted, joined["gain"])})
    return pd.DataFrame(rows)


@renamed_keywords(bits="setting")
def share_closed(results, *, model: str, setting: str, sardfq: str = "sardfq", design: str = "default",
                 n_boot: int = 2000, seed: int = 0) -> dict:
    """The share of the headroom SARDFQ (with `design`) closes in the cell of `model` and bit
    `setting` (old name: `bits`), (SARDFQ - PSAQ-ViT) / (real - PSAQ-ViT) in top-1, on the seeds
    all three sources have, with a percentile interval from a two-stage bootstrap (seeds resampled,
    and test images, shared by every seed, resampled): the ratio of the two mean differences in
    each resample. The paper's share on ViT-B is `PAPER_SHARE`. The row names the setting `bits`,
    as the tables of `cell_differences` do."""
    from ..experiments.config import ExperimentConfig
    from ..experiments.records import design_label

    records = [r for v in (sardfq, "psaq", "real") for r in select_records(results, v, model=model, setting=setting)
               if v != sardfq or design_label(ExperimentConfig.from_dict(r["config"])) == design]
    by = {v: per_image_by_seed([r for r in records if r["variant"] == v], name=v) for v in (sardfq, "psaq", "real")}
    seeds = sorted(set(by[sardfq]) & set(by["psaq"]) & set(by["real"]))
    if not seeds:
        raise ConfigError(f"{model} {setting}: no seed has SARDFQ, PSAQ-ViT and real records")
    correct = {v: np.stack([by[v][s].correct.astype(float) for s in seeds]) for v in by}  # seeds, images
    gain, headroom = correct[sardfq] - correct["psaq"], correct["real"] - correct["psaq"]
    rng = np.random.default_rng(seed)
    n_seeds, n_images = gain.shape
    ratios = np.empty(n_boot)
    for k in range(n_boot):
        weights = rng.multinomial(n_seeds, np.full(n_seeds, 1 / n_seeds)) / n_seeds
        images = rng.integers(0, n_images, n_images)
        g, h = weights @ gain[:, images].mean(1), weights @ headroom[:, images].mean(1)
        ratios[k] = g / h if h > 0 else np.nan
    ratios = ratios[~np.isnan(ratios)]
    low, high = np.percentile(ratios, [2.5, 97.5]) if len(ratios) else (np.nan, np.nan)
    return {"model": model, "bits": setting, "share": float(gain.mean() / headroom.mean()),
            "ci_low": float(low), "ci_high": float(high), "gain": 100 * float(gain.mean()),
            "headroom": 100 * float(headroom.mean()), "seeds": len(seeds), "images": n_images,
            "paper_share": PAPER_SHARE}


def prediction_record(predictions, *, fit_source: str, map_source: str) -> dict:
    """`predict`'s output as the JSON written down before any SARDFQ run of the new cells exists."""
    return {"kind": "predictions", "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "hypotheses": HYPOTHESES, "fits": predictions.attrs.get("fits", {}), "fit_source": fit_source,
            "map_source": map_source, "cells": predictions.to_dict("records")}


def write_predictions(out, *, fit_results="results/zoo_main", map_results="results/headroom_map",
                      recon_iters: int = 20, min_headroom: float = MIN_HEADROOM, models=None, root=None,
                      n_boot: int = 2000) -> dict:
    """Write down, before SARDFQ runs in them, what both hypotheses predict for the cells of the
    map at `map_results` whose headroom (at `recon_iters`) is at least `min_headroom`: the lines
    are fitted on the SARDFQ - PSAQ-ViT and real - PSAQ-ViT of `fit_results` (the zoo), the entropy
    gaps measured on each teacher (`teacher_properties`, on held-out images). Writes `out` (JSON,
    atomically) and returns the record."""
    from ..io import write_json_atomic

    gains = cell_differences(fit_results, contrasts=(("real", "psaq"), ("sardfq", "psaq")), n_boot=n_boot)
    wide = gains.pivot_table(index=["model", "bits"], columns="contrast", values="difference").reset_index()
    fit_cells = wide.rename(columns={"real - psaq": "headroom", "sardfq - psaq": "gain"})
    cells = regime_cells(headroom_map(map_results), recon_iters=recon_iters, min_headroom=min_headroom)
    if models is not None:
        cells = cells[cells["model"].isin(models)].reset_index(drop=True)
    teachers = sorted(set(cells["model"]) | set(fit_cells["model"]))
    gaps = {m: teacher_properties(m, root=root)["entropy_gap"] for m in teachers}
    predictions = predict(fit_cells, cells, gaps)
    record = prediction_record(predictions, fit_source=str(fit_results), map_source=str(map_results))
    record.update({"recon_iters": recon_iters, "min_headroom": min_headroom, "gaps": gaps,
                   "fit_cells": fit_cells.assign(gap=fit_cells["model"].map(gaps)).to_dict("records")})
    write_json_atomic(out, record)
    return record


CELL_CONTRASTS = (("real", "psaq"), ("sardfq", "psaq"), ("real", "noise"), ("psaq", "noise"), ("sardfq", "noise"))


def cell_gains(results, *, contrasts=CELL_CONTRASTS, n_boot: int = 2000):
    """`zoo_gains` rows of the records under `results`, SARDFQ with its default design in the
    contrasts as given, and SARDFQ with any other design (a held-out choice) as its own contrast
    `sardfq (DESIGN) - psaq`, against the same PSAQ-ViT runs."""
    import pandas as pd

    frame = load_results(results)
    if frame.empty:
        raise ConfigError(f"no experiment records in {results}")
    other = frame[(frame["method"] == "sardfq") & (frame["design"] != "default")]
    rows = [cell_differences(list(frame.drop(other.index)["file"]), contrasts=contrasts, n_boot=n_boot)]
    for design, part in other.groupby("design", sort=False):
        psaq = frame[(frame["variant"] == "psaq") & frame["model"].isin(part["model"])]
        tuned = cell_differences(list(part["file"]) + list(psaq["file"]), contrasts=(("sardfq", "psaq"),), n_boot=n_boot)
        rows.append(tuned.assign(contrast=f"sardfq ({design}) - psaq"))
    return pd.concat(rows, ignore_index=True)


SWITCHES = ("apa", "msr", "sl")
ABLATION_CELL_CONTRASTS = (
    *(("sardfq", f"sardfq[{'+'.join(k for k in SWITCHES if k != s)}]") for s in SWITCHES),  # in the full method
    *((f"sardfq[{s}]", "sardfq[none]") for s in SWITCHES),  # alone
    ("sardfq[none]", "psaq"), ("sardfq", "psaq"))


def ablation_gains(ablation, cells, *, n_boot: int = 2000):
    """The component ablation in a headroom cell: `ABLATION_CELL_CONTRASTS` (each switch in the
    full method and alone, the method with no switch and the full one against PSAQ-ViT) on the
    records under `ablation` (every combination of SARDFQ's switches, one teacher and setting), with
    PSAQ-ViT's records of the same teacher and setting taken from `cells`."""
    ablation_frame = load_results(ablation)
    if ablation_frame.empty:
        raise ConfigError(f"no experiment records in {ablation}")
    where = ablation_frame[["model", "setting"]].drop_duplicates()
    if len(where) != 1:
        raise ConfigError(f"{ablation} holds more than one teacher x setting: {where.to_dict('records')}")
    model, setting = where.iloc[0]
    cell = load_results(cells)
    psaq = cell[(cell["variant"] == "psaq") & (cell["model"] == model) & (cell["setting"] == setting)]
    return cell_differences(list(ablation_frame["file"]) + list(psaq["file"]), contrasts=ABLATION_CELL_CONTRASTS,
                            n_boot=n_boot)


def gain_against_headroom(gains, *, group: str):
    """One row per (model, setting) of `gains` that has both real - PSAQ-ViT and SARDFQ - PSAQ-ViT:
    the headroom and the gain with their CIs, and `group` (a label for the figure)."""
    import pandas as pd

    pick = {"real - psaq": "headroom", "sardfq - psaq": "gain"}
    rows = []
    for (model, setting), part in gains[gains["contrast"].isin(pick)].groupby(["model", "bits"], sort=False):
        by = part.set_index("contrast")
        if set(pick) <= set(by.index):
            row = {"model": model, "setting": setting, "group": group}
            for contrast, name in pick.items():
                row.update({name: by.loc[contrast, "difference"], f"{name}_low": by.loc[contrast, "ci_low"],
                            f"{name}_high": by.loc[contrast, "ci_high"]})
            rows.append(row)
    return pd.DataFrame(rows)


def measured_cells(gains):
    """SARDFQ - PSAQ-ViT of each cell of `cell_gains` (default design), as `score` reads them."""
    rows = gains[gains["contrast"] == "sardfq - psaq"]
    return rows.rename(columns={"bits": "setting", "difference": "gain"})[
        ["model", "setting", "gain", "ci_low", "ci_high", "seeds", "images"]].reset_index(drop=True)


def read_predictions(path):
    """A `write_predictions` record and its cells as a pandas DataFrame."""
    import pandas as pd

    record = json.loads(Path(path).read_text())
    if record.get("kind") != "predictions":
        raise ConfigError(f"{path} is not a predictions record (kind {record.get('kind')!r})")
    return record, pd.DataFrame(record["cells"])


def headline_report(gains, shares=None) -> str:
    """The README's block on the paper's regime (what `sardfq headroom` prints): one row per cell
    of `cell_gains` with each contrast as 'difference [95% CI]' in top-1 points, the share of the
    headroom SARDFQ closes where `shares` (rows of `share_closed`) give it, and the seeds x images."""
    contrasts = ["real - psaq", "sardfq - psaq", *sorted(c for c in gains["contrast"].unique()
                                                        if c.startswith("sardfq (")), "real - noise"]
    share = {} if shares is None else {(r["model"], r["bits"]): r for r in shares.to_dict("records")}
    header = ["teacher", "setting", *(c.replace(" - ", " − ") for c in contrasts), "share closed [95% CI]",
              "seeds × images"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for (model, setting), part in gains.groupby(["model", "bits"], sort=False):
        by = part.set_index("contrast")
        cells = [interval(by.loc[c]) if c in by.index else "n/a" for c in contrasts]
        s = share.get((model, setting))
        closed = (f"{100 * s['share']:.0f}% [{100 * s['ci_low']:.0f}, {100 * s['ci_high']:.0f}]" if s else "n/a")
        lines.append(f"| `{model}` | {setting} | " + " | ".join(cells) + f" | {closed} | "
                     f"{int(part['seeds'].min())} × {int(part['images'].min()):,} |")
    return "\n".join(lines)


def report(results, predictions_path=None, *, n_boot: int = 2000) -> dict:
    """Everything `sardfq headroom` and the README state about the cells under `results`: the gains,
    the shares closed, the scores of the predictions (when their file is given), and the Markdown
    block (the table, then the finding sentence)."""
    import pandas as pd

    gains = cell_gains(results, n_boot=n_boot)
    measured = measured_cells(gains)
    shares = pd.DataFrame([share_closed(results, model=r.model, setting=r.setting, n_boot=n_boot)
                           for r in measured.itertuples()])
    scores = None
    text = headline_report(gains, shares)
    if predictions_path is not None:
        _, predictions = read_predictions(predictions_path)
        scores = score(predictions, measured)
        text += "\n\n" + score_sentences(scores)
    return {"gains": gains, "shares": shares, "scores": scores, "markdown": text}


def score_sentences(scores) -> str:
    """One sentence per hypothesis of `headroom.score`."""
    return "\n\n".join(
        f"**{r['hypothesis'].capitalize()}** ({r['claim']}): the predicted sign is right in {r['signs right']} and "
        f"wrong in {r['signs wrong']} of the cells whose interval excludes zero ({r['level']} level); the predicted "
        f"and measured gains rank with rho {r['rho']:+.2f}, permutation p {r['p_value']:.3f}, over {r['cells']} cells "
        f"on {r['teachers']} teachers." for r in scores.to_dict("records"))
