"""The prose of chapter 07 (07_inspect), the calibration-set study: what the records show, in
sentences built from them (`finding`, `predictors`, `effects_summary`, ...); and chapter 05's one
sentence on a rerun set beside its record (`rerun_of`).

The chapters bind these strings into their prose with myst-nb `glue`, so each number and each
direction on the page comes from `study.study`, `study.correlations` and `study.switch_effects`
outputs: a rerun on other sets rewrites the sentences, including whether a measurement goes with
the paper or against it.

The paper's two mechanism claims are data here (`CLAIMS`, `QUESTIONS`): APA gives less semantic
distortion, MSR with soft labels gives more content. A metric's sign says which way is "less
distortion" or "more content". The verdict rule (`verdicts`) is plain: a claim holds for a metric
when the 95% CI of the mean paired difference lies on the claimed side of zero, goes against it
when the CI lies on the other side, and shows no clear difference when the CI holds zero; the
sentences give the count of pairs each way beside it.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from ..compat import renamed_keywords
from .diagnostics import needs_real_data

# [paper] the mechanisms SARDFQ's parts are credited with; sign: +1 when a higher value means the claim
DISTORTION = {"features.frechet": -1, "features.cosine_to_reference": +1, "attention.entropy_w1": -1,
              "attention.max_weight_w1": -1, "attention.peaks_w1": -1}
CONTENT = {"content.set_diversity": +1, "content.patch_diversity": +1, "content.flat_share": -1}
CLAIMS = {"less distortion": DISTORTION, "more content": CONTENT}
QUESTIONS = {"APA": (("apa",), "less distortion"), "MSR+SL": (("msr", "sl"), "more content")}

NAMES = {  # how the sentences name a metric
    "features.frechet": "Frechet distance to real features",
    "features.cosine_to_reference": "cosine similarity to real features",
    "attention.entropy_w1": "distance to real attention entropy",
    "attention.max_weight_w1": "distance to real top-patch mass",
    "attention.peaks_w1": "distance to real peak count",
    "content.set_diversity": "diversity across the set",
    "content.patch_diversity": "diversity within an image",
    "content.flat_share": "share of near-flat patches",
}


def name(metric: str) -> str:
    return NAMES.get(metric, f"`{metric}`")


def p_text(p: float) -> str:
    """A p-value as the page prints it."""
    if not np.isfinite(p):
        return "p n/a"
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}" if p < 0.01 else f"p = {p:.2f}"


def interval(row, value: str, fmt: str = "+.2f") -> str:
    """`value` of a table row with its 95% CI (columns ci_low, ci_high) and its p-value."""
    return (f"{row[value]:{fmt}}, 95% CI [{row['ci_low']:{fmt}}, {row['ci_high']:{fmt}}], "
            f"{p_text(row['p_value'])}")


def excludes_zero(table):
    return (table["ci_low"] > 0) | (table["ci_high"] < 0)


def seeds_text(seeds: Sequence[int]) -> str:
    seeds = sorted(int(s) for s in seeds)
    if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"seeds {seeds[0]}-{seeds[-1]}"
    return "seed" + ("s " if len(seeds) > 1 else " ") + ", ".join(map(str, seeds))


def sets_text(frame) -> str:
    """'12 sets (noise, psaq, real, sardfq; seeds 0-2)'."""
    return (f"{len(frame)} sets ({', '.join(sorted(frame['variant'].unique()))}; "
            f"{seeds_text(frame['seed'].unique())})")


def ordering(frame, metric: str, sources: Sequence[str]) -> str:
    """The sources from the lowest to the highest mean of `metric` over their sets: 'real < psaq < noise'."""
    means = frame.groupby("variant")[metric].mean()[list(sources)]
    return " < ".join(means.sort_values(kind="stable").index)


def orderings(frame, metrics: Sequence[str], sources: Sequence[str]) -> str:
    """A markdown list: each metric, whether it needs real images, and the sources in its order."""
    return "\n".join(f"- `{m}` ({'needs real images' if needs_real_data(m) else 'data-free'}): "
                     f"{ordering(frame, m, sources)}" for m in metrics)


# ---------------------------------------------------------------------------------- correlations
def correlation_text(row) -> str:
    return f"`{row['metric']}` (Spearman {interval(row, 'spearman')})"


def short_correlation(row) -> str:
    return f"`{row['metric']}` {row['spearman']:+.2f} [{row['ci_low']:+.2f}, {row['ci_high']:+.2f}]"


@renamed_keywords(bits="setting")
def predictors(table, frame, *, label: str, setting: str) -> str:
    """One paragraph on a `correlations` table: the sets behind it, how many metrics' intervals
    exclude zero, the strongest, and those of them a data-free user can compute (Spearman with
    its 95% CI); with none, how wide the widest interval is."""
    hits = table[excludes_zero(table)]
    free = hits[~hits["needs_real_data"].astype(bool)]
    width = float((table["ci_high"] - table["ci_low"]).max())
    head = (f"**{label}**: {sets_text(frame)}, {setting.upper()} top-1 from {int(frame['runs'].sum())} runs "
            f"({int(frame['recreated'].sum())} sets re-synthesized, judged by their rerun).")
    if hits.empty:
        return head + f" No metric's interval excludes zero; the widest is {width:.2f} wide."
    return (f"{head} {len(hits)} of {len(table)} intervals exclude zero (the filled markers); the strongest is "
            f"{correlation_text(hits.iloc[0])}. Data-free among them: "
            + ("; ".join(short_correlation(r) for _, r in free.iterrows()) if len(free) else "none") + ".")


def best_data_free(table):
    """The data-free metric with the strongest correlation whose interval excludes zero (None: none)."""
    hits = table[excludes_zero(table) & ~table["needs_real_data"].astype(bool)]
    return None if hits.empty else hits.iloc[0]


# -------------------------------------------------------------------------------- switch effects
def verdicts(effects, question: str):
    """Each metric of the claims, read off a `switch_effects` table of `question` ('APA', 'MSR+SL'):
    claim, sign, agree / against / tied (pairs), verdict ('as claimed', 'against', 'no clear
    difference', by the CI), and the paired difference with its CI and p-value. The asked claim
    comes first."""
    import pandas as pd

    asked = QUESTIONS[question][1]
    rows = effects.set_index("metric")
    out = []
    for claim in sorted(CLAIMS, key=lambda c: c != asked):
        for metric, sign in CLAIMS[claim].items():
            r = rows.loc[metric]
            up, down, pairs = int(r["up"]), int(r["down"]), int(r["pairs"])
            agree, against = (down, up) if sign < 0 else (up, down)
            side = np.sign(r["ci_low"]) if np.sign(r["ci_low"]) == np.sign(r["ci_high"]) else 0
            verdict = "as claimed" if side == sign else "against" if side == -sign else "no clear difference"
            out.append({"question": question, "claim": claim, "asked": claim == asked, "metric": metric,
                        "sign": sign, "agree": agree, "against": against, "tied": pairs - up - down,
                        "pairs": pairs, "verdict": verdict, "diff": r["diff"], "ci_low": r["ci_low"],
                        "ci_high": r["ci_high"], "p_value": r["p_value"], "seeds": r["seeds"]})
    return pd.DataFrame(out)


def _names(rows) -> str:
    names = [name(m) for m in rows["metric"]]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _numbers(rows, way: str) -> str:
    return "; ".join(f"{name(r['metric'])} ({r[way]} of {r['pairs']} pairs, {interval(r, 'diff', '+.3g')})"
                     for _, r in rows.iterrows())


def claim_sentence(table, question: str, *, brief: bool = False) -> str:
    """What the pairs say about the claim `question` is asked about (a `verdicts` table): the
    metrics that go against it, those that go with it, and those with no clear difference. `brief`:
    the numbers of the first metric of each side only (the finding box)."""
    rows = table[table["asked"]]
    claim = rows["claim"].iloc[0]
    pairs, seeds = int(rows["pairs"].iloc[0]), rows["seeds"].iloc[0]
    against, held = rows[rows["verdict"] == "against"], rows[rows["verdict"] == "as claimed"]
    unclear = rows[rows["verdict"] == "no clear difference"]
    parts = [f"**{question}** ({pairs} pairs, {seeds_text(seeds)}), credited by the paper with {claim}."]
    for part, way, word in ((against, "against", "Against it"), (held, "agree", "With it")):
        if len(part) and brief:
            first = part.iloc[0]
            parts.append(f"{word}: {_names(part)} ({'the first: ' if len(part) > 1 else ''}{first[way]} of "
                         f"{pairs} pairs, {interval(first, 'diff', '+.3g')}).")
        elif len(part):
            parts.append(f"{word}: {_numbers(part, way)}.")
    if len(unclear):
        parts.append(f"No clear difference: {_names(unclear)}.")
    return " ".join(parts)


@renamed_keywords(bits="setting")
def top1_sentence(effects, question: str, setting: str) -> str:
    r = effects.set_index("metric").loc["q_top1"]
    r = {**r.to_dict(), "metric": "q_top1"}
    return (f"{setting.upper()} top-1 of the same pairs: {r['off']:.1f}% without {question}, {r['on']:.1f}% with it "
            f"(paired difference in points {interval(r, 'diff', '+.1f')}; {r['up']} of {r['pairs']} pairs up).")


@renamed_keywords(bits="setting")
def effects_summary(effects, question: str, setting: str) -> str:
    """The paragraph under the ablation figure for one question (the asked claim is the finding
    box's): the same pairs on the other claim, grouped by verdict with their pair counts, and top-1."""
    table = verdicts(effects, question)
    other = table[~table["asked"]]
    groups = []
    for verdict in ("against", "as claimed", "no clear difference"):
        rows = other[other["verdict"] == verdict]
        if len(rows):
            counts = ", ".join(f"{r['agree']}" for _, r in rows.iterrows())
            groups.append(f"{verdict} on {_names(rows)} ({counts} of {rows['pairs'].iloc[0]} pairs the claimed way)")
    return (f"**{question}**, the same pairs on {other['claim'].iloc[0]}: " + "; ".join(groups) + ". "
            + top1_sentence(effects, question, setting))


def pairing_caveat(effects) -> str:
    seeds = effects["seeds"].iloc[0]
    return (f"The intervals resample pairs and the p-values flip the signs of the paired differences, "
            f"both treating the pairs as independent; the pairs of one seed start from the same noise and "
            f"labels, and with {len(seeds)} seeds a test over seed means could not go below "
            f"p = {2 / 2 ** len(seeds):.2f}.")


def claim_effects(effects: Mapping[str, object], frame):
    """The paired differences of every claimed metric, scaled by the metric's standard deviation over
    the sets of `frame` and signed so that positive is the paper's claimed direction: one row per
    question and metric (question, claim, metric, label, difference, ci_low, ci_high, excludes_zero),
    for `viz.plot_claim_effects`."""
    import pandas as pd

    rows = []
    for question, table in effects.items():
        for _, r in verdicts(table, question).iterrows():
            scale = float(frame[r["metric"]].std(ddof=1)) or 1.0
            low, high = sorted((r["sign"] * r["ci_low"] / scale, r["sign"] * r["ci_high"] / scale))
            rows.append({"question": question, "claim": r["claim"], "metric": r["metric"], "label": name(r["metric"]),
                         "difference": r["sign"] * r["diff"] / scale, "ci_low": low, "ci_high": high,
                         "excludes_zero": low > 0 or high < 0})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------- reruns, finding
def rerun_note(frame, sources: Sequence[str]) -> str:
    """Why a source's top-1 here can differ from the sweep's records (chapter 06): the re-created sets."""
    redone = frame[frame["recreated"].astype(bool)]
    if redone.empty:
        return "Every set is the one its sweep record was made with: its top-1 is the record's."
    means = frame.groupby("variant")[["q_top1", "record_top1"]].mean()
    gap = (redone["q_top1"] - redone["record_top1"]).abs()
    return (f"{len(redone)} of the {len(frame)} sets are not the sweep's own: the sweep keeps only some sets, "
            f"so these were re-synthesized from their records (`study.recreate_sets`). A re-synthesized set "
            f"is not bit-identical to the lost one (float sums differ between CPUs and thread counts), so "
            f"each is judged by the top-1 of its own rerun, {gap.mean():.1f} points from the record on average "
            f"(at most {gap.max():.1f}). Per source, this study's top-1 against the sweep records' that "
            f"chapter 06 reports: "
            + ", ".join(f"{v} {means.loc[v, 'q_top1']:.1f} against {means.loc[v, 'record_top1']:.1f}"
                        for v in sources) + ".")


def flat_sentence(frame, table, synthetic_table) -> str:
    """Where the near-flat patches are, and whether their share tracks accuracy (`correlations`
    tables of all sets and of the synthetic sets only)."""
    means = frame.groupby("variant")["content.flat_share"].mean()
    most = means.idxmax()
    r = {**table.set_index("metric").loc["content.flat_share"].to_dict()}
    s = {**synthetic_table.set_index("metric").loc["content.flat_share"].to_dict()}
    rises, falls = r["ci_low"] > 0, r["ci_high"] < 0
    others = means.drop(most)
    text = (f"{'Real images have' if most == 'real' else f'`{most}` sets have'} the most near-flat patches "
            f"({100 * means[most]:.2g}% of patches; the other sources at most {100 * others.max():.2g}%), and over "
            f"all {len(frame)} sets the share {'rises' if rises else 'falls' if falls else 'shows no trend'} with "
            f"top-1 (Spearman {interval(r, 'spearman')})")
    if most == "real" and rises:
        text += ", against the paper's reading of flat regions as semantic inadequacy"
    if not (s["ci_low"] > 0 or s["ci_high"] < 0):
        text += (f"; among synthetic sets alone {s['spearman']:+.2f} [{s['ci_low']:+.2f}, {s['ci_high']:+.2f}], "
                 f"so the trend mostly restates real against the rest")
    return text + "."


@renamed_keywords(bits="setting")
def finding(frame, correlation_tables: Mapping[str, object], effects: Mapping[str, object], *, setting: str,
            ablation=None, zoo_models: Sequence[str] = ()) -> str:
    """The finding box of chapter 07, as markdown: its scope (one teacher of the zoo's), the
    measurements that go with or against the paper's claims, and which data-free metric tracks
    accuracy among synthetic sets. `correlation_tables`: {"all sets": ..., "synthetic sets only": ...};
    `effects`: {question: switch_effects table}; `ablation`: the ablation's study frame."""
    models = sorted(frame["model"].unique())
    others = sorted(set(zoo_models) - set(models))
    scope = (f"One teacher, {', '.join(f'`{m}`' for m in models)}"
             + (f", of the zoo's {len(set(zoo_models))}" if others else "")
             + f": {sets_text(frame)} at {setting.upper()}"
             + (f" and the {len(ablation)} sets of the SARDFQ ablation" if ablation is not None else "")
             + (f". The other {len(others)} teachers may differ." if others else "."))
    all_sets, synthetic = correlation_tables["all sets"], correlation_tables["synthetic sets only"]
    lines = [scope, "", f"- {flat_sentence(frame, all_sets, synthetic)}"]
    lines += [f"- {claim_sentence(verdicts(table, question), question, brief=True)}"
              for question, table in effects.items()]
    best = best_data_free(synthetic)
    if best is not None:
        lines.append(f"- Among synthetic sets, the data-free metric that tracks {setting.upper()} top-1 best is "
                     f"{correlation_text(best)}.")
    return "\n".join(lines)


def against_paper(frame, correlation_tables: Mapping[str, object], effects: Mapping[str, object]) -> str:
    """One sentence: where the measurements go against the paper's claims (a takeaway)."""
    parts = []
    means = frame.groupby("variant")["content.flat_share"].mean()
    flat = correlation_tables["all sets"].set_index("metric").loc["content.flat_share"]
    if means.idxmax() == "real" and flat["ci_low"] > 0:
        parts.append("real images have the most near-flat patches and the share rises with accuracy")
    for question, table in effects.items():
        rows = verdicts(table, question)
        against = rows[rows["asked"] & (rows["verdict"] == "against")]
        if len(against):
            parts.append(f"{question} goes against {against['claim'].iloc[0]} on {_names(against)}")
    if not parts:
        return "No measurement here goes against the paper's mechanism claims."
    return "Against the paper, on this teacher: " + "; ".join(parts) + "."


@renamed_keywords(bits="setting")
def data_free_takeaway(table, setting: str) -> str:
    """One sentence on what a user without real images can read off synthetic sets (a
    `correlations` table of synthetic sets only)."""
    best, strongest = best_data_free(table), table.iloc[0]
    if best is None:
        return (f"No data-free metric's interval excludes zero among synthetic sets: without real images, "
                f"nothing measured here tells the better synthetic set at {setting.upper()}.")
    text = f"Without real images, {correlation_text(best)} tells the better synthetic set at {setting.upper()}"
    if strongest["metric"] != best["metric"] and strongest["needs_real_data"]:
        text += f"; the strongest predictor, {correlation_text(strongest)}, needs real images"
    return text + "."


def rerun_of(before, after, *, source: str | None = None) -> str:
    """The same configuration run twice (two `ExperimentResult`s, `before` from a committed record,
    None when there is none): their top-1 side by side, and, when they differ, what the records
    say can differ between the two runs (the machine, the date and so the code), never more."""
    if before is None:
        return ("No earlier record of this configuration is set beside this run"
                + (f" (none in `{source}`)." if source else " (`compare_dir` is None)."))
    b, a, n = 100 * before.quantized["top1"], 100 * after.quantized["top1"], int(after.quantized["n_images"])
    when = f" on {before.started[:10]}," if getattr(before, "started", "") else ""
    text = (f"Chapter 00 loads the committed record of this very configuration and seed (run `{before.run_id}`"
            + (f", in `{source}`" if source else "") + f"), made{when} on {before.device}: {b:.1f}% top-1. This run, "
            f"on {after.device}, gives {a:.1f}%")
    flipped = round(abs(a - b) * n / 100)
    if flipped == 0:
        return text + ", the same."
    differs = [] if before.device == after.device else ["the machine or its thread count (float sums run in another order)"]
    differs.append("any change to the code since the record was written")
    return (text + f": {a - b:+.1f} points, {flipped} of {n} test images. The configuration and seed are the same; "
            f"what can differ is {' and '.join(differs)}, enough to flip a few of a 4-bit model's predictions.")
