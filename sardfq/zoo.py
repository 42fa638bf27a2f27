"""The teacher-zoo study: where does SARDFQ help, and which property of a teacher decides it?

Two verbs:
- `teacher_properties(name)`: what might decide it, measured on the teacher alone: depth, width,
  heads, patch grid, parameters, FP accuracy, and how peaked its real class-token attention is
  against the GMM priors that APA pulls it towards (entropy, top-patch weight, peaks).
- `zoo_gains(results)`: per teacher and bit-width, paired differences with 95% CIs
  (`sardfq.compare`): SARDFQ - PSAQ-ViT, SARDFQ - noise, and the noise -> real gap (how much the
  calibration data matters at all on that teacher).
Together (`zoo_table`) they give one row per teacher and bit-width, which the results chapter
plots gain against property.
"""
from __future__ import annotations

import torch

from .errors import ConfigError

CONTRASTS = (("sardfq", "psaq"), ("sardfq", "noise"), ("real", "noise"))


@torch.no_grad()
def teacher_properties(name: str, *, root=None, n_images: int = 256, seed: int = 0,
                       device="cpu") -> dict:
    """Architecture, accuracy and attention shape of teacher `name` (a model name or folder).

    The attention statistics are measured on `n_images` held-out CIFAR-10 training images (never
    calibration images) in the blocks APA aligns, and on GMM priors drawn for the same blocks."""
    from . import attention_statistics, heldout_dataset, load_model, patch_attention
    from .losses import apa_blocks
    from .priors import K_APA, draw_priors

    model, info = load_model(name, device=device)
    blocks = apa_blocks(info.num_blocks)
    data = heldout_dataset(info, root, limit=n_images)
    images = torch.stack([data[i][0] for i in range(len(data))])
    real = patch_attention(model, images, blocks)
    priors = draw_priors("gmm", n_images, {b: info.num_heads[b] for b in blocks},
                         {b: info.patch_grid for b in blocks}, generator=torch.Generator().manual_seed(seed),
                         k_max=K_APA)
    real_stats = attention_statistics(torch.cat([real[b].flatten(0, 1) for b in blocks]), info.patch_grid)
    prior_stats = attention_statistics(torch.cat([priors[b].flatten(0, 1) for b in blocks]), info.patch_grid)
    width = getattr(model, "embed_dim", None)
    return {
        "model": name, "depth": info.num_blocks, "width": width, "heads": info.num_heads[0],
        "grid": info.patch_grid[0], "apa_blocks": len(blocks),
        "parameters": sum(p.numel() for p in model.parameters()),
        "real_entropy": real_stats["entropy"], "prior_entropy": prior_stats["entropy"],
        "uniform_entropy": real_stats["uniform_entropy"],
        # > 0: real attention is more peaked than the priors APA pulls it towards
        "entropy_gap": prior_stats["entropy"] - real_stats["entropy"],
        "real_max_weight": real_stats["max_weight"], "prior_max_weight": prior_stats["max_weight"],
        "real_peaks": real_stats["peaks"], "prior_peaks": prior_stats["peaks"],
        "attention_images": n_images,
    }


def zoo_gains(results, *, contrasts=CONTRASTS, models=None, bits=None, n_boot: int = 2000):
    """One row per (model, bits, contrast a - b) with the top-1 difference in points, its 95% CI,
    the seeds and images behind it: a pandas DataFrame. Pairs that lack records are left out."""
    import pandas as pd

    from .compare import compare
    from .records import load_results

    frame = load_results(results)
    if frame.empty:
        raise ConfigError(f"no experiment records in {results}")
    rows = []
    for (model, bit), group in frame.groupby(["model", "bits"], sort=False):
        if (models is not None and model not in models) or (bits is not None and bit not in bits):
            continue
        have = set(group["variant"])
        for a, b in contrasts:
            if a not in have or b not in have:
                continue
            c = compare(list(group["file"]), a, b, model=model, bits=bit, metrics=("top1",), n_boot=n_boot)[0]
            rows.append({"model": model, "bits": bit, "contrast": f"{a} - {b}", "difference": c.difference,
                         "ci_low": c.ci[0], "ci_high": c.ci[1], "excludes_zero": c.excludes_zero,
                         "seeds": len(c.seeds), "images": c.n_images, "verdict": c.verdict})
    return pd.DataFrame(rows, columns=["model", "bits", "contrast", "difference", "ci_low", "ci_high",
                                       "excludes_zero", "seeds", "images", "verdict"])


def zoo_table(gains, properties):
    """`zoo_gains` rows joined with `teacher_properties` dicts (one per model) on the model name."""
    import pandas as pd

    return gains.merge(pd.DataFrame(list(properties)), on="model", how="left")
