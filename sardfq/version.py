"""The package version, the versions of the libraries a result depends on, and the CPU it ran on
(kept in records)."""
from __future__ import annotations

import os
import platform

__version__ = "0.1.0"

# the instruction-set extensions that change which integer and bf16 kernels torch and onnxruntime pick
# (e.g. onnxruntime's u8 x s8 matmul saturates its 16-bit pairwise sums on AVX2 without VNNI)
KERNEL_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16",
                "amx_bf16", "amx_int8", "asimd", "asimddp", "sve", "i8mm", "bf16")


def library_versions() -> dict[str, str]:
    """sardfq, torch, timm and Python versions, as every record and calibration set stores them."""
    import timm
    import torch

    return {"sardfq": __version__, "torch": torch.__version__, "timm": timm.__version__,
            "python": platform.python_version()}


def cpu_info() -> dict:
    """The CPU a number was measured on: its model name, core count and which of `KERNEL_FLAGS` it
    has (from /proc/cpuinfo; elsewhere the platform's processor string and no flags)."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name":
                    model = value.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return {"cpu": model, "cpus": os.cpu_count(), "machine": platform.machine(),
            "flags": [f for f in KERNEL_FLAGS if f in flags]}


def cpu_summary(info: dict | None = None) -> str:
    """`cpu_info()` in a few words: 'AMD EPYC, 2 cores, avx2 fma (no AVX-512, no VNNI)'."""
    info = info or cpu_info()
    flags = info["flags"]
    missing = [name for name, present in (("AVX-512", "avx512f" in flags),
                                           ("VNNI", any("vnni" in f for f in flags))) if not present]
    absent = f" (no {', no '.join(missing)})" if missing and info["machine"] in ("x86_64", "AMD64") else ""
    return f"{info['cpu']}, {info['cpus']} cores, {' '.join(flags) or 'no listed flags'}{absent}"
