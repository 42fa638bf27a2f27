"""The prose of the why page (06_why) and of the advice that follows from the records (08): what a
step of each method costs, what the calibration sets' attention and the scored predictions show and
leave open, and which synthetic method the measurements favour. As in `results_prose`, every
sentence is made from rows the library computes, and the pages bind it with myst-nb `glue`.
"""
from __future__ import annotations

from .compare import ci_side
from .results_prose import iters_direction


def synthesis_cost(frame, *, a: str = "sardfq", b: str = "psaq") -> dict:
    """What a synthesis step of `a` costs against one of `b` in the records of `frame`
    (`load_results` rows with `synth_ms_per_iter`): the ratio of the two median milliseconds per
    iteration within each teacher and seed (the runs that share a calibration set count once), its
    median, lowest and highest, and how many pairs."""
    import numpy as np

    ms = frame.dropna(subset=["synth_ms_per_iter"]).groupby(["model", "seed", "variant"])["synth_ms_per_iter"].median()
    wide = ms.unstack("variant")
    pairs = wide[[a, b]].dropna() if {a, b} <= set(wide.columns) else wide.iloc[:0]
    ratios = (pairs[a] / pairs[b]).to_numpy(float)
    if not len(ratios):
        return {"ratio": float("nan"), "low": float("nan"), "high": float("nan"), "pairs": 0}
    return {"ratio": float(np.median(ratios)), "low": float(ratios.min()), "high": float(ratios.max()),
            "pairs": len(ratios), f"{a}_ms": float(pairs[a].median()), f"{b}_ms": float(pairs[b].median())}


def why_sentences(attention, scores, kept, cost, gaps) -> str:
    """The why, on one page: what the records show about why SARDFQ does not help on these teachers,
    what they leave open, and what would settle it.

    `attention`: attention statistics of the calibration sets and of APA's targets (index names
    including 'real', 'psaq', 'sardfq' and 'GMM prior'; columns entropy, peaks); `scores`: the
    `headroom.score` rows; `kept`: {set: share of real attention mass the 2-bit attention quantizer
    keeps when calibrated on it}; `cost`: `synthesis_cost`; `gaps`: `iters_gaps`."""
    a = attention
    known = []
    if {"real", "GMM prior"} <= set(a.index):
        known.append(f"Real images make this teacher's class token attend to {a.loc['real', 'peaks']:.1f} separate "
                     f"peaks per map; APA's targets have {a.loc['GMM prior', 'peaks']:.1f}: real attention here is "
                     "scattered, not the compact blobs APA asks for.")
    if {"real", "psaq", "sardfq", "GMM prior"} <= set(a.index):
        toward = abs(a.loc["sardfq", "entropy"] - a.loc["GMM prior", "entropy"]) < \
            abs(a.loc["sardfq", "entropy"] - a.loc["real", "entropy"])
        known.append(f"On SARDFQ's images the attention spreads to {a.loc['sardfq', 'entropy']:.2f} nats of entropy, "
                     f"{'towards' if toward else 'not towards'} its targets' {a.loc['GMM prior', 'entropy']:.2f} and "
                     f"away from real images' {a.loc['real', 'entropy']:.2f}; PSAQ-ViT's images stay at "
                     f"{a.loc['psaq', 'entropy']:.2f}.")
    if kept:
        order = sorted(kept, key=kept.get)
        known.append(f"Where the attention map is quantized to 2 bits, the quantizer calibrated on SARDFQ's images keeps "
                     f"{100 * kept.get('sardfq', float('nan')):.0f}% of real images' attention mass, against "
                     f"{100 * kept.get('psaq', float('nan')):.0f}% for PSAQ-ViT's and {100 * kept.get('real', float('nan')):.0f}% "
                     f"for real images' (least: {order[0]}).")
    if cost.get("pairs"):
        known.append(f"A SARDFQ synthesis step costs {cost['ratio']:.1f} times a PSAQ-ViT step on the same teacher and "
                     f"seed (median of {cost['pairs']} pairs, {cost['low']:.1f} to {cost['high']:.1f}).")
    if len(gaps) >= 2:
        long = gaps.index.max()
        known.append(f"A longer synthesis {iters_direction(gaps)}: at {long} iterations SARDFQ − PSAQ-ViT is "
                     f"{gaps.loc[long, 'test gap']:+.1f} points on test images and {gaps.loc[long, 'held-out gap']:+.1f} "
                     "on held-out ones (one seed).")
    entropy = scores[scores["hypothesis"] == "entropy gap"] if len(scores) else scores
    open_ = []
    if len(entropy):
        r = entropy.iloc[0]
        open_.append(f"Whether the mismatch between APA's blobs and this teacher's scattered attention is the cause: the "
                     f"explanation built on it got the direction right in {r['signs right']} of the "
                     f"{r['signs right'] + r['signs wrong']} cells whose interval excludes zero, but does not order the "
                     f"{r['cells']} cells (rank correlation {r['rho']:+.2f}, p {r['p_value']:.2f}).")
    open_.append("Whether any of this holds on ImageNet models at the paper's budget: every number here comes from "
                 "small CIFAR-10 teachers on a CPU.")
    settle = ["APA with targets taken from real attention (the paper's own `prior=real` ablation) in the cells "
              "where real images lead PSAQ-ViT (the results page), on the same seeds: if SARDFQ then catches up, the blob-shaped prior is the cause.",
              "The zoo at the paper's synthesis length on every seed, paired by seed and test image as the zoo's "
              "cells are.",
              "One ImageNet DeiT on a GPU at the paper's sizes, with real images beside it."]
    return "\n".join(["**What the records show.**", "", *[f"- {t}" for t in known], "",
                      "**What they leave open.**", "", *[f"- {t}" for t in open_], "",
                      "**What would settle it.**", "", *[f"- {t}" for t in settle]])


def why_finding(attention, cost, gaps, scores, *, model: str = "") -> str:
    """The why page's finding, from the same readings as `why_sentences`: real attention against
    APA's targets, where SARDFQ's images move theirs, the cost of a step, the longest synthesis, and
    how far the explanation built on the mismatch goes."""
    a = attention
    parts = []
    if {"real", "sardfq", "GMM prior"} <= set(a.index):
        toward = abs(a.loc["sardfq", "entropy"] - a.loc["GMM prior", "entropy"]) < \
            abs(a.loc["sardfq", "entropy"] - a.loc["real", "entropy"])
        parts.append(f"On {f'`{model}`' if model else 'this teacher'} real images make the class token attend to "
                     f"{a.loc['real', 'peaks']:.1f} scattered peaks per map, where APA's targets have "
                     f"{a.loc['GMM prior', 'peaks']:.1f} compact ones; SARDFQ's images move their attention "
                     f"{'towards those targets, away from real images' if toward else 'no closer to those targets than to real images'}"
                     f" ({a.loc['sardfq', 'entropy']:.2f} nats of entropy against the targets' "
                     f"{a.loc['GMM prior', 'entropy']:.2f} and real images' {a.loc['real', 'entropy']:.2f}).")
    if cost.get("pairs"):
        parts.append(f"A SARDFQ synthesis step costs {cost['ratio']:.1f} times a PSAQ-ViT step.")
    if len(gaps) >= 2:
        long = gaps.index.max()
        parts.append(f"At {long} synthesis iterations SARDFQ − PSAQ-ViT is {gaps.loc[long, 'test gap']:+.1f} points on "
                     f"test images and {gaps.loc[long, 'held-out gap']:+.1f} on held-out ones (one seed): a longer "
                     f"synthesis {iters_direction(gaps)}.")
    entropy = scores[scores["hypothesis"] == "entropy gap"] if len(scores) else scores
    if len(entropy):
        r = entropy.iloc[0]
        parts.append(f"That the mismatch causes SARDFQ's losses is not shown: the explanation built on it gets the "
                     f"direction right in {r['signs right']} of the {r['signs right'] + r['signs wrong']} cells whose "
                     f"interval excludes zero, but does not order the {r['cells']} cells (rank correlation "
                     f"{r['rho']:+.2f}).")
    return " ".join(parts)


def method_advice(zoo, cells, cost) -> dict:
    """Which synthetic calibration method the CIFAR-10 measurements favour, SARDFQ or PSAQ-ViT, and
    the sentence that says why: SARDFQ - PSAQ-ViT counted over the zoo's cells (`zoo_gains` rows) and
    the cells where real images lead (`headroom.cell_gains` rows), and the cost of a step
    (`synthesis_cost`). SARDFQ is favoured only where it is ahead somewhere and behind nowhere;
    otherwise PSAQ-ViT, which costs less. Returns {"method": "psaq" | "sardfq", "text": ...}."""
    counts = {}
    for name, rows in (("zoo", zoo), ("cells", cells)):
        side = ci_side(rows[rows["contrast"] == "sardfq - psaq"])
        counts[name] = {k: int((side == k).sum()) for k in ("above", "below", "level")} | {"n": len(side)}
    ahead = sum(c["above"] for c in counts.values())
    behind = sum(c["below"] for c in counts.values())
    method = "sardfq" if ahead and not behind else "psaq"
    z, c = counts["zoo"], counts["cells"]
    text = (f"On the CIFAR-10 measurements SARDFQ is ahead of PSAQ-ViT in {z['above']} of the zoo's {z['n']} cells and "
            f"behind in {z['below']}, and ahead in {c['above']} and behind in {c['below']} of the {c['n']} cells where "
            "real images lead PSAQ-ViT (paired 95% CIs)")
    if cost.get("pairs"):
        text += f", at {cost['ratio']:.1f} times PSAQ-ViT's cost per synthesis step"
    text += (". So this page calibrates with PSAQ-ViT (`method=\"psaq\"`); `method=\"sardfq\"` runs the paper's "
             "method." if method == "psaq" else
             ". So this page calibrates with SARDFQ (`method=\"sardfq\"`).")
    return {"method": method, "text": text, "counts": counts}


def mechanism_sentences(mechanism, accuracy=None, *, model: str = "") -> str:
    """What `diagnostics.attention_quantizer_table` shows: per calibration set, the share of real
    attention mass its attention quantizers keep on average over the blocks, ordered, beside each
    source's quantized top-1 where `accuracy` (source -> %) gives it."""
    kept = mechanism.groupby("set")["real mass kept"].mean().sort_values(ascending=False)
    low = mechanism.loc[mechanism.groupby("set")["real mass kept"].idxmin()].set_index("set")
    parts = [f"On `{model}` with the attention map at 2 bits, calibrating on each set keeps, on average over the "
             "blocks, this share of real images' attention mass: " + ", ".join(
                 f"{name} {100 * value:.0f}% (least in block {int(low.loc[name, 'block'])}: "
                 f"{100 * low.loc[name, 'real mass kept']:.0f}%)" for name, value in kept.items()) + "."]
    if accuracy:
        parts.append("Their quantized top-1 in that cell: " + ", ".join(
            f"{name} {accuracy[name]:.1f}%" for name in kept.index if name in accuracy) + ".")
    return " ".join(parts)
