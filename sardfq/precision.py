"""Mixed precision: bf16 autocast around the forward passes of synthesis and reconstruction.

`autocast` is a config value: None (float32 throughout) or "bf16". The loss terms stay in float32
(see `sardfq.losses`): autocast covers the model's matrix products, where the time goes.
"""
from __future__ import annotations

import contextlib
from typing import ContextManager

import torch

from .errors import ConfigError

AUTOCAST_DTYPES = {"bf16": torch.bfloat16}


def check_autocast(value, where: str) -> None:
    """Raise ConfigError naming `where` (e.g. "SynthesisConfig.autocast") unless `value` is valid."""
    if value is not None and value not in AUTOCAST_DTYPES:
        choices = ", ".join(["None", *(repr(k) for k in AUTOCAST_DTYPES)])
        raise ConfigError(f"{where} must be one of {choices}; got {value!r}")


def autocast(value: str | None, device: torch.device | str) -> ContextManager:
    """`torch.autocast` on `device`'s type (cpu, cuda, ...) for `value`; a no-op for None."""
    if value is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=AUTOCAST_DTYPES[value])
