"""Fake quantizers: modules that quantize and dequantize a tensor in the forward pass.

Two kinds, registered by name in `QUANTIZERS`:
- `uniform`: asymmetric uniform, per tensor (activations) or per output channel (weights);
- `log2`: for post-softmax attention in [0, 1]: powers of two of a scale, and zero (b bits hold
  2^b - 1 powers of two and zero).
The arithmetic is in `sardfq.quant.functional`.

A quantizer holds its parameters (scale, zero point) as buffers and does nothing else with data:
its ranges are chosen by an observer (`sardfq.quant.observers`), which calibration attaches,
runs and then applies with `set_qparams`. Every quantizer has a `role` ("weight", "activation" or
"attention": what it quantizes, set where it is placed), an `enabled` flag (off: the identity, bit
for bit), and rounds with a straight-through estimator so that reconstruction can train through it
(`train_scale` / `commit_scale` for a learnable activation scale).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .config import QUANTIZERS, SEARCHES, check_bits
from .functional import log2_fake_quant, round_ste, uniform_fake_quant

ROLES = ("weight", "activation", "attention")

__all__ = ["Log2Quantizer", "Quantizer", "ROLES", "UniformQuantizer", "make_quantizer", "quantizers", "round_ste",
           "set_quant_state"]


class Quantizer(nn.Module):
    """Base class: bit-width, role, enabled flag, calibration state; observation by an observer."""

    kind = ""  # the name it is registered under

    def __init__(self, bits: int | None, search: str = "quantile", *, role: str = "activation"):
        super().__init__()
        self.bits = check_bits(bits, "bits")
        SEARCHES.get(search)  # fail early on an unknown rule
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {role!r}")
        self.search = search
        self.role = role
        self.enabled = self.bits is not None
        self.register_buffer("calibrated", torch.tensor(False))
        self.observer = None  # while calibrating: a callable that sees every input, which passes unchanged

    @property
    def active(self) -> bool:
        return self.enabled and self.bits is not None

    @property
    def observing(self) -> bool:
        return self.observer is not None

    def forward(self, x: Tensor) -> Tensor:
        if self.observer is not None:
            self.observer(x.detach())
            return x
        if not self.active:
            return x
        if not bool(self.calibrated):
            raise RuntimeError(f"{type(self).__name__} ({self.bits} bits) used before calibration; "
                               "call sardfq.quantize (it calibrates) or calibrate the model first")
        return self.fake_quant(x)

    def fake_quant(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def set_qparams(self, **qparams: Tensor) -> None:
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"bits={self.bits}, role={self.role!r}, search={self.search!r}, enabled={self.enabled}"


@QUANTIZERS.register("uniform")
class UniformQuantizer(Quantizer):
    """Asymmetric uniform quantizer, per tensor (`channels=None`) or per output channel.

    Per channel, `scale` and `zero_point` have shape (C, 1, ...) to broadcast over a weight of
    `ndim` dimensions whose first axis is the output channel.
    """

    kind = "uniform"

    def __init__(self, bits: int | None, search: str = "quantile", *, channels: int | None = None,
                 ndim: int = 2, role: str = "activation"):
        super().__init__(bits, search, role=role)
        self.channels = channels
        shape = (channels,) + (1,) * (ndim - 1) if channels is not None else ()
        self.register_buffer("scale", torch.ones(shape))
        self.register_buffer("zero_point", torch.zeros(shape))
        self._trained_scale: nn.Parameter | None = None  # set while reconstruction trains the scale

    @property
    def qmax(self) -> int:
        return 2 ** self.bits - 1

    def fake_quant(self, x: Tensor) -> Tensor:
        scale = self._trained_scale if self._trained_scale is not None else self.scale
        return uniform_fake_quant(x, scale, self.zero_point, self.qmax)

    @torch.no_grad()
    def set_qparams(self, *, scale: Tensor, zero_point: Tensor) -> None:
        """Take a range chosen by an observer: `scale` and `zero_point` (any shape that reshapes
        to the buffers')."""
        self.scale.copy_(scale.reshape(self.scale.shape))
        self.zero_point.copy_(zero_point.reshape(self.zero_point.shape))
        self.calibrated.fill_(True)

    def train_scale(self) -> nn.Parameter:
        """A learnable copy of the scale that the forward pass uses from now on (LSQ-style, through
        the straight-through rounding); `commit_scale` writes it back."""
        self._trained_scale = nn.Parameter(self.scale.detach().clone())
        return self._trained_scale

    @torch.no_grad()
    def commit_scale(self) -> None:
        """Store the trained scale (kept positive) in the buffer and stop training it."""
        if self._trained_scale is not None:
            self.scale.copy_(self._trained_scale.detach().abs().clamp(min=1e-8))
            self._trained_scale = None


@QUANTIZERS.register("log2")
class Log2Quantizer(Quantizer):
    """Log2 quantizer for non-negative maps (post-softmax attention): outputs are `scale * 2^-k` or 0."""

    kind = "log2"

    def __init__(self, bits: int | None, search: str = "quantile", *, role: str = "attention", **_unused):
        super().__init__(bits, search, role=role)
        self.register_buffer("scale", torch.tensor(1.0))

    @property
    def levels(self) -> int:
        return 2 ** self.bits - 1  # exponents 0 .. levels - 1; the last code is zero

    def fake_quant(self, x: Tensor) -> Tensor:
        return log2_fake_quant(x, self.scale, self.levels)

    @torch.no_grad()
    def set_qparams(self, *, scale: Tensor) -> None:
        self.scale.copy_(scale.reshape(()))
        self.calibrated.fill_(True)


def make_quantizer(kind: str, bits: int | None, search: str, **kwargs) -> Quantizer:
    """Build a registered quantizer kind by name."""
    return QUANTIZERS.get(kind)(bits, search, **kwargs)


def quantizers(model: nn.Module) -> dict[str, Quantizer]:
    """Every quantizer of a quantized model, by qualified name (e.g. `blocks.0.attn.qkv.w_quant`)."""
    return {name: m for name, m in model.named_modules() if isinstance(m, Quantizer)}


def set_quant_state(model: nn.Module, weights: bool = True, activations: bool = True) -> None:
    """Turn weight and/or activation quantizers (the attention map's included) on or off (off: that
    tensor passes unchanged)."""
    for quantizer in quantizers(model).values():
        quantizer.enabled = weights if quantizer.role == "weight" else activations
