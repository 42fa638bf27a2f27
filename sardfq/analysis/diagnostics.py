"""Is a calibration set any good? Measure semantic distortion and inadequacy directly.

`inspect_calibration(model, info, images)` compares a calibration set with a reference set (by
default real training images drawn the way the `real` calibration method draws them, with a seed of
their own, never the held-out split) and returns an `InspectReport` of four metric groups:

- `attention`: per APA block, the class-token attention's entropy, top-patch mass and number of
  peaks on the set, and the 1-D Wasserstein distance of their per-image distributions to the
  reference's;
- `features` (semantic distortion): per block, the Frechet distance between the set's and the
  reference's class-token features, the paper's own measure (mean cosine similarity of the set's
  features to the reference's), the teacher's predicted-class histogram and confidence;
- `content` (semantic inadequacy): per-image diversity of patch tokens, the share of near-flat
  patches, and the diversity of class-token features across the set;
- `calibration` (what calibration sees): every activation quantizer's clipping range chosen on the
  set against the one chosen on the reference, and each block's output error on reference images
  after calibrating on the set (no reconstruction), with the FP-vs-quantized KL and agreement.

Every metric is a dict with `needs_real_data` (False: a truly data-free user can compute it: the
teacher's confidence, class histogram, diversity, flat share and the set's own attention statistics),
`value` (one number, what `study` correlates with accuracy) and, where it has one, `per_block`.

`sardfq.analysis.study` runs the inspector over the calibration sets behind the experiment records
and relates each metric to the quantized accuracy of the same set.
"""
from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..attention import attention_blocks, record_attention
from ..compat import renamed_keywords
from ..calibset import CalibrationSet
from ..data import denormalize, real_images
from ..errors import CheckpointError, ConfigError
from ..io import to_plain
from ..models import ModelInfo
from ..quant.api import quantize
from ..quant.config import QuantConfig
from ..quant.quantizers import Log2Quantizer, UniformQuantizer, quantizers
from ..quant.reconstruction import reconstruction_units, unit_outputs
from ..synthesis.losses import apa_blocks
from .attention_stats import attention_statistics

log = logging.getLogger(__name__)

REFERENCE_SEED = 1000  # [choice] seed of the reference draw: one no sweep uses for its `real` sets
N_REFERENCE = 128  # [choice] reference images: enough for stable distances, a second on the teacher
FLAT_STD = 0.02  # [choice] a patch is near-flat when every channel's pixel std is below this
#                  ([0, 1] pixel units; about 5 grey levels of 255)
ATTENTION_STATS = ("entropy", "max_weight", "peaks")
GROUPS = ("attention", "features", "content", "calibration")


@dataclass
class InspectReport:
    """What `inspect_calibration` measured; `to_dict()` is the JSON `sardfq inspect --json` prints."""

    model: str
    set: dict  # the calibration set: path, n, method, label, seed
    reference: dict  # source ("real" or a path), n, seed
    groups: dict[str, dict[str, dict]]  # group -> metric -> {"needs_real_data", "value", ...}
    settings: dict = field(default_factory=dict)  # bits, flat threshold, covariance estimator
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {"kind": "inspect", "model": self.model, "set": dict(self.set),
                "reference": dict(self.reference), "settings": dict(self.settings),
                **{g: self.groups[g] for g in GROUPS}, "seconds": self.seconds}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "InspectReport":
        return cls(model=d["model"], set=d["set"], reference=d["reference"],
                   groups={g: d[g] for g in GROUPS}, settings=d.get("settings", {}),
                   seconds=d.get("seconds", 0.0))

    def values(self) -> dict[str, float]:
        """Each metric's one-number summary as `group.metric` -> value."""
        return {f"{g}.{name}": m["value"] for g in GROUPS for name, m in self.groups[g].items()
                if isinstance(m.get("value"), (int, float))}

    def table(self):
        """A pandas DataFrame: group, metric, value, needs_real_data, one row per metric."""
        import pandas as pd

        rows = [{"group": g, "metric": name, "value": m["value"], "needs_real_data": m["needs_real_data"]}
                for g in GROUPS for name, m in self.groups[g].items()]
        return pd.DataFrame(rows)

    def lines(self) -> list[str]:
        """The report as text (what `sardfq inspect` prints without --json)."""
        c, r = self.set, self.reference
        out = [f"{self.model}: {c.get('n')} images from {c.get('path') or 'a tensor'} "
               f"({c.get('label') or c.get('method') or 'unknown source'}) against {r['n']} reference "
               f"images ({r['source']}), {self.seconds:.1f} s",
               f"{'group':<12}{'metric':<28}{'value':>12}  needs real data"]
        for g in GROUPS:
            for name, m in self.groups[g].items():
                value = m["value"] if m["value"] is not None else m.get("counts")
                text = f"{value:>12.4g}" if isinstance(value, (int, float)) else f"{str(value):>12}"
                out.append(f"{g:<12}{name:<28}{text}  {'yes' if m['needs_real_data'] else 'no'}")
        return out


def _metric(value, needs_real_data: bool, per_block: Mapping | None = None, **extra) -> dict:
    out = {"needs_real_data": bool(needs_real_data), "value": to_plain(value)}
    if per_block is not None:
        out["per_block"] = {str(k): to_plain(v) for k, v in per_block.items()}
    out.update({k: to_plain(v) for k, v in extra.items()})
    return out


# --------------------------------------------------------------------------- statistics
def shrunk_covariance(x: Tensor) -> tuple[Tensor, float]:
    """Ledoit-Wolf covariance of samples `x` (n, d) and its shrinkage intensity in [0, 1].

    The sample covariance of 32 images in 192 dimensions has rank 31 at most: its matrix square
    roots, which the Frechet distance takes, are unstable and its bias depends on n. Shrinking
    towards a scaled identity by the intensity that minimizes the expected squared error (Ledoit &
    Wolf, 2004) gives a full-rank estimate that keeps the correlations a diagonal one would drop.
    """
    x = x.double()
    n, d = x.shape
    xc = x - x.mean(0)
    sample = xc.T @ xc / n
    mu = float(torch.trace(sample)) / d
    eye = torch.eye(d, dtype=x.dtype)
    delta = float((sample - mu * eye).square().sum()) / d
    beta = float(xc.square().sum(1).square().sum() / n - sample.square().sum()) / (n * d)
    shrink = 1.0 if delta <= 0 else min(max(beta / delta, 0.0), 1.0)
    return shrink * mu * eye + (1 - shrink) * sample, shrink


def _sqrt_psd(m: Tensor) -> Tensor:
    w, v = torch.linalg.eigh(m)
    return (v * w.clamp(min=0).sqrt()) @ v.T


def frechet_distance(a: Tensor, b: Tensor) -> float:
    """Frechet distance between Gaussians fitted to feature samples `a` (n, d) and `b` (m, d), with
    Ledoit-Wolf covariances: ||mu_a - mu_b||^2 + tr(Sa + Sb - 2 (Sa^1/2 Sb Sa^1/2)^1/2)."""
    sa, _ = shrunk_covariance(a)
    sb, _ = shrunk_covariance(b)
    root = _sqrt_psd(sa)
    cross = torch.linalg.eigvalsh(root @ sb @ root).clamp(min=0).sqrt().sum()
    mean = (a.double().mean(0) - b.double().mean(0)).square().sum()
    return float(mean + torch.trace(sa) + torch.trace(sb) - 2 * cross)


def wasserstein_1d(a, b) -> float:
    """1-D Wasserstein (earth mover's) distance between two samples: the area between their CDFs."""
    a, b = np.sort(np.asarray(a, float)), np.sort(np.asarray(b, float))
    points = np.sort(np.concatenate([a, b]))
    cdf_a = np.searchsorted(a, points[:-1], side="right") / len(a)
    cdf_b = np.searchsorted(b, points[:-1], side="right") / len(b)
    return float(np.sum(np.abs(cdf_a - cdf_b) * np.diff(points)))


def mean_pairwise_cosine_distance(x: Tensor) -> Tensor:
    """Mean cosine distance over the distinct pairs of the rows of `x` (..., k, d) -> (...)."""
    x = F.normalize(x.double(), dim=-1)
    k = x.shape[-2]
    gram = x @ x.transpose(-1, -2)
    return 1 - (gram.sum((-1, -2)) - k) / (k * (k - 1))


def flat_patch_share(images: Tensor, info: ModelInfo, *, threshold: float = FLAT_STD) -> Tensor:
    """Per image, the share of the model's input patches whose pixel std (in [0, 1] units) is below
    `threshold` in every channel: large flat regions, one sign of semantic inadequacy."""
    p = info.image_size // info.patch_grid[0]
    pixels = denormalize(images.float().cpu(), info)  # N, C, H, W in [0, 1]
    n, c = pixels.shape[:2]
    patches = F.unfold(pixels, p, stride=p).view(n, c, p * p, -1)  # N, C, p*p, patches
    return (patches.std(dim=2, unbiased=False).amax(dim=1) < threshold).float().mean(dim=1)


# ------------------------------------------------------------------------------ the model
@torch.no_grad()
def _observe(model: nn.Module, info: ModelInfo, images: Tensor, blocks: list[int], *,
             batch_size: int) -> dict:
    """One pass over `images`: logits, each block's class-token and patch-token features, and the
    patch attention of `blocks` with its grid."""
    device = next(model.parameters()).device
    all_blocks = attention_blocks(model)
    prefix = int(getattr(model, "num_prefix_tokens", 0)) if info.has_class_token else 0
    outputs: dict[int, Tensor] = {}
    cls: dict[int, list[Tensor]] = {i: [] for i in range(len(all_blocks))}
    patch_div: dict[int, list[Tensor]] = {i: [] for i in range(len(all_blocks))}
    attn: dict[int, list[Tensor]] = {b: [] for b in blocks}
    logits = []

    def keep(_m, _a, out, i):
        outputs[i] = out

    handles = [blk.register_forward_hook(lambda m, a, o, i=i: keep(m, a, o, i))
               for i, blk in enumerate(all_blocks)]
    try:
        with record_attention(model, blocks, detach=True) as recorder:
            for start in range(0, len(images), batch_size):
                recorder.clear()
                logits.append(model(images[start:start + batch_size].to(device)).float().cpu())
                for i, out in outputs.items():
                    tokens = out.float().cpu().flatten(1, -2)  # B, T, D (Swin: B, H*W, C)
                    cls[i].append(tokens[:, 0] if info.has_class_token else tokens.mean(1))
                    patch_div[i].append(mean_pairwise_cosine_distance(tokens[:, prefix:]))
                for b, maps in recorder.patch_attention().items():
                    attn[b].append(maps.float().cpu())
            grids = {b: tuple(recorder.grids[b]) for b in blocks}
    finally:
        for h in handles:
            h.remove()
    return {"logits": torch.cat(logits), "cls": {i: torch.cat(v) for i, v in cls.items()},
            "patch_diversity": {i: torch.cat(v) for i, v in patch_div.items()},
            "attention": {b: torch.cat(v) for b, v in attn.items()}, "grids": grids}


def class_token_features(model: nn.Module, info: ModelInfo, images: Tensor, *, block: int = -1,
                         batch_size: int = 64) -> Tensor:
    """(N, D) class-token features of normalized `images` after `block` (default the last; pooled
    tokens for models without a class token): what the Frechet distance and the cosine compare."""
    observed = _observe(model, info, images.float().cpu(), [], batch_size=batch_size)
    return observed["cls"][block % len(observed["cls"])]


def _per_image_attention(maps: Tensor, grid) -> dict[str, np.ndarray]:
    """Each statistic of `attention_statistics` per image (averaged over heads): (N,) arrays."""
    rows = [attention_statistics(m, grid) for m in maps]  # maps: N, heads, P
    return {s: np.array([r[s] for r in rows]) for s in ATTENTION_STATS}


def _ranges(q_model: nn.Module) -> dict[str, tuple[float, float]]:
    """The clipping range [lo, hi] of every calibrated activation quantizer."""
    out = {}
    for name, qz in quantizers(q_model).items():
        if qz.role == "weight" or not qz.active:
            continue
        if isinstance(qz, UniformQuantizer):
            scale, zero = float(qz.scale), float(qz.zero_point)
            out[name] = (-zero * scale, (qz.qmax - zero) * scale)
        elif isinstance(qz, Log2Quantizer):
            out[name] = (0.0, float(qz.scale))
    return out


def _as_images(images, info: ModelInfo, what: str) -> tuple[Tensor, dict]:
    """Normalized images and a description of where they came from; sardfq errors on bad input."""
    meta: dict = {}
    if isinstance(images, (str, os.PathLike)):
        meta["path"] = str(images)
        images = CalibrationSet.load(images)
    if isinstance(images, CalibrationSet):
        m = images.metadata
        meta.update({k: m[k] for k in ("method", "label", "seed", "model") if k in m})
        images = images.images
    if not isinstance(images, Tensor) or images.ndim != 4 or len(images) < 2:
        raise ConfigError(f"the {what} must be at least 2 images N, C, H, W; got "
                          f"{type(images).__name__} {tuple(getattr(images, 'shape', ()))}")
    if tuple(images.shape[1:]) != tuple(info.input_size):
        raise CheckpointError(f"the {what} {meta.get('path', '')} holds images of size "
                              f"{tuple(images.shape[1:])} but {info.name} takes {tuple(info.input_size)}"
                              .replace("  ", " "))
    if not images.is_floating_point() or not bool(torch.isfinite(images).all()):
        raise ConfigError(f"the {what} must hold finite floating-point pixels (no NaN or infinity)")
    meta["n"] = len(images)
    return images.float().cpu(), meta


def reference_images(info: ModelInfo, n: int = N_REFERENCE, *, seed: int = REFERENCE_SEED,
                     data_root: str | os.PathLike | None = None) -> Tensor:
    """`n` real training images drawn as the `real` calibration method draws them (never the
    held-out split), with a seed of their own."""
    images, _ = real_images(info, n, generator=torch.Generator().manual_seed(seed), root=data_root)
    return images


@renamed_keywords(bits="setting")
def inspect_calibration(model: nn.Module, info: ModelInfo,
                        images: Tensor | CalibrationSet | str | os.PathLike,
                        reference: str | os.PathLike | Tensor | CalibrationSet = "real", *,
                        n_ref: int = N_REFERENCE, reference_seed: int = REFERENCE_SEED,
                        setting: str = "w4a4", data_root: str | os.PathLike | None = None,
                        flat_threshold: float = FLAT_STD, batch_size: int = 64, seed: int = 0,
                        progress: bool = False) -> InspectReport:
    """Measure a calibration set against a reference set; see the module docstring for the metrics.

    `images`: the set (normalized tensor, `CalibrationSet` or its file). `reference`: "real" (draw
    `n_ref` training images with `reference_seed`), or images / a calibration-set file. `setting`
    (old name `bits`): the bit setting whose ranges and block errors are compared. `seed`: the
    calibration's subsampling.
    """
    began = time.perf_counter()
    quant_config = QuantConfig.from_name(setting)  # a bad setting fails before any work
    images, set_meta = _as_images(images, info, "calibration set")
    if isinstance(reference, str) and reference == "real":
        ref = reference_images(info, n_ref, seed=reference_seed, data_root=data_root)
        ref_meta = {"source": "real", "n": len(ref), "seed": reference_seed}
    else:
        ref, meta = _as_images(reference, info, "reference set")
        ref_meta = {"source": meta.get("path", "tensor"), "n": len(ref)}
    model.eval()
    blocks = apa_blocks(info.num_blocks)
    stages = tqdm(total=5, desc="inspect", disable=not progress, leave=False)

    def step(what):
        stages.set_postfix_str(what, refresh=False)
        stages.update()

    try:
        mine = _observe(model, info, images, blocks, batch_size=batch_size)
        theirs = _observe(model, info, ref, blocks, batch_size=batch_size)
        step("features")
        groups = {"attention": _attention_group(mine, theirs),
                  "features": _feature_group(mine, theirs, info),
                  "content": _content_group(mine, images, info, flat_threshold)}
        step("statistics")
        q_set = quantize(model, info, quant_config, images, seed=seed, batch_size=batch_size)
        step("calibrate on the set")
        q_ref = quantize(model, info, quant_config, ref, seed=seed, batch_size=batch_size)
        step("calibrate on the reference")
        groups["calibration"] = _calibration_group(model, q_set, q_ref, ref, batch_size)
        step("block errors")
    finally:
        stages.close()
    settings = {"bits": quant_config.label, "flat_threshold": flat_threshold, "apa_blocks": blocks,
                "covariance": "ledoit-wolf", "attention_distance": "wasserstein-1"}
    return InspectReport(model=info.name, set=set_meta, reference=ref_meta, groups=groups,
                         settings=settings, seconds=round(time.perf_counter() - began, 3))


def _attention_group(mine: dict, theirs: dict) -> dict:
    out: dict[str, dict] = {}
    per_block = {b: (_per_image_attention(mine["attention"][b], mine["grids"][b]),
                     _per_image_attention(theirs["attention"][b], theirs["grids"][b]))
                 for b in mine["attention"]}
    for stat in ATTENTION_STATS:
        ours = {b: float(s[stat].mean()) for b, (s, _) in per_block.items()}
        ref = {b: float(r[stat].mean()) for b, (_, r) in per_block.items()}
        out[stat] = _metric(np.mean(list(ours.values())), False, ours,
                            reference=float(np.mean(list(ref.values()))), reference_per_block=ref)
    for stat in ATTENTION_STATS:
        dist = {b: wasserstein_1d(s[stat], r[stat]) for b, (s, r) in per_block.items()}
        out[f"{stat}_w1"] = _metric(np.mean(list(dist.values())), True, dist)
    return out


def _feature_group(mine: dict, theirs: dict, info: ModelInfo) -> dict:
    fd = {i: frechet_distance(mine["cls"][i], theirs["cls"][i]) for i in mine["cls"]}
    cos = {i: float((F.normalize(mine["cls"][i].double(), dim=1)
                     @ F.normalize(theirs["cls"][i].double(), dim=1).T).mean()) for i in mine["cls"]}
    last = max(fd)
    probs = mine["logits"].softmax(1)
    counts = torch.bincount(probs.argmax(1), minlength=info.num_classes)
    share = counts.double() / counts.sum()
    class_entropy = float(-(share * share.clamp_min(1e-12).log()).sum() / math.log(info.num_classes))
    ref_probs = theirs["logits"].softmax(1)
    return {
        "frechet": _metric(fd[last], True, fd),
        "cosine_to_reference": _metric(cos[last], True, cos),
        "confidence": _metric(float(probs.amax(1).mean()), False,
                              reference=float(ref_probs.amax(1).mean())),
        "class_entropy": _metric(class_entropy, False),  # 1: every class equally often, 0: one class
        "class_histogram": _metric(None, False, classes=list(info.class_names), counts=counts),
    }


def _content_group(mine: dict, images: Tensor, info: ModelInfo, threshold: float) -> dict:
    patch = {i: float(v.mean()) for i, v in mine["patch_diversity"].items()}
    across = {i: float(mean_pairwise_cosine_distance(v)) for i, v in mine["cls"].items()}
    flat = flat_patch_share(images, info, threshold=threshold)
    last = max(patch)
    return {"patch_diversity": _metric(patch[last], False, patch),
            "flat_share": _metric(float(flat.mean()), False, per_image=flat),
            "set_diversity": _metric(across[last], False, across)}


@torch.no_grad()
def _calibration_group(fp_model: nn.Module, q_set: nn.Module, q_ref: nn.Module, ref: Tensor,
                       batch_size: int) -> dict:
    ours, theirs = _ranges(q_set), _ranges(q_ref)
    ratios = {name: math.log2(max(ours[name][1] - ours[name][0], 1e-12)
                              / max(theirs[name][1] - theirs[name][0], 1e-12)) for name in ours}
    ranges = {name: {"set": ours[name], "reference": theirs[name], "log2_width_ratio": ratios[name]}
              for name in ours}
    names = reconstruction_units(fp_model)
    fp_out = unit_outputs(fp_model, names + [""], ref, batch_size)  # "" is the model: the logits
    set_out = unit_outputs(q_set, names + [""], ref, batch_size)
    ref_out = unit_outputs(q_ref, names + [""], ref, batch_size)
    mse = {n: F.mse_loss(set_out[n], fp_out[n]).item() for n in names}
    floor = {n: F.mse_loss(ref_out[n], fp_out[n]).item() for n in names}
    fp_logp, q_logp = fp_out[""].log_softmax(1), set_out[""].log_softmax(1)
    kl = float(F.kl_div(q_logp, fp_logp, log_target=True, reduction="batchmean"))
    agreement = float((fp_out[""].argmax(1) == set_out[""].argmax(1)).float().mean())
    return {
        "range_log2_ratio": _metric(float(np.mean(np.abs(list(ratios.values())))), True,
                                    narrower_share=float(np.mean([r < 0 for r in ratios.values()])),
                                    quantizers=ranges),
        "block_mse": _metric(mse[names[-1]], True, mse, reference_calibrated=floor),
        "output_kl": _metric(kl, True),
        "agreement": _metric(agreement, True),
    }


def needs_real_data(metric: str) -> bool:
    """Whether a `group.metric` column of `study` needs real images (False: data-free)."""
    group, name = metric.split(".", 1)
    return _NEEDS_REAL[group][name]


_NEEDS_REAL = {
    "attention": {**{s: False for s in ATTENTION_STATS}, **{f"{s}_w1": True for s in ATTENTION_STATS}},
    "features": {"frechet": True, "cosine_to_reference": True, "confidence": False, "class_entropy": False,
                 "class_histogram": False},
    "content": {"patch_diversity": False, "flat_share": False, "set_diversity": False},
    "calibration": {"range_log2_ratio": True, "block_mse": True, "output_kl": True, "agreement": True},
}


@torch.no_grad()
def attention_quantizer_table(model: nn.Module, info: ModelInfo, sets: Mapping[str, Tensor | CalibrationSet],
                              reference: Tensor, *, config: QuantConfig, seed: int = 0):
    """What calibrating on each set does to the post-softmax attention quantizer of every block:
    the scale it picks, the largest attention weight the set shows there, and, on the `reference`
    images (real ones), the share of each attention row's mass that survives the quantizer (the
    rest rounds to zero) and the quantizer's root-mean-square error. One row per (set, block), a
    pandas DataFrame. A set whose attention is more peaked than real images' picks a larger
    scale, and with few bits its grid then rounds the small weights of real rows to zero."""
    import pandas as pd

    blocks = list(range(len(attention_blocks(model))))

    def maps(images):
        with record_attention(model, blocks, detach=True) as recorder:
            model(images.float())
            return {b: recorder.maps[b].clone() for b in blocks}  # B, heads, N, N

    real = maps(reference)
    rows = []
    for name, calib in sets.items():
        images = calib.images if isinstance(calib, CalibrationSet) else calib
        q_model = quantize(model, info, config, images, seed=seed)
        own = maps(images)
        for b, block in enumerate(attention_blocks(q_model)):
            qz = block.attn.attn_quant
            kept = qz.fake_quant(real[b])
            rows.append({"set": name, "block": b, "scale": float(qz.scale), "set max": float(own[b].amax()),
                         "real mass kept": float(kept.sum(-1).mean()),
                         "rmse on real": float((kept - real[b]).pow(2).mean().sqrt())})
    return pd.DataFrame(rows)
