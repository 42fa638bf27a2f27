"""The paper's reported numbers, kept as data to compare our measurements with.

Source: Zhong et al., "Semantic Alignment and Reinforcement for Data-Free Quantization of Vision
Transformers", ICCV 2025 (arXiv 2412.16553): main W4A4 table, W6A6 rows and ablations, as
reported in detailed reading notes of the paper. ImageNet top-1 accuracy in percent.
"""
from __future__ import annotations

SOURCE = ("Zhong et al., Semantic Alignment and Reinforcement for Data-Free Quantization of Vision "
          "Transformers, ICCV 2025 (arXiv 2412.16553); ImageNet top-1 %")

# model -> method -> top-1 (%), W4A4
W4A4_COLUMNS = ("fp", "noise", "psaq", "psaq_v2", "smi", "sardfq")
W4A4 = {
    "vit_small_patch16_224": (81.39, 6.02, 47.24, 41.53, 24.33, 50.32),
    "vit_base_patch16_224": (84.54, 0.15, 36.32, 26.32, 35.27, 51.84),
    "deit_tiny_patch16_224": (72.21, 17.43, 47.75, 30.20, 30.14, 52.06),
    "deit_small_patch16_224": (79.85, 20.89, 58.28, 45.53, 42.77, 62.29),
    "deit_base_patch16_224": (81.85, 47.20, 71.75, 66.43, 65.33, 72.17),
    "swin_small_patch4_window7_224": (83.20, 31.92, 73.19, 65.55, 65.85, 74.74),
    "swin_base_patch4_window7_224": (85.27, 30.14, 71.84, 67.42, 65.23, 76.42),
}
MODEL_LABELS = {
    "vit_small_patch16_224": "ViT-S", "vit_base_patch16_224": "ViT-B", "deit_tiny_patch16_224": "DeiT-T",
    "deit_small_patch16_224": "DeiT-S", "deit_base_patch16_224": "DeiT-B",
    "swin_small_patch4_window7_224": "Swin-S", "swin_base_patch4_window7_224": "Swin-B",
}
REAL_W4A4 = {"vit_base_patch16_224": 68.16}  # calibration on real images

# model -> (PSAQ-ViT, SARDFQ), W6A6
W6A6 = {
    "vit_small_patch16_224": (77.20, 78.40),
    "vit_base_patch16_224": (76.65, 79.16),
    "deit_small_patch16_224": (75.85, 77.31),
    "swin_base_patch4_window7_224": (82.00, 83.03),
}

# W4A4 DeiT-S; keys are this project's variant names (ExperimentConfig.variant)
ABLATION_MODEL = "deit_small_patch16_224"
ABLATION = {
    "sardfq[none]": 51.73, "sardfq[apa]": 60.26, "sardfq[msr]": 50.75, "sardfq[sl]": 52.02,
    "sardfq[apa+msr]": 61.58, "sardfq[apa+sl]": 60.51, "sardfq[msr+sl]": 56.08, "sardfq": 62.29,
}
# The paper's sizes [paper, from reading notes]: 32 calibration images, 1000 synthesis iterations and 100
# reconstruction steps per block. The first author's related I&S-ViT code reconstructs for 1000 steps at
# W3/W4 (200 at W6), which is this library's default (`sardfq.quant.config.RECON_ITERS`).
BUDGET = {"images": 32, "synthesis_iterations": 1000, "recon_iters": 100, "recon_iters_code": 1000}
PRIOR_TYPES = {"gmm": 62.29, "laplace": 62.16, "real": 63.19}  # W4A4 DeiT-S
DESIGN_GAINS = {"depth weighting l/L": 0.97, "APA on deep blocks only (vs all)": 0.33}  # top-1 points


def w4a4_table():
    """The main W4A4 table as a pandas DataFrame (one row per model, one column per method)."""
    import pandas as pd

    frame = pd.DataFrame.from_dict(W4A4, orient="index", columns=list(W4A4_COLUMNS))
    frame.insert(0, "model", [MODEL_LABELS[m] for m in frame.index])
    return frame


def ablation_table():
    """The ablation on DeiT-S W4A4 as a DataFrame with APA/MSR/SL switches and top-1."""
    import pandas as pd

    rows = []
    for variant, top1 in ABLATION.items():
        on = set() if variant == "sardfq[none]" else (
            {"apa", "msr", "sl"} if variant == "sardfq" else set(variant[7:-1].split("+")))
        rows.append({"variant": variant, "apa": "apa" in on, "msr": "msr" in on, "sl": "sl" in on,
                     "top1": top1})
    return pd.DataFrame(rows)
