"""sardfq: data-free quantization of Vision Transformers with SARDFQ (ICCV 2025).

The public API; notebooks, the CLI and the tests use these names. The package is built in wings
over a common floor: `synthesis` (calibration images from the model alone), `quant` (fake
quantization, reconstruction, ONNX export), `experiments` (one configured run, its record, sweeps)
and `analysis` (comparisons, the zoo, diagnostics, the chapters' prose, figures).

The layers of the house, bottom up, as `tests/test_layout.py` defines and checks them: a module
imports only from its own layer or below, never from its own package's `__init__` nor from
`sardfq` itself, and the two wings of layer 2 never from each other; no import circle; at most nine
floors in the longest chain of imports.

    layer  name               modules
    0      foundation         errors, io, registry, precision, version, attention
    1      core               models (a package of rooms; see its docstring), data, calibset,
                              evaluate, teacher
    2      synthesis, quant   the two wings of the method, side by side
    3      experiments        the experiments package
    4      analysis           the analysis package
    5      entry              cli (its options read off the configs in cli_options), __main__,
                              and this file

Each package's docstring lists its rooms.
"""
# `viz` and `paper_anchors` (the paper's numbers) as the chapters import them: `from sardfq import viz`
from .analysis import (Comparison, InspectReport, attention_statistics, compare, compare_per_image,
                       inspect_calibration, paper_anchors, patch_attention, region_predictions, viz)
from .attention import attention_blocks, record_attention
from .calibset import CalibrationSet
from .data import (ArrayDataset, ImageArrays, data_root, denormalize, eval_dataset, heldout_dataset,
                   image_folder, load_cifar10, normalize, pixel_range)
from .errors import (CheckpointError, ConfigError, DataNotFoundError, ExportError, SardfqError,
                     UnknownNameError, UnsupportedModelError, WeightsNotFoundError)
from .evaluate import EvalResult, PerImage, evaluate
from .experiments import (ExperimentConfig, ExperimentResult, SweepReport, SweepSpec, load_results, load_sweep,
                          mean_std_table, quantize_to_folder, quickstart_configs, quickstart_table, run_experiment,
                          run_or_load, run_quickstart, run_sweep, run_to_folder, summarize_results)
from .models import (DEFAULT_MODEL, ModelInfo, available_models, check_architecture, embedded_models,
                     load_model, save_model_folder)
from .quant import (QuantConfig, ReconConfig, ReconResult, load_quantized, quantize, quantizers, reconstruct,
                    save_quantized, set_quant_state)
from .quant.export import (OnnxExport, export_onnx, integer_op_counts, load_onnx, onnx_metadata,
                           optimized_op_counts)
from .synthesis import (METHODS, PRIORS, Method, SynthesisConfig, apa_blocks, apa_loss, crop_regions, draw_priors,
                        draw_regions, patch_similarity_entropy, quadrant_mask, real_attention_bank,
                        record_head_outputs, save_image_grid, soft_cross_entropy, soft_targets, synthesize,
                        transform_priors, tv_l2, tv_loss, tv_target)
from .version import __version__

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
    "ExperimentConfig", "ExperimentResult", "SweepReport", "SweepSpec", "attention_statistics",
    "load_results", "load_sweep", "mean_std_table", "patch_attention", "quantize_to_folder", "quickstart_configs",
    "quickstart_table", "region_predictions", "run_experiment", "run_or_load", "run_quickstart", "run_sweep",
    "run_to_folder", "summarize_results",
    # quantization
    "QuantConfig", "ReconConfig", "ReconResult", "load_quantized", "quantize", "quantizers",
    "reconstruct", "save_quantized", "set_quant_state",
    # deployment: ONNX export, run in onnxruntime
    "ExportError", "OnnxExport", "export_onnx", "integer_op_counts", "load_onnx", "onnx_metadata",
    "optimized_op_counts",
    # inspecting calibration sets (more in sardfq.analysis.study: study, correlations, recreate_sets)
    "InspectReport", "inspect_calibration",
]
