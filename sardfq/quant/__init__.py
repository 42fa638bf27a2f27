"""The quantization wing: fake quantization of timm ViT/DeiT/Swin, and its block reconstruction.

Public verbs (also exported by `sardfq`): `quantize`, `save_quantized`, `load_quantized` with a
`QuantConfig` (`api`); `reconstruct` with a `ReconConfig` (`reconstruction`). Underneath: the
arithmetic (`functional`), the quantizer modules (`quantizers`), the observers that choose their
ranges (`observers`), the quantized layers (`modules`), where quantizers go (`placement`) and
calibration (`calibration`). Importing the wing registers every quantizer kind and range search.
`export` writes a quantized model as ONNX that onnxruntime runs with integer kernels
(`sardfq.export_onnx`), from the layers of `kernels`; `runtime` reads a file back and runs it. They
are not imported here, and import onnx and onnxruntime only when called.
"""
from . import observers  # noqa: F401  (registers the range searches; the quantizer kinds register below)
from .api import architecture_kwargs, is_quantized_folder, load_quantized, quantize, save_quantized
from .calibration import calibrate, calibrate_quantizer
from .config import (QUANTIZERS, RECON_ITERS, SEARCHES, QuantConfig, ReconConfig, check_bits,
                     parse_bits, parse_setting)
from .functional import round_ste
from .modules import QuantAttention, QuantConv2d, QuantLinear, QuantWindowAttention
from .observers import Observer, choose_qparams
from .placement import PLACEMENT, build_quant_model
from .quantizers import (Log2Quantizer, Quantizer, UniformQuantizer, make_quantizer, quantizers,
                         set_quant_state)
from .reconstruction import ReconResult, reconstruct, reconstruction_units

__all__ = [
    "Log2Quantizer", "Observer", "PLACEMENT", "QUANTIZERS", "QuantAttention", "QuantConfig", "QuantConv2d",
    "QuantLinear", "QuantWindowAttention", "Quantizer", "RECON_ITERS", "ReconConfig", "ReconResult",
    "SEARCHES", "UniformQuantizer", "architecture_kwargs", "build_quant_model", "calibrate",
    "calibrate_quantizer", "check_bits", "choose_qparams", "is_quantized_folder", "load_quantized",
    "make_quantizer", "parse_bits", "parse_setting", "quantize", "quantizers", "reconstruct", "reconstruction_units",
    "round_ste", "save_quantized", "set_quant_state",
]
