"""The prose of chapter 06, the results pages (06_results, 06_ablations, 06_paper, 06_zoo): their
findings, as sentences and compact tables built from the records' readings.

Every sentence the results chapter (06) states about a number or a direction is made here, from the
rows that `zoo`, `compare` and `headroom` compute, so that the prose cannot say what the outputs do
not show, and so that the rules behind it (what counts as "ahead", when a held-out choice is a
choice) are tested code rather than notebook cells. Each function returns Markdown text or a pandas
DataFrame; the chapter binds them into its pages with myst-nb `glue`.
"""
from __future__ import annotations

import json
from importlib import resources

from .attention_stats import teacher_properties
from .compare import ci_side, compare_per_image, interval, per_image_by_seed, select_records
from .zoo import rank_agreement

PROPERTIES = {"entropy_gap": "entropy gap", "noise_to_real_gap": "real − noise", "depth": "depth",
              "grid": "patch grid side"}
SIDE_WORDS = {"above": "ahead of", "below": "behind", "level": "level with"}


def shipped_test_top1(model: str) -> float:
    """A shipped teacher's test top-1 (%) on all 10,000 test images, from its card; NaN otherwise."""
    card = resources.files("sardfq") / "weights" / model / "config.json"
    return 100 * json.loads(card.read_text())["test_top1"] if card.is_file() else float("nan")


def teacher_table(teachers, *, n_images: int = 256, root=None):
    """One row per teacher: its shape, test top-1 and attention against the priors
    (`teacher_properties` on `n_images` held-out images), indexed by model."""
    import pandas as pd

    frame = pd.DataFrame([teacher_properties(t, n_images=n_images, root=root) for t in teachers]).set_index("model")
    frame["test_top1"] = [shipped_test_top1(t) for t in teachers]
    return frame


def property_ranks(table, *, contrast: str = "sardfq - psaq", properties=PROPERTIES):
    """Per bit-width, Spearman's rho between each teacher property and the contrast's difference
    over the teachers, with its exact permutation p-value (`rank_agreement`)."""
    import pandas as pd

    rows = []
    for bits, part in table[table["contrast"] == contrast].groupby("bits", sort=False):
        for prop in properties:
            if prop in part and part[prop].notna().all() and len(part) > 1:
                rows.append({"bits": bits, "property": prop, **rank_agreement(part[prop], part["difference"])})
    return pd.DataFrame(rows, columns=["bits", "property", "rho", "p_value", "teachers", "smallest_p"])


def property_sentences(table, ranks, *, contrast: str = "sardfq - psaq") -> str:
    """The entropy-gap hypothesis (the larger the gap, the lower SARDFQ - PSAQ-ViT: rho = -1) read
    against the ranks, each rho with its p-value, and the best-ranking property per bit-width."""
    lines = []
    for bits, part in table[table["contrast"] == contrast].groupby("bits", sort=False):
        ordered = part.sort_values("entropy_gap")
        lines.append(f"At {bits}, from the smallest entropy gap to the largest: " + ", ".join(
            f"`{r.model}` (gap {r.entropy_gap:.2f}: {r.difference:+.1f} [{r.ci_low:+.1f}, {r.ci_high:+.1f}])"
            for r in ordered.itertuples()) + ".")
        rows = ranks[ranks["bits"] == bits].set_index("property")
        if "entropy_gap" in rows.index:
            r = rows.loc["entropy_gap"]
            reading = ("exactly the predicted order" if r["rho"] <= -1 + 1e-9 else
                       "the predicted direction, not the exact order" if r["rho"] < 0 else "not the predicted direction")
            lines.append(f"The entropy-gap hypothesis predicts rho = −1; at {bits} it meets rho {r['rho']:+.2f} "
                         f"(exact p {r['p_value']:.2f}): {reading}.")
        if len(rows):
            best = rows["rho"].abs().idxmax()
            lines.append(f"The property whose order best matches the gains at {bits} is {PROPERTIES.get(best, best)} "
                         f"(rho {rows.loc[best, 'rho']:+.2f}, exact p {rows.loc[best, 'p_value']:.2f}).")
    if len(ranks):
        smallest, n = float(ranks["smallest_p"].min()), int(ranks["teachers"].max())
        significant = int((ranks["p_value"] < 0.05).sum())
        lines.append(f"With {n} teachers an exact p-value cannot go below 2 / {n}! = {smallest:.3f}; "
                     f"{significant} of the {len(ranks)} orderings above reach p < 0.05.")
    return "\n\n".join(lines)


def _said(row) -> str:
    word = ("adds" if row["ci_low"] > 0 else "costs") if row["excludes_zero"] else "changes nothing resolvable:"
    return f"{word} {interval(row)}"


def switch_sentences(ablation_gains, paper_alone: float | None = None) -> str:
    """What APA adds, in the full method and alone, per teacher of the zoo ablation, with CIs."""
    lines = []
    for model, part in ablation_gains.groupby("model", sort=False):
        row = part.set_index("contrast")
        if not {"sardfq - sardfq[msr+sl]", "sardfq[apa] - sardfq[none]"} <= set(row.index):
            continue
        paper = f" (paper, DeiT-S at W4A4: {paper_alone:+.1f} alone)" if paper_alone is not None else ""
        lines.append(f"On `{model}`, APA in the full method {_said(row.loc['sardfq - sardfq[msr+sl]'])}; "
                     f"APA alone {_said(row.loc['sardfq[apa] - sardfq[none]'])}{paper}.")
    return "\n\n".join(lines)


def cell_switch_sentences(gains) -> str:
    """What each SARDFQ switch adds in one headroom cell (rows of `headroom.ablation_gains`): in the
    full method and alone, and where the method with no switch stands against PSAQ-ViT."""
    names = {"apa": "APA", "msr": "MSR", "sl": "Soft labels"}
    row = gains.set_index("contrast")
    parts = []
    for key, name in names.items():
        others = "+".join(k for k in names if k != key)
        said = [f"{where} {_said(row.loc[c])}" for where, c in (("in the full method", f"sardfq - sardfq[{others}]"),
                                                                ("alone", f"sardfq[{key}] - sardfq[none]"))
                if c in row.index]
        if said:
            parts.append(f"{name} " + "; ".join(said) + ".")
    for c, what in (("sardfq[none] - psaq", "With no switch on"), ("sardfq - psaq", "With all three")):
        if c in row.index:
            parts.append(f"{what}, SARDFQ's images against PSAQ-ViT's: {interval(row.loc[c])}.")
    if len(gains):
        parts.append(f"({_seeds(gains['seeds'])} × {int(gains['images'].min()):,} test images, paired 95% CIs.)")
    return " ".join(parts)


def choice_sentences(choice) -> str:
    """Each teacher's held-out choice (`held_out_choice` rows): a choice where the margin is beyond
    the seed spread, else the default stays; its test score reported beside the default's."""
    lines = []
    for r in choice.to_dict("records"):
        clear = r["a choice"]
        lines.append(
            f"`{r['model']}`: held-out images rank **{r['chosen']}** first ({r['held-out top-1, chosen']:.1f} vs "
            f"{r['held-out top-1, default']:.1f} for the default), a margin of {r['held-out margin']:+.2f} points, "
            f"{r['held-out margin'] / r['held-out seed sd']:.2f} times the {r['held-out seed sd']:.2f}-point sd of a "
            "design's score between seeds: " + ("a choice, which the tuned runs below test." if clear else
                                 "not a choice; the default stays.")
            + f" Test top-1 (reported, not used to choose): {r['test top-1, chosen']:.1f} against "
              f"{r['test top-1, default']:.1f}.")
    return "\n\n".join(lines)


def tuned_comparison(tuned_folder, zoo_folder, gains, *, n_boot: int = 2000):
    """SARDFQ with a held-out choice against PSAQ-ViT (the records of `tuned_folder`), beside
    SARDFQ - PSAQ-ViT with the default design (`gains` of the zoo), and the chosen design against the
    default itself on the seeds both ran (the zoo's records in `zoo_folder`): one compact row per
    (teacher, bits)."""
    import pandas as pd

    from ..experiments.records import read_records
    from .compare import cell_differences

    tuned = cell_differences(tuned_folder, contrasts=[("sardfq", "psaq")], n_boot=n_boot)
    default = gains[gains["contrast"] == "sardfq - psaq"].set_index(["model", "bits"])
    tuned_records, zoo_records = ([r for r, _ in read_records(f)] for f in (tuned_folder, zoo_folder))
    rows = []
    for r in tuned.to_dict("records"):
        key = (r["model"], r["bits"])
        if key not in default.index:
            continue
        runs = {name: per_image_by_seed(select_records(records, "sardfq", model=r["model"], bits=r["bits"]), name=name)
                for name, records in (("chosen", tuned_records), ("default", zoo_records))}
        self_ = compare_per_image(runs["chosen"], runs["default"], names=("chosen", "default"), n_boot=n_boot)
        d = default.loc[key]
        rows.append({"model": r["model"], "bits": r["bits"],
                     "chosen - psaq": interval(r), "chosen side": ci_side(pd.DataFrame([r])).iloc[0],
                     "default - psaq": interval(d), "default side": ci_side(pd.DataFrame([d])).iloc[0],
                     "chosen - default": f"{self_.difference:+.1f} [{self_.ci[0]:+.1f}, {self_.ci[1]:+.1f}]",
                     "change": self_.difference,
                     "chosen vs default side": "above" if self_.ci[0] > 0 else "below" if self_.ci[1] < 0 else "level",
                     "seeds": int(r["seeds"]), "images": int(r["images"])})
    return pd.DataFrame(rows)


def tuned_sentences(comparison, designs) -> str:
    """One sentence per `tuned_comparison` row: where SARDFQ with the chosen design stands against
    PSAQ-ViT, where the default stood, and the chosen design against the default."""
    lines = []
    for r in comparison.to_dict("records"):
        design = designs.get(r["model"], "the chosen design")
        lines.append(
            f"`{r['model']}` {r['bits'].upper()}, with `{design}`: SARDFQ is {SIDE_WORDS[r['chosen side']]} PSAQ-ViT, "
            f"{r['chosen - psaq']} ({r['seeds']} seeds × {r['images']:,} images); with the default it was "
            f"{SIDE_WORDS[r['default side']]} it, {r['default - psaq']}. The chosen design against the default: "
            f"{r['chosen - default']}, " + {"above": "ahead of it.", "below": "behind it.",
                                            "level": "not distinguishable from it."}[r["chosen vs default side"]])
    return "\n\n".join(lines)


def zoo_finding(gains, comparison, ranks) -> str:
    """The zoo page's finding: SARDFQ against PSAQ-ViT with the default design over every cell, the
    tuned design's best case, the headroom the zoo leaves, and the best rank correlation."""
    rows = gains[gains["contrast"] == "sardfq - psaq"]
    side = ci_side(rows)
    counts = {s: int((side == s).sum()) for s in ("above", "below", "level")}
    room = gains[gains["contrast"] == "real - psaq"]
    parts = [f"With its default design, SARDFQ is ahead of PSAQ-ViT in {counts['above']} of the {len(rows)} teacher × "
             f"bit-width cells, behind in {counts['below']} and level in {counts['level']} "
             f"({int(rows['seeds'].min())} seeds × {int(rows['images'].min()):,} test images, paired 95% CIs)."]
    if len(room):
        parts.append(f"These cells leave little to close: real images beat PSAQ-ViT by {room['difference'].min():+.1f} "
                     f"to {room['difference'].max():+.1f} points.")
    if len(comparison):
        best = comparison.sort_values("change").iloc[-1]
        ahead = int((comparison["chosen side"] == "above").sum())
        parts.append(f"With the design held-out images chose, the largest change is `{best['model']}` "
                     f"{best['bits'].upper()}: from {best['default - psaq']} to {best['chosen - psaq']}; "
                     f"the tuned design is ahead of PSAQ-ViT in {ahead} of {len(comparison)} cells.")
    if len(ranks):
        top = ranks.iloc[ranks["rho"].abs().argmax()]
        parts.append(f"No teacher property orders the cells significantly: the best, {PROPERTIES.get(top['property'], top['property'])} "
                     f"at {top['bits']}, has rho {top['rho']:+.2f} (exact p {top['p_value']:.2f}, {int(top['teachers'])} teachers)."
                     if top["p_value"] >= 0.05 else
                     f"{PROPERTIES.get(top['property'], top['property'])} orders the cells at {top['bits']}: rho "
                     f"{top['rho']:+.2f} (exact p {top['p_value']:.2f}, {int(top['teachers'])} teachers).")
    return " ".join(parts)


ABLATION_WORDS = {"sardfq - sardfq[msr+sl]": "APA in the full method", "sardfq - sardfq[apa+sl]": "MSR in the full method",
                  "sardfq - sardfq[apa+msr]": "SL in the full method", "sardfq[apa] - sardfq[none]": "APA alone",
                  "sardfq[msr] - sardfq[none]": "MSR alone", "sardfq[sl] - sardfq[none]": "SL alone"}


def ablation_finding(ablation_gains, choice) -> str:
    """The ablation page's finding: per switch contrast, on how many teachers it adds, costs or
    changes nothing resolvable (95% CIs), and on which teachers held-out images make a choice."""
    parts = []
    if len(ablation_gains):
        side = ci_side(ablation_gains)
        n = ablation_gains["model"].nunique()
        phrases = []
        for contrast, words in ABLATION_WORDS.items():
            mask = ablation_gains["contrast"] == contrast
            if not mask.any():
                continue
            s = side[mask]
            phrases.append(f"{words} adds on {int((s == 'above').sum())}, costs on {int((s == 'below').sum())} and "
                           f"is level on {int((s == 'level').sum())}")
        parts.append(f"At W3A3 on {n} teachers ({int(ablation_gains['seeds'].min())} seeds × "
                     f"{int(ablation_gains['images'].min()):,} images, 95% CIs): " + "; ".join(phrases) + ".")
    if len(choice):
        chosen = choice[choice["a choice"]]
        parts.append(f"Held-out images choose a design other than the default on {len(chosen)} of {len(choice)} "
                     "teachers" + (": " + ", ".join(f"`{r['model']}` {r['chosen']}" for r in chosen.to_dict("records"))
                                   if len(chosen) else "") + "; elsewhere the default stays.")
    return " ".join(parts)


def seed_differences(frame, a: str, b: str, *, by: str = "bits", column: str = "variant"):
    """`a - b` in quantized top-1 (points) within each seed, for records without per-image outcomes
    (`load_results` rows): per `by` value, the mean over seeds with the lowest and highest seed's
    difference in `ci_low` / `ci_high` (a range over seeds, not a confidence interval) and
    `excludes_zero` where the whole range is on one side."""
    import pandas as pd

    wide = frame.pivot_table(index=[by, "seed"], columns=column, values="q_top1")
    rows = []
    for key, part in wide.groupby(level=0, sort=False):
        if a not in part or b not in part:
            continue
        d = (part[a] - part[b]).dropna()
        if len(d):
            rows.append({by: key, "contrast": f"{a} - {b}", "difference": float(d.mean()), "ci_low": float(d.min()),
                         "ci_high": float(d.max()), "excludes_zero": bool(d.min() > 0 or d.max() < 0), "seeds": len(d)})
    return pd.DataFrame(rows)


def paper_finding(main, paper) -> str:
    """The first-teacher page's finding: at W4A4, each source's top-1 as a share of FP beside the
    paper's mean over its seven ImageNet models, and SARDFQ - PSAQ-ViT within each seed."""
    w4 = main[main["bits"] == "w4a4"]
    if w4.empty:
        return "No W4A4 records of the first teacher."
    fp = w4["fp_top1"].mean()
    ours = w4.groupby("variant")["q_top1"].mean()
    shares = {m: 100 * ours[m] / fp for m in ("noise", "psaq", "sardfq", "real") if m in ours}
    theirs = {m: float((100 * paper[m] / paper["fp"]).mean()) for m in ("noise", "psaq", "sardfq") if m in paper}
    d = seed_differences(w4, "sardfq", "psaq")
    text = (f"On the first teacher at W4A4 ({w4['seed'].nunique()} seeds × {int(w4['eval_images'].min()):,} test "
            "images), the sources keep " + ", ".join(f"{m} {v:.1f}%" for m, v in shares.items())
            + " of full-precision top-1; the paper's seven ImageNet models keep "
            + ", ".join(f"{m} {v:.1f}%" for m, v in theirs.items()) + " on average.")
    if len(d):
        r = d.iloc[0]
        text += (f" SARDFQ − PSAQ-ViT within a seed: {r['difference']:+.1f} points on average, from {r['ci_low']:+.1f} "
                 f"to {r['ci_high']:+.1f} over the seeds; the paper has SARDFQ ahead on all "
                 f"{int((paper['sardfq'] > paper['psaq']).sum())} of its {len(paper)} models.")
    return text


def _seeds(seeds) -> str:
    """'3 seeds', or '1-3 seeds' where cells have different numbers of them."""
    low, high = int(seeds.min()), int(seeds.max())
    return f"{low if low == high else f'{low}-{high}'} seed{'' if high == 1 else 's'}"


def regime_finding(gains, zoo, scores, shares) -> str:
    """The results chapter's finding: SARDFQ against PSAQ-ViT where PSAQ-ViT leaves headroom (the
    cells of `headroom.cell_gains`), beside the zoo's cells, the share it closes, and how the two
    pre-registered hypotheses scored."""
    cells = gains[gains["contrast"] == "sardfq - psaq"]
    room = gains[gains["contrast"] == "real - psaq"]
    side = ci_side(cells)
    n = len(cells)
    parts = [f"Where PSAQ-ViT leaves real images {room['difference'].min():+.1f} to {room['difference'].max():+.1f} "
             f"points ahead ({n} teacher × setting cells on {cells['model'].nunique()} teachers, "
             f"{_seeds(cells['seeds'])} × {int(cells['images'].min()):,} test images, paired 95% CIs), "
             f"SARDFQ is ahead of PSAQ-ViT in {int((side == 'above').sum())}, behind in "
             f"{int((side == 'below').sum())} and level in {int((side == 'level').sum())}."]
    if len(cells):
        best = cells.loc[cells["difference"].idxmax()]
        parts.append(f"Its largest gain: `{best['model']}` {best['bits']}, {interval(best)}.")
    zoo_side = ci_side(zoo[zoo["contrast"] == "sardfq - psaq"])
    parts.append(f"In the zoo's {len(zoo_side)} cells, where the headroom is small, it is ahead in "
                 f"{int((zoo_side == 'above').sum())}.")
    if len(shares):
        parts.append(f"The share of the headroom it closes runs from {100 * shares['share'].min():.0f}% to "
                     f"{100 * shares['share'].max():.0f}% over the cells (the paper, ViT-B at W4A4: "
                     f"{100 * shares['paper_share'].iloc[0]:.0f}%).")
    harm = gains[gains["contrast"] == "real - noise"]
    if len(harm):
        not_ahead = ci_side(harm) != "above"
        parts.append(f"In {int(not_ahead.sum())} of the {len(harm)} cells real images are not ahead of Gaussian noise "
                     "(their interval holds zero or lies below it): there the headroom is PSAQ-ViT doing harm, not "
                     "real images doing good.")
    for r in scores.to_dict("records"):
        parts.append(f"The {r['hypothesis']} hypothesis, written down before these runs, gets {r['signs right']} of "
                     f"{r['signs right'] + r['signs wrong']} resolved signs right and rho {r['rho']:+.2f} "
                     f"(p {r['p_value']:.2f}).")
    return " ".join(parts)


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
