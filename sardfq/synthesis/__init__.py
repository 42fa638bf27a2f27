"""The synthesis wing: calibration images made from the full-precision model alone.

`synthesize(model, info, SynthesisConfig(...))` runs one optimization loop (`loop`) for a method
registered in `METHODS` (`methods`: noise, real, psaq, sardfq), with the losses (`losses`: APA,
soft labels, TV, PSAQ-ViT's patch-similarity entropy), attention priors (`priors`) and MSR region
crops (`msr`) they need. Importing the wing registers every method and prior.
"""
from . import methods, priors  # noqa: F401  (they register themselves into METHODS and PRIORS)
from .config import K_APA, METHODS, PAPER_NAMES, PRIORS, SCALE_MAX, SynthesisConfig
from .loop import save_image_grid, synthesize
from .losses import (apa_blocks, apa_loss, patch_similarity_entropy, record_head_outputs,
                     soft_cross_entropy, soft_targets, tv_l2, tv_loss, tv_target)
from .methods import Method
from .msr import crop_regions, draw_regions, quadrant_mask
from .priors import draw_priors, local_maxima, real_attention_bank, transform_priors

__all__ = [
    "K_APA", "METHODS", "Method", "PAPER_NAMES", "PRIORS", "SCALE_MAX", "SynthesisConfig", "apa_blocks",
    "apa_loss", "crop_regions", "draw_priors", "draw_regions", "local_maxima", "patch_similarity_entropy",
    "quadrant_mask", "real_attention_bank", "record_head_outputs", "save_image_grid", "soft_cross_entropy",
    "soft_targets", "synthesize", "transform_priors", "tv_l2", "tv_loss", "tv_target",
]
