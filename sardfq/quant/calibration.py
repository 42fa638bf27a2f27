"""Calibration: set every quantizer's range from the weights and from calibration images.

Weight quantizers get per-channel ranges searched on the weights themselves. Every other quantizer
gets an `Observer` for forward passes over the calibration images (with the weights quantized
already), during which it lets its input through unquantized, so that no activation range depends on
another; then a range searched on what it saw. The searches are `sardfq.quant.observers`'.
"""
from __future__ import annotations

import logging
import time

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..models import model_device
from .modules import QuantConv2d, QuantLinear
from .observers import Observer, choose_qparams
from .quantizers import Quantizer, quantizers

log = logging.getLogger(__name__)


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
            calibrate_quantizer(module.w_quant, module.weight.detach())
    weights_s = time.perf_counter() - start
    generator = torch.Generator(device=device).manual_seed(seed)
    observed = {name: qz for name, qz in quantizers(q_model).items()
                if qz.role != "weight" and qz.bits is not None}
    for qz in observed.values():
        qz.observer = Observer(generator)
    was_training = q_model.training
    q_model.eval()
    try:
        batches = images.split(batch_size)
        for batch in tqdm(batches, desc="calibrate", disable=not progress, leave=False):
            q_model(batch.to(device))
    except BaseException:
        for qz in observed.values():
            qz.observer = None  # a failed pass leaves the quantizers as they were
        raise
    finally:
        q_model.train(was_training)
    observed_s = time.perf_counter() - start - weights_s
    for qz in observed.values():
        values, qz.observer = qz.observer.values(), None
        if values is not None:
            calibrate_quantizer(qz, values)
    seconds = time.perf_counter() - start
    log.info("calibrated %d weight and %d activation quantizers on %d images in %.1f s",
             sum(1 for q in quantizers(q_model).values() if q.role == "weight" and q.bits),
             len(observed), len(images), seconds)
    return {"seconds": seconds, "weights_s": weights_s, "forward_s": observed_s,
            "search_s": seconds - weights_s - observed_s, "n_images": len(images)}


def calibrate_quantizer(quantizer: Quantizer, values: Tensor) -> None:
    """Set one quantizer's range from `values` (a weight, or what it would quantize) with the
    search of its kind and rule (`sardfq.quant.observers.choose_qparams`)."""
    quantizer.set_qparams(**choose_qparams(quantizer, values))
