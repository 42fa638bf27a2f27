"""Mixed precision: bf16 around the forward passes of synthesis and reconstruction.

`autocast` is a config value: None (float32 throughout), "bf16" (torch autocast: every matrix
product in bf16, and the ops after them in the dtype they are handed) or a mixed policy of
`MIXED_POLICIES` (bf16 products in chosen linear layers only, everything else in float32). The loss
terms stay in float32 (see `sardfq.synthesis.losses`): the matrix products are where the time goes.
"""
from __future__ import annotations

import contextlib
import fnmatch
from typing import ContextManager

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from .errors import ConfigError

AUTOCAST_DTYPES = {"bf16": torch.bfloat16}

# [choice] Mixed policies: the linear layers (timm module names) whose products run in bf16, their
# outputs cast back to float32. "bf16-mlp" keeps the attention maps in float32 (qkv, q @ k^T and the
# softmax), and the head, patch embedding, LayerNorms and GELUs: bf16 autocast everywhere cost W4A4
# accuracy (results/bf16_check), and these are the maps APA matches and the logits the labels read.
MIXED_POLICIES: dict[str, tuple[str, ...]] = {"bf16-mlp": ("*.mlp.fc1", "*.mlp.fc2", "*.attn.proj")}


def check_autocast(value, where: str, *, mixed: bool = True) -> None:
    """Raise ConfigError naming `where` (e.g. "SynthesisConfig.autocast") unless `value` is valid;
    `mixed=False` for the places that take no mixed policy."""
    allowed = [*AUTOCAST_DTYPES, *(MIXED_POLICIES if mixed else ())]
    if value is not None and value not in allowed:
        choices = ", ".join(["None", *(repr(k) for k in allowed)])
        raise ConfigError(f"{where} must be one of {choices}; got {value!r}")


def autocast(value: str | None, device: torch.device | str, model: nn.Module | None = None) -> ContextManager:
    """The precision `value` around a forward pass on `device`: a no-op for None, `torch.autocast`
    on the device's type for "bf16", a `Bf16Linears` mode over `model` for a mixed policy."""
    if value is None:
        return contextlib.nullcontext()
    if value in MIXED_POLICIES:
        if model is None:
            raise ValueError(f"the mixed precision policy {value!r} needs the model it applies to")
        return Bf16Linears(model, MIXED_POLICIES[value])
    return torch.autocast(torch.device(device).type, dtype=AUTOCAST_DTYPES[value])


class Bf16Linears(TorchFunctionMode):
    """Inside this mode, the `nn.Linear` layers of `model` whose qualified names match one of
    `patterns` (fnmatch) compute in bf16 (inputs, weight and bias rounded; the product accumulates
    in float32 in oneDNN / cuBLAS) and hand back float32; every other op runs as it would. Frozen
    weights are rounded once, on entry."""

    def __init__(self, model: nn.Module, patterns: tuple[str, ...]):
        super().__init__()
        self.layers = {id(m.weight): m for name, m in model.named_modules()
                       if isinstance(m, nn.Linear) and any(fnmatch.fnmatchcase(name, p) for p in patterns)}
        self._frozen: dict[int, tuple] = {}

    def __enter__(self):
        self._frozen = {key: (m.weight.detach().bfloat16(), None if m.bias is None else m.bias.detach().bfloat16())
                        for key, m in self.layers.items()
                        if not m.weight.requires_grad and (m.bias is None or not m.bias.requires_grad)}
        return super().__enter__()

    def __exit__(self, *exc):
        self._frozen = {}
        return super().__exit__(*exc)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.linear and len(args) >= 2 and id(args[1]) in self.layers:
            x, weight = args[0], args[1]
            bias = args[2] if len(args) > 2 else kwargs.get("bias")
            if id(weight) in self._frozen:
                weight16, bias16 = self._frozen[id(weight)]
            else:  # trainable: round on every call, so that the gradient reaches the float32 weight
                weight16, bias16 = weight.bfloat16(), None if bias is None else bias.bfloat16()
            return func(x.bfloat16(), weight16, bias16).to(x.dtype)
        return func(*args, **kwargs)
