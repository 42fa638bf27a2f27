"""The quantization wing's configurations and the registries they name.

- `QuantConfig`: bit-widths, range searches and per-module overrides of a quantized model;
- `ReconConfig`: block reconstruction (`sardfq.quant.reconstruction`);
- `QUANTIZERS` (quantizer kinds, `sardfq.quant.quantizers`) and `SEARCHES` (range-search rules,
  `sardfq.quant.observers`): the registries live here, and their entries register themselves when
  the wing is imported, so that a config module imports no torch code and the names it holds are
  checked against what exists;
- `check_bits`, `parse_bits` and `parse_setting`: the one reading of a bit-width (an integer), of
  a `wXaY` name and of a bit setting (a string: `w4a4`, or `w4a4-attn2` as `QuantConfig.label`
  writes it). A bit-width is `bits` everywhere; the string is a `setting`.
"""
from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field, fields
from typing import Callable

from ..errors import ConfigError, UnknownNameError
from ..precision import check_autocast
from ..registry import Registry, reject_unknown

MIN_BITS, MAX_BITS = 2, 8
FULL_PRECISION_NAMES = ("fp", "full", "full precision", "none")

QUANTIZERS: Registry[type] = Registry("quantizer kind")  # name -> a `Quantizer` subclass
# A search rule maps data (C, K) (one row per channel; one row for per-tensor) to candidate
# clipping ranges lo, hi, each (M, C): M candidates per channel.
SEARCHES: Registry[Callable] = Registry("range search")


def check_bits(value, field: str) -> int | None:
    """A bit-width 2..8, or None for full precision ("fp" is accepted too); else ConfigError naming `field`."""
    if value is None or (isinstance(value, str) and value.strip().lower() in FULL_PRECISION_NAMES):
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not MIN_BITS <= value <= MAX_BITS:
        raise ConfigError(f"{field} must be an integer from {MIN_BITS} to {MAX_BITS}, or None for full "
                          f"precision; got {value!r}")
    return int(value)


SAME_AS_ACTIVATIONS = "a_bits"  # attn_bits default: the post-softmax map gets a_bits
_OVERRIDE_KEYS = ("w_bits", "a_bits", "attn_bits")
_NAME = re.compile(r"^w(\d+|fp)a(\d+|fp)$")
_ATTN = re.compile(r"^(.*)-attn(\d+|fp)$")


@dataclass(frozen=True)
class QuantConfig:
    """How to quantize a timm ViT/DeiT/Swin.

    Bit-widths are integers 2..8, or None for full precision (that part left unquantized).
    - `w_bits`: weights of every Linear in the blocks (per output channel) [paper: W4A4 main setting].
    - `a_bits`: inputs of those Linears and the q, k, v operands of the attention matmuls (per tensor).
    - `attn_bits`: the post-softmax attention map, with the `attn_quantizer` kind (log2 [paper]);
      by default the same as `a_bits`.
    - `embed_bits` / `head_bits`: weight and input of the patch embedding and the classifier head;
      8 by default [choice: common practice in ViT PTQ, the paper keeps them at 8 bits as well].
    - `w_search` / `a_search`: the range search of weight / activation quantizers (`SEARCHES`):
      weights search a grid of shrunk min/max ranges per channel, activations pairs of quantiles,
      both for the lowest L2 error [choice, RepQ-ViT-style].
    - `overrides`: {module pattern: {"w_bits"|"a_bits"|"attn_bits": bits}}; patterns are timm
      qualified names where `*` stands for one name part and `**` for any number, e.g.
      `{"blocks.0.**": {"w_bits": 8}}`. Later patterns win.
    Not quantized: LayerNorms, residual additions, position embeddings, GELU, softmax inputs.
    """

    w_bits: int | None = 4
    a_bits: int | None = 4
    attn_bits: int | None | str = SAME_AS_ACTIVATIONS
    embed_bits: int | None = 8
    head_bits: int | None = 8
    w_search: str = "grid"
    a_search: str = "quantile"
    attn_quantizer: str = "log2"
    overrides: dict = field(default_factory=dict)

    def __post_init__(self):
        for name in ("w_bits", "a_bits", "embed_bits", "head_bits"):
            object.__setattr__(self, name, check_bits(getattr(self, name), f"QuantConfig.{name}"))
        if self.attn_bits == SAME_AS_ACTIVATIONS:
            object.__setattr__(self, "attn_bits", self.a_bits)
        object.__setattr__(self, "attn_bits", check_bits(self.attn_bits, "QuantConfig.attn_bits"))
        for name, registry in (("w_search", SEARCHES), ("a_search", SEARCHES),
                               ("attn_quantizer", QUANTIZERS)):
            try:
                registry.get(getattr(self, name))
            except UnknownNameError as exc:
                raise ConfigError(f"QuantConfig.{name}: {exc}") from None
        if not isinstance(self.overrides, dict):
            raise ConfigError(f"QuantConfig.overrides must be a dict of pattern -> bits, got "
                              f"{type(self.overrides).__name__}")
        clean = {}
        for pattern, bits in self.overrides.items():
            if not isinstance(pattern, str) or not pattern:
                raise ConfigError(f"QuantConfig.overrides: patterns must be non-empty strings, got {pattern!r}")
            if not isinstance(bits, dict) or not set(bits) <= set(_OVERRIDE_KEYS):
                raise ConfigError(f"QuantConfig.overrides[{pattern!r}] must be a dict with keys among "
                                  f"{_OVERRIDE_KEYS}, got {bits!r}")
            clean[pattern] = {k: check_bits(v, f"QuantConfig.overrides[{pattern!r}][{k!r}]")
                              for k, v in bits.items()}
        object.__setattr__(self, "overrides", clean)

    @property
    def name(self) -> str:
        """The bit setting as a short name, e.g. `w4a4` (`wfp` / `afp` for full precision)."""
        return f"w{self.w_bits or 'fp'}a{self.a_bits or 'fp'}"

    @property
    def label(self) -> str:
        """`name`, plus the post-softmax map's bits where they differ from the activations'
        (`w4a4-attn2`): the quantization setting as tables and comparisons name it."""
        return self.name + ("" if self.attn_bits == self.a_bits else f"-attn{self.attn_bits or 'fp'}")

    @classmethod
    def from_name(cls, setting: str, **kwargs) -> "QuantConfig":
        """`QuantConfig.from_name("w4a4")`: a bit setting by name (`label`'s form, `w4a4-attn2`,
        sets `attn_bits` too), other fields from `kwargs`."""
        w, a, attn = parse_setting(setting)
        if attn != SAME_AS_ACTIVATIONS:
            kwargs = {"attn_bits": attn, **kwargs}
        return cls(w_bits=w, a_bits=a, **kwargs)

    def to_dict(self) -> dict:
        """The fields as JSON-ready values; `attn_bits` equal to `a_bits` is written as "a_bits", so
        a copy with other activation bits keeps the attention map at the activation bits."""
        d = asdict(self)
        if self.attn_bits == self.a_bits:
            d["attn_bits"] = SAME_AS_ACTIVATIONS
        return d

    @classmethod
    def from_dict(cls, data: dict) -> "QuantConfig":
        """From a plain mapping (JSON); an unknown key is a ConfigError naming it."""
        reject_unknown("QuantConfig", data, (f.name for f in fields(cls)))
        return cls(**data)


def parse_bits(name: str) -> tuple[int | None, int | None]:
    """A bit setting's name as (weight bits, activation bits): 'w4a4' -> (4, 4), 'wfpa8' -> (None, 8)."""
    match = _NAME.match(str(name).strip().lower())
    if match is None:
        raise ConfigError(f"bit setting {name!r} is not of the form w<bits>a<bits> (e.g. w4a4, w8a8)")
    w, a = (None if g == "fp" else int(g) for g in match.groups())
    return w, a


def parse_setting(setting: str) -> tuple[int | None, int | None, int | None | str]:
    """A bit setting as (weight bits, activation bits, attention-map bits): 'w4a4' -> (4, 4,
    `SAME_AS_ACTIVATIONS`), 'w4a4-attn2' -> (4, 4, 2), 'w4a4-attnfp' -> (4, 4, None); the form
    `QuantConfig.label` writes, so that a setting read back is the setting written."""
    match = _ATTN.match(str(setting).strip().lower())
    if match is None:
        return (*parse_bits(setting), SAME_AS_ACTIVATIONS)
    attn = match.group(2)
    return (*parse_bits(match.group(1)), None if attn == "fp" else int(attn))


TRAINABLE = ("weights", "biases", "act_scales")

# [choice] block-reconstruction steps per block, the one default everywhere (ReconConfig, the
# experiment, `sardfq run` and `sardfq quantize`): the first author's related I&S-ViT code uses 1000
# at W3/W4 (200 at W6), and W4A4 is the paper's main setting; the paper's notes say 100. 0 means
# calibration only.
RECON_ITERS = 1000
MAX_RECON_ITERS = 1_000_000  # [choice] 1000 times the default: more is a mistake, not an experiment


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
        if isinstance(self.iters, bool) or not isinstance(self.iters, int) or not 0 <= self.iters <= MAX_RECON_ITERS:
            raise ConfigError(f"ReconConfig.iters must be an integer in 0..{MAX_RECON_ITERS:,}, got {self.iters!r}")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ConfigError(f"ReconConfig.batch_size must be an integer >= 1, got {self.batch_size!r}")
        if not isinstance(self.lr, (int, float)) or not math.isfinite(self.lr) or self.lr <= 0:
            raise ConfigError(f"ReconConfig.lr must be a positive number, got {self.lr!r}")
        train = (self.train,) if isinstance(self.train, str) else tuple(self.train)
        unknown = [t for t in train if t not in TRAINABLE]
        if unknown:
            raise ConfigError(f"ReconConfig.train: unknown {unknown}; choose among {TRAINABLE}")
        object.__setattr__(self, "train", train)
        check_autocast(self.autocast, "ReconConfig.autocast", mixed=False)

    def to_dict(self) -> dict:
        return {**asdict(self), "train": list(self.train)}

    @classmethod
    def from_dict(cls, data: dict) -> "ReconConfig":
        """From a plain mapping (JSON); an unknown key is a ConfigError naming it."""
        reject_unknown("ReconConfig", data, (f.name for f in fields(cls)))
        return cls(**data)
