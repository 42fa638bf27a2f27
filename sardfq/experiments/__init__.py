"""The experiments wing: one experiment from one configuration, its record, and sweeps of them.

`ExperimentConfig` (`config`) holds a model, a seed and the nested `SynthesisConfig`, `QuantConfig`
and `ReconConfig`; `run_experiment` (`run`) synthesizes, quantizes, reconstructs and evaluates,
returning an `ExperimentResult` (`records`, with the tables made from many records), and the
verbs beside it run what the commands run (`run_to_folder`, `synthesize_to_file`,
`quantize_to_folder`, `evaluate_saved`, `run_quickstart`); `estimate` says how long a run will take before it starts; `run_sweep`
(`sweep`) runs a grid of them, resumably, on local processes or Dask.
"""
from .config import ExperimentConfig
from .records import (ExperimentResult, load_results, mean_std_table, quickstart_table, read_records,
                      summarize_results)
from .run import (evaluate_saved, quantize_to_folder, quickstart_configs, run_experiment, run_or_load,
                  run_quickstart, run_to_folder, synthesize_to_file)
from .sweep import SweepReport, SweepSpec, load_sweep, run_sweep

__all__ = ["ExperimentConfig", "ExperimentResult", "SweepReport", "SweepSpec", "evaluate_saved", "load_results",
           "load_sweep", "mean_std_table", "quantize_to_folder", "quickstart_configs", "quickstart_table",
           "read_records", "run_experiment", "run_or_load", "run_quickstart", "run_sweep", "run_to_folder",
           "summarize_results", "synthesize_to_file"]
