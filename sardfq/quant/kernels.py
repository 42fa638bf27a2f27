"""The modules an exported file is made of, each computing in PyTorch what its ONNX nodes compute in
onnxruntime: integer layers (`IntegerLinear`: uint8 QDQ input times uint8 weight codes;
`WeightOnlyLinear`: MatMulNBits), float layers beside them, activation quantizers as QDQ pairs or
(log2) float ops, and the packing of weight codes into MatMulNBits' blocks. `export.export_module`
builds a model from them; the TorchScript exporter writes each through its `symbolic`.

Exactness. Our uniform quantizers are asymmetric: `q = clamp(round(x / s) + z, 0, 2^b - 1)`,
dequantized as `(q - z) * s`. Activations and weights both map onto uint8 with their zero points
as they are (per tensor, and per output channel), so nothing is re-rounded. The weights are uint8,
not int8, on purpose: on x86 CPUs without VNNI (AVX2 only), onnxruntime's uint8 x int8 kernel
multiplies with `vpmaddubsw`, whose pairwise 16-bit sums saturate (2 * 255 * 128 > 32767), so a
full-range int8 weight times a large activation is clipped (`results/export` measures what that
cost on an AVX2-only AMD EPYC); its uint8 x uint8 kernel widens to 16 bits first (`vpmaddwd`) and
sums exactly, as do the VNNI and ARM dot-product kernels. One file then computes the same on every CPU, and
`export_onnx` checks that it does on the machine that writes it (`verify_export`). onnxruntime fuses
uint8 weights with per-channel zero points into `MatMulIntegerToFloat` as it does int8 ones.
MatMulNBits is blockwise with power-of-two blocks; each block of a row gets that row's scale
and zero point, which is our per-output-channel grid exactly (a row shorter than a block is padded
with zero-point codes, which dequantize to 0).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .quantizers import Log2Quantizer, UniformQuantizer

KERNEL_ACT_BITS = 8  # the activation width of onnxruntime's integer matmuls on the CPU
NBITS_WIDTHS = (2, 4, 8)  # the bit-widths MatMulNBits packs
NBITS_BLOCKS = (256, 128, 64, 32, 16)  # power-of-two block sizes MatMulNBits takes, largest first


class _QuantizeDequantize(torch.autograd.Function):
    """Per-tensor uint8 QuantizeLinear then DequantizeLinear, with ONNX's arithmetic in `forward`
    (round half to even, saturate to 0..255), so the exported module computes what the file does."""

    @staticmethod
    def forward(ctx, x: Tensor, scale: Tensor, zero_point: Tensor) -> Tensor:
        z = zero_point.to(x.dtype)
        return (torch.round(x / scale) + z).clamp_(0, 255).sub_(z).mul_(scale)

    @staticmethod
    def symbolic(g, x, scale, zero_point):
        return g.op("DequantizeLinear", g.op("QuantizeLinear", x, scale, zero_point), scale, zero_point)


class _Dequantize(torch.autograd.Function):
    """DequantizeLinear of constant uint8 codes with one scale and zero point per index of `axis`."""

    @staticmethod
    def forward(ctx, codes: Tensor, scale: Tensor, zero_point: Tensor, axis: int) -> Tensor:
        shape = [1] * codes.ndim
        shape[axis] = -1
        return (codes.float() - zero_point.float().view(shape)) * scale.view(shape)

    @staticmethod
    def symbolic(g, codes, scale, zero_point, axis):
        return g.op("DequantizeLinear", codes, scale, zero_point, axis_i=axis)


class _MatMulNBits(torch.autograd.Function):
    """x @ W^T with W in onnxruntime's MatMulNBits layout (blocks of packed codes along K)."""

    @staticmethod
    def forward(ctx, x: Tensor, packed: Tensor, scales: Tensor, zero_points: Tensor, in_features: int,
                out_features: int, bits: int, block_size: int) -> Tensor:
        blocks = packed.shape[1]
        codes = unpack_codes(packed, bits, block_size).reshape(out_features, blocks * block_size)
        zero = unpack_codes(zero_points.view(out_features, -1), bits, blocks)  # N, blocks
        weight = (codes.float().view(out_features, blocks, block_size) - zero.float()[..., None]) \
            * scales.view(out_features, blocks, 1)
        return x @ weight.reshape(out_features, -1)[:, :in_features].T

    @staticmethod
    def symbolic(g, x, packed, scales, zero_points, in_features, out_features, bits, block_size):
        # accuracy level 0: the activations stay float (level 4 would quantize them to int8)
        y = g.op("com.microsoft::MatMulNBits", x, packed, scales, zero_points, K_i=in_features,
                 N_i=out_features, bits_i=bits, block_size_i=block_size, accuracy_level_i=0)
        rank = x.type().dim()  # the exporter cannot infer a contrib op's output: x's, N wide
        y.setType(x.type().with_sizes([None] * (rank - 1) + [out_features]))
        return y


def pack_codes(codes: Tensor, bits: int) -> Tensor:
    """Unsigned codes (..., n), each below 2^bits, packed along the last axis into uint8, the first
    code in the lowest bits (MatMulNBits' layout); a last byte is padded with zeros."""
    per_byte = 8 // bits
    pad = (-codes.shape[-1]) % per_byte
    c = torch.nn.functional.pad(codes.to(torch.int32), (0, pad)).view(*codes.shape[:-1], -1, per_byte)
    shifts = torch.arange(per_byte, dtype=torch.int32) * bits
    return (c << shifts).sum(-1).to(torch.uint8)


def unpack_codes(packed: Tensor, bits: int, n: int) -> Tensor:
    """The inverse of `pack_codes`: (..., bytes) uint8 -> (..., n) codes."""
    per_byte = 8 // bits
    shifts = torch.arange(per_byte, dtype=torch.int32) * bits
    codes = (packed.to(torch.int32)[..., None] >> shifts) & (2 ** bits - 1)
    return codes.reshape(*packed.shape[:-1], -1)[..., :n]


def weight_codes(weight: Tensor, quantizer: UniformQuantizer) -> tuple[Tensor, Tensor, Tensor]:
    """The integer grid of a per-output-channel weight quantizer: codes (out, ...) in 0..2^b - 1,
    scale (out,), zero point (out,), as `UniformQuantizer.fake_quant` rounds them."""
    scale, zero = quantizer.scale.detach(), quantizer.zero_point.detach()
    codes = weight.detach().float().div(scale).round_().add_(zero).clamp_(0, quantizer.qmax)
    return codes.to(torch.int32), scale.reshape(-1).float().clone(), zero.reshape(-1).round().to(torch.int32)


class ActivationQDQ(nn.Module):
    """A calibrated per-tensor uniform quantizer as uint8 QuantizeLinear/DequantizeLinear. Below 8
    bits (emulate mode) a Clip first keeps the codes on the quantizer's own grid."""

    def __init__(self, quantizer: UniformQuantizer):
        super().__init__()
        self.bits = quantizer.bits
        scale = quantizer.scale.detach().float().reshape(())
        zero = int(quantizer.zero_point.round())
        self.register_buffer("scale", scale.clone())
        self.register_buffer("zero_point", torch.tensor(zero, dtype=torch.uint8))
        qmax = 2 ** self.bits - 1
        self.clip = None if self.bits == 8 else (float(-zero * scale), float((qmax - zero) * scale))

    def forward(self, x: Tensor) -> Tensor:
        if self.clip is not None:
            x = x.clamp(*self.clip)
        return _QuantizeDequantize.apply(x, self.scale, self.zero_point)


class Log2Emulated(nn.Module):
    """The log2 quantizer in float ops (ONNX has no integer form for it): `s * 2^-k`, or 0, with
    `k = round(-log2(x / s))`. Written for speed on onnxruntime as Div, Log, Mul, Round, Max, Mul,
    Exp, Mul: `2^-k` as `exp(-k ln 2)`, and the codes that mean 0 left to underflow where they can."""

    def __init__(self, quantizer: Log2Quantizer):
        super().__init__()
        self.levels = quantizer.levels
        self.register_buffer("scale", quantizer.scale.detach().float().clone())

    def forward(self, x: Tensor) -> Tensor:
        # x = 0 (a map is never negative) gives log 0 = -inf, so k = +inf and exp(-inf) = 0: the
        # zero code without a comparison
        k = torch.round(torch.log(x / self.scale) * (-1 / math.log(2)))
        out = torch.exp(k.clamp(min=0) * -math.log(2)) * self.scale
        if self.levels - 1 < _EXP_UNDERFLOW_CODE:
            out = out.masked_fill(k > self.levels - 1, 0.0)  # below the smallest power: zero
        return out


# from this exponent on, s * 2^-k (s <= 1, the top of a softmax map) is 0 in float32 anyway, so an
# 8-bit log2 quantizer (exponents up to 254) needs no mask for its zero code
_EXP_UNDERFLOW_CODE = 150


class IntegerLinear(nn.Module):
    """A Linear with quantized input and weight: uint8 QDQ input, uint8 weight codes (in, out) with
    per-channel DequantizeLinear, MatMul, bias Add: the group onnxruntime fuses to an integer matmul
    (uint8 x uint8, which no CPU's kernel saturates: see the module's docstring)."""

    def __init__(self, weight: Tensor, bias: Tensor | None, w_quant: UniformQuantizer, act: nn.Module):
        super().__init__()
        codes, scale, zero = weight_codes(weight, w_quant)
        self.register_buffer("weight_codes", codes.to(torch.uint8).T.contiguous())  # in, out
        self.register_buffer("weight_scale", scale)
        self.register_buffer("weight_zero_point", zero.to(torch.uint8))
        self.register_buffer("bias", None if bias is None else bias.detach().float().clone())
        self.input_quant = act

    def forward(self, x: Tensor) -> Tensor:
        weight = _Dequantize.apply(self.weight_codes, self.weight_scale, self.weight_zero_point, 1)
        # onnxruntime turns a 2-D MatMul + Add into Gemm before its QDQ fusions, and fuses a QDQ Gemm
        # only with a quantized output: the head's (B, C) input goes through as (B, 1, C)
        flat = x.ndim == 2
        y = torch.matmul(self.input_quant(x[:, None] if flat else x), weight)
        y = y[:, 0] if flat else y
        return y if self.bias is None else y + self.bias


class WeightOnlyLinear(nn.Module):
    """A Linear with a quantized weight and a full-precision input, as MatMulNBits."""

    def __init__(self, weight: Tensor, bias: Tensor | None, w_quant: UniformQuantizer):
        super().__init__()
        codes, scale, zero = weight_codes(weight, w_quant)
        out_features, in_features = codes.shape
        self.bits = next(b for b in NBITS_WIDTHS if b >= w_quant.bits)  # codes fit as they are
        self.block_size = nbits_block_size(in_features)
        blocks = -(-in_features // self.block_size)
        pad = blocks * self.block_size - in_features
        codes = torch.cat([codes, zero[:, None].expand(-1, pad)], dim=1)  # padding dequantizes to 0
        self.in_features, self.out_features = in_features, out_features
        self.register_buffer("weight_packed", pack_codes(codes.view(out_features, blocks, self.block_size), self.bits))
        self.register_buffer("weight_scales", scale[:, None].expand(-1, blocks).reshape(-1).contiguous())
        self.register_buffer("weight_zero_points",
                             pack_codes(zero[:, None].expand(-1, blocks), self.bits).reshape(-1))
        self.register_buffer("bias", None if bias is None else bias.detach().float().clone())

    def forward(self, x: Tensor) -> Tensor:
        y = _MatMulNBits.apply(x, self.weight_packed, self.weight_scales, self.weight_zero_points,
                               self.in_features, self.out_features, self.bits, self.block_size)
        return y if self.bias is None else y + self.bias


class FloatLinear(nn.Module):
    """A Linear whose weight is not quantized: float MatMul, after the input's QDQ pair if it has one."""

    def __init__(self, weight: Tensor, bias: Tensor | None, act: nn.Module):
        super().__init__()
        self.register_buffer("weight_t", weight.detach().float().T.contiguous())  # in, out
        self.register_buffer("bias", None if bias is None else bias.detach().float().clone())
        self.input_quant = act

    def forward(self, x: Tensor) -> Tensor:
        y = torch.matmul(self.input_quant(x), self.weight_t)
        return y if self.bias is None else y + self.bias


class PatchLinear(nn.Module):
    """A patch-embedding Conv2d (kernel = stride, no padding) as patches @ weight, so that it is a
    Linear for onnxruntime's integer matmuls; returns the conv's (B, out, H/p, W/p) layout."""

    def __init__(self, linear: nn.Module, in_channels: int, patch: tuple[int, int], grid: tuple[int, int]):
        super().__init__()
        self.linear, self.in_channels, self.patch, self.grid = linear, in_channels, patch, grid

    def forward(self, x: Tensor) -> Tensor:
        (ph, pw), (gh, gw), c = self.patch, self.grid, self.in_channels
        patches = x.reshape(-1, c, gh, ph, gw, pw).permute(0, 2, 4, 1, 3, 5).reshape(-1, gh * gw, c * ph * pw)
        y = self.linear(patches)  # B, patches, out
        return y.transpose(1, 2).reshape(-1, y.shape[-1], gh, gw)


def nbits_block_size(in_features: int) -> int:
    """The MatMulNBits block: the largest power of two it takes that divides `in_features` (no
    padding), else the smallest one that holds the whole row (one block, padded)."""
    for block in NBITS_BLOCKS:
        if in_features % block == 0:
            return block
    return next((b for b in reversed(NBITS_BLOCKS) if b >= in_features), NBITS_BLOCKS[-1])
