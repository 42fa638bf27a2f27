"""The public verbs of quantization: `quantize`, `save_quantized`, `load_quantized`.

A quantized model is the timm model itself with quantized modules swapped in (an ordinary
`nn.Module`, on the FP model's device). It carries `q_model.sardfq_quant`, a dict with the model
name, the timm arguments that rebuild its architecture, the `QuantConfig` and the `ModelInfo`, which
is what `save_quantized` writes beside the weights.

Saved folder: `model.safetensors` (the state dict: FP parameter names plus quantizer buffers) and
`quant_config.json` (format marker and version, model name, architecture arguments, QuantConfig,
ModelInfo, calibration record). The ModelInfo's `arch`/`arch_config` rebuild the architecture,
so a folder quantized from a model folder loads without that folder.
"""
from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import torch
from timm.models.swin_transformer import SwinTransformer
from torch import Tensor, nn

from ..calibset import CalibrationSet, calibration_images
from ..errors import CheckpointError, ConfigError, SardfqError
from ..io import atomic_folder, atomic_path, atomic_write_text
from ..model_files import QUANTIZED_CONFIG_FILE
from ..models import (ModelInfo, arch_kwargs_from_json, build_architecture, check_architecture, check_state_dict,
                      load_model)
from .calibration import calibrate
from .config import QuantConfig
from .placement import build_quant_model

log = logging.getLogger(__name__)

FORMAT = "sardfq-quantized"
FORMAT_VERSION = 1
CONFIG_FILE = QUANTIZED_CONFIG_FILE  # "quant_config.json": what marks a saved quantized model
WEIGHTS_FILE = "model.safetensors"


def architecture_kwargs(model: nn.Module) -> dict:
    """The `load_model` / `timm.create_model` arguments that rebuild `model`'s architecture.

    Read from the built modules (depth, widths, heads, image and patch size, classes), so models
    made with overrides such as `img_size=32, depth=2` rebuild without being told how they were made.
    """
    pe = model.patch_embed
    kwargs = {"img_size": list(pe.img_size), "patch_size": list(pe.patch_size),
              "embed_dim": int(model.embed_dim), "num_classes": int(model.num_classes)}
    if isinstance(model, SwinTransformer):
        blocks = [stage.blocks for stage in model.layers]
        first = blocks[0][0]
        # a window clamped to a small grid rebuilds identically from the clamped size
        kwargs.update(depths=[len(b) for b in blocks],
                      num_heads=[int(b[0].attn.num_heads) for b in blocks],
                      window_size=list(first.window_size),
                      mlp_ratio=first.mlp.fc1.out_features / first.mlp.fc1.in_features)
    else:
        first = model.blocks[0]
        kwargs.update(depth=len(model.blocks), num_heads=int(first.attn.num_heads),
                      mlp_ratio=first.mlp.fc1.out_features / first.mlp.fc1.in_features)
    return kwargs


def quantize(fp_model: nn.Module, info: ModelInfo, config: QuantConfig = QuantConfig(),
             calib: Tensor | CalibrationSet | str | os.PathLike | None = None, *,
             batch_size: int = 32, seed: int = 0, progress: bool = False) -> nn.Module:
    """A calibrated fake-quantized copy of `fp_model` (left untouched) under `config`.

    `calib`: normalized calibration images (N, C, H, W), a `CalibrationSet` or its file. Without
    it the model comes back uncalibrated (for `load_quantized`, which fills in saved ranges).
    """
    if not isinstance(config, QuantConfig):
        raise ConfigError(f"config must be a QuantConfig, got {type(config).__name__}")
    start = time.perf_counter()
    check_architecture(fp_model, info.name)
    q_model = build_quant_model(fp_model, config)
    # the architecture's own arguments when load_model recorded them (any timm ViT); else read off
    # the modules (standard ViT/DeiT/Swin only)
    kwargs = dict(info.arch_config) if info.arch else architecture_kwargs(fp_model)
    q_model.sardfq_quant = {"model": info.name, "model_kwargs": kwargs,
                            "config": config, "info": info, "calibration": None}
    if calib is not None:
        images = calibration_images(calib, info)
        record = calibrate(q_model, images, batch_size=batch_size, seed=seed, progress=progress)
        q_model.sardfq_quant["calibration"] = {**record, "seed": seed, "batch_size": batch_size}
        log.info("quantized %s at %s in %.1f s", info.name, config.name, time.perf_counter() - start)
    return q_model


def _meta(q_model: nn.Module) -> dict:
    meta = getattr(q_model, "sardfq_quant", None)
    if not isinstance(meta, dict):
        raise ConfigError("this model was not made by sardfq.quantize (it has no sardfq_quant record)")
    return meta


def save_quantized(q_model: nn.Module, folder: str | os.PathLike) -> Path:
    """Write `q_model` to `folder`: safetensors weights + JSON config. The folder is replaced whole
    and at once (`sardfq.io.atomic_folder`), so a crash leaves the old folder or the new one, never
    new weights beside an old config; an existing `folder` must be a saved quantized model or
    empty. Returns the folder."""
    from safetensors.torch import save_file

    meta = _meta(q_model)
    state = {k: v.detach().cpu().contiguous() for k, v in q_model.state_dict().items()}
    record = {"format": FORMAT, "format_version": FORMAT_VERSION, "model": meta["model"],
              "model_kwargs": meta["model_kwargs"], "quant_config": meta["config"].to_dict(),
              "bits": meta["config"].name, "info": meta["info"].to_dict(),
              "calibration": meta.get("calibration"), "reconstruction": meta.get("reconstruction")}
    with atomic_folder(folder, ours=(CONFIG_FILE,)) as tmp:
        with atomic_path(tmp / WEIGHTS_FILE) as weights:
            save_file(state, str(weights), metadata={"format": FORMAT})
        atomic_write_text(tmp / CONFIG_FILE, json.dumps(record, indent=1))
    return Path(folder)


def is_quantized_folder(path: str | os.PathLike) -> bool:
    """Whether `path` is a folder written by `save_quantized` (it has the config file)."""
    return Path(path).is_dir() and (Path(path) / CONFIG_FILE).is_file()


def load_quantized(folder: str | os.PathLike, *, device: str | torch.device = "cpu"
                   ) -> tuple[nn.Module, ModelInfo]:
    """Rebuild a model saved by `save_quantized`; returns `(q_model, info)` in eval mode."""
    from safetensors.torch import load_file

    folder = Path(folder)
    config_path, weights_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    if not config_path.is_file() or not weights_path.is_file():
        raise CheckpointError(f"{folder} is not a saved quantized model: it needs {CONFIG_FILE} and "
                              f"{WEIGHTS_FILE} (write one with sardfq.save_quantized or `sardfq quantize --out`)")
    try:
        record = json.loads(config_path.read_text())
        if not isinstance(record, dict):
            raise ValueError(f"it holds a {type(record).__name__}, not a JSON object")
        if record.get("format") != FORMAT:
            raise ValueError(f"format is {record.get('format')!r}, not {FORMAT!r}")
        if record.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"format version {record.get('format_version')} (this sardfq reads {FORMAT_VERSION})")
        if not isinstance(record.get("quant_config"), dict):
            raise ValueError("its quant_config is not a JSON object")
        config = QuantConfig.from_dict(record["quant_config"])
        name, kwargs = record["model"], record["model_kwargs"]
        saved_info = record.get("info") or {}
        if not isinstance(name, str) or not isinstance(kwargs, dict) or not isinstance(saved_info, dict):
            raise ValueError("model must be a name, model_kwargs and info JSON objects")
    except (ValueError, KeyError, TypeError, ConfigError) as exc:
        raise CheckpointError(f"could not read {config_path}: {exc}") from exc
    try:
        state = load_file(str(weights_path))
    except Exception as exc:  # truncated or foreign files raise many different types
        raise CheckpointError(f"could not read {weights_path}: {exc}") from exc
    try:  # the architecture through the same checks as a model folder's (sardfq.models)
        if saved_info.get("arch"):  # the architecture itself: no need for the model's name to resolve
            fp_model = build_architecture(saved_info["arch"], saved_info.get("arch_config"))
            info = ModelInfo.from_dict(saved_info)
        else:  # folders written before ModelInfo.arch
            fp_model, info = load_model(name, pretrained=False,
                                        **{str(k): arch_kwargs_from_json(k, v) for k, v in kwargs.items()})
    except (SardfqError, TypeError) as exc:
        raise CheckpointError(f"{config_path}: cannot rebuild the model: {exc}") from None
    q_model = quantize(fp_model, info, config)
    check_state_dict(q_model, state, weights_path)
    try:
        q_model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = " ".join(str(exc).splitlines()[:3])
        raise CheckpointError(f"{weights_path} does not fit {name} at {config.name}: {first}") from exc
    q_model.sardfq_quant.update(calibration=record.get("calibration"),
                                reconstruction=record.get("reconstruction"))
    return q_model.to(device).eval(), info
