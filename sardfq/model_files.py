"""What a model is called and what its folder holds, read with the standard library alone: the
default and example names, the models embedded in the package, and a model folder's `config.json`
and the header of its `model.safetensors` (an 8-byte little-endian length, then that much JSON).

The rules here are the ones `sardfq.models` loads a folder by, kept in one place below torch and
timm so that the command line can refuse a folder that breaks one of them before it imports
either (`check_model_folder`): a `config.json` that is not JSON, not a mapping or names no
architecture; an architecture (`arch`) that names a file or a class path sardfq does not build;
fields of the wrong kind; a weights file whose header is not safetensors. What needs the model
built (timm's registry, the class's arguments, the weights' values) stays in `sardfq.models`.
"""
from __future__ import annotations

import json
import math
import os
import struct
from importlib import resources
from pathlib import Path
from typing import Mapping

from .errors import CheckpointError, ConfigError, close_matches_hint

CONFIG_FILE = "config.json"  # a model folder: this file and WEIGHTS_FILE
WEIGHTS_FILE = "model.safetensors"
QUANTIZED_CONFIG_FILE = "quant_config.json"  # what marks a folder `save_quantized` wrote
HF_HUB_PREFIX = "hf-hub:"
DEFAULT_MODEL = "vit_tiny_cifar10"

# timm architectures the test suite runs through sardfq; any other with the same structure works too.
TIMM_EXAMPLES = (
    "deit_tiny_patch16_224",
    "deit_small_patch16_224",
    "deit_base_patch16_224",
    "vit_tiny_patch16_224",
    "vit_small_patch16_224",
    "vit_base_patch16_224",
    "swin_tiny_patch4_window7_224",
    "swin_small_patch4_window7_224",
    "swin_base_patch4_window7_224",
)

# The only classes a model folder may name by class path: timm's ViT and Swin and their subclasses
# in timm (DeiT's distilled ViT), by their full names. A name not here is refused, never imported;
# `sardfq.models.MODEL_CLASSES` finds these classes in timm (a test checks that they are all of
# timm's ViT and Swin classes).
MODEL_CLASS_PATHS = (
    "timm.models.deit.VisionTransformerDistilled",
    "timm.models.swin_transformer.SwinTransformer",
    "timm.models.vision_transformer.VisionTransformer",
)

MAX_HEADER_BYTES = 100_000_000  # safetensors' own limit on the JSON header
# bytes per element of each safetensors dtype (sub-byte and exotic ones left to the library)
DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
               "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}


def weights_dir(name: str = DEFAULT_MODEL) -> Path:
    """The folder inside the package holding an embedded model's config.json and model.safetensors."""
    return Path(str(resources.files("sardfq") / "weights" / name))


def embedded_models() -> list[str]:
    """Names of the models shipped inside the package: every `sardfq/weights/<name>/` with a
    config.json."""
    root = Path(str(resources.files("sardfq") / "weights"))
    return sorted(p.parent.name for p in root.glob(f"*/{CONFIG_FILE}"))


def available_models() -> list[str]:
    """The embedded models and timm examples (any timm ViT/DeiT/Swin name works, and folders)."""
    return embedded_models() + list(TIMM_EXAMPLES)


def looks_like_path(name: str) -> bool:
    """Whether `name` is written as a path (a slash, `~` or `.` first), not as a model name or an
    `hf-hub:` id."""
    return not name.startswith(HF_HUB_PREFIX) and ("/" in name or os.sep in name or name.startswith(("~", ".")))


def names_a_file(value: str) -> bool:
    """Whether a value read from a file names a file (a path, or a weights or pickle file's
    extension): an architecture and its arguments describe shapes, never files."""
    return ("/" in value or "\\" in value or value.startswith(("~", ".")) or value.lower().endswith(
        (".pth", ".pt", ".bin", ".ckpt", ".safetensors", ".pkl", ".pickle", ".npz", ".npy", ".h5")))


def check_arch_name(arch) -> None:
    """A ConfigError for an architecture name sardfq will not build whatever timm holds: not a
    string, a file, or a `timm.` class path that is not one of `MODEL_CLASS_PATHS`. A name that
    passes is then looked up in timm's registry (`sardfq.models.build_architecture`)."""
    if not isinstance(arch, str) or not arch:
        raise ConfigError(f"arch must be a timm model name or a model class path, got "
                          f"{type(arch).__name__} {arch!r}")
    if names_a_file(arch):
        raise ConfigError(f"arch {arch!r} names a file, not an architecture: name a timm model (e.g. "
                          f"vit_tiny_patch16_224) or one of {', '.join(MODEL_CLASS_PATHS)}; sardfq never runs code "
                          "from a file")
    if arch.startswith("timm.") and arch not in MODEL_CLASS_PATHS:
        raise ConfigError(f"arch {arch!r} is not a model class sardfq builds: name a timm model "
                          f"(e.g. vit_tiny_patch16_224) or one of {', '.join(MODEL_CLASS_PATHS)}"
                          f".{close_matches_hint(arch, list(MODEL_CLASS_PATHS))}")


def read_folder_config(folder: Path) -> dict:
    """A model folder's `config.json` as a mapping that names an architecture; a CheckpointError
    naming the file otherwise."""
    if not folder.is_dir():
        raise CheckpointError(f"model folder {folder} does not exist")
    path = folder / CONFIG_FILE
    if not path.is_file():
        hint = (" It is a quantized model: load it with sardfq.load_quantized (`sardfq eval` reads it)."
                if (folder / QUANTIZED_CONFIG_FILE).is_file() else "")
        raise CheckpointError(f"{folder} is not a model folder: it has no {CONFIG_FILE}.{hint} A model "
                              f"folder holds {CONFIG_FILE} and {WEIGHTS_FILE}; write one with "
                              "sardfq.save_model_folder")
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"could not read {path}: {exc}") from None
    if not isinstance(meta, dict) or not (meta.get("arch") or meta.get("architecture")):
        raise CheckpointError(f"{path} names no architecture: it needs \"arch\" (a timm model name "
                              "or class path) and \"config\" (its arguments)")
    return meta


def folder_fields(meta: Mapping, where: Path) -> tuple[object, dict, list | None, Mapping]:
    """The architecture, its arguments (with a top-level `num_classes`), the class names and
    timm's `pretrained_cfg` of a folder's `config.json` (`meta`, read from `where`), each checked
    for its kind: a CheckpointError naming the file and the key otherwise. The architecture name
    itself is checked by `check_arch_name`."""
    cfg = meta.get("pretrained_cfg") or {}  # timm's hub layout
    if not isinstance(cfg, Mapping):
        raise CheckpointError(f"{where}: \"pretrained_cfg\" must be a mapping, got {cfg!r}")
    arch = meta.get("arch") or meta["architecture"]
    config = meta.get("config") or meta.get("model_args") or {}
    if not isinstance(config, Mapping):
        raise CheckpointError(f"{where}: \"config\" must be a mapping of the architecture's arguments, "
                              f"got {type(config).__name__} {config!r}")
    config = dict(config)
    if "num_classes" in meta:
        config.setdefault("num_classes", meta["num_classes"])
    classes = meta.get("classes") or meta.get("label_names")
    if classes is not None and (not isinstance(classes, list) or not all(isinstance(c, str) for c in classes)):
        raise CheckpointError(f"{where}: \"classes\" must be a list of class names (strings), got "
                              f"{type(classes).__name__} {classes!r}")
    return arch, config, classes, cfg


def safetensors_header(path: str | os.PathLike) -> dict[str, dict]:
    """The tensors a safetensors file says it holds ({name: {"dtype", "shape", "data_offsets"}}),
    read from its header and checked against the file's length; a CheckpointError "could not read
    checkpoint PATH: ..." when the file is not safetensors or is cut short. The values are not read."""
    path = Path(path)

    def refuse(what: str):
        raise CheckpointError(f"could not read checkpoint {path}: {what}")

    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            start = f.read(8)
            n = struct.unpack("<Q", start)[0] if len(start) == 8 else None
            if n is None:
                refuse(f"it is {size} bytes long: not a safetensors file")
            if n > min(size - 8, MAX_HEADER_BYTES):
                refuse(f"its first 8 bytes give a header of {n:,} bytes, "
                       + (f"longer than the whole file ({size:,} bytes)" if n > size - 8 else
                          f"over safetensors' limit of {MAX_HEADER_BYTES:,}") + ": not a safetensors file")
            text = f.read(n)
    except OSError as exc:
        refuse(exc.strerror or str(exc))
    try:
        header = json.loads(text.decode("utf-8"))
    except ValueError:  # UnicodeDecodeError included
        refuse("its header is not JSON: not a safetensors file")
    if not isinstance(header, dict):
        refuse(f"its header is a JSON {type(header).__name__}, not an object: not a safetensors file")
    data = size - 8 - n
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    for name, entry in tensors.items():
        try:
            dtype, shape, (begin, end) = entry["dtype"], list(entry["shape"]), entry["data_offsets"]
            whole = all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in (*shape, begin, end))
        except (TypeError, KeyError, ValueError):
            whole = False
        if not whole or not isinstance(dtype, str) or begin > end:
            refuse(f"its header's entry {name!r} is not a tensor's (dtype, shape, data_offsets): {entry!r}")
        if end > data:
            refuse(f"tensor {name!r} ends at byte {end:,} of the data, which holds {data:,}: the file is cut short")
        if dtype in DTYPE_BYTES and end - begin != math.prod(shape) * DTYPE_BYTES[dtype]:
            refuse(f"tensor {name!r} ({dtype}, shape {shape}) takes {end - begin:,} bytes, not "
                   f"{math.prod(shape) * DTYPE_BYTES[dtype]:,}")
    return tensors


def check_model_folder(name: str, *, weights: bool = True) -> None:
    """Refuse, from its files alone, a model folder that `sardfq.models.load_model(name)` would
    refuse before building anything, with the same one-line CheckpointError, without importing
    torch or timm: what `read_folder_config`, `folder_fields`, `check_arch_name` and (with
    `weights`: the folder's own weights will be loaded) `safetensors_header` find. Does nothing
    for a name not written as a path, a quantized folder or an .onnx file, which load otherwise."""
    if not looks_like_path(name) or name.endswith(".onnx") or (
            Path(name).is_dir() and (Path(name) / QUANTIZED_CONFIG_FILE).is_file()):
        return
    folder = Path(name).expanduser()
    where = folder / CONFIG_FILE
    arch, _, _, _ = folder_fields(read_folder_config(folder), where)
    try:
        check_arch_name(arch)
    except ConfigError as exc:
        raise CheckpointError(f"{where}: {exc}") from None
    if weights and (folder / WEIGHTS_FILE).is_file():
        safetensors_header(folder / WEIGHTS_FILE)
