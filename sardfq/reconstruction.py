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
import math
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from typing import Iterator

import torch
import torch.nn.functional as F
from timm.models.swin_transformer import SwinTransformer
from torch import Tensor, nn
from tqdm.auto import tqdm

from .calibset import CalibrationSet
from .errors import ConfigError
from .precision import autocast, check_autocast
from .quant.calibration import calibration_images, model_device
from .quant.modules import QuantConv2d, QuantLinear
from .quant.quantizers import UniformQuantizer
from .registry import reject_unknown

log = logging.getLogger(__name__)

TRAINABLE = ("weights", "biases", "act_scales")

# [choice] block-reconstruction steps per block, the one default everywhere (ReconConfig, the
# experiment, `sardfq run` and `sardfq quantize`): the first author's related I&S-ViT code uses 1000
# at W3/W4 (200 at W6), and W4A4 is the paper's main setting; the paper's notes say 100. 0 means
# calibration only.
RECON_ITERS = 1000


@dataclass(frozen=True)
class ReconConfig:
    """Settings of `reconstruct`.

    - `iters`: optimization steps per block, 0: calibration only [choice: `RECON_ITERS`].
    - `lr`: Adam learning rate, cosine-decayed to 0 over `iters` [paper: 4e-5].
    - `batch_size`: calibration images per step [paper: 32].
    - `train`: which tensors move, any of "weights", "biases", "act_scales" [choice: all three].
    - `seed`: the order of the batches.
    - `autocast`: None (float32) or "bf16", autocast of the training steps' forward passes [choice:
      None, as bf16 cost W4A4 accuracy, see results/bf16_check]; the before/after MSEs and the
      outputs fed to the next block stay float32.
    """

    iters: int = RECON_ITERS
    lr: float = 4e-5
    batch_size: int = 32
    train: tuple[str, ...] = TRAINABLE
    seed: int = 0
    autocast: str | None = None

    def __post_init__(self):
        if isinstance(self.iters, bool) or not isinstance(self.iters, int) or self.iters < 0:
            raise ConfigError(f"ReconConfig.iters must be an integer >= 0, got {self.iters!r}")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ConfigError(f"ReconConfig.batch_size must be an integer >= 1, got {self.batch_size!r}")
        if not isinstance(self.lr, (int, float)) or not math.isfinite(self.lr) or self.lr <= 0:
            raise ConfigError(f"ReconConfig.lr must be a positive number, got {self.lr!r}")
        train = (self.train,) if isinstance(self.train, str) else tuple(self.train)
        unknown = [t for t in train if t not in TRAINABLE]
        if unknown:
            raise ConfigError(f"ReconConfig.train: unknown {unknown}; choose among {TRAINABLE}")
        object.__setattr__(self, "train", train)
        check_autocast(self.autocast, "ReconConfig.autocast")

    def to_dict(self) -> dict:
        return {**asdict(self), "train": list(self.train)}

    @classmethod
    def from_dict(cls, data: dict) -> "ReconConfig":
        """From a plain mapping (JSON); an unknown key is a ConfigError naming it."""
        reject_unknown("ReconConfig", data, (f.name for f in fields(cls)))
        return cls(**data)


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
def _unit_outputs(model: nn.Module, names: list[str], images: Tensor, batch_size: int) -> dict[str, Tensor]:
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
        for name, qz in unit.named_modules():
            if isinstance(qz, UniformQuantizer) and qz.channels is None and qz.active \
                    and not name.endswith("w_quant"):
                qz._scale_param = nn.Parameter(qz.scale.detach().clone())
                scaled.append(qz)
                params.append(qz._scale_param)
    for p in params:
        p.requires_grad_(True)
    try:
        yield params
    finally:
        for qz in scaled:
            qz.scale.copy_(qz._scale_param.detach().abs().clamp(min=1e-8))
            qz._scale_param = None
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
    images = calibration_images(calib)
    device = model_device(q_model)
    fp_model.eval()
    q_model.eval()  # dropout / drop-path off: the block is fitted as it runs at inference
    names = reconstruction_units(q_model)
    chunk = max(config.batch_size, 32)
    targets = {n: t.to(device) for n, t in _unit_outputs(fp_model, names, images, chunk).items()}
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
