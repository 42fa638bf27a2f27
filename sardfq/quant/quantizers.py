"""Fake quantizers: modules that quantize and dequantize a tensor in the forward pass.

Three kinds, registered by name in `QUANTIZERS`:
- `uniform`: asymmetric uniform, per tensor (activations) or per output channel (weights);
  `x_q = (clamp(round(x / s) + z, 0, 2^b - 1) - z) * s`.
- `log2`: for post-softmax attention in [0, 1]; `x_q = s * 2^-k` with integer
  `k = round(-log2(x / s))` in `0 .. 2^b - 2`, and the last code means 0 (so b bits hold
  2^b - 1 powers of two and zero). `s = max * 2^-t` with the shift `t` searched.

Every quantizer holds its scale / zero point as buffers, has an `enabled` flag (off: the identity,
bit for bit), and rounds with a straight-through estimator so that reconstruction can train through
it. Clipping ranges come from `calibrate(x)`, a search for the lowest L2 error
`||x - Q(x)||^2` over candidate ranges given by a named search rule (`SEARCHES`).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..registry import Registry

MIN_BITS, MAX_BITS = 2, 8
FULL_PRECISION_NAMES = ("fp", "full", "full precision", "none")

QUANTIZERS: Registry[type["Quantizer"]] = Registry("quantizer kind")
# A search rule maps data (C, K) (one row per channel; one row for per-tensor) to candidate
# clipping ranges lo, hi, each (M, C): M candidates per channel.
SEARCHES: Registry[Callable[[Tensor], tuple[Tensor, Tensor]]] = Registry("range search")


def check_bits(value, field: str) -> int | None:
    """A bit-width 2..8, or None for full precision ("fp" is accepted too); else ConfigError naming `field`."""
    if value is None or (isinstance(value, str) and value.strip().lower() in FULL_PRECISION_NAMES):
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not MIN_BITS <= value <= MAX_BITS:
        raise ConfigError(f"{field} must be an integer from {MIN_BITS} to {MAX_BITS}, or None for full "
                          f"precision; got {value!r}")
    return int(value)


def round_ste(x: Tensor) -> Tensor:
    """Round in the forward pass, identity in the backward pass (straight-through estimator)."""
    return x + (torch.round(x) - x).detach()


# ------------------------------------------------------------------------------- range searches
_QUANTILES = (0.0, 1e-5, 1e-4, 1e-3, 1e-2)  # tail mass clipped on each side [choice]
_SHRINK = torch.linspace(0.3, 1.0, 36)  # fractions of the min/max range [choice]


@SEARCHES.register("minmax")
def minmax_ranges(x: Tensor) -> tuple[Tensor, Tensor]:
    """The full range only (no search): one candidate."""
    return x.amin(dim=1)[None], x.amax(dim=1)[None]  # 1, C


@SEARCHES.register("quantile")
def quantile_ranges(x: Tensor) -> tuple[Tensor, Tensor]:
    """Every pair of lower/upper quantiles from `_QUANTILES` (25 candidates), per channel."""
    xs = x.sort(dim=1).values  # C, K
    k = xs.shape[1] - 1
    idx_lo = torch.tensor([round(p * k) for p in _QUANTILES], device=x.device)
    lo = xs[:, idx_lo].T  # Q, C
    hi = xs[:, k - idx_lo].T  # Q, C
    n = len(_QUANTILES)
    return lo.repeat_interleave(n, dim=0), hi.repeat(n, 1)  # Q*Q, C


@SEARCHES.register("grid")
def grid_ranges(x: Tensor) -> tuple[Tensor, Tensor]:
    """The min/max range shrunk by each factor of a grid (36 candidates from 0.3 to 1), per channel."""
    alpha = _SHRINK.to(x)[:, None]  # M, 1
    return alpha * x.amin(dim=1)[None], alpha * x.amax(dim=1)[None]  # M, C


# ----------------------------------------------------------------------------------- quantizers
class Quantizer(nn.Module):
    """Base class: bit-width, enabled flag, calibration state, observation for calibration."""

    def __init__(self, bits: int | None, search: str = "quantile"):
        super().__init__()
        self.bits = check_bits(bits, "bits")
        SEARCHES.get(search)  # fail early on an unknown rule
        self.search = search
        self.enabled = self.bits is not None
        self.register_buffer("calibrated", torch.tensor(False))
        self._observed: list[Tensor] | None = None  # set while observing calibration data
        self._sample_cap = 1 << 16  # values kept per observed batch for the range search [choice]
        self._generator: torch.Generator | None = None

    @property
    def active(self) -> bool:
        return self.enabled and self.bits is not None

    def forward(self, x: Tensor) -> Tensor:
        if self._observed is not None:
            self._observed.append(self._sample(x.detach()))
            return x
        if not self.active:
            return x
        if not bool(self.calibrated):
            raise RuntimeError(f"{type(self).__name__} ({self.bits} bits) used before calibration; "
                               "call sardfq.quantize (it calibrates) or calibrate the model first")
        return self.fake_quant(x)

    # -- observation: called by calibration code, which then calls `finish_observing`
    def start_observing(self, generator: torch.Generator | None = None) -> None:
        self._observed = []
        self._generator = generator

    def finish_observing(self) -> None:
        observed, self._observed = self._observed, None
        if observed and self.bits is not None:
            self.calibrate(torch.cat(observed, dim=1))

    def _sample(self, x: Tensor) -> Tensor:
        """A random subsample of the values (1, K), enough for a range search."""
        flat = x.reshape(1, -1).float()
        if flat.shape[1] <= self._sample_cap:
            return flat
        gen = self._generator
        if gen is not None and gen.device != flat.device:
            gen = None
        idx = torch.randint(flat.shape[1], (self._sample_cap,), device=flat.device, generator=gen)
        return flat[:, idx]

    def calibrate(self, x: Tensor) -> None:
        raise NotImplementedError

    def fake_quant(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"bits={self.bits}, search={self.search!r}, enabled={self.enabled}"


@QUANTIZERS.register("uniform")
class UniformQuantizer(Quantizer):
    """Asymmetric uniform quantizer, per tensor (`channels=None`) or per output channel.

    Per channel, `scale` and `zero_point` have shape (C, 1, ...) to broadcast over a weight of
    `ndim` dimensions whose first axis is the output channel.
    """

    def __init__(self, bits: int | None, search: str = "quantile", *, channels: int | None = None,
                 ndim: int = 2):
        super().__init__(bits, search)
        self.channels = channels
        shape = (channels,) + (1,) * (ndim - 1) if channels is not None else ()
        self.register_buffer("scale", torch.ones(shape))
        self.register_buffer("zero_point", torch.zeros(shape))
        self._scale_param: nn.Parameter | None = None  # set while reconstruction trains the scale

    @property
    def qmax(self) -> int:
        return 2 ** self.bits - 1

    def _quant(self, x: Tensor, scale: Tensor, zero_point: Tensor) -> Tensor:
        if not torch.is_grad_enabled() or not (x.requires_grad or scale.requires_grad):
            # in place on one new tensor: about 3x faster than torch's fused fake-quantize kernels
            return x.div(scale).round_().add_(zero_point).clamp_(0, self.qmax).sub_(zero_point).mul_(scale)
        q = round_ste(x / scale) + zero_point
        # gradient 1 on the whole grid, boundary codes included (torch.clamp passes none there)
        q = torch.where((q >= 0) & (q <= self.qmax), q, q.detach().clamp(0, self.qmax))
        return (q - zero_point) * scale

    def fake_quant(self, x: Tensor) -> Tensor:
        scale = self._scale_param if self._scale_param is not None else self.scale
        return self._quant(x, scale, self.zero_point)

    @torch.no_grad()
    def calibrate(self, x: Tensor) -> None:
        """Choose the range with the lowest L2 error among the search rule's candidates.

        `x`: the weight (C, ...) for a per-channel quantizer, any shape per tensor.
        """
        rows = x.reshape(self.channels, -1) if self.channels is not None else x.reshape(1, -1)
        rows = rows.float()  # C, K
        lo, hi = SEARCHES.get(self.search)(rows)  # M, C
        lo, hi = lo.clamp(max=0.0), hi.clamp(min=0.0)  # the range always holds 0 exactly
        scale = ((hi - lo) / self.qmax).clamp(min=1e-8)  # M, C
        zero = torch.round(-lo / scale)
        # all candidates at once (M, C, K), in chunks of about 4M values: few large ops instead of
        # many small ones, which matters on a busy CPU
        step = max(1, (1 << 22) // rows.numel())
        err = torch.cat([(self._quant(rows[None], scale[i:i + step, :, None], zero[i:i + step, :, None])
                          - rows).square_().sum(dim=-1) for i in range(0, len(scale), step)])  # M, C
        best = err.argmin(dim=0)[None]  # 1, C: the first candidate of lowest error per channel
        best_scale, best_zero = scale.gather(0, best)[0], zero.gather(0, best)[0]
        self.scale.copy_(best_scale.reshape(self.scale.shape))
        self.zero_point.copy_(best_zero.reshape(self.zero_point.shape))
        self.calibrated.fill_(True)


@QUANTIZERS.register("log2")
class Log2Quantizer(Quantizer):
    """Log2 quantizer for non-negative maps (post-softmax attention): outputs are `scale * 2^-k` or 0."""

    _SHIFTS = torch.linspace(0.0, 1.0, 21)[:-1]  # fractional shifts t of scale = max * 2^-t [choice]

    def __init__(self, bits: int | None, search: str = "quantile", **_unused):
        super().__init__(bits, search)
        self.register_buffer("scale", torch.tensor(1.0))

    @property
    def levels(self) -> int:
        return 2 ** self.bits - 1  # exponents 0 .. levels - 1; the last code is zero

    def _quant(self, x: Tensor, scale: Tensor) -> Tensor:
        # clamping at the smallest normal float keeps log2 (and its gradient) finite at x = 0
        tiny = torch.finfo(x.dtype).tiny
        if not torch.is_grad_enabled() or not x.requires_grad:  # in place, for speed
            exponent = (x.clamp(min=tiny) / scale).log2_().neg_().round_()
            zero = (exponent > self.levels - 1) | (x <= 0)
            return exponent.clamp_(0, self.levels - 1).neg_().exp2_().mul_(scale).masked_fill_(zero, 0.0)
        exponent = round_ste(-torch.log2(x.clamp(min=tiny) / scale))
        zero = (exponent > self.levels - 1) | (x <= 0)  # below the smallest power: code for zero
        exponent = torch.where((exponent >= 0) & (exponent <= self.levels - 1), exponent,
                               exponent.detach().clamp(0, self.levels - 1))
        out = scale * torch.exp2(-exponent)
        return torch.where(zero, torch.zeros_like(out), out)

    def fake_quant(self, x: Tensor) -> Tensor:
        return self._quant(x, self.scale)

    @torch.no_grad()
    def calibrate(self, x: Tensor) -> None:
        """Search the shift `t` of `scale = max * 2^-t` for the lowest L2 error."""
        values = x.reshape(1, -1).float()  # 1, K
        top = values.max().clamp(min=1e-8)
        scales = top * torch.exp2(-self._SHIFTS.to(values))[:, None]  # M, 1
        err = (self._quant(values, scales) - values).square_().sum(dim=1)  # M
        self.scale.copy_(scales[err.argmin(), 0])
        self.calibrated.fill_(True)


def make_quantizer(kind: str, bits: int | None, search: str, **kwargs) -> Quantizer:
    """Build a registered quantizer kind by name."""
    return QUANTIZERS.get(kind)(bits, search, **kwargs)
