"""An exported file read back and run: its metadata (`onnx_metadata`), an onnxruntime session behind
an `nn.Module` (`OnnxClassifier`, `load_onnx`, so that `sardfq.evaluate` measures a file like any
model), and the ops onnxruntime runs after its fusions (`optimized_op_counts`, `integer_op_counts`).
The file's contract (`FORMAT`, its version, input and output names) is kept here, where files are
read; `export` writes to it. onnx and onnxruntime are imported inside the functions.

Last, the reading of the deployment benchmark's record (`bench_row`, `bench_speedup`,
`bench_header`), through which chapter 09 states the record's numbers.
"""
from __future__ import annotations

import json
import os
import statistics
import tempfile
from collections import Counter
from pathlib import Path

import torch
from torch import Tensor, nn

from ..compat import renamed_keywords
from ..errors import CheckpointError
from ..models import ModelInfo

FORMAT = "sardfq-onnx"
FORMAT_VERSION = 1
INPUT_NAME, OUTPUT_NAME = "input", "logits"
# integer kernels onnxruntime's CPU provider fuses QDQ groups into, and its weight-only matmul
INTEGER_OPS = ("MatMulIntegerToFloat", "MatMulInteger", "QLinearMatMul", "QGemm", "QLinearConv",
               "ConvInteger", "DynamicQuantizeMatMul", "MatMulNBits")


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
# the README (through the benchmark's `bench_report`) read it through these functions, so that every
# number they show is the record's.
def _setting(label: str) -> str:
    return label.removesuffix(", reconstructed")


@renamed_keywords(bits="setting")
def bench_row(record: dict, arch: str, runtime: str, setting: str, threads: int | None = None) -> dict:
    """The speed row of `record` for `arch` (e.g. "vit_tiny_cifar10"), `runtime` ("pytorch eager",
    "pytorch fake-quant", "onnxruntime") and `setting` (old name `bits`: "fp32", "w8a8", "w8a8,
    uniform softmax", "w4afp"; a ", reconstructed" suffix of the label is ignored; the rows name it
    `bits`), at `threads` (default: the fewest measured)."""
    threads = min(record["config"]["threads"]) if threads is None else threads
    for row in record["speed"][arch]:
        if row["runtime"] == runtime and _setting(row["bits"]) == setting and row["threads"] == threads:
            return row
    have = sorted({(r["runtime"], _setting(r["bits"]), r["threads"]) for r in record["speed"][arch]})
    raise KeyError(f"{arch}: no row {runtime!r}, {setting!r} at {threads} threads; the record has {have}")


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
    cpu = f"{m['cpus']} CPUs ({m['platform']})"
    if "cpu" in m:  # records from December 2026 on name the CPU and the flags its kernels chose by
        from ..version import cpu_summary

        cpu = f"{cpu_summary(m)} ({m['platform']})"
    return (f"`{record['command']}`: seed {c['seed']}, threads {', '.join(map(str, c['threads']))}, "
            f"{cpu}, OMP_NUM_THREADS={m.get('OMP_NUM_THREADS') or 'unset'}; "
            f"sardfq {v['sardfq']}, torch {v['torch']}, onnxruntime {v['onnxruntime']}, onnx {v['onnx']}; "
            f"{length}{load}")
