"""How long a long run will take on this machine, from a short timed warm-up made before it starts.

`estimate_experiment(config)` (what `sardfq run` logs), `estimate_synthesis` (`estimate_synthesis_of`
for `sardfq synthesize`) and `estimate_reconstruction` (`estimate_quantization` for `sardfq
quantize`) time a few optimization steps and scale them to the run's length. A run of fewer than
`LONG_STEPS` steps per stage is not estimated (None). `log_estimate` says the result before the run
starts.

A warm-up never touches the run it estimates: it synthesizes a throw-away batch through its own
`synthesize` call (with a generator of its own: a run makes its generator when it starts), and
reconstructs a quantized copy of the model, which `quantize` makes anew; the run then gives the
same numbers as without it (tests/test_estimate.py).
"""
from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ..calibset import CalibrationSet, calibration_images
from ..models import ModelInfo, load_model, resolve_device
from ..quant.api import quantize
from ..quant.config import QuantConfig, ReconConfig
from ..quant.reconstruction import reconstruct, reconstruction_units
from ..synthesis.config import METHODS, SynthesisConfig
from ..synthesis.loop import synthesize
from .config import ExperimentConfig

log = logging.getLogger(__name__)

LONG_STEPS = 200  # [choice] a stage of fewer optimization steps takes minutes at most: not estimated
WARMUP_STEPS = 3  # [choice] timed steps per stage, after one untimed step
CALIBRATION_IMAGES = 8  # [choice] images the warm-up's quantized copy is calibrated on (its ranges do not matter)


@dataclass
class Estimate:
    """Estimated seconds per stage, with what each stage does (e.g. "1000 iterations x 32 images")."""

    seconds: dict[str, float] = field(default_factory=dict)
    work: dict[str, str] = field(default_factory=dict)
    warmup_seconds: float = 0.0
    warmup_images: Tensor | None = field(default=None, repr=False)  # what a synthesis warm-up made

    @property
    def total(self) -> float:
        return sum(self.seconds.values())

    def add(self, other: "Estimate | None") -> "Estimate":
        if other is not None:
            self.seconds.update(other.seconds)
            self.work.update(other.work)
            self.warmup_seconds += other.warmup_seconds
        return self

    def __str__(self) -> str:
        parts = [f"{stage} ({self.work[stage]}) about {format_seconds(s)}" for stage, s in self.seconds.items()]
        if len(parts) > 1:
            parts.append(f"in all about {format_seconds(self.total)}")
        return (", ".join(parts) + f" on this machine ({torch.get_num_threads()} torch threads; "
                f"from a timed warm-up of {self.warmup_seconds:.0f} s)")


def format_seconds(seconds: float) -> str:
    """A duration as a person reads it: '40 s', '4 min', '1.5 h'."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def synthesis_steps(config: SynthesisConfig) -> int:
    """Optimization steps of a synthesis: iterations times batches of images (0: no optimization)."""
    if not METHODS.get(config.method).optimizes:
        return 0
    return config.iterations * -(-config.n // config.batch_size)


def estimate_synthesis(model: nn.Module, info: ModelInfo, config: SynthesisConfig, *, device="cpu",
                       data_root=None, force: bool = False) -> Estimate | None:
    """The synthesis of `config`, timed on a throw-away batch of `WARMUP_STEPS` + 1 steps (its
    images in `warmup_images`); None for a short synthesis (unless `force`)."""
    steps = synthesis_steps(config)
    if not steps or (steps < LONG_STEPS and not force):
        return None
    began = time.perf_counter()
    warm = dataclasses.replace(config, n=min(config.n, config.batch_size), iterations=WARMUP_STEPS + 1)
    calib = synthesize(model, info, warm, device=device, data_root=data_root, progress=False)
    meta = calib.metadata
    setup = meta["seconds"] - meta["loop_seconds"]  # the method's own start (priors, probes)
    return Estimate(seconds={"synthesis": setup + meta["median_ms_per_iteration"] / 1000 * steps},
                    work={"synthesis": f"{config.iterations} iterations x {config.n} images"},
                    warmup_seconds=time.perf_counter() - began, warmup_images=calib.images)


def estimate_reconstruction(fp_model: nn.Module, info: ModelInfo, calib, quant: QuantConfig,
                            recon: ReconConfig, *, seed: int = 0, n_images: int | None = None,
                            force: bool = False) -> Estimate | None:
    """The calibration and reconstruction of `fp_model` on `n_images` calibration images (default:
    all of `calib`) under `quant` and `recon`, timed on a copy quantized on the first images of
    `calib`; None for a short reconstruction (unless `force`)."""
    units = len(reconstruction_units(fp_model))
    if recon.iters == 0 or (recon.iters * units < LONG_STEPS and not force):
        return None
    began = time.perf_counter()
    images = calibration_images(calib, info)
    n_images = n_images or len(images)
    scale = n_images / len(images)  # the passes over every image grow with their number
    few = images[:CALIBRATION_IMAGES]
    q_copy = quantize(fp_model, info, quant, few, seed=seed)
    calibration = (time.perf_counter() - began) * n_images / len(few)
    passes = reconstruct(q_copy, fp_model, images, dataclasses.replace(recon, iters=0), progress=False).seconds
    trained = reconstruct(q_copy, fp_model, images, dataclasses.replace(recon, iters=WARMUP_STEPS + 1),
                          progress=False).seconds
    per_step = max(trained - passes, 0.0) / ((WARMUP_STEPS + 1) * units)
    return Estimate(seconds={"calibration": calibration,
                             "reconstruction": passes * scale + per_step * recon.iters * units},
                    work={"calibration": f"{quant.name} on {n_images} images",
                          "reconstruction": f"{recon.iters} steps x {units} blocks"},
                    warmup_seconds=time.perf_counter() - began)


def estimate_experiment(config: ExperimentConfig, *, force: bool = False) -> Estimate | None:
    """The synthesis, calibration and reconstruction of `config`, from warm-ups; None when neither
    the synthesis nor the reconstruction is long (unless `force`)."""
    began = time.perf_counter()
    device = resolve_device(config.device, what="ExperimentConfig.device")
    fp_model, info = load_model(config.model, checkpoint=config.checkpoint, device=device)
    s, r = config.synthesis, config.recon
    long_recon = r.iters > 0 and (force or r.iters * len(reconstruction_units(fp_model)) >= LONG_STEPS)
    synth = estimate_synthesis(fp_model, info, s, device=device, data_root=config.data_root, force=force)
    if synth is None and not long_recon:
        return None
    estimate = Estimate().add(synth)
    if long_recon:
        images = synth.warmup_images if synth is not None else torch.randn(  # the cost does not depend on them
            min(s.n, r.batch_size), *info.input_size, generator=torch.Generator().manual_seed(0))
        estimate.add(estimate_reconstruction(fp_model, info, images, config.quant, r, seed=config.seed,
                                             n_images=s.n, force=True))
    estimate.warmup_seconds = time.perf_counter() - began
    return estimate


def estimate_quantization(config: ExperimentConfig, calibration, *, force: bool = False) -> Estimate | None:
    """The calibration and reconstruction that `quantize_to_folder(config, calibration)` will run,
    from a warm-up on its own copy of the model; None for a short reconstruction (unless `force`),
    told without loading anything when `config.recon.iters` is 0. The set is loaded before the
    model, as the run loads them, so that a bad input fails here as it would there."""
    if config.recon.iters == 0:
        return None
    calib = CalibrationSet.load(calibration)
    fp_model, info = load_model(config.model, checkpoint=config.checkpoint,
                                device=resolve_device(config.device, what="ExperimentConfig.device"))
    return estimate_reconstruction(fp_model, info, calib, config.quant, config.recon, seed=config.seed,
                                   force=force)


def estimate_synthesis_of(model: str, config: SynthesisConfig, *, checkpoint=None, device="cpu",
                          data_root=None, force: bool = False) -> Estimate | None:
    """`estimate_synthesis` of model `model` (its `checkpoint`), loaded for the warm-up only when the
    synthesis is long enough to be estimated (unless `force`)."""
    steps = synthesis_steps(config)
    if not steps or (steps < LONG_STEPS and not force):
        return None
    fp_model, info = load_model(model, checkpoint=checkpoint, device=device)
    return estimate_synthesis(fp_model, info, config, device=device, data_root=data_root, force=force)


def log_estimate(estimate: Estimate | None) -> None:
    """Say how long a long run will take before it starts (None: a short run, nothing said)."""
    if estimate is not None:
        logging.getLogger("sardfq").info("estimated: %s", estimate)
