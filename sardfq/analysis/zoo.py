"""The teacher-zoo study: where does SARDFQ help, and which property of a teacher decides it?

Two verbs:
- `teacher_properties(name)` (measured in `sardfq.analysis.attention_stats`): what might decide it,
  measured on the teacher alone: depth, width, heads, patch grid, parameters, FP accuracy, and how
  peaked its real class-token attention is against the GMM priors that APA pulls it towards.
- `zoo_gains(results)`: per teacher and bit-width, paired differences with 95% CIs
  (`sardfq.analysis.compare.cell_differences`): SARDFQ - PSAQ-ViT, SARDFQ - noise, and the noise ->
  real gap (how much the calibration data matters at all on that teacher).
Together (`zoo_table`) they give one row per teacher and bit-width, which the results chapter
plots gain against property. Three readings of those rows:
- `ci_side` (from `compare`): where each interval lies (above zero, below, or holding it), the one
  reading of a CI;
- `claim_verdicts`: the paper's orderings (noise < PSAQ-ViT < SARDFQ < real), each as holds /
  reversed / not resolved by its 95% CI;
- `rank_agreement`: do the teachers' gains follow the order of a property (Spearman's rho, with
  the exact permutation p-value, which cannot go below 2 / n! for n teachers);
- `held_out_choice`: the design each teacher's held-out images choose, with its test accuracy.
`headline_report` is the README's headline block (`sardfq zoo`).
"""
from __future__ import annotations

import math

from ..compat import renamed_keywords
from ..errors import ConfigError
from .stats import permutation_p_value, smallest_p_value, spearman
from .attention_stats import teacher_properties  # noqa: F401  (the zoo's first verb; measured there)
from .compare import cell_differences, ci_side

CONTRASTS = (("sardfq", "psaq"), ("sardfq", "noise"), ("real", "noise"))
# SMI (sparse model inversion) beside PSAQ-ViT and SARDFQ: columns of the tables where its records exist.
SMI_CONTRASTS = (("smi", "psaq"), ("sardfq", "smi"))
# The paper's claims as (a, b): "a scores above b" (its Table 1 order; real images are the ceiling).
PAPER_CLAIMS = (("psaq", "noise"), ("sardfq", "noise"), ("sardfq", "psaq"), ("real", "sardfq"))
# What each SARDFQ switch adds in the component ablation: to the full method (leave one out) and to
# nothing (alone).
ABLATION_CONTRASTS = (("sardfq", "sardfq[msr+sl]"), ("sardfq", "sardfq[apa+sl]"), ("sardfq", "sardfq[apa+msr]"),
                      ("sardfq[apa]", "sardfq[none]"), ("sardfq[msr]", "sardfq[none]"), ("sardfq[sl]", "sardfq[none]"))




@renamed_keywords(bits="settings")
def zoo_gains(results, *, contrasts=CONTRASTS + SMI_CONTRASTS, models=None, settings=None, n_boot: int = 2000):
    """`sardfq.analysis.compare.cell_differences` with the zoo's contrasts by default: per teacher
    and bit setting, SARDFQ - PSAQ-ViT, SARDFQ - noise and real - noise with 95% CIs, and SMI -
    PSAQ-ViT and SARDFQ - SMI where SMI's records exist (`settings`, old name `bits`: only these)."""
    return cell_differences(results, contrasts=contrasts, models=models, settings=settings, n_boot=n_boot)


def zoo_table(gains, properties):
    """`zoo_gains` rows joined with `teacher_properties` dicts (one per model) on the model name."""
    import pandas as pd

    return gains.merge(pd.DataFrame(list(properties)), on="model", how="left")





def claim_verdicts(gains):
    """`zoo_gains` rows of `PAPER_CLAIMS` contrasts as one row per claim and one column per
    (teacher, bits): 'holds', 'reversed' (the CI excludes zero on the other side) or 'not resolved',
    each with the difference and its CI in points."""
    words = ci_side(gains).map({"above": "holds", "below": "reversed", "level": "not resolved"})
    cells = [f"{word}: {r.difference:+.1f} [{r.ci_low:+.1f}, {r.ci_high:+.1f}]" for word, r in zip(words, gains.itertuples())]
    rows = gains.assign(claim=gains["contrast"].map(lambda c: " > ".join(c.split(" - "))), cell=cells)
    table = rows.pivot_table(index="claim", columns=["model", "bits"], values="cell", aggfunc="first", sort=False)
    order = [" > ".join(c) for c in PAPER_CLAIMS if " > ".join(c) in table.index]
    return table.reindex(order + [c for c in table.index if c not in order])


def rank_agreement(values, gains) -> dict:
    """Spearman's rho between a teacher property and a gain (two sequences, one entry per teacher)
    with its two-sided permutation p-value (`stats.permutation_p_value`: exact for up to 8
    teachers): how surprising the rank agreement would be if the property had nothing to do with
    the gain. Ties are ranked by their mean rank."""
    x, y = list(values), list(gains)
    if len(x) != len(y) or len(x) < 2:
        raise ConfigError(f"rank_agreement needs two equal-length sequences of 2+ teachers, got {len(x)} and {len(y)}")
    rho = spearman(x, y)
    return {"rho": 0.0 if math.isnan(rho) else rho, "p_value": permutation_p_value(x, y), "teachers": len(x),
            "smallest_p": smallest_p_value(len(x))}


def held_out_choice(frame, *, design: str = "design", split: str = "heldout_q_top1", report: str = "q_top1"):
    """Per teacher (and bit-width), the design with the best mean held-out top-1 over seeds, and
    its test top-1 beside the default's: records with `heldout_limit` set (`load_results`). The test
    column is reported, never used to choose. `held-out margin` (chosen - default) is to be read
    against `held-out seed sd`, the mean over designs of the held-out score's sd over seeds: a
    margin inside it is a choice the held-out images cannot make (`a choice` is False), and the
    default stays."""
    import pandas as pd

    if split not in frame or frame[split].isna().all():
        raise ConfigError(f"no held-out scores ({split}) in these records: sweep with heldout_limit > 0")
    rows = []
    for (model, bits), group in frame.groupby(["model", "bits"], sort=False):
        means = group.groupby(design)[[split, report]].mean()
        spread = group.groupby(design)[split].std()
        best = means[split].idxmax()
        # the choice's margin, beside how much one design's score moves between seeds
        margin, seed_sd = means.loc[best, split] - means[split].get("default", float("nan")), float(spread.mean())
        rows.append({"model": model, "bits": bits, "chosen": best,
                     "held-out top-1, chosen": means.loc[best, split],
                     "held-out top-1, default": means[split].get("default"),
                     "held-out margin": margin, "held-out seed sd": seed_sd, "a choice": bool(margin > seed_sd),
                     "test top-1, chosen": means.loc[best, report], "test top-1, default": means[report].get("default"),
                     "designs": len(means), "seeds": group["seed"].nunique()})
    return pd.DataFrame(rows)


def zoo_summary(gains, *, contrasts=CONTRASTS, optional=SMI_CONTRASTS):
    """`zoo_gains` rows as the headline table: one row per (teacher, bits), one column per contrast
    holding 'difference [95% CI]' in top-1 points ('n/a' where a cell lacks its records; an
    `optional` contrast only where some cell has it, after the first), and the seeds x images
    behind the row."""
    import pandas as pd

    present = set(gains["contrast"])
    extra = tuple(c for c in optional if f"{c[0]} - {c[1]}" in present)
    contrasts = contrasts[:1] + extra + contrasts[1:]
    rows = []
    for (model, bits), group in gains.groupby(["model", "bits"], sort=False):
        by = group.set_index("contrast")
        row = {"teacher": model, "bits": bits}
        for a, b in contrasts:
            r = by.loc[f"{a} - {b}"] if f"{a} - {b}" in by.index else None
            row[f"{a} − {b}"] = "n/a" if r is None else f"{r['difference']:+.1f} [{r['ci_low']:+.1f}, {r['ci_high']:+.1f}]"
        row["seeds × images"] = f"{int(group['seeds'].min())} × {int(group['images'].min()):,}"
        rows.append(row)
    return pd.DataFrame(rows).set_index(["teacher", "bits"])


def summary_markdown(summary) -> str:
    """A `zoo_summary` table as a Markdown table (the README's headline)."""
    frame = summary.reset_index()
    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(f"`{v}`" if c == "teacher" else str(v) for c, v in row.items()) + " |"
              for row in frame.to_dict("records")]
    return "\n".join(lines)


def headline(gains) -> str:
    """One sentence per contrast of `zoo_gains` rows: in how many (teacher, bits) cells its 95% CI
    is above zero, below zero, or holds zero, naming the teachers: the README's headline."""
    parts = []
    for contrast, rows in gains.assign(side=ci_side(gains)).groupby("contrast", sort=False):
        a, b = contrast.split(" - ")
        words = []
        for side, phrase in (("above", f"ahead of {b}"), ("below", "behind it"), ("level", "not distinguishable")):
            cells = rows[rows["side"] == side]
            named = ", ".join(f"`{r.model}` {r.bits}" for r in cells.itertuples())
            words.append(f"{phrase} in {len(cells)}" + (f" ({named})" if len(cells) else ""))
        parts.append(f"**{a}** is {', '.join(words)} of {len(rows)} teacher × bit-width cells.")
    return "\n".join(parts)


def headline_report(gains) -> str:
    """The README's headline block from `zoo_gains` rows: the `zoo_summary` table, then the
    `headline` sentences on SARDFQ - PSAQ-ViT and, where SMI's records exist, SMI - PSAQ-ViT (what
    `sardfq zoo` prints)."""
    return (summary_markdown(zoo_summary(gains)) + "\n\n"
            + headline(gains[gains["contrast"].isin(["sardfq - psaq", "smi - psaq"])]))
