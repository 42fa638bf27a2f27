"""Devices: the one place a device name is read (`resolve_device`), where a model is, and how a
record names the device it ran on."""
from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError


def resolve_device(name: str | torch.device | None = None, *, what: str = "device") -> torch.device:
    """torch.device for `name` (None: CUDA when available, else the CPU): the one place a device
    name is read. Asking for CUDA on a machine without it is a ConfigError that names `what` (a
    field or a command-line option)."""
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise ConfigError(f"{what}: {name!r} is not a device; use cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"{what}: {name!r} asked for, but this machine has no CUDA GPU; use cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"{what}: {name!r} asked for, but this machine has {torch.cuda.device_count()} "
                              "CUDA GPU(s), numbered from 0")
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise ConfigError(f"{what}: {name!r} asked for, but this machine has no Apple GPU; use cpu")
    elif device.type != "cpu":
        raise ConfigError(f"{what}: sardfq runs on cpu, cuda or mps, not {name!r}")
    return device


def model_device(model: nn.Module) -> torch.device:
    """Where a model's parameters are."""
    return next(model.parameters()).device


def device_description(device) -> str:
    """The device as a record states it: the GPU's name, or the CPU and its torch threads."""
    import platform

    device = torch.device(device)
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
