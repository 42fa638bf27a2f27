"""sardfq: data-free quantization of Vision Transformers with SARDFQ (ICCV 2025).

The public API; notebooks, the CLI and the tests use these names. The package is built in wings
over a common floor (models, data, attention, calibration sets, evaluation, errors, io): `synthesis`
(calibration images from the model alone), `quant` (fake quantization and reconstruction),
`experiments` (one configured run, its record, sweeps) and `analysis` (comparisons, the zoo,
diagnostics, figures). Imports run downwards only (`tests/test_layout.py` keeps it so).
"""
from .analysis import (Comparison, InspectReport, attention_statistics, compare, compare_per_image,
                       inspect_calibration, patch_attention, region_predictions, viz)
from .attention import attention_blocks, record_attention
from .calibset import CalibrationSet
from .data import (ArrayDataset, ImageArrays, data_root, denormalize, eval_dataset, heldout_dataset,
                   image_folder, load_cifar10, normalize, pixel_range)
from .errors import (CheckpointError, ConfigError, DataNotFoundError, ExportError, SardfqError,
                     UnknownNameError, UnsupportedModelError, WeightsNotFoundError)
from .evaluate import EvalResult, PerImage, evaluate
from .experiments import (ExperimentConfig, ExperimentResult, SweepReport, SweepSpec, load_results, load_sweep,
                          mean_std_table, quickstart_configs, quickstart_table, run_experiment, run_or_load,
                          run_sweep, summarize_results)
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
    "load_results", "load_sweep", "mean_std_table", "patch_attention", "quickstart_configs", "quickstart_table",
    "region_predictions", "run_experiment", "run_or_load", "run_sweep", "summarize_results",
    # quantization
    "QuantConfig", "ReconConfig", "ReconResult", "load_quantized", "quantize", "quantizers",
    "reconstruct", "save_quantized", "set_quant_state",
    # deployment: ONNX export, run in onnxruntime
    "ExportError", "OnnxExport", "export_onnx", "integer_op_counts", "load_onnx", "onnx_metadata",
    "optimized_op_counts",
    # inspecting calibration sets (more in sardfq.analysis.study: study, correlations, recreate_sets)
    "InspectReport", "inspect_calibration",
]
