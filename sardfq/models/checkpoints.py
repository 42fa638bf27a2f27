"""Weights from a file into a model: a state dict from safetensors, or from a torch file read with
`weights_only=True`, refused when it holds anything but tensors and plain values (no pickled code
runs), values of the wrong kind, or NaN. A model folder's weights and `--checkpoint` both come
through here."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from ..errors import CheckpointError
from ..model_files import safetensors_header


def load_checkpoint(model: nn.Module, path: str | os.PathLike) -> None:
    """Load a state dict (.safetensors, or a torch file holding one) into `model`, strictly."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.suffix == ".safetensors":
        safetensors_header(path)  # a file that is not safetensors, or is cut short, named as such
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = load_torch_file(path)
            for key in ("state_dict", "model", "model_ema"):
                if isinstance(state, dict) and key in state and isinstance(state[key], dict):
                    state = state[key]
                    break
    except CheckpointError as exc:
        raise CheckpointError(f"checkpoint {exc}") from None
    except Exception as exc:  # corrupt or truncated files raise many different types
        raise CheckpointError(f"could not read checkpoint {path}: {exc}") from exc
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(state).__name__}, not a state dict")
    check_state_dict(model, state, path)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0:3]
        raise CheckpointError(
            f"checkpoint {path} does not fit {type(model).__name__}: {' '.join(first)}"
        ) from exc


def load_torch_file(path: str | os.PathLike):
    """`torch.load(path, weights_only=True)` on the CPU, the one place sardfq reads a torch file:
    tensors and plain values only. A file whose pickle names anything else (code to run) is a
    `CheckpointError` naming what it asked for, before any of it runs."""
    import pickle

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        asked = next((line.split("error:", 1)[1].split(" was not")[0].strip() for line in str(exc).splitlines()
                      if "WeightsUnpickler error:" in line), str(exc).splitlines()[0] if str(exc) else "")
        raise CheckpointError(f"{path} holds more than tensors and plain values ({asked}); sardfq loads "
                              "no pickled code: save the weights as a state dict of tensors, or as "
                              "safetensors") from None


def check_state_dict(model: nn.Module, state: Mapping, source) -> None:
    """Raise `CheckpointError` for weights that `load_state_dict` would take silently wrong:
    values that are not tensors, integer values for a floating-point parameter (cast, not
    refused, by torch), and NaN or infinite values (a diverged run). `source` names the file."""
    own = model.state_dict()
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{source}: {key!r} is a {type(value).__name__}, not a tensor")
        mine = own.get(key)
        if mine is not None and mine.is_floating_point() and not value.is_floating_point():
            raise CheckpointError(f"{source}: {key!r} holds {value.dtype} values where the model has "
                                  f"{mine.dtype} ones: these are not this model's trained weights")
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise CheckpointError(f"{source}: {key!r} holds NaN or infinite values (the weights of a "
                                  "diverged or damaged run); use other weights")
