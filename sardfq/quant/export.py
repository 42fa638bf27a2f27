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

The layers the file is made of, and why they compute what onnxruntime's kernels compute, exactly
on every CPU (uint8 weight codes; MatMulNBits' blocks), are in `kernels`; `export_onnx` checks on
the machine that writes a file that it does (`verify_export`). Reading a file back and running it
is `runtime`.

Modes. `integer` (the default) exports what has integer kernels: 8-bit activations (weights at 2 to
8 bits, stored as uint8), and weight-only layers (weights at 2 to 8 bits in MatMulNBits containers
of 2, 4 or 8 bits). Activations below 8 bits (W4A4, W3A3, ...) have no kernel in onnxruntime's
CPU execution provider, and are refused. `emulate` exports them anyway, their grids clipped inside
uint8 containers: onnxruntime then runs the low-bit model's arithmetic on int8 kernels, with int8's
speed and file size - a check of the fake-quantized accuracy in an integer runtime, not a
deployment; the file's metadata says so.

The file carries `metadata_props`: class names, mean/std, input size, bit-widths, mode, which
layers run as integers and what stays float (`onnx_metadata`). `load_onnx` (in `runtime`) wraps an
exported file in an onnxruntime session behind an `nn.Module`, so `sardfq.evaluate` measures it like
any model.

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
import os
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
from .kernels import (KERNEL_ACT_BITS, NBITS_BLOCKS, NBITS_WIDTHS, ActivationQDQ, FloatLinear, IntegerLinear,
                      Log2Emulated, PatchLinear, WeightOnlyLinear, nbits_block_size, pack_codes, unpack_codes,
                      weight_codes)
from .modules import QuantAttention, QuantConv2d, QuantLinear, QuantWindowAttention
from .quantizers import Log2Quantizer, Quantizer, UniformQuantizer
# the file read back and run, re-exported: `sardfq.quant.export` is the deployment's one address
from .runtime import (FORMAT, FORMAT_VERSION, INPUT_NAME, INTEGER_OPS, OUTPUT_NAME, OnnxClassifier, bench_header,
                      bench_row, bench_speedup, integer_op_counts, load_onnx, onnx_metadata, optimized_op_counts,
                      session_options)

log = logging.getLogger(__name__)

OPSET = 20  # the highest opset the TorchScript exporter writes
MODES = ("integer", "emulate")
FLOAT_PARTS = ("LayerNorm", "GELU", "softmax", "residual additions", "class token and position embedding")
WHAT_RUNS = ("8-bit activations (w8a8, or w4a8 etc.: weights of 2 to 8 bits stored as uint8), or "
             "full-precision activations with weights of 2 to 8 bits (weight-only, `--a-bits none`: "
             "MatMulNBits)")


# ------------------------------------------------------------------- the model as the file runs it
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
    """What `export_onnx` wrote: the file, its bit setting (`w8a8`, `w4a4-attn2`, or `fp32`), its
    mode, and how each quantized layer is written."""

    path: str
    model: str
    setting: str
    mode: str
    sites: list[Site] = field(repr=False)
    file_bytes: int
    seconds: float
    metadata: dict = field(default_factory=dict, repr=False)
    check: "ExportCheck | None" = None  # the file against the PyTorch model; None when not verified

    def counts(self) -> dict[str, int]:
        """Layers per kind: int8, nbits, float."""
        return dict(Counter(s.kind for s in self.sites))

    @property
    def bits(self) -> str:
        """The old name of `setting`."""
        return self.setting

    def to_dict(self) -> dict:
        """The record, the setting under `bits` as the file's metadata names it (`sardfq.bits`)."""
        return {**{("bits" if k == "setting" else k): v for k, v in asdict(self).items()},
                "counts": self.counts()}


def _mode_label(mode: str, setting: str, sites: list[Site]) -> str:
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
    text = f"{setting}: " + ", ".join(parts)
    if mode == "emulate":
        text += ("; EMULATED: activation grids below 8 bits held in uint8 containers, run on int8 kernels "
                 "(the low-bit model's accuracy at int8 speed and size); for checking, not deployment")
    return text


def _metadata(q_model: nn.Module, info: ModelInfo, mode: str, sites: list[Site]) -> dict[str, str]:
    meta = getattr(q_model, "sardfq_quant", None) or {}
    config = meta.get("config")
    setting = config.label if config is not None else "fp32"  # w4a4, or w4a4-attn2 where the map differs
    data_config = {k: v for k, v in (getattr(q_model, "pretrained_cfg", None) or {}).items()
                   if k in ("crop_pct", "crop_mode", "interpolation")}
    floats = list(FLOAT_PARTS) + [
        f"{s.name} (log2 quantizer, emulated with float ops: Div, Log, Round, Exp)" if s.kind == "log2"
        else f"{s.name} (float matmul)" for s in sites if s.kind in ("float", "log2")]
    values = {
        "sardfq.format": FORMAT, "sardfq.format_version": FORMAT_VERSION, "sardfq.model": info.name,
        "sardfq.bits": setting, "sardfq.mode": mode, "sardfq.summary": _mode_label(mode, setting, sites),
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
    result = OnnxExport(path=str(out), model=info.name, setting=metadata["sardfq.bits"],
                        mode=mode, sites=sites, file_bytes=out.stat().st_size,
                        seconds=time.perf_counter() - start, metadata=metadata,
                        check=verification)
    log.info("exported %s to %s (%s) in %.1f s", info.name, out, metadata["sardfq.summary"], result.seconds)
    if verification is not None:
        log.info("checked: %s", verification.summary())
    return result


__all__ = [
    "CHECK_IMAGES", "CHECK_TOLERANCE", "FORMAT", "FORMAT_VERSION", "INPUT_NAME", "INTEGER_OPS", "KERNEL_ACT_BITS",
    "MODES", "NBITS_BLOCKS", "NBITS_WIDTHS", "OPSET", "OUTPUT_NAME", "ActivationQDQ", "ExportCheck", "FloatLinear",
    "IntegerLinear", "Log2Emulated", "OnnxClassifier", "OnnxExport", "PatchLinear", "Site", "WeightOnlyLinear",
    "bench_header", "bench_row", "bench_speedup", "check_images", "export_module", "export_onnx", "integer_op_counts",
    "load_onnx", "nbits_block_size", "onnx_metadata", "optimized_op_counts", "pack_codes", "session_options",
    "unpack_codes", "verify_export", "weight_codes",
]
