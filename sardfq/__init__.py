"""sardfq: data-free quantization of Vision Transformers with SARDFQ (ICCV 2025).

The public API; notebooks, the CLI and the tests use only these names.
"""
from .attention import attention_blocks, record_attention
from .calibset import CalibrationSet
from .data import (ArrayDataset, ImageArrays, data_root, denormalize, eval_dataset, load_cifar10,
                   normalize, pixel_range)
from .errors import (CheckpointError, ConfigError, DataNotFoundError, SardfqError, UnknownNameError,
                     WeightsNotFoundError)
from .evaluate import EvalResult, evaluate
from .models import DEFAULT_MODEL, ModelInfo, available_models, load_model

__version__ = "0.1.0"

__all__ = [
    "ArrayDataset", "CalibrationSet", "CheckpointError", "ConfigError", "DEFAULT_MODEL", "DataNotFoundError", "EvalResult",
    "ImageArrays", "ModelInfo", "SardfqError", "UnknownNameError", "WeightsNotFoundError",
    "attention_blocks", "available_models", "data_root", "denormalize", "eval_dataset", "evaluate",
    "load_cifar10", "load_model", "normalize", "pixel_range", "record_attention",
]
