"""Where quantizers go: a table of timm module-name patterns, and the module swap that applies it.

`PLACEMENT` lists (pattern, role) pairs; the first pattern that matches a module's qualified name
gives its role, and the role gives its bit-widths from the `QuantConfig` (then `overrides`):

| role        | modules                                   | bits                                   |
|-------------|-------------------------------------------|----------------------------------------|
| `embed`     | `patch_embed.proj` (Conv2d)               | weight and input at `embed_bits`       |
| `linear`    | qkv, proj, fc1, fc2, Swin patch merging   | weight `w_bits`, input `a_bits`        |
| `attention` | timm `Attention`, Swin `WindowAttention`  | q, k, v `a_bits`; softmax `attn_bits`  |
| `head`      | `head` (ViT) / `head.fc` (Swin)           | weight and input at `head_bits`        |

Modules are replaced by qualified name on a deep copy; the FP model is never touched.
"""
from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from functools import lru_cache

from timm.layers.attention import Attention
from timm.models.swin_transformer import WindowAttention
from torch import nn

from .config import QuantConfig
from .modules import QuantAttention, QuantConv2d, QuantLinear, QuantWindowAttention
from .quantizers import UniformQuantizer, make_quantizer

_BLOCK_LINEARS = ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")

PLACEMENT: tuple[tuple[str, str], ...] = (
    ("patch_embed.proj", "embed"),
    *((f"blocks.*.{name}", "linear") for name in _BLOCK_LINEARS),
    ("blocks.*.attn", "attention"),
    *((f"layers.*.blocks.*.{name}", "linear") for name in _BLOCK_LINEARS),
    ("layers.*.blocks.*.attn", "attention"),
    ("layers.*.downsample.reduction", "linear"),
    ("head", "head"),
    ("head.fc", "head"),
)


@lru_cache(maxsize=None)
def _compile(pattern: str) -> re.Pattern:
    parts = []
    for part in pattern.split("."):
        parts.append({"*": r"[^.]+", "**": r".+"}.get(part, re.escape(part)))
    return re.compile(r"\.".join(parts) + "$")


def match(pattern: str, name: str) -> bool:
    """Whether qualified module `name` matches `pattern` (`*`: one name part, `**`: any number)."""
    return _compile(pattern).match(name) is not None


def role_of(name: str) -> str | None:
    for pattern, role in PLACEMENT:
        if match(pattern, name):
            return role
    return None


@dataclass(frozen=True)
class SiteBits:
    w_bits: int | None
    a_bits: int | None
    attn_bits: int | None = None


def bits_for(name: str, role: str, config: QuantConfig) -> SiteBits:
    """The bit-widths of the module `name` with `role`, overrides applied."""
    if role == "embed":
        bits = {"w_bits": config.embed_bits, "a_bits": config.embed_bits}
    elif role == "head":
        bits = {"w_bits": config.head_bits, "a_bits": config.head_bits}
    else:
        bits = {"w_bits": config.w_bits, "a_bits": config.a_bits, "attn_bits": config.attn_bits}
    for pattern, override in config.overrides.items():
        if match(pattern, name):
            bits.update(override)
    return SiteBits(bits["w_bits"], bits["a_bits"], bits.get("attn_bits"))


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def _weighted(module: nn.Module, bits: SiteBits, config: QuantConfig) -> nn.Module:
    ndim = module.weight.ndim
    w_quant = UniformQuantizer(bits.w_bits, config.w_search, channels=module.weight.shape[0], ndim=ndim,
                               role="weight")
    a_quant = UniformQuantizer(bits.a_bits, config.a_search)
    if isinstance(module, nn.Linear):
        return QuantLinear(module, w_quant, a_quant)
    return QuantConv2d(module, w_quant, a_quant)


def _attention(module: nn.Module, bits: SiteBits, config: QuantConfig) -> nn.Module:
    cls = QuantWindowAttention if isinstance(module, WindowAttention) else QuantAttention
    return cls(module, module.qkv, module.proj,
               q_quant=UniformQuantizer(bits.a_bits, config.a_search),
               k_quant=UniformQuantizer(bits.a_bits, config.a_search),
               attn_quant=make_quantizer(config.attn_quantizer, bits.attn_bits, config.a_search, role="attention"),
               v_quant=UniformQuantizer(bits.a_bits, config.a_search))


def build_quant_model(fp_model: nn.Module, config: QuantConfig) -> nn.Module:
    """A deep copy of `fp_model` with quantized modules swapped in per `PLACEMENT` (uncalibrated)."""
    q_model = copy.deepcopy(fp_model)
    plan = []
    for name, module in q_model.named_modules():
        role = role_of(name) if name else None
        if role is None:
            continue
        if role == "attention":
            if not isinstance(module, (Attention, WindowAttention)):
                raise TypeError(f"{name} is a {type(module).__name__}; sardfq quantizes timm Attention "
                                "and Swin WindowAttention only")
        elif not isinstance(module, (nn.Linear, nn.Conv2d)):
            continue  # e.g. Swin's `head` is a ClassifierHead (its `head.fc` matches), or Identity
        plan.append((name, role, module))
    # children first (deepest names), so an attention module picks up its quantized qkv and proj
    for name, role, module in sorted(plan, key=lambda item: -item[0].count(".")):
        bits = bits_for(name, role, config)
        build = _attention if role == "attention" else _weighted
        _set_module(q_model, name, build(module, bits, config))
    return q_model
