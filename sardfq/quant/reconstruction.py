"""Block-wise reconstruction (BRECQ-style) of a calibrated quantized ViT/DeiT/Swin.

Block by block, in forward order, minimize the mean squared error between the FP model's block
output `X_l` and the quantized block's output `Xq_l`, training through the straight-through
quantizers with Adam (lr 4e-5, cosine decay to 0, batches of 32 calibration images) [paper].

What is trained [choice]: the block's Linear weights (and biases) and the per-tensor activation
scales (LSQ-style, through the straight-through rounding). Weight scales and zero points stay at
their calibrated values, as do LayerNorms and the log2 attention scale: the weights move within
fixed grids, which keeps the optimization small and close to BRECQ without its rounding variables.

Block inputs come from the *quantized* model (the output of the already reconstructed, quantized
previous blocks), while targets are the FP model's outputs on FP inputs [choice, as BRECQ]: each
block then learns to undo the error accumulated upstream, on the inputs it will see at inference.

Units: ViT/DeiT `blocks.i`; Swin `layers.i.downsample` (patch merging, when it holds a quantized
Linear) and `layers.i.blocks.j`. The patch embedding and the head (8 bits) are not trained.
"""
from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Iterator

import torch
import torch.nn.functional as F
from timm.models.swin_transformer import SwinTransformer
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..calibset import CalibrationSet, calibration_images
from ..errors import ConfigError
from ..models import model_device
from ..precision import autocast
from .config import ReconConfig
from .modules import QuantConv2d, QuantLinear
from .quantizers import UniformQuantizer

log = logging.getLogger(__name__)

@dataclass
class BlockRecon:
    block: str  # qualified module name, e.g. blocks.3
    mse_before: float  # output MSE against the FP block over all calibration images
    mse_after: float
    seconds: float


@dataclass
class ReconResult:
    config: ReconConfig
    blocks: list[BlockRecon] = field(default_factory=list)
    seconds: float = 0.0
    n_images: int = 0

    def to_dict(self) -> dict:
        return {"config": self.config.to_dict(), "blocks": [asdict(b) for b in self.blocks],
                "seconds": self.seconds, "n_images": self.n_images}


def reconstruction_units(model: nn.Module) -> list[str]:
    """Qualified names of the modules reconstructed one at a time, in forward order."""
    if isinstance(model, SwinTransformer):
        names = []
        for i, stage in enumerate(model.layers):
            if not isinstance(stage.downsample, nn.Identity):  # patch merging: a Linear of its own
                names.append(f"layers.{i}.downsample")
            names += [f"layers.{i}.blocks.{j}" for j in range(len(stage.blocks))]
        return names
    if hasattr(model, "blocks"):
        return [f"blocks.{i}" for i in range(len(model.blocks))]
    raise TypeError(f"{type(model).__name__} is neither a timm VisionTransformer nor a SwinTransformer")


class _Stop(Exception):
    pass


@torch.no_grad()
def _unit_inputs(model: nn.Module, name: str, images: Tensor, batch_size: int) -> Tensor:
    """The input of module `name` for every image, stopping each forward pass there."""
    unit, device, chunks = model.get_submodule(name), model_device(model), []

    def grab(_module, args):
        chunks.append(args[0])
        raise _Stop

    handle = unit.register_forward_pre_hook(grab)
    try:
        for batch in images.split(batch_size):
            try:
                model(batch.to(device))
            except _Stop:
                pass
    finally:
        handle.remove()
    return torch.cat(chunks)


@torch.no_grad()
def unit_outputs(model: nn.Module, names: list[str], images: Tensor, batch_size: int) -> dict[str, Tensor]:
    """The output of each module in `names` for every image (one full forward pass per batch)."""
    device, outputs = model_device(model), {n: [] for n in names}
    handles = [model.get_submodule(n).register_forward_hook(
        lambda _m, _a, out, n=n: outputs[n].append(out)) for n in names]
    try:
        for batch in images.split(batch_size):
            model(batch.to(device))
    finally:
        for h in handles:
            h.remove()
    return {n: torch.cat(chunks) for n, chunks in outputs.items()}


@torch.no_grad()
def _run(unit: nn.Module, inputs: Tensor, batch_size: int) -> Tensor:
    return torch.cat([unit(batch) for batch in inputs.split(batch_size)])


def _mse(unit: nn.Module, inputs: Tensor, target: Tensor, batch_size: int) -> float:
    return F.mse_loss(_run(unit, inputs, batch_size), target).item()


@contextmanager
def _trainable(model: nn.Module, unit: nn.Module, train: tuple[str, ...]) -> Iterator[list[nn.Parameter]]:
    """Make only the chosen tensors of `unit` trainable; on exit store trained scales, restore flags."""
    flags = {p: p.requires_grad for p in model.parameters()}
    for p in model.parameters():
        p.requires_grad_(False)
    params: list[nn.Parameter] = []
    scaled: list[UniformQuantizer] = []
    for module in unit.modules():
        if isinstance(module, (QuantLinear, QuantConv2d)):
            if "weights" in train and module.w_quant.bits is not None:
                params.append(module.weight)
            if "biases" in train and module.bias is not None:
                params.append(module.bias)
    if "act_scales" in train:
        for qz in unit.modules():
            if isinstance(qz, UniformQuantizer) and qz.channels is None and qz.active and qz.role != "weight":
                params.append(qz.train_scale())
                scaled.append(qz)
    for p in params:
        p.requires_grad_(True)
    try:
        yield params
    finally:
        for qz in scaled:
            qz.commit_scale()
        for p, flag in flags.items():
            p.requires_grad_(flag)


def reconstruct(q_model: nn.Module, fp_model: nn.Module,
                calib: Tensor | CalibrationSet | str, config: ReconConfig = ReconConfig(), *,
                progress: bool = True) -> ReconResult:
    """Reconstruct `q_model` (from `sardfq.quantize`, changed in place) block by block against
    `fp_model` on the calibration images; returns each block's output MSE before and after."""
    if not isinstance(config, ReconConfig):
        raise ConfigError(f"config must be a ReconConfig, got {type(config).__name__}")
    start = time.perf_counter()
    images = calibration_images(calib, (getattr(q_model, "sardfq_quant", None) or {}).get("info"))
    device = model_device(q_model)
    fp_model.eval()
    q_model.eval()  # dropout / drop-path off: the block is fitted as it runs at inference
    names = reconstruction_units(q_model)
    chunk = max(config.batch_size, 32)
    targets = {n: t.to(device) for n, t in unit_outputs(fp_model, names, images, chunk).items()}
    inputs = _unit_inputs(q_model, names[0], images, chunk)
    result = ReconResult(config=config, n_images=len(images))
    for index, name in enumerate(names):
        began = time.perf_counter()
        unit, target = q_model.get_submodule(name), targets[name]
        before = _mse(unit, inputs, target, chunk)
        if config.iters > 0:
            _optimize(q_model, unit, inputs, target, config, seed=config.seed + index,
                      desc=f"reconstruct {name}", progress=progress)
        after = _mse(unit, inputs, target, chunk)
        result.blocks.append(BlockRecon(name, before, after, time.perf_counter() - began))
        log.info("%s: output MSE %.4g -> %.4g (%.1f s)", name, before, after, result.blocks[-1].seconds)
        inputs = _run(unit, inputs, chunk)  # the quantized output feeds the next block
    result.seconds = time.perf_counter() - start
    meta = getattr(q_model, "sardfq_quant", None)
    if isinstance(meta, dict):
        meta["reconstruction"] = result.to_dict()
    return result


def _optimize(model: nn.Module, unit: nn.Module, inputs: Tensor, target: Tensor, config: ReconConfig,
              *, seed: int, desc: str, progress: bool) -> None:
    generator = torch.Generator().manual_seed(seed)
    n = len(inputs)
    with _trainable(model, unit, config.train) as params:
        if not params:
            return
        optimizer = torch.optim.Adam(params, lr=config.lr)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.iters, eta_min=0.0)
        bar = tqdm(range(config.iters), desc=desc, disable=not progress, leave=False)
        for _ in bar:
            index = torch.randperm(n, generator=generator)[:config.batch_size].to(inputs.device)
            with autocast(config.autocast, inputs.device):
                output = unit(inputs[index])
            loss = F.mse_loss(output.float(), target[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            bar.set_postfix(mse=f"{loss.item():.4g}", refresh=False)
