"""sardfq: data-free quantization of Vision Transformers with SARDFQ (ICCV 2025).

The public API; notebooks, the CLI and the tests use these names, each imported on first use. The package is built in wings
over a common floor: `synthesis` (calibration images from the model alone), `quant` (fake
quantization, reconstruction, ONNX export), `experiments` (one configured run, its record, sweeps)
and `analysis` (comparisons, the zoo, diagnostics, the chapters' prose, figures).

The layers of the house, bottom up, as `tests/test_layout.py` defines and checks them: a module
imports only from its own layer or below, never from its own package's `__init__` nor from
`sardfq` itself, and the two wings of layer 2 never from each other; no import circle; at most nine
floors in the longest chain of imports.

    layer  name               modules
    0      foundation         errors, io, registry, precision, version, attention, compat (old
                              keyword names), model_files (a model folder's files, without torch),
                              image_arrays (the data folder, the decode cache, safe decoding)
    1      core               models (a package of rooms; see its docstring), data, calibset,
                              evaluate, teacher
    2      synthesis, quant   the two wings of the method, side by side
    3      experiments        the experiments package
    4      analysis           the analysis package
    5      entry              cli (its options read off the configs in cli_options), __main__,
                              and this file

Each package's docstring lists its rooms.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
import types

from .errors import (CheckpointError, ConfigError, DataNotFoundError, ExportError, SardfqError,
                     UnknownNameError, UnsupportedModelError, WeightsNotFoundError)
from .version import __version__

# Where each public name lives. A name is imported when first used (`sardfq.load_model`, `from sardfq
# import viz`), not when `sardfq` is: the command line can then refuse a bad input before torch
# loads, and `import sardfq` costs what the names used cost. `viz` and `paper_anchors` (the paper's
# numbers) are modules, as the chapters import them: `from sardfq import viz`.
_EXPORTS = {
    "analysis": ("Comparison", "InspectReport", "attention_statistics", "compare", "compare_per_image",
                 "inspect_calibration", "paper_anchors", "patch_attention", "region_predictions", "viz"),
    "attention": ("attention_blocks", "record_attention"),
    "calibset": ("CalibrationSet",),
    "data": ("ArrayDataset", "ImageArrays", "data_root", "denormalize", "eval_dataset", "heldout_dataset",
             "image_folder", "load_cifar10", "normalize", "pixel_range"),
    "evaluate": ("EvalResult", "PerImage", "evaluate"),
    "experiments": ("ExperimentConfig", "ExperimentResult", "SweepReport", "SweepSpec", "evaluate_saved",
                    "load_results", "load_sweep", "mean_std_table", "quantize_to_folder", "quickstart_configs",
                    "quickstart_table", "run_experiment", "run_or_load", "run_quickstart", "run_sweep",
                    "run_to_folder", "summarize_results", "synthesize_to_file"),
    "models": ("DEFAULT_MODEL", "ModelInfo", "available_models", "check_architecture", "embedded_models",
               "load_model", "save_model_folder"),
    "quant": ("QuantConfig", "ReconConfig", "ReconResult", "load_quantized", "quantize", "quantizers", "reconstruct",
              "save_quantized", "set_quant_state"),
    "quant.export": ("OnnxExport", "export_onnx", "integer_op_counts", "load_onnx", "onnx_metadata",
                     "optimized_op_counts"),
    "synthesis": ("METHODS", "PRIORS", "Method", "SynthesisConfig", "apa_blocks", "apa_loss", "crop_regions",
                  "draw_priors", "draw_regions", "patch_similarity_entropy", "quadrant_mask", "real_attention_bank",
                  "record_head_outputs", "save_image_grid", "soft_cross_entropy", "soft_targets", "synthesize",
                  "transform_priors", "tv_l2", "tv_loss", "tv_target"),
}
_HOME = {name: module for module, names in _EXPORTS.items() for name in names}


def __getattr__(name: str):
    """A public name, imported from its module on first use (and kept); a subpackage or module
    of sardfq by its name (`sardfq.quant`), as after an import of it."""
    module = _HOME.get(name)
    if module is None:
        if name.startswith("__") or importlib.util.find_spec(f"{__name__}.{name}") is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        return importlib.import_module(f".{name}", __name__)
    home = importlib.import_module(f".{module}", __name__)
    value = getattr(home, name) if hasattr(home, name) else importlib.import_module(f".{module}.{name}", __name__)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOME})


class _Package(types.ModuleType):
    """The package, keeping a public name that is also the name of one of its modules (`evaluate`,
    the verb, and `sardfq.evaluate`, its module) the public one when that module is imported, as
    the eager `from .evaluate import evaluate` did: the import system sets the module on its
    package after loading it."""

    def __setattr__(self, name: str, value) -> None:
        if isinstance(value, types.ModuleType) and name in _HOME and value.__name__ == f"{__name__}.{name}":
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


__all__ = [
    "ArrayDataset", "CalibrationSet", "CheckpointError", "Comparison", "ConfigError", "DEFAULT_MODEL",
    "DataNotFoundError", "EvalResult", "ImageArrays", "ModelInfo", "PerImage", "SardfqError",
    "UnknownNameError", "UnsupportedModelError", "WeightsNotFoundError",
    "attention_blocks", "available_models", "check_architecture", "compare", "compare_per_image",
    "data_root", "denormalize", "embedded_models", "eval_dataset", "evaluate", "heldout_dataset",
    "image_folder", "load_cifar10", "load_model", "normalize", "pixel_range", "record_attention",
    "save_model_folder",
    # synthesis
    "METHODS", "Method", "PRIORS", "SynthesisConfig", "apa_blocks", "apa_loss", "crop_regions",
    "draw_priors", "draw_regions", "patch_similarity_entropy", "quadrant_mask", "real_attention_bank",
    "record_head_outputs", "save_image_grid", "soft_cross_entropy", "soft_targets", "synthesize",
    "transform_priors", "tv_l2", "tv_loss", "tv_target",
    # experiments and sweeps
    "ExperimentConfig", "ExperimentResult", "SweepReport", "SweepSpec", "attention_statistics", "evaluate_saved",
    "load_results", "load_sweep", "mean_std_table", "patch_attention", "quantize_to_folder", "quickstart_configs",
    "quickstart_table", "region_predictions", "run_experiment", "run_or_load", "run_quickstart", "run_sweep",
    "run_to_folder", "summarize_results", "synthesize_to_file",
    # quantization
    "QuantConfig", "ReconConfig", "ReconResult", "load_quantized", "quantize", "quantizers",
    "reconstruct", "save_quantized", "set_quant_state",
    # deployment: ONNX export, run in onnxruntime
    "ExportError", "OnnxExport", "export_onnx", "integer_op_counts", "load_onnx", "onnx_metadata",
    "optimized_op_counts",
    # inspecting calibration sets (more in sardfq.analysis.study: study, correlations, recreate_sets)
    "InspectReport", "inspect_calibration",
]
