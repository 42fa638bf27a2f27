"""Calibration-image sources as small strategy objects, registered by name in `METHODS`.

The optimization loop lives in `sardfq.synthesis.loop`; a method only says how its images start, what
extra rows (MSR crops) join each forward pass, what it records during that pass, and which loss
terms it minimizes with which weights. A new method is a new class and a decorator.

- `noise`: Gaussian N(0, 1) images in the normalized input space, random labels, no optimization.
- `real`: n distinct training images drawn with the seed (CIFAR-10 train for CIFAR models; a
  `train/` folder of class folders for ImageNet models and for models with their own classes).
- `psaq`: PSAQ-ViT: -patch-similarity entropy + hard-label CE + 0.05 TV.
- `sardfq`: a1 * APA + soft-label CE (one-hot CE with `sl` off, on the images and their MSR crops)
  + 0.05 TV; the switches apa / msr / sl give all eight ablations.
- `smi`: SMI (Hu et al., ICML 2024): the dense objective its paper inverts ViTs with (DeepInversion's
  hard-label CE + 1e-4 TV_l2, no BatchNorm prior: a ViT has none) under sparse inversion
  (`sardfq.synthesis.sparse`); `sparse=False` gives that dense inversion alone.

Every optimizing method runs sparse with `SynthesisConfig.sparse=True`.
"""
from __future__ import annotations

import contextlib
import logging
import os
from typing import Any, ContextManager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..attention import record_attention
from ..data import real_image_source, real_images
from ..errors import ConfigError
from ..models import ModelInfo
from .config import METHODS, SynthesisConfig
from .losses import (apa_blocks, apa_loss, patch_similarity_entropy, record_head_outputs,
                     soft_cross_entropy, soft_targets, tv_l2, tv_loss, tv_target)
from .msr import QUADRANTS, crop_regions, draw_regions
from .priors import draw_priors, real_attention_bank, transform_priors
from .sparse import restrict_priors

log = logging.getLogger(__name__)


class Method:
    """Base strategy. Subclasses set `optimizes` and override the hooks they need."""

    optimizes = True
    weights: dict[str, float] = {}
    # True when the losses read, of the last block's output, only the class token's logits (what
    # the method captures inside the attention is not affected): the loop may then skip the rest
    # (sardfq.synthesis.shortcuts.class_token_tail)
    class_token_logits = False

    def __init__(self, model: nn.Module, info: ModelInfo, config: SynthesisConfig, *,
                 generator: torch.Generator, device: torch.device,
                 data_root: str | os.PathLike | None = None):
        self.model, self.info = model, info
        self.config = config.resolved(info)  # the model-dependent defaults (a1, lr) filled in
        self.generator, self.device, self.data_root = generator, device, data_root

    # --- per chunk of images
    def start(self, batch: int) -> Tensor:
        """Draw this chunk's labels/targets/priors and return its initial images (B, C, H, W)."""
        self.labels = torch.randint(0, self.info.num_classes, (batch,), generator=self.generator)
        self.targets: Tensor | None = None
        self.tv_target = tv_target(batch, *self.info.input_size[1:], generator=self.generator)
        return torch.randn(batch, *self.info.input_size, generator=self.generator).to(self.device)

    def soft_targets(self) -> Tensor | None:
        return self.targets

    def extra_metadata(self) -> dict[str, Any]:
        return {}

    # --- per iteration
    # (image_index, quadrant) of the MSR crops that `forward_batch` appended last, or None
    crops: tuple[Tensor, Tensor] | None = None

    def forward_batch(self, images: Tensor) -> Tensor:
        """The rows of one forward pass: the images, plus whatever the method adds (and names in
        `crops`)."""
        return images

    def capture(self) -> ContextManager[Any]:
        """A context manager around the whole loop that records what the losses need."""
        return contextlib.nullcontext()

    def loss_terms(self, logits: Tensor, batch: Tensor, captured: Any, *, shift: int,
                   flip: bool, tokens: Tensor | None = None) -> dict[str, Tensor]:
        """Unweighted loss terms for one forward pass; `self.weights` gives their weights.
        `tokens` (rows, K): the patch tokens each row kept in a sparse inversion, else None."""
        raise NotImplementedError


@METHODS.register("noise")
class NoiseMethod(Method):
    """Gaussian-noise images: the data-free floor."""

    optimizes = False


@METHODS.register("real")
class RealMethod(Method):
    """Real training images: the ceiling a synthetic calibration set aims at."""

    optimizes = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # the whole set is drawn at once, so chunks never repeat an image
        allowed, self._load = real_image_source(self.info, self.data_root)
        if self.config.n > len(allowed):
            raise ConfigError(f"SynthesisConfig.n: the real method asks for {self.config.n} images but "
                              f"{self.info.name}'s training images number {len(allowed)}")
        self._order = allowed[torch.randperm(len(allowed), generator=self.generator)[:self.config.n]]
        self._drawn = 0

    def start(self, batch: int) -> Tensor:
        index = self._order[self._drawn:self._drawn + batch]
        self._drawn += batch
        images, self.labels = self._load(index)
        self.targets = None
        return images.to(self.device)


@METHODS.register("psaq")
class PsaqMethod(Method):
    """PSAQ-ViT: maximize patch-similarity entropy in every block, with hard-label CE and TV."""

    class_token_logits = True  # the entropy's features are taken at the output projection's input

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.weights = {"entropy": self.config.entropy_weight, "ce": 1.0,
                        "tv": self.config.tv_weight}

    def capture(self):
        return record_head_outputs(self.model)

    def loss_terms(self, logits, batch, captured, *, shift, flip, tokens=None):
        b = len(self.labels)  # sparse: the entropy pools the kept patches' pairs
        entropy = sum(patch_similarity_entropy(f, b).mean() for f in captured.values())
        return {"entropy": -entropy,
                "ce": F.cross_entropy(logits, self.labels.to(logits.device)),
                "tv": tv_loss(batch[:b], self.tv_target)}


@METHODS.register("sardfq")
class SardfqMethod(Method):
    """SARDFQ: APA (attention priors) + MSR (region crops) + SL (soft labels), each switchable."""

    class_token_logits = True  # APA's maps are taken inside the attention, the labels from the logits

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        cfg = self.config
        self.weights = {"apa": cfg.apa_weight, "sl" if cfg.sl else "ce": 1.0,
                        "tv": cfg.tv_weight}
        if not cfg.apa:
            del self.weights["apa"]
        self.blocks = apa_blocks(self.info.num_blocks, cfg.deep_only)
        self.crops_seen = 0
        self.images_seen = 0
        self.all_crop_labels: list[Tensor] = []
        if cfg.apa:
            self.grids, self.heads = self._probe_grids()
            self.bank = None
            if cfg.prior == "real":
                images, _ = real_images(self.info, cfg.real_prior_images, generator=self.generator,
                                        root=self.data_root)
                self.bank = real_attention_bank(self.model, images, self.blocks)

    @torch.no_grad()
    def _probe_grids(self) -> tuple[dict[int, tuple[int, int]], dict[int, int]]:
        """Patch grid and head count of each APA block, read off one forward pass."""
        probe = torch.zeros(1, *self.info.input_size, device=self.device)
        with record_attention(self.model, self.blocks, detach=True) as recorder:
            self.model(probe)
            maps = recorder.patch_attention()
            grids = dict(recorder.grids)
        return {b: tuple(grids[b]) for b in self.blocks}, {b: maps[b].shape[1] for b in self.blocks}

    def start(self, batch: int) -> Tensor:
        cfg, gen, classes = self.config, self.generator, self.info.num_classes
        images = super().start(batch)  # labels, TV level, noise
        self.crop_labels = torch.randint(0, classes, (batch, QUADRANTS), generator=gen)  # B, 4
        self.all_crop_labels.append(self.crop_labels)
        relevant = F.one_hot(self.labels, classes).bool()  # B, classes
        crop_relevant = F.one_hot(self.crop_labels, classes).bool()  # B, 4, classes
        if cfg.msr:  # an image also shows its regions' classes
            relevant = relevant | crop_relevant.any(dim=1)
        if cfg.sl:
            self.image_targets = soft_targets(relevant, generator=gen, low=cfg.soft_label_low,
                                              high=cfg.soft_label_high)
            self.crop_targets = soft_targets(crop_relevant, generator=gen, low=cfg.soft_label_low,
                                             high=cfg.soft_label_high)
        else:
            self.image_targets = F.one_hot(self.labels, classes).float()
            self.crop_targets = crop_relevant.float()
        self.targets = self.image_targets if cfg.sl else None
        self.priors = None
        if cfg.apa:
            self.priors = draw_priors(cfg.prior, batch, self.heads, self.grids, generator=gen,
                                      k_max=cfg.k_apa, scale_max=cfg.prior_scale, bank=self.bank)
            self.priors = {b: p.to(self.device) for b, p in self.priors.items()}
        self._row_targets = self.image_targets
        return images

    def forward_batch(self, images):
        b = len(images)
        self.images_seen += b
        if not self.config.msr:
            self._row_targets = self.image_targets
            return images
        image_index, quadrant = draw_regions(b, self.config.k_msr, generator=self.generator)
        self.crops = (image_index, quadrant)
        self.crops_seen += len(image_index)
        self._row_targets = torch.cat([self.image_targets,
                                       self.crop_targets[image_index, quadrant]])  # B+M, classes
        return torch.cat([images, crop_regions(images, image_index, quadrant)])

    def capture(self):
        if not self.config.apa:
            return contextlib.nullcontext()
        return record_attention(self.model, self.blocks)

    def loss_terms(self, logits, batch, captured, *, shift, flip, tokens=None):
        b = len(self.labels)
        terms = {}
        if self.config.apa:
            attention = {k: v[:b] for k, v in captured.patch_attention().items()}  # APA on images only
            priors = transform_priors(self.priors, self.grids, shift, self.info.image_size, flip)
            scale = 1.0
            if tokens is not None:  # sparse: the prior over the kept patches, renormalized
                priors = restrict_priors(priors, tokens[:b])
                # [choice] maps over K patches are (N / K) times larger than over N: their MSE (K / N)^2
                # rescales to the full grid's, as a1 itself is scaled to a model's grid
                scale = (tokens.shape[1] / self.info.patch_grid[0] / self.info.patch_grid[1]) ** 2
            terms["apa"] = scale * apa_loss(attention, priors, self.info.num_blocks,
                                            depth_weighting=self.config.depth_weighting)
        name = "sl" if self.config.sl else "ce"
        terms[name] = soft_cross_entropy(logits, self._row_targets.to(logits.device))
        terms["tv"] = tv_loss(batch[:b], self.tv_target)
        return terms

    def extra_metadata(self):
        crops = self.crops_seen / self.images_seen if self.images_seen else 0.0
        crop_labels = torch.cat(self.all_crop_labels).tolist() if self.config.msr else None
        return {"mean_crops_per_image": crops, "apa_blocks": self.blocks if self.config.apa else [],
                "crop_labels": crop_labels}  # N x 4, quadrant q = row q // 2, column q % 2


SMI_TV_WEIGHT = 1e-4  # [SMI code] the weight of TV_l2 (its `tv2`), at every resolution


@METHODS.register("smi")
class SmiMethod(Method):
    """SMI: hard-label CE + 1e-4 TV_l2 (DeepInversion's objective for a ViT), inverted sparsely
    unless `sparse=False`. The loop's schedule (Adam, rounds, jitter, flips) is every method's, so
    that the objective and the sparsity are what differ [choice]; SMI's own code runs Adam with lr
    0.25, betas (0.5, 0.99), 2,000-4,000 iterations and jitter of an eighth of the image."""

    class_token_logits = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.weights = {"ce": 1.0, "tv": SMI_TV_WEIGHT}

    def loss_terms(self, logits, batch, captured, *, shift, flip, tokens=None):
        b = len(self.labels)
        return {"ce": F.cross_entropy(logits, self.labels.to(logits.device)), "tv": tv_l2(batch[:b])}
