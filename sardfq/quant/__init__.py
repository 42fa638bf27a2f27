"""Fake quantization of timm ViT/DeiT/Swin: quantizers, quantized modules, placement, calibration.

Public verbs (also exported by `sardfq`): `quantize`, `save_quantized`, `load_quantized`, with
`QuantConfig`; `sardfq.reconstruct` fine-tunes a quantized model block by block.
"""
from .api import architecture_kwargs, is_quantized_folder, load_quantized, quantize, save_quantized
from .calibration import calibrate, calibration_images
from .config import QuantConfig
from .modules import QuantAttention, QuantConv2d, QuantLinear, QuantWindowAttention
from .placement import PLACEMENT, build_quant_model, quantizers, set_quant_state
from .quantizers import (QUANTIZERS, SEARCHES, Log2Quantizer, Quantizer, UniformQuantizer, check_bits,
                         make_quantizer, round_ste)

__all__ = [
    "PLACEMENT", "QUANTIZERS", "SEARCHES", "Log2Quantizer", "QuantAttention", "QuantConfig", "QuantConv2d",
    "QuantLinear", "QuantWindowAttention", "Quantizer", "UniformQuantizer", "architecture_kwargs",
    "build_quant_model", "calibrate", "calibration_images", "check_bits", "is_quantized_folder",
    "load_quantized", "make_quantizer", "quantize", "quantizers", "round_ste", "save_quantized",
    "set_quant_state",
]
