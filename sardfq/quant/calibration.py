"""Calibration: set every quantizer's range from the weights and from calibration images.

Weight quantizers search their per-channel ranges on the weights themselves. Activation quantizers
observe the tensors they would quantize during full-precision forward passes over the calibration
images (every quantizer sees FP inputs, so the result does not depend on the order of layers), then
search a range on what they saw.
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..calibset import CalibrationSet
from ..models import ModelInfo
from .modules import QuantConv2d, QuantLinear
from .placement import quantizers

log = logging.getLogger(__name__)


def calibration_images(calib: Tensor | CalibrationSet | str | os.PathLike,
                       info: ModelInfo | None = None) -> Tensor:
    """The images (N, C, H, W, normalized) of a tensor, a `CalibrationSet` or a calibration file."""
    if isinstance(calib, (str, os.PathLike)):
        calib = CalibrationSet.load(Path(calib))
    images = calib.images if isinstance(calib, CalibrationSet) else calib
    if not isinstance(images, Tensor) or images.ndim != 4:
        raise ValueError(f"calibration images must be a tensor N, C, H, W; got {type(images).__name__} "
                         f"{tuple(getattr(images, 'shape', ()))}")
    if info is not None and tuple(images.shape[1:]) != tuple(info.input_size):
        raise ValueError(f"calibration images are {tuple(images.shape[1:])} but {info.name} takes "
                         f"{tuple(info.input_size)}")
    if len(images) == 0:
        raise ValueError("no calibration images")
    return images.float()


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def calibrate(q_model: nn.Module, images: Tensor, *, batch_size: int = 32, seed: int = 0,
              progress: bool = False) -> dict:
    """Calibrate every quantizer of `q_model` on `images`; returns timings and counts.

    `seed` drives the subsampling of large activations (values kept per batch for the search).
    """
    start = time.perf_counter()
    device = model_device(q_model)
    for module in q_model.modules():
        if isinstance(module, (QuantLinear, QuantConv2d)) and module.w_quant.bits is not None:
            module.w_quant.calibrate(module.weight.detach())
    weights_s = time.perf_counter() - start
    generator = torch.Generator(device=device).manual_seed(seed)
    observers = {name: qz for name, qz in quantizers(q_model).items()
                 if not name.endswith("w_quant") and qz.bits is not None}
    for qz in observers.values():
        qz.start_observing(generator)
    was_training = q_model.training
    q_model.eval()
    try:
        batches = images.split(batch_size)
        for batch in tqdm(batches, desc="calibrate", disable=not progress, leave=False):
            q_model(batch.to(device))
    except BaseException:
        for qz in observers.values():
            qz._observed = None  # a failed pass leaves the quantizers as they were
        raise
    finally:
        q_model.train(was_training)
    observed_s = time.perf_counter() - start - weights_s
    for qz in observers.values():
        qz.finish_observing()
    seconds = time.perf_counter() - start
    log.info("calibrated %d weight and %d activation quantizers on %d images in %.1f s",
             sum(1 for n, q in quantizers(q_model).items() if n.endswith("w_quant") and q.bits),
             len(observers), len(images), seconds)
    return {"seconds": seconds, "weights_s": weights_s, "forward_s": observed_s,
            "search_s": seconds - weights_s - observed_s, "n_images": len(images)}
