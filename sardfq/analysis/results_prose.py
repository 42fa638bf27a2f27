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
        ahead = int((ci_side(room) == "above").sum())
        parts.append(f"These cells leave little to close: real images are at most {room['difference'].max():+.1f} "
                     f"points ahead of PSAQ-ViT, and ahead at all (interval above zero) in {ahead} of {len(room)}.")
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


def _count_phrase(sides, n: int) -> str:
    """'costs on 1 and is level on 2 of 3 teachers': only the verdicts that occur."""
    words = [(int((sides == "above").sum()), "adds"), (int((sides == "below").sum()), "costs"),
             (int((sides == "level").sum()), "is level")]
    said = [f"{word} on {count}" for count, word in words if count]
    return (" and ".join(said) if len(said) < 3 else f"{said[0]}, {said[1]} and {said[2]}") + f" of {n} teachers"


def ablation_finding(ablation_gains, choice, *, paper_alone: float | None = None, first_teacher=None) -> str:
    """The ablation page's finding, the one thing it shows: where APA (the paper's largest single
    gain, `paper_alone` points alone) stands on the teachers of the ablation sweep, alone and in the
    full method (95% CIs); what else resolves; the first teacher's own ablation where
    `first_teacher` (rows of `seed_differences`, APA alone against no switch) gives it; and where
    held-out images choose another design."""
    parts = []
    if len(ablation_gains):
        side = ci_side(ablation_gains)
        n = ablation_gains["model"].nunique()
        alone = ablation_gains["contrast"] == "sardfq[apa] - sardfq[none]"
        full = ablation_gains["contrast"] == "sardfq - sardfq[msr+sl]"
        paper = f", the paper's largest single gain ({paper_alone:+.1f} points alone on DeiT-S at W4A4)," \
            if paper_alone is not None else ""
        adds = int((side[alone | full] == "above").sum())
        settings = "/".join(dict.fromkeys(str(b).upper() for b in ablation_gains["bits"])) if "bits" in ablation_gains \
            else "its setting"
        parts.append(f"APA{paper} {'adds nothing resolvable' if not adds else f'adds in {adds} comparisons'} on "
                     f"these {n} teachers at {settings}: alone it {_count_phrase(side[alone], n)}; in the full method it "
                     f"{_count_phrase(side[full], n)} ({int(ablation_gains['seeds'].min())} seeds × "
                     f"{int(ablation_gains['images'].min()):,} test images, paired 95% CIs).")
        others = ablation_gains[~(alone | full) & (side != "level")]
        if len(others):
            parts.append("Elsewhere only " + "; ".join(
                f"{ABLATION_WORDS.get(r['contrast'], r['contrast'])} on `{r['model']}` "
                f"({'adds' if r['ci_low'] > 0 else 'costs'} {interval(r)})" for r in others.to_dict("records"))
                + " resolves.")
        else:
            parts.append("No other switch resolves on any of them.")
    if first_teacher is not None and len(first_teacher):
        r = first_teacher.iloc[0]
        images = f" on {int(r['images']):,} test images" if "images" in r else ""
        parts.append(f"The default teacher is not in this sweep: its own ablation was run first, at W4A4{images} "
                     f"without per-image outcomes (the first-teacher page), and has APA alone at "
                     f"{r['difference']:+.1f} points, from {r['ci_low']:+.1f} to {r['ci_high']:+.1f} over its "
                     f"{int(r['seeds'])} seeds.")
    if len(choice):
        chosen = choice[choice["a choice"]]
        parts.append(f"Held-out images choose a design other than the default on {len(chosen)} of {len(choice)} "
                     "teachers" + (": " + ", ".join(f"`{r['model']}` {r['chosen']}" for r in chosen.to_dict("records"))
                                   if len(chosen) else "") + ".")
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


def paper_finding(main, paper, gaps=None) -> str:
    """The first-teacher page's finding: at W4A4, each source's top-1 as a share of FP beside the
    paper's mean over its seven ImageNet models, SARDFQ - PSAQ-ViT within each seed, and, where
    `gaps` (`iters_gaps` rows) gives it, the same gap at the shortest and the longest synthesis."""
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
    if gaps is not None and len(gaps) >= 2:
        short, long = gaps.index.min(), gaps.index.max()
        text += (f" A longer synthesis {iters_direction(gaps)}: SARDFQ − PSAQ-ViT is {gaps.loc[short, 'test gap']:+.1f} "
                 f"points at {short} iterations and {gaps.loc[long, 'test gap']:+.1f} at {long} on test images, "
                 f"{gaps.loc[short, 'held-out gap']:+.1f} and {gaps.loc[long, 'held-out gap']:+.1f} on held-out ones "
                 "(one seed).")
    return text


def timing_note(bench, records, budget=None, *, method: str = "sardfq") -> str:
    """Why a synthesis step's time differs between pages: the benchmark's median wall time per step
    (`bench`, the record of benchmarks/bench_synthesis.py), the records' own per-step medians
    (`records`: `load_results` rows of runs made beside other jobs), and, where `budget` (the record
    of benchmarks/bench_budget.py) gives it, CPU seconds per step at the paper's budget."""
    rows = [r for r in bench["rows"] if r["method"] == method]
    parts = []
    if rows:
        r = rows[0]
        parts.append(f"The benchmark's {r['ms']:.0f} ms per {method} step on `{r['model']}` is the median wall time of a "
                     f"step at {bench.get('torch_threads', '?')} thread(s), timed on its own.")
    mine = records[(records["method"] == method)].dropna(subset=["synth_ms_per_iter"]) if len(records) else records
    if len(mine):
        ms = mine["synth_ms_per_iter"]
        parts.append(f"The records time their own steps: {len(mine)} {method} runs here took a median "
                     f"{ms.median():.0f} ms per step ({ms.min():.0f} to {ms.max():.0f}), each beside whatever else "
                     "the shared machine ran; a chapter's stage seconds (chapters 00 and 05) also hold the loading "
                     "and the first passes, so they divide into longer steps still.")
    if budget:
        one = [row for row in budget.get("rows", []) if row.get("threads") == 1]
        if one and "fast" in one[0]:
            cpu = one[0]["fast"]["synthesis"][1] / budget["settings"]["iters"]
            parts.append(f"`results/budget/` counts CPU seconds instead, the process's own time under any load: "
                         f"{cpu:.2f} s per step at the paper's budget on one thread.")
    parts.append("Compare ratios measured within one run, not times from different runs.")
    return " ".join(parts)


def _seeds(seeds) -> str:
    """'3 seeds', or '1-3 seeds' where cells have different numbers of them."""
    low, high = int(seeds.min()), int(seeds.max())
    return f"{low if low == high else f'{low}-{high}'} seed{'' if high == 1 else 's'}"


def setting_words(setting: str) -> str:
    """A bit setting in words: 'w4a4' -> 'W4A4'; 'w4a4-attn2' -> 'W4A4 with the attention map at 2
    bits' (the post-softmax map's bits where they differ from the activations')."""
    bits, _, attn = setting.partition("-attn")
    return bits.upper() + (f" with the attention map at {attn} bits" if attn else "")


def regime_finding(gains, zoo, scores, shares=None) -> str:
    """The results chapter's finding, in words a reader meets first (the intro shows it too): SARDFQ
    against PSAQ-ViT in the cells where real images leave PSAQ-ViT far behind (rows of
    `headroom.cell_gains`), its best cell said as what its interval shows, the cells where it falls
    below Gaussian noise, the zoo's cells, and whether the two explanations written down before the
    runs (`headroom.score` rows) predicted them. `shares` is accepted for the callers that pass it;
    the share closed is the page's table, not the finding's."""
    cells = gains[gains["contrast"] == "sardfq - psaq"]
    room = gains[gains["contrast"] == "real - psaq"]
    side = ci_side(cells)
    n = len(cells)
    parts = [f"In {n} cells (a teacher at one bit setting; {cells['model'].nunique()} teachers) where real calibration "
             f"images beat PSAQ-ViT's synthetic ones by {room['difference'].min():+.1f} to "
             f"{room['difference'].max():+.1f} top-1 points ({_seeds(cells['seeds'])} × "
             f"{int(cells['images'].min()):,} test images, paired 95% CIs), SARDFQ is ahead of PSAQ-ViT in "
             f"{int((side == 'above').sum())}, behind in {int((side == 'below').sum())} and level (the interval "
             f"holds zero) in {int((side == 'level').sum())}."]
    if n:
        best = cells.loc[cells["difference"].idxmax()]
        word = {"above": "ahead", "below": "behind", "level": "level"}[ci_side(cells.loc[[best.name]]).iloc[0]]
        parts.append(f"Its best cell, `{best['model']}` at {setting_words(best['bits'])}, is {interval(best)}: {word}.")
    noise = gains[gains["contrast"] == "sardfq - noise"]
    if len(noise):
        below = noise[ci_side(noise) == "below"]
        parts.append(f"It is below plain Gaussian-noise calibration in {len(below)} of the {len(noise)} cells"
                     + (f", by up to {-below['difference'].min():.1f} points." if len(below) else "."))
    zoo_rows = zoo[zoo["contrast"] == "sardfq - psaq"]
    zoo_room = zoo[zoo["contrast"] == "real - psaq"]
    zoo_side = ci_side(zoo_rows)
    parts.append(f"In the zoo's {len(zoo_rows)} cells" + (f", where real images lead PSAQ-ViT by at most "
                                                        f"{zoo_room['difference'].max():+.1f} points" if len(zoo_room) else "")
                 + f", it is ahead in {int((zoo_side == 'above').sum())} and behind in {int((zoo_side == 'below').sum())}.")
    if len(scores):
        rhos = " and ".join(f"{r['rho']:+.2f}" for r in scores.to_dict("records"))
        ordering = int((scores["p_value"] < 0.05).sum())
        said = ("Neither explanation" if ordering == 0 else f"{ordering} of the {len(scores)} explanations")
        parts.append(f"{said} written down before these runs (that SARDFQ gains more where real images lead more; "
                     f"that it gains less where the teacher's real attention is more peaked than APA's targets) "
                     + ("orders the cells" if ordering == 0 else "order the cells at p < 0.05")
                     + f": rank correlations {rhos}, p ≥ {scores['p_value'].min():.2f}.")
    return " ".join(parts)


def cells_table(gains, *, contrasts=("real - psaq", "sardfq - psaq", "sardfq - noise", "real - noise"),
                labels=None):
    """The cells of `headroom.cell_gains` as the finding reads them: one row per teacher and setting,
    each contrast as 'difference [95% CI]' in top-1 points, and the seeds behind the row."""
    import pandas as pd

    rows = []
    for (model, setting), part in gains.groupby(["model", "bits"], sort=False):
        by = part.set_index("contrast")
        row = {"teacher": (labels or {}).get(model, model), "setting": setting}
        row.update({c.replace(" - ", " − "): interval(by.loc[c]) if c in by.index else "n/a" for c in contrasts})
        row["seeds"] = int(part["seeds"].min())
        rows.append(row)
    return pd.DataFrame(rows).set_index(["teacher", "setting"])


def noise_sentence(gains, *, labels=None) -> str:
    """Where SARDFQ falls below Gaussian-noise calibration in the cells of `headroom.cell_gains`
    (SARDFQ - noise below zero), each with its interval, and in how many cells real images are not
    ahead of noise either: there the gap to real images is PSAQ-ViT's images doing harm."""
    name = lambda m: (labels or {}).get(m, m)  # noqa: E731
    noise = gains[gains["contrast"] == "sardfq - noise"]
    below = noise[ci_side(noise) == "below"].sort_values("difference")
    parts = [f"SARDFQ is below Gaussian noise in {len(below)} of the {len(noise)} cells"
             + (": " + ", ".join(f"`{name(r['model'])}` {setting_words(r['bits'])} {interval(r)}"
                                 for r in below.to_dict("records")) if len(below) else "") + "."]
    harm = gains[gains["contrast"] == "real - noise"]
    if len(harm):
        not_ahead = int((ci_side(harm) != "above").sum())
        parts.append(f"In {not_ahead} of the {len(harm)} cells real images are not ahead of noise either (real − noise "
                     "holds zero or lies below it): there the gap to real images is PSAQ-ViT's images doing harm, not "
                     "real images doing good.")
    return " ".join(parts)


def ablation_seed_note(ablation, cells) -> str:
    """The full method against PSAQ-ViT in the ablation (rows of `headroom.ablation_gains`) beside the
    same contrast in its cell (rows of `headroom.cell_gains`), each with the seeds behind it: the
    sweeps ran different seeds, so the two intervals differ."""
    mine = ablation[ablation["contrast"] == "sardfq - psaq"]
    if not len(mine):
        return ""
    r = mine.iloc[0]
    cell = cells[(cells["contrast"] == "sardfq - psaq") & (cells["model"] == r["model"]) & (cells["bits"] == r["bits"])]
    text = (f"All three switches on against PSAQ-ViT is {interval(r)} here, on the {int(r['seeds'])} seeds the ablation "
            "sweep has for it")
    if len(cell):
        c = cell.iloc[0]
        same = int(c["seeds"]) == int(r["seeds"])
        text += (f", and {interval(c)} in the cell's row above, on {int(c['seeds'])} seeds: "
                 + ("the same runs" if same else
                    f"the same comparison on {'more' if int(c['seeds']) > int(r['seeds']) else 'fewer'} seeds, "
                    "hence the other interval"))
    return text + "."


def iters_direction(gaps) -> str:
    """What the longest synthesis of `iters_gaps` does to SARDFQ - PSAQ-ViT against the shortest, on
    both splits: 'does not close the gap' (lower on both), 'narrows the gap' (higher on both) or
    'moves the gap in opposite directions on the two splits'."""
    short, long = gaps.index.min(), gaps.index.max()
    change = [gaps.loc[long, f"{split} gap"] - gaps.loc[short, f"{split} gap"] for split in ("test", "held-out")]
    if all(c < 0 for c in change):
        return "does not close the gap"
    if all(c > 0 for c in change):
        return "narrows the gap"
    return "moves the gap in opposite directions on the two splits"


def iters_gaps(iters, *, a: str = "sardfq", b: str = "psaq"):
    """From records of one seed at several synthesis lengths (`teacher_iters`): per length, `a` and
    `b`'s test and held-out top-1 and `a - b` on each split. A DataFrame indexed by iterations."""
    import pandas as pd

    rows = []
    for length, part in iters[iters["method"].isin((a, b))].groupby("synth_iters"):
        by = part.set_index("method")
        if a in by.index and b in by.index:
            rows.append({"iterations": int(length),
                         **{f"{m} {split}": float(by.loc[m, col]) for m in (a, b)
                            for split, col in (("test", "q_top1"), ("held-out", "heldout_q_top1"))},
                         "test gap": float(by.loc[a, "q_top1"] - by.loc[b, "q_top1"]),
                         "held-out gap": float(by.loc[a, "heldout_q_top1"] - by.loc[b, "heldout_q_top1"])})
    return pd.DataFrame(rows).set_index("iterations")


def iters_sentence(gaps, *, seeds: int = 1) -> str:
    """What a longer synthesis does to SARDFQ - PSAQ-ViT (`iters_gaps` rows): each method's top-1
    at the shortest and longest run, and whether the gap closes or widens on both splits."""
    if len(gaps) < 2:
        return "Fewer than two synthesis lengths were run."
    short, long = gaps.index.min(), gaps.index.max()
    s, l = gaps.loc[short], gaps.loc[long]
    widens = [split for split in ("test", "held-out") if l[f"{split} gap"] < min(s[f"{split} gap"], 0)]
    closes = [split for split in ("test", "held-out") if l[f"{split} gap"] > s[f"{split} gap"]]
    text = (f"From {short} to {long} synthesis iterations, PSAQ-ViT's test top-1 rises from {s['psaq test']:.1f} to "
            f"{l['psaq test']:.1f} (held-out {s['psaq held-out']:.1f} to {l['psaq held-out']:.1f}) and SARDFQ's from "
            f"{s['sardfq test']:.1f} to {l['sardfq test']:.1f} (held-out {s['sardfq held-out']:.1f} to "
            f"{l['sardfq held-out']:.1f}): SARDFQ − PSAQ-ViT goes from {s['test gap']:+.1f} to {l['test gap']:+.1f} "
            f"points on the test images and from {s['held-out gap']:+.1f} to {l['held-out gap']:+.1f} on the "
            f"held-out ones ({seeds} seed{'s' if seeds > 1 else ''}, no interval).")
    if len(widens) == 2:
        text += (f" At {long} iterations PSAQ-ViT has gained more than SARDFQ on both splits: a shorter synthesis is "
                 "not what holds SARDFQ back here.")
    elif closes == ["test", "held-out"]:
        text += " The longer synthesis narrows the gap on both splits."
    else:
        text += " The two splits do not agree on the direction."
    return text
