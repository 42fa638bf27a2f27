"""Export a quantized model to ONNX in a form onnxruntime's CPU execution provider runs with
integer kernels, carrying the calibrated (and reconstructed) scales and zero points.

Each quantized layer is written from its own bit-widths:

| layer                                   | in the file                                           | onnxruntime (CPU) runs    |
|-----------------------------------------|-------------------------------------------------------|---------------------------|
| Linear, weight and input quantized (A8) | uint8 QDQ input, uint8 codes + per-channel DQ, MatMul | `MatMulIntegerToFloat`    |
| Linear, weight only (A full precision)  | `com.microsoft.MatMulNBits` (2-, 4- or 8-bit blocks)  | `MatMulNBits`             |
| q @ k^T (attn @ v), operands uniform A8 | uint8 QDQ on both operands, MatMul                    | `MatMulIntegerToFloat`    |
| post-softmax log2 quantizer             | float ops: Div, Log, Round, Max, Mul, Exp             | float                     |
| attn @ v beside a log2 map, LayerNorm,  | float ops (v keeps its QDQ pair)                      | float                     |
| GELU, softmax, residual additions       |                                                       |                           |

(QDQ: a QuantizeLinear/DequantizeLinear pair; DQ: DequantizeLinear. Where a quantized input
follows, onnxruntime may fuse a matmul with it into `QLinearMatMul` instead.)

The patch embedding (a Conv2d whose kernel equals its stride) is written as patches @ weight, so
that it is a Linear like the others.

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

Modes. `integer` (the default) exports what has integer kernels: 8-bit activations (weights at 2 to
8 bits, stored as uint8), and weight-only layers (weights at 2 to 8 bits in MatMulNBits containers
of 2, 4 or 8 bits). Activations below 8 bits (W4A4, W3A3, ...) have no kernel in onnxruntime's
CPU execution provider, and are refused. `emulate` exports them anyway, their grids clipped inside
uint8 containers: onnxruntime then runs the low-bit model's arithmetic on int8 kernels, with int8's
speed and file size - a check of the fake-quantized accuracy in an integer runtime, not a
deployment; the file's metadata says so.

The file carries `metadata_props`: class names, mean/std, input size, bit-widths, mode, which
layers run as integers and what stays float (`onnx_metadata`). `load_onnx` wraps an exported file
in an onnxruntime session behind an `nn.Module`, so `sardfq.evaluate` measures it like any model.

The TorchScript exporter (`torch.onnx.export(..., dynamo=False)`, opset 20, the highest it writes)
is used on purpose: each quantizer is an autograd Function whose `symbolic` writes its own ONNX
nodes, with initializers named after the module they belong to
(`blocks.0.attn.qkv.weight_codes`), so no graph surgery maps nodes back to layers afterwards. (It
is deprecated since torch 2.9 but present in the pinned 2.14; the torch.export-based exporter
writes each transposed weight as an unnamed constant and would need an onnxscript translation of
each quantizer.) onnx and onnxruntime are imported inside the functions: `import sardfq` does not need them.
"""
from __future__ import annotations

import copy
import io
import json
import logging
import math
import os
import statistics
import tempfile
import time
import warnings
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from timm.models.swin_transformer import SwinTransformer
from torch import Tensor, nn

from ..errors import CheckpointError, ExportError
from ..io import atomic_path
from ..models import ModelInfo
from .modules import QuantAttention, QuantConv2d, QuantLinear, QuantWindowAttention
from .quantizers import Log2Quantizer, Quantizer, UniformQuantizer

log = logging.getLogger(__name__)

FORMAT = "sardfq-onnx"
FORMAT_VERSION = 1
OPSET = 20  # the highest opset the TorchScript exporter writes
MODES = ("integer", "emulate")
INPUT_NAME, OUTPUT_NAME = "input", "logits"
KERNEL_ACT_BITS = 8  # the activation width of onnxruntime's integer matmuls on the CPU
NBITS_WIDTHS = (2, 4, 8)  # the bit-widths MatMulNBits packs
NBITS_BLOCKS = (256, 128, 64, 32, 16)  # power-of-two block sizes MatMulNBits takes, largest first
# integer kernels onnxruntime's CPU provider fuses QDQ groups into, and its weight-only matmul
INTEGER_OPS = ("MatMulIntegerToFloat", "MatMulInteger", "QLinearMatMul", "QGemm", "QLinearConv",
               "ConvInteger", "DynamicQuantizeMatMul", "MatMulNBits")
FLOAT_PARTS = ("LayerNorm", "GELU", "softmax", "residual additions", "class token and position embedding")
WHAT_RUNS = ("8-bit activations (w8a8, or w4a8 etc.: weights of 2 to 8 bits stored as uint8), or "
             "full-precision activations with weights of 2 to 8 bits (weight-only, `--a-bits none`: "
             "MatMulNBits)")


# --------------------------------------------------------------------------- ONNX-writing functions
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


# ------------------------------------------------------------------- the model as the file runs it
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


@dataclass
class Site:
    """How one quantized module is written: `int8` (integer matmul), `nbits` (weight-only
    MatMulNBits), `float` (a float matmul, after the QDQ pairs of its quantized operands), `log2`
    (a log2 quantizer, emulated with float ops)."""

    name: str
    kind: str
    w_bits: int | None = None
    a_bits: int | None = None
    container_bits: int | None = None  # storage width of the weight codes in the file


def _active(quantizer: Quantizer | None) -> bool:
    return quantizer is not None and quantizer.active


def _activation(quantizer: Quantizer) -> nn.Module:
    if not _active(quantizer):
        return nn.Identity()
    if isinstance(quantizer, Log2Quantizer):
        return Log2Emulated(quantizer)
    if isinstance(quantizer, UniformQuantizer) and quantizer.channels is None:
        return ActivationQDQ(quantizer)
    raise ExportError(f"a {type(quantizer).__name__} has no ONNX form here; sardfq exports per-tensor "
                      "uniform and log2 activation quantizers")


def _linear_site(name: str, weight: Tensor, bias: Tensor | None, w_quant: Quantizer,
                 a_quant: Quantizer) -> tuple[nn.Module, Site]:
    a_bits = a_quant.bits if _active(a_quant) else None
    if not _active(w_quant):
        return FloatLinear(weight, bias, _activation(a_quant)), Site(name, "float", None, a_bits)
    if a_bits is None:
        module = WeightOnlyLinear(weight, bias, w_quant)
        return module, Site(name, "nbits", w_quant.bits, None, module.bits)
    return IntegerLinear(weight, bias, w_quant, _activation(a_quant)), Site(name, "int8", w_quant.bits, a_bits, 8)


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def _below_kernel_width(q_model: nn.Module) -> list[str]:
    """Uniform activation quantizers narrower than the integer kernels' 8 bits, by name."""
    return [name for name, m in q_model.named_modules()
            if isinstance(m, UniformQuantizer) and m.channels is None and m.active and m.bits < KERNEL_ACT_BITS]


def export_module(q_model: nn.Module, *, mode: str = "integer") -> tuple[nn.Module, list[Site]]:
    """A copy of `q_model` built from the modules the ONNX file is made of (and computing what it
    computes), with how each quantized layer is written. Refuses what `mode` cannot export."""
    if mode not in MODES:
        raise ExportError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if isinstance(q_model, SwinTransformer):
        raise ExportError("ONNX export covers ViT/DeiT (timm VisionTransformer); Swin window attention "
                          "is not exported yet")
    narrow = _below_kernel_width(q_model)
    if narrow and mode == "integer":
        bits = sorted({q_model.get_submodule(n).bits for n in narrow})
        raise ExportError(
            f"{len(narrow)} activation quantizers are below 8 bits ({', '.join(map(str, bits))} bits, e.g. "
            f"{narrow[0]}): onnxruntime's CPU execution provider has no integer kernel for them. What runs "
            f"as integers: {WHAT_RUNS}. mode='emulate' (`--mode emulate`) exports this model anyway on "
            "8-bit kernels, for checking its accuracy (int8 speed and size)")
    twin = copy.deepcopy(q_model).cpu().eval()
    sites: list[Site] = []
    for name, module in list(twin.named_modules()):
        if isinstance(module, QuantLinear):
            replacement, site = _linear_site(name, module.weight, module.bias, module.w_quant, module.a_quant)
        elif isinstance(module, QuantConv2d):
            replacement, site = _patch_embedding(name, module, twin)
        else:
            continue
        _set_module(twin, name, replacement)
        sites.append(site)
    for name, module in twin.named_modules():
        if isinstance(module, (QuantAttention, QuantWindowAttention)):
            module.fused_attn = False  # the explicit q @ k^T path, where the quantizers sit
            # an attention matmul is an integer matmul when both its operands are uniform-quantized
            for matmul, (left, right) in (("q@k", ("q_quant", "k_quant")), ("attn@v", ("attn_quant", "v_quant"))):
                pair = [getattr(module, left), getattr(module, right)]
                uniform = all(_active(q) and isinstance(q, UniformQuantizer) for q in pair)
                sites.append(Site(f"{name}.{matmul}", "int8" if uniform else "float", None,
                                  pair[0].bits if uniform else None))
            if _active(module.attn_quant) and isinstance(module.attn_quant, Log2Quantizer):
                sites.append(Site(f"{name}.attn_quant", "log2", None, module.attn_quant.bits))
            for part in ("q_quant", "k_quant", "attn_quant", "v_quant"):
                setattr(module, part, _activation(getattr(module, part)))
    return twin, sites


def _patch_embedding(name: str, conv: QuantConv2d, model: nn.Module) -> tuple[nn.Module, Site]:
    weight = conv.weight
    kernel = tuple(weight.shape[2:])
    if tuple(conv.stride) != kernel or any(conv.padding) or conv.groups != 1 or any(d != 1 for d in conv.dilation):
        raise ExportError(f"{name}: only a patch-embedding Conv2d (kernel = stride, no padding, one group) "
                          f"is exported; this one has kernel {kernel}, stride {tuple(conv.stride)}")
    grid = tuple(int(g) for g in model.patch_embed.grid_size)
    flat = weight.reshape(weight.shape[0], -1)  # out, C * kh * kw: the order of the patches' values
    w_quant = conv.w_quant
    if _active(w_quant):  # the per-channel grid of a (out, C, kh, kw) weight fits a (out, K) one
        w_quant = copy.deepcopy(w_quant)
        w_quant.scale = w_quant.scale.reshape(-1, 1)
        w_quant.zero_point = w_quant.zero_point.reshape(-1, 1)
    linear, site = _linear_site(name, flat, conv.bias, w_quant, conv.a_quant)
    return PatchLinear(linear, weight.shape[1], kernel, grid), site


# ----------------------------------------------------------------------------------------- export
@dataclass
class OnnxExport:
    """What `export_onnx` wrote: the file, its mode, and how each quantized layer is written."""

    path: str
    model: str
    bits: str
    mode: str
    sites: list[Site] = field(repr=False)
    file_bytes: int
    seconds: float
    metadata: dict = field(default_factory=dict, repr=False)
    check: "ExportCheck | None" = None  # the file against the PyTorch model; None when not verified

    def counts(self) -> dict[str, int]:
        """Layers per kind: int8, nbits, float."""
        return dict(Counter(s.kind for s in self.sites))

    def to_dict(self) -> dict:
        return {**asdict(self), "counts": self.counts()}


def _mode_label(mode: str, bits: str, sites: list[Site]) -> str:
    counts = Counter(s.kind for s in sites)
    if mode == "float":
        return "float32: no quantization"
    parts = []
    if counts["int8"]:
        parts.append(f"{counts['int8']} integer matmuls (uint8 activations x uint8 weights)")
    if counts["nbits"]:
        widths = sorted({s.container_bits for s in sites if s.kind == "nbits"})
        parts.append(f"{counts['nbits']} weight-only matmuls (MatMulNBits, {'/'.join(map(str, widths))}-bit)")
    if counts["float"]:
        parts.append(f"{counts['float']} float matmuls")
    if counts["log2"]:
        parts.append(f"{counts['log2']} log2 softmax quantizers emulated in float")
    text = f"{bits}: " + ", ".join(parts)
    if mode == "emulate":
        text += ("; EMULATED: activation grids below 8 bits held in uint8 containers, run on int8 kernels "
                 "(the low-bit model's accuracy at int8 speed and size); for checking, not deployment")
    return text


def _metadata(q_model: nn.Module, info: ModelInfo, mode: str, sites: list[Site]) -> dict[str, str]:
    meta = getattr(q_model, "sardfq_quant", None) or {}
    config = meta.get("config")
    bits = config.label if config is not None else "fp32"  # w4a4, or w4a4-attn2 where the map differs
    data_config = {k: v for k, v in (getattr(q_model, "pretrained_cfg", None) or {}).items()
                   if k in ("crop_pct", "crop_mode", "interpolation")}
    floats = list(FLOAT_PARTS) + [
        f"{s.name} (log2 quantizer, emulated with float ops: Div, Log, Round, Exp)" if s.kind == "log2"
        else f"{s.name} (float matmul)" for s in sites if s.kind in ("float", "log2")]
    values = {
        "sardfq.format": FORMAT, "sardfq.format_version": FORMAT_VERSION, "sardfq.model": info.name,
        "sardfq.bits": bits, "sardfq.mode": mode, "sardfq.summary": _mode_label(mode, bits, sites),
        "class_names": list(info.class_names), "mean": list(info.mean), "std": list(info.std),
        "input_size": list(info.input_size), "input_name": INPUT_NAME, "output_name": OUTPUT_NAME,
        "sardfq.quant_config": config.to_dict() if config is not None else None,
        "sardfq.sites": [asdict(s) for s in sites],
        "sardfq.float": floats if config is not None else ["everything"],
        "sardfq.model_info": info.to_dict(), "sardfq.data_config": data_config,
        "sardfq.calibration": meta.get("calibration"),
        "sardfq.reconstructed": bool(meta.get("reconstruction")),
    }
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in values.items()}


def _checked_out_path(out: str | os.PathLike) -> Path:
    out = Path(out)
    if out.suffix != ".onnx":
        raise ExportError(f"the output file must end in .onnx, got {out}")
    if out.is_dir():
        raise ExportError(f"{out} is a folder; name the .onnx file to write, e.g. {out / 'model.onnx'}")
    parent = next((p for p in out.parents if p.exists()), Path("."))
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise ExportError(f"cannot write {out}: {parent} is not a writable folder; choose another --out")
    return out


# ------------------------------------------------------------------------ the export checks itself
CHECK_IMAGES = 16
# [choice] the largest median over images of ||onnx - torch|| / ||torch|| (per image's logits) that a
# faithful file shows. Float sums in another order flip an activation code at a rounding boundary
# now and then, and a flip travels: on vit_tiny_cifar10 at W8A8 the median was 0.2-0.5% for the
# exact file and 17-25% where the int8 kernel saturated (AVX2-only EPYC; real and check images)
CHECK_TOLERANCE = 0.05


@dataclass
class ExportCheck:
    """The exported file against the PyTorch model it came from, on `images` fixed check images,
    on the CPU `cpu` (`sardfq.version.cpu_info`)."""

    images: int
    agreement: float  # share of images with the same top-1 class
    max_logit_difference: float
    relative_difference: float  # median over images of ||onnx - torch|| / ||torch|| of the logits
    tolerance: float
    cpu: dict

    @property
    def passed(self) -> bool:
        return self.relative_difference <= self.tolerance

    def summary(self) -> str:
        from ..version import cpu_summary

        return (f"on {self.images} check images, top-1 agreement {100 * self.agreement:.0f}%, logits differ by "
                f"up to {self.max_logit_difference:.3g}, by {100 * self.relative_difference:.2f}% of their norm "
                f"(median; tolerance {100 * self.tolerance:.0f}%); CPU {cpu_summary(self.cpu)}")


def check_images(info: ModelInfo, n: int = CHECK_IMAGES, seed: int = 0) -> Tensor:
    """`n` fixed images for the export check: smooth random pictures (uniform noise at an eighth of
    the input side, upsampled bilinearly), in [0, 1] and normalized for the model, so that every
    activation quantizer sees values spread over its range as a photograph's would."""
    c, h, w = info.input_size
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, c, max(h // 8, 2), max(w // 8, 2), generator=g)
    images = torch.nn.functional.interpolate(low, size=(h, w), mode="bilinear", align_corners=False)
    images = (images + 0.1 * torch.randn(n, c, h, w, generator=g)).clamp_(0, 1)
    mean, std = torch.tensor(info.mean).view(1, -1, 1, 1), torch.tensor(info.std).view(1, -1, 1, 1)
    return (images - mean) / std


@torch.no_grad()
def verify_export(path: str | os.PathLike, model: nn.Module, info: ModelInfo, images: Tensor | None = None, *,
                  tolerance: float = CHECK_TOLERANCE) -> ExportCheck:
    """Run the file in onnxruntime and `model` (the fake-quantized PyTorch model it was exported from)
    on `images` (default `check_images(info)`) and measure how far apart their logits are."""
    from ..version import cpu_info

    images = check_images(info) if images is None else images
    ort_model = OnnxClassifier(path, threads=1)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    expected = model.eval()(images.to(device)).float().cpu()
    got = ort_model(images)
    per_image = (got - expected).norm(dim=1) / expected.norm(dim=1).clamp_min(1e-12)
    return ExportCheck(images=len(images), agreement=(got.argmax(1) == expected.argmax(1)).float().mean().item(),
                       max_logit_difference=(got - expected).abs().max().item(),
                       relative_difference=per_image.median().item(), tolerance=tolerance, cpu=cpu_info())


def export_onnx(model: nn.Module | str | os.PathLike, out: str | os.PathLike | None = None, *,
                info: ModelInfo | None = None, mode: str = "integer", check: bool = True,
                verify: bool = True) -> OnnxExport:
    """Write `model` to an ONNX file that onnxruntime runs with integer kernels (see the module
    docstring); returns what was written.

    `model`: a folder saved by `sardfq.save_quantized` (`sardfq quantize --out`, `sardfq run --out`
    writes OUT/quantized), a quantized model from `sardfq.quantize`, or a full-precision model with
    its `info` (a float32 export, for comparison). `out`: the .onnx file (default: FOLDER/model.onnx
    for a folder), written atomically. `mode`: "integer" or "emulate". `check`: run
    `onnx.checker.check_model` on the result. `verify`: before the file takes its name, run it in
    onnxruntime beside the PyTorch model on `check_images` (`verify_export`); where their logits
    differ beyond `CHECK_TOLERANCE` on this CPU, raise ExportError saying so and write nothing.
    """
    import onnx

    from .api import is_quantized_folder, load_quantized

    start = time.perf_counter()
    if isinstance(model, (str, os.PathLike)):
        folder = Path(model)
        if not is_quantized_folder(folder):
            hint = (" It is a full-precision model folder: quantize it first, e.g. `sardfq quantize "
                    f"{folder} --calib calib.safetensors --w-bits 8 --a-bits 8 --out {folder}-w8a8`."
                    if (folder / "config.json").is_file() else "")
            raise CheckpointError(f"{folder} is not a saved quantized model (no quant_config.json).{hint} "
                                  "sardfq export reads folders written by `sardfq quantize --out DIR` or "
                                  "`sardfq run --out DIR` (DIR/quantized)")
        out = folder / "model.onnx" if out is None else out
        q_model, info = load_quantized(folder)
    else:
        q_model = model
        meta = getattr(q_model, "sardfq_quant", None)
        info = info or (meta or {}).get("info")
        if info is None:
            raise ExportError("a model that sardfq.quantize did not make needs its ModelInfo: "
                              "export_onnx(model, out, info=info)")
        if out is None:
            raise ExportError("name the .onnx file to write: export_onnx(model, out)")
    out = _checked_out_path(out)
    quantized = getattr(q_model, "sardfq_quant", None) is not None
    if quantized:
        twin, sites = export_module(q_model, mode=mode)
    else:
        twin, sites, mode = copy.deepcopy(q_model).cpu().eval(), [], "float"
    example = torch.zeros(1, *info.input_size)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # the TorchScript exporter warns that it is deprecated, and that timm's shape checks are
        # traced as constants: both expected, the input size being fixed
        warnings.simplefilter("ignore")
        with torch.no_grad():
            torch.onnx.export(twin, (example,), buffer, dynamo=False, opset_version=OPSET,
                              input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                              dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                              custom_opsets={"com.microsoft": 1} if any(s.kind == "nbits" for s in sites) else None,
                              do_constant_folding=True)
    proto = onnx.load_from_string(buffer.getvalue())
    metadata = _metadata(q_model, info, mode, sites)
    for key, value in metadata.items():
        proto.metadata_props.add(key=key, value=value)
    proto.doc_string = metadata["sardfq.summary"]
    proto.producer_name = "sardfq"
    if check:
        onnx.checker.check_model(proto)
    verification = None
    try:
        with atomic_path(out) as tmp:
            onnx.save(proto, str(tmp))
            if verify:
                verification = verify_export(tmp, q_model, info)
                if not verification.passed:
                    raise ExportError(
                        f"the exported file does not compute what {info.name} ({metadata['sardfq.bits']}) computes: "
                        f"{verification.summary()}. onnxruntime's integer kernels differ between CPUs; nothing "
                        f"was written to {out} (--no-check writes it anyway)")
    except OSError as exc:
        raise ExportError(f"cannot write {out}: {exc.strerror or exc}; choose another --out") from None
    result = OnnxExport(path=str(out), model=info.name, bits=metadata["sardfq.bits"],
                        mode=mode, sites=sites, file_bytes=out.stat().st_size,
                        seconds=time.perf_counter() - start, metadata=metadata,
                        check=verification)
    log.info("exported %s to %s (%s) in %.1f s", info.name, out, metadata["sardfq.summary"], result.seconds)
    if verification is not None:
        log.info("checked: %s", verification.summary())
    return result


# ----------------------------------------------------------------------------------- reading back
def onnx_metadata(path: str | os.PathLike) -> dict:
    """The `metadata_props` of an exported file, JSON values decoded."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"ONNX file {path} does not exist (write one with `sardfq export`)")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # a truncated or foreign file raises many different types
        raise CheckpointError(f"could not read {path} as ONNX: {exc}") from None
    meta = {}
    for prop in proto.metadata_props:
        try:
            meta[prop.key] = json.loads(prop.value)
        except ValueError:
            meta[prop.key] = prop.value
    return meta


def session_options(threads: int | None = None, optimized_path: str | os.PathLike | None = None):
    """onnxruntime SessionOptions: `threads` intra-op threads (None: onnxruntime's default, one per
    core), all graph optimizations, and the optimized graph written to `optimized_path` if given."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # warnings about serializing the optimized graph are expected
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    if optimized_path is not None:
        options.optimized_model_filepath = str(optimized_path)
    return options


class OnnxClassifier(nn.Module):
    """An onnxruntime session (CPU execution provider) behind an `nn.Module`: float images in,
    logits out, so `sardfq.evaluate` measures an exported file like any model."""

    def __init__(self, path: str | os.PathLike, *, threads: int | None = None):
        super().__init__()
        import onnxruntime as ort

        self.path = str(path)
        self.metadata = onnx_metadata(path)
        try:
            self.session = ort.InferenceSession(self.path, session_options(threads),
                                                providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own types for files it cannot run
            raise CheckpointError(f"onnxruntime cannot run {path}: {exc}") from None
        # timm's transform settings, for ImageNet evaluation (resolve_data_config reads this)
        self.pretrained_cfg = {**self.metadata.get("sardfq.data_config", {}),
                               "input_size": tuple(self.metadata.get("input_size", ())),
                               "mean": tuple(self.metadata.get("mean", ())), "std": tuple(self.metadata.get("std", ()))}

    def forward(self, images: Tensor) -> Tensor:
        array = images.detach().to("cpu", torch.float32).contiguous().numpy()
        return torch.from_numpy(self.session.run([OUTPUT_NAME], {INPUT_NAME: array})[0])


def load_onnx(path: str | os.PathLike, *, threads: int | None = None) -> tuple[OnnxClassifier, ModelInfo]:
    """An exported file as `(model, info)`, like `load_model`: the model runs in onnxruntime."""
    meta = onnx_metadata(path)
    if meta.get("sardfq.format") != FORMAT or "sardfq.model_info" not in meta:
        raise CheckpointError(f"{path} is not an ONNX file written by sardfq (no sardfq metadata); "
                              "write one with `sardfq export QUANTIZED_FOLDER`")
    if meta.get("sardfq.format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: format version {meta.get('sardfq.format_version')} "
                              f"(this sardfq reads {FORMAT_VERSION})")
    return OnnxClassifier(path, threads=threads), ModelInfo.from_dict(meta["sardfq.model_info"])


def optimized_op_counts(path: str | os.PathLike, *, threads: int | None = 1) -> dict[str, int]:
    """Op types of the graph onnxruntime actually runs (after its fusions), with their counts."""
    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="sardfq-ort-") as tmp:
        optimized = Path(tmp) / "optimized.onnx"
        ort.InferenceSession(str(path), session_options(threads, optimized), providers=["CPUExecutionProvider"])
        graph = onnx.load(str(optimized)).graph
    return dict(Counter(node.op_type for node in graph.node))


def integer_op_counts(path: str | os.PathLike) -> dict[str, int]:
    """The integer kernels (`INTEGER_OPS`) among `optimized_op_counts`."""
    return {op: n for op, n in optimized_op_counts(path).items() if op in INTEGER_OPS}


# ------------------------------------------------------------- the deployment benchmark's record
# `benchmarks/bench_export.py --json FILE` writes one JSON record (results/export/bench_export.json):
# its command and machine, the paired accuracy rows, and speed rows per architecture. Chapter 09 and
# the README read it through these functions, so that every number they show is the record's.
DEIT_BENCH = "deit_tiny_patch16_224"


def _setting(label: str) -> str:
    return label.removesuffix(", reconstructed")


def bench_row(record: dict, arch: str, runtime: str, bits: str, threads: int | None = None) -> dict:
    """The speed row of `record` for `arch` (e.g. "vit_tiny_cifar10"), `runtime` ("pytorch eager",
    "pytorch fake-quant", "onnxruntime") and setting `bits` ("fp32", "w8a8", "w8a8, uniform softmax",
    "w4afp"; a ", reconstructed" suffix of the label is ignored), at `threads` (default: the fewest
    measured)."""
    threads = min(record["config"]["threads"]) if threads is None else threads
    for row in record["speed"][arch]:
        if row["runtime"] == runtime and _setting(row["bits"]) == bits and row["threads"] == threads:
            return row
    have = sorted({(r["runtime"], _setting(r["bits"]), r["threads"]) for r in record["speed"][arch]})
    raise KeyError(f"{arch}: no row {runtime!r}, {bits!r} at {threads} threads; the record has {have}")


def bench_speedup(record: dict, arch: str, row: dict, key: str = "throughput") -> dict:
    """The speed-up of `row` against PyTorch eager FP32 at its thread count, `key` "throughput"
    (batch 32) or "latency" (batch 1): `ratio`, the ratio of the medians (the table's), and the
    spread of the per-repeat ratios (every model is timed once per round-robin repeat, so each repeat
    pairs them): `low` and `high`, the middle half (quartiles), and `repeats`."""
    base = bench_row(record, arch, "pytorch eager", "fp32", row["threads"])
    if key == "throughput":
        ratios = [a / b for a, b in zip(row["images_per_s_all"], base["images_per_s_all"])]
        ratio = row["throughput_speedup"]
    elif key == "latency":
        ratios = [b / a for a, b in zip(row["latency_all_ms"], base["latency_all_ms"])]
        ratio = row["latency_speedup"]
    else:
        raise ValueError(f"key must be 'throughput' or 'latency', got {key!r}")
    low, high = (ratios[0], ratios[0]) if len(ratios) < 2 else \
        statistics.quantiles(ratios, n=4, method="inclusive")[::2]
    return {"ratio": ratio, "low": low, "high": high, "repeats": len(ratios)}


def bench_header(record: dict) -> str:
    """One line: the command that wrote `record`, its seed, machine, threads, versions and length."""
    m, v, c = record["machine"], record["versions"], record["config"]
    load = (f"; load average {m['load_average_start']:.1f} at the start and {m['load_average_end']:.1f} at the end"
            if "load_average_start" in m and "load_average_end" in m else "")
    seconds = record["seconds"]
    length = f"{seconds:.0f} s" if seconds < 600 else f"{seconds / 60:.0f} minutes"
    return (f"`{record['command']}`: seed {c['seed']}, threads {', '.join(map(str, c['threads']))}, "
            f"{m['cpus']} CPUs ({m['platform']}), OMP_NUM_THREADS={m.get('OMP_NUM_THREADS') or 'unset'}; "
            f"sardfq {v['sardfq']}, torch {v['torch']}, onnxruntime {v['onnxruntime']}, onnx {v['onnx']}; "
            f"{length}{load}")


def bench_report(record: dict, *, profile: bool = True) -> str:
    """`record` as Markdown: its header line, the paired accuracy table, the speed and size table of
    each architecture and (`profile`) where the 224-px W8A8 model's time goes. What the benchmark
    prints, and the README's deployment block (without the profile)."""
    lines = [bench_header(record)]
    acc = record["accuracy"]
    if acc:
        lines += ["", f"Accuracy, {acc[0]['model']}: the exported model in onnxruntime against the fake-quantized "
                  f"PyTorch model it came from, paired on {acc[0]['n_images']:,} CIFAR-10 test images "
                  "(95% CI: paired bootstrap over images)", "",
                  "| bits | PyTorch top-1 | ONNX top-1 | ONNX − PyTorch (pp) [95% CI] | agreement | images |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {r['bits']} | {r['pytorch_top1']:.2f} | {r['onnx_top1']:.2f} | {r['difference']:+.2f} "
                  f"[{r['ci'][0]:+.2f}, {r['ci'][1]:+.2f}] | {r['agreement']:.2f}% | {r['n_images']:,} |" for r in acc]
        cost = record.get("softmax_quantizer")
        if cost:
            lines += ["", f"PyTorch fake-quant, {cost['a']} − {cost['b']}: {cost['difference']:+.2f} pp "
                      f"[{cost['ci'][0]:+.2f}, {cost['ci'][1]:+.2f}] on {cost['n_images']:,} images: {cost['verdict']}"]
        lines += ["", "onnxruntime CPU integer kernels after its fusions: " + "; ".join(
            f"{r['bits']}: " + ", ".join(f"{n} {op}" for op, n in sorted(r["onnx_integer_ops"].items()))
            for r in acc)]
    c = record["config"]
    for arch, rows in record["speed"].items():
        lines += ["", f"Speed and size, {arch} ({record['input_px'][arch]} px"
                  f"{', random weights' if arch == DEIT_BENCH else ''}): median of {c['latency_repeats']} batch-1 "
                  f"and {c['repeats']} batch-{c['batch']} runs, round-robin; speed-up against PyTorch eager FP32 "
                  "at the same threads", "",
                  f"| runtime | bits | threads | batch-1 ms | speed-up | batch-{c['batch']} images/s | speed-up | file MB |",
                  "|---|---|---|---|---|---|---|---|"]
        lines += [f"| {r['runtime']} | {r['bits']} | {r['threads']} | {r['latency_ms']:.1f} | {r['latency_speedup']:.2f} "
                  f"| {r['images_per_s']:.1f} | {r['throughput_speedup']:.2f} | {r['file_mb']:.2f} |" for r in rows]
    prof = record.get("profile")
    if profile and prof:
        lines += ["", f"Where the 224-px W8A8 model's time goes in onnxruntime ({prof['threads']} "
                  f"thread{'s' if prof['threads'] != 1 else ''}, batch {prof['batch']}, {prof['total_ms']:.0f} ms "
                  "of kernel time per batch):", "", "| op | ms per batch | share |", "|---|---|---|"]
        lines += [f"| {op['op']} | {op['ms']:.1f} | {100 * op['share']:.1f}% |" for op in prof["ops"][:10]]
    return "\n".join(lines)


__all__ = ["CHECK_TOLERANCE", "FORMAT", "INTEGER_OPS", "MODES", "OPSET", "ExportCheck", "OnnxClassifier", "OnnxExport",
           "Site", "check_images", "verify_export", "bench_header",
           "bench_report", "bench_row", "bench_speedup", "export_module", "export_onnx", "integer_op_counts",
           "load_onnx", "onnx_metadata", "optimized_op_counts", "pack_codes", "unpack_codes", "weight_codes"]
