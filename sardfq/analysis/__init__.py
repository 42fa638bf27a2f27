"""The analysis wing: reading what the experiments measured.

- `stats`: Spearman's rho, permutation and sign-flip p-values, bootstrap intervals;
- `compare`: calibration source A minus B, a paired difference with its 95% CI;
- `zoo`: the teacher zoo, per teacher and bit-width, and what decides where SARDFQ helps;
- `sparse_check`: sparse inversion against dense, run by run, and whether it stays inside the seed spread;
- `headroom`: the paper's regime: where PSAQ-ViT leaves headroom to real images, and what SARDFQ
  does there (`sardfq headroom`);
- `attention_stats`: patch attention and how structured it is; what the model sees in MSR regions;
- `diagnostics`: a calibration set against real images (`sardfq inspect`);
- `study`: every set behind a results folder inspected and related to its accuracy;
- `paper_anchors`: the paper's reported numbers, as data (read by chapters 03, 04 and 06);
- `results_prose`: the sentences and tables of chapter 06 (the results pages);
- `why_prose`: the why page's sentences (06_why) and the method the records favour (08);
- `inspect_prose`: the sentences of chapter 07 (the calibration-set study), and chapter 05's rerun note;
- `viz`: the figures of the book, a package of rooms by what they draw (images, runs, the
  calibration-set study, the results pages, and the style they share).
"""
from .attention_stats import attention_statistics, patch_attention, region_predictions
from .compare import Comparison, compare, compare_per_image
from .diagnostics import InspectReport, inspect_calibration
from . import viz  # noqa: E402  (the figures, as `sardfq.viz`)

__all__ = ["Comparison", "InspectReport", "viz", "attention_statistics", "compare", "compare_per_image",
           "inspect_calibration", "patch_attention", "region_predictions"]
