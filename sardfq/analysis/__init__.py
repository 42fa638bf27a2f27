"""The analysis wing: reading what the experiments measured.

- `compare`: calibration source A minus B, a paired difference with its 95% CI;
- `zoo`: the teacher zoo, per teacher and bit-width, and what decides where SARDFQ helps;
- `diagnostics`: a calibration set against real images (`sardfq inspect`);
- `study`: every set behind a results folder inspected and related to its accuracy;
- `attention_stats`: patch attention and how structured it is; what the model sees in MSR regions;
- `viz`: the figures of the book.
"""
from .attention_stats import attention_statistics, patch_attention, region_predictions
from .compare import Comparison, compare, compare_per_image
from .diagnostics import InspectReport, inspect_calibration
from . import viz  # noqa: E402  (the figures, as `sardfq.viz`)

__all__ = ["Comparison", "InspectReport", "viz", "attention_statistics", "compare", "compare_per_image",
           "inspect_calibration", "patch_attention", "region_predictions"]
