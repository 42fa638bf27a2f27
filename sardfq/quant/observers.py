"""Observers: what calibration uses to choose every quantizer's range, apart from the quantizers.

An `Observer` is attached to a quantizer while calibration images pass (the quantizer then lets
its input through unchanged and hands it to the observer), keeping a random subsample of what it
saw. `choose_qparams(quantizer, values)` then searches the range with the lowest L2 error
`||x - Q(x)||^2` among the candidates of a named rule (`SEARCHES`), scoring each with the same
arithmetic the quantizer applies (`sardfq.quant.functional`), and returns the parameters for
`quantizer.set_qparams`.

Rules (candidate ranges per channel, or for the whole tensor) [choice, RepQ-ViT-style]:
- `minmax`: the full range only;
- `quantile`: every pair of lower/upper quantiles from `_QUANTILES` (25 candidates);
- `grid`: the min/max range shrunk by 36 factors from 0.3 to 1.
The log2 quantizer searches the fractional shift `t` of `scale = max * 2^-t` instead.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .config import SEARCHES
from .functional import log2_fake_quant, uniform_fake_quant

SAMPLE_CAP = 1 << 16  # [choice] values kept per observed batch for the range search

_QUANTILES = (0.0, 1e-5, 1e-4, 1e-3, 1e-2)  # tail mass clipped on each side [choice]
_SHRINK = torch.linspace(0.3, 1.0, 36)  # fractions of the min/max range [choice]
_SHIFTS = torch.linspace(0.0, 1.0, 21)[:-1]  # fractional shifts t of a log2 scale = max * 2^-t [choice]


class Observer:
    """Keeps a random subsample (at most `cap` values per call) of every tensor it is given."""

    def __init__(self, generator: torch.Generator | None = None, cap: int = SAMPLE_CAP):
        self.generator, self.cap = generator, cap
        self.samples: list[Tensor] = []

    def __call__(self, x: Tensor) -> None:
        flat = x.reshape(1, -1).float()
        if flat.shape[1] > self.cap:
            gen = self.generator if self.generator is not None and self.generator.device == flat.device else None
            flat = flat[:, torch.randint(flat.shape[1], (self.cap,), device=flat.device, generator=gen)]
        self.samples.append(flat)

    def values(self) -> Tensor | None:
        """Everything kept, as one row (1, K); None when nothing was seen."""
        return torch.cat(self.samples, dim=1) if self.samples else None


# ------------------------------------------------------------------------------- range searches
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


@torch.no_grad()
def uniform_qparams(x: Tensor, *, bits: int, search: str, channels: int | None = None) -> dict[str, Tensor]:
    """The lowest-error range of the rule `search` for a uniform quantizer: {scale, zero_point},
    one per channel (`x` a weight (C, ...)) or one for the tensor (any shape)."""
    rows = (x.reshape(channels, -1) if channels is not None else x.reshape(1, -1)).float()  # C, K
    qmax = 2 ** bits - 1
    lo, hi = SEARCHES.get(search)(rows)  # M, C
    lo, hi = lo.clamp(max=0.0), hi.clamp(min=0.0)  # the range always holds 0 exactly
    scale = ((hi - lo) / qmax).clamp(min=1e-8)  # M, C
    zero = torch.round(-lo / scale)
    # all candidates at once (M, C, K), in chunks of about 4M values: few large ops instead of
    # many small ones, which matters on a busy CPU
    step = max(1, (1 << 22) // rows.numel())
    err = torch.cat([(uniform_fake_quant(rows[None], scale[i:i + step, :, None], zero[i:i + step, :, None], qmax)
                      - rows).square_().sum(dim=-1) for i in range(0, len(scale), step)])  # M, C
    best = err.argmin(dim=0)[None]  # 1, C: the first candidate of lowest error per channel
    return {"scale": scale.gather(0, best)[0], "zero_point": zero.gather(0, best)[0]}


@torch.no_grad()
def log2_qparams(x: Tensor, *, bits: int) -> dict[str, Tensor]:
    """The shift `t` of `scale = max * 2^-t` with the lowest L2 error for a log2 quantizer: {scale}."""
    values = x.reshape(1, -1).float()  # 1, K
    top = values.max().clamp(min=1e-8)
    scales = top * torch.exp2(-_SHIFTS.to(values))[:, None]  # M, 1
    err = (log2_fake_quant(values, scales, 2 ** bits - 1) - values).square_().sum(dim=1)  # M
    return {"scale": scales[err.argmin(), 0]}


def choose_qparams(quantizer, values: Tensor) -> dict[str, Tensor]:
    """The parameters `quantizer.set_qparams` takes, chosen on `values` (its observed inputs, or
    its weight): by the quantizer's kind and range-search rule."""
    if quantizer.kind == "log2":
        return log2_qparams(values, bits=quantizer.bits)
    return uniform_qparams(values, bits=quantizer.bits, search=quantizer.search, channels=quantizer.channels)
