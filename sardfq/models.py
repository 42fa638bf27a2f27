"""Load a Vision Transformer: an embedded teacher, any timm ViT/DeiT/Swin, or a model folder.

`load_model` returns the ordinary timm module plus a `ModelInfo` with what the rest of sardfq
needs (input size, normalization, classes, blocks, heads, class token, patch grid, and how to
rebuild the architecture), so no other module inspects a model's construction.

Which models work is decided by structure, not by a list of names: transformer blocks whose
attention is timm's `Attention` (ViT, DeiT, DeiT-III, ...) or Swin's `WindowAttention`, each with
an `attn.qkv` projection and an `attn.attn_drop` (whose input is the post-softmax map sardfq
records), behind a convolutional `patch_embed`. Anything else is an `UnsupportedModelError` that
names what is missing.

A model folder holds `config.json` and `model.safetensors` (the state dict, timm's parameter
names). `config.json` keys:

- `arch`: a timm model name (`"vit_tiny_patch16_224"`) or the class path of one of the model
  classes in `MODEL_CLASSES` (`"timm.models.vision_transformer.VisionTransformer"`, Swin's, and
  their subclasses in timm);
- `config`: keyword arguments for it (`img_size`, `patch_size`, `depth`, `num_classes`, ...):
  numbers, strings, booleans and lists of them, each an argument of the class
  (`check_architecture_args`);
- `classes`: the class names (strings), in the order of the model's outputs (default `"0"`..`"N-1"`);
- `mean`, `std`: the input normalization, one finite number per channel, std positive (default:
  the timm architecture's own);
- `input_size`: `[3, H, W]`, that of the built model (default: read off the built model);
- `dataset`: where its evaluation images come from: `"imagefolder"` (the default: `val/` of the
  folder given with `--data`), `"cifar10"`, `"tinyimagenet"` (Tiny-ImageNet-200's validation images)
  or `"imagenet"`.

Other keys (a training recipe, a log) are kept for the reader and ignored. timm's own hub layout
(`architecture`, `model_args`, `num_classes`, `label_names`, `pretrained_cfg.mean/std/input_size`)
is read too, so a folder from `huggingface-cli download timm/NAME --local-dir DIR` loads as well.
`save_model_folder(model, info, out)` writes the format; every folder under `sardfq/weights/`
holding a `config.json` is an embedded model, loaded by its folder name.

Loading a folder is reading data, never running code from it: `arch` is looked up among timm's
registered model names and `MODEL_CLASSES` (nothing is imported by name), its arguments are plain
values checked against the class before it is built, options that make timm load a file
(`checkpoint_path`, `pretrained`, `pretrained_cfg_overlay`, ...) are refused, the architecture's
size is bounded, and weights come only from safetensors (or `torch.load(weights_only=True)` for a
`.pth` checkpoint), refused when they hold NaN or integer values for float parameters.
"""
from __future__ import annotations

import dataclasses
import inspect
import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Mapping

import timm
import torch
from torch import nn

from .attention import attention_blocks
from .errors import (CheckpointError, ConfigError, UnknownNameError, UnsupportedModelError,
                     WeightsNotFoundError, close_matches_hint)
from .io import atomic_folder, atomic_write_bytes, atomic_write_text, to_plain
from .registry import reject_unknown

log = logging.getLogger(__name__)

DEFAULT_MODEL = "vit_tiny_cifar10"
CONFIG_FILE = "config.json"  # a model folder: this file and WEIGHTS_FILE
WEIGHTS_FILE = "model.safetensors"
HF_HUB_PREFIX = "hf-hub:"
DATASETS = ("cifar10", "tinyimagenet", "imagenet", "imagefolder")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                   "truck")

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


@dataclass(frozen=True)
class ModelInfo:
    """What downstream code needs to know about a loaded model."""

    name: str
    family: str  # "vit" (ViT/DeiT: global attention with a class token) or "swin" (window attention)
    dataset: str  # where its evaluation images come from: "cifar10", "tinyimagenet", "imagenet" or "imagefolder"
    input_size: tuple[int, int, int]  # C, H, W
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: tuple[str, ...] = field(repr=False)
    num_blocks: int
    num_heads: tuple[int, ...]  # per block, in forward order
    has_class_token: bool
    patch_grid: tuple[int, int]  # patch tokens per side at the input (Swin: of its first stage)
    # how to rebuild the architecture without its weights: `build_architecture(arch, arch_config)`
    arch: str = ""  # a timm model name (or hf-hub: id) or a timm class path; "" when unknown
    arch_config: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self):
        """Checks what a wrong value would make silently wrong downstream (a std of 0 divides by
        zero, a string of class names is a class per letter), and stores tuples."""
        def fail(name: str, why: str):
            raise ConfigError(f"ModelInfo.{name} {why}; got {getattr(self, name)!r}")

        size = self.input_size
        if not _sequence(size) or len(size) != 3 or not all(_whole(v) and v > 0 for v in size):
            fail("input_size", "must be [channels, height, width], three positive integers")
        for name in ("mean", "std"):
            values = getattr(self, name)
            if not _sequence(values) or len(values) != size[0] or not all(
                    _real(v) and math.isfinite(v) for v in values):
                fail(name, f"must be {size[0]} finite numbers, one per input channel")
        if not all(v > 0 for v in self.std):
            fail("std", "must be positive (inputs are divided by it)")
        names = self.class_names
        if not _sequence(names) or not names or not all(isinstance(c, str) for c in names):
            fail("class_names", "must be a non-empty list of strings, one per model output")
        if self.dataset not in DATASETS:
            fail("dataset", f"must be one of {', '.join(DATASETS)}")
        for name, kind in (("input_size", int), ("mean", float), ("std", float), ("class_names", str)):
            object.__setattr__(self, name, tuple(kind(v) for v in getattr(self, name)))

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_size(self) -> int:
        return self.input_size[1]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ModelInfo":
        """The inverse of `to_dict` (JSON lists back to tuples); keys it does not know are ignored."""
        def tuples(value):
            return tuple(tuples(v) for v in value) if isinstance(value, list) else value

        return cls(**{f.name: tuples(data[f.name]) for f in dataclasses.fields(cls) if f.name in data})

    def replace(self, **changes) -> "ModelInfo":
        """A copy with `changes` (e.g. `class_names=...`, `mean=...`), as `save_model_folder` input."""
        return dataclasses.replace(self, **changes)


def _sequence(value) -> bool:
    return isinstance(value, (list, tuple))


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _real(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


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


def is_model_folder(name: str | os.PathLike) -> bool:
    """Whether `name` is a folder holding a model `config.json` (not an embedded model's name)."""
    return Path(name).expanduser().is_dir() and (Path(name).expanduser() / CONFIG_FILE).is_file()


def _looks_like_path(name: str) -> bool:
    return not name.startswith(HF_HUB_PREFIX) and ("/" in name or os.sep in name or name.startswith(("~", ".")))


def model_slug(name: str) -> str:
    """A short name for file and run names: a folder's own name, an hf-hub id without slashes."""
    if name.startswith(HF_HUB_PREFIX):
        return "hf-hub-" + name[len(HF_HUB_PREFIX):].replace("/", "--")
    if _looks_like_path(name) or is_model_folder(name):
        return Path(name).expanduser().resolve().name
    return name


def model_fingerprint(name: str) -> dict:
    """What identifies a folder model's weights beyond its name (the resolved path, the weights
    file's size and modification time); empty for names, whose weights do not change."""
    if not is_model_folder(name):
        return {}
    folder = Path(name).expanduser().resolve()
    weights = folder / WEIGHTS_FILE
    stat = weights.stat() if weights.is_file() else None
    return {"folder": str(folder), "weights": [stat.st_size, stat.st_mtime_ns] if stat else None}


def resolve_device(name: str | torch.device | None = None, *, what: str = "device") -> torch.device:
    """torch.device for `name` (None: CUDA when available, else the CPU): the one place a device
    name is read. Asking for CUDA on a machine without it is a ConfigError that names `what` (a
    field or a command-line option)."""
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise ConfigError(f"{what}: {name!r} is not a device; use cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"{what}: {name!r} asked for, but this machine has no CUDA GPU; use cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"{what}: {name!r} asked for, but this machine has {torch.cuda.device_count()} "
                              "CUDA GPU(s), numbered from 0")
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise ConfigError(f"{what}: {name!r} asked for, but this machine has no Apple GPU; use cpu")
    elif device.type != "cpu":
        raise ConfigError(f"{what}: sardfq runs on cpu, cuda or mps, not {name!r}")
    return device


def model_device(model: nn.Module) -> torch.device:
    """Where a model's parameters are."""
    return next(model.parameters()).device


def device_description(device) -> str:
    """The device as a record states it: the GPU's name, or the CPU and its torch threads."""
    import platform

    device = torch.device(device)
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def load_model(
    name: str | os.PathLike = DEFAULT_MODEL,
    *,
    pretrained: bool = True,
    checkpoint: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    **timm_kwargs,
) -> tuple[nn.Module, ModelInfo]:
    """Build model `name` in eval mode and return `(model, info)`. `name` is one of:

    - an embedded model (`embedded_models()`, e.g. `vit_tiny_cifar10`): weights inside the package;
    - a model folder (a path: `config.json` + `model.safetensors`, see the module docstring);
    - a timm model name or tag (`deit_tiny_patch16_224`, `vit_base_patch16_224.augreg_in21k`, ...)
      or an `hf-hub:` id, weights from the local Hugging Face cache;
    and its architecture must be one sardfq can quantize and probe (else `UnsupportedModelError`).
    `checkpoint` (a .safetensors/.pth file) replaces the weights; `pretrained=False` gives random
    ones. `timm_kwargs` change the architecture (e.g. `img_size=32, depth=2` for tiny test models).
    """
    name = os.fspath(name)
    pretrained = pretrained and checkpoint is None
    if name in embedded_models() and not _looks_like_path(name):
        model, info = _load_folder(weights_dir(name), name, pretrained=pretrained, **timm_kwargs)
    elif _looks_like_path(name) or (Path(name).is_dir() and not timm.is_model(name)):
        model, info = _load_folder(Path(name).expanduser(), None, pretrained=pretrained, **timm_kwargs)
    else:
        model, info = _load_timm(name, pretrained=pretrained, **timm_kwargs)
    if checkpoint is not None:
        load_checkpoint(model, checkpoint)
    return model.to(device).eval(), info


def load_checkpoint(model: nn.Module, path: str | os.PathLike) -> None:
    """Load a state dict (.safetensors, or a torch file holding one) into `model`, strictly."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = load_torch_file(path)
            for key in ("state_dict", "model", "model_ema"):
                if isinstance(state, dict) and key in state and isinstance(state[key], dict):
                    state = state[key]
                    break
    except CheckpointError as exc:
        raise CheckpointError(f"checkpoint {exc}") from None
    except Exception as exc:  # corrupt or truncated files raise many different types
        raise CheckpointError(f"could not read checkpoint {path}: {exc}") from exc
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(state).__name__}, not a state dict")
    check_state_dict(model, state, path)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0:3]
        raise CheckpointError(
            f"checkpoint {path} does not fit {type(model).__name__}: {' '.join(first)}"
        ) from exc


def load_torch_file(path: str | os.PathLike):
    """`torch.load(path, weights_only=True)` on the CPU, the one place sardfq reads a torch file:
    tensors and plain values only. A file whose pickle names anything else (code to run) is a
    `CheckpointError` naming what it asked for, before any of it runs."""
    import pickle

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        asked = next((line.split("error:", 1)[1].split(" was not")[0].strip() for line in str(exc).splitlines()
                      if "WeightsUnpickler error:" in line), str(exc).splitlines()[0] if str(exc) else "")
        raise CheckpointError(f"{path} holds more than tensors and plain values ({asked}); sardfq loads "
                              "no pickled code: save the weights as a state dict of tensors, or as "
                              "safetensors") from None


def check_state_dict(model: nn.Module, state: Mapping, source) -> None:
    """Raise `CheckpointError` for weights that `load_state_dict` would take silently wrong:
    values that are not tensors, integer values for a floating-point parameter (cast, not
    refused, by torch), and NaN or infinite values (a diverged run). `source` names the file."""
    own = model.state_dict()
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{source}: {key!r} is a {type(value).__name__}, not a tensor")
        mine = own.get(key)
        if mine is not None and mine.is_floating_point() and not value.is_floating_point():
            raise CheckpointError(f"{source}: {key!r} holds {value.dtype} values where the model has "
                                  f"{mine.dtype} ones: these are not this model's trained weights")
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise CheckpointError(f"{source}: {key!r} holds NaN or infinite values (the weights of a "
                                  "diverged or damaged run); use other weights")


def _model_classes() -> dict[str, type]:
    from timm.models.swin_transformer import SwinTransformer
    from timm.models.vision_transformer import VisionTransformer

    found, todo = {}, [VisionTransformer, SwinTransformer]
    while todo:
        cls = todo.pop()
        if cls.__module__.startswith("timm."):
            found[f"{cls.__module__}.{cls.__qualname__}"] = cls
        todo.extend(cls.__subclasses__())
    return dict(sorted(found.items()))


# The only classes a model folder may name by class path: timm's ViT and Swin and their subclasses
# in timm (DeiT's distilled ViT), by their full names. A name not here is refused, never imported.
MODEL_CLASSES: dict[str, type] = _model_classes()


def _loader_options() -> frozenset[str]:
    from timm.models import build_model_with_cfg

    # read from the signatures, so that the options a newer timm adds are refused as well
    names = set(inspect.signature(timm.create_model).parameters)
    names |= set(inspect.signature(build_model_with_cfg).parameters)
    return frozenset((names - {"kwargs"}) | {"weights_only", "features_only", "checkpoint", "file", "url"})


# Arguments that make timm (or torch) load a file, fetch weights or pick a builder, rather than
# describe an architecture: timm.create_model's and build_model_with_cfg's own options, plus
# torch.load's weights_only. Weights come from a folder's model.safetensors or --checkpoint only.
LOADER_OPTIONS: frozenset[str] = _loader_options()

# [choice] Bounds on an architecture read from a file, checked before it is built (a depth of
# 100,000 would hang building it): about ten times the largest published ViT/Swin (ViT-22B: 48
# blocks of width 6144; Swin-G: 50 blocks), and 4096-pixel sides.
MAX_BLOCKS = 512
MAX_WIDTH = 65536
MAX_IMAGE_SIDE = 4096
MAX_CLASSES = 1_000_000
MAX_PARAMETERS = 10**11  # estimated as blocks x (4 + 2 x mlp_ratio) x width^2


def _plain(value) -> bool:
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    return isinstance(value, (list, tuple)) and all(_plain(v) for v in value)


def _names_a_file(value: str) -> bool:
    return ("/" in value or "\\" in value or value.startswith(("~", ".")) or value.lower().endswith(
        (".pth", ".pt", ".bin", ".ckpt", ".safetensors", ".pkl", ".pickle", ".npz", ".npy", ".h5")))


def _init_parameters(cls: type) -> set[str] | None:
    """The keyword arguments `cls(...)` takes, following `**kwargs` up the base classes (DeiT's
    distilled ViT passes them to ViT's); None when some class takes any."""
    names: set[str] = set()
    for base in cls.__mro__:
        if "__init__" not in vars(base):
            continue
        params = inspect.signature(base.__init__).parameters
        names |= {n for n, p in params.items() if n != "self" and p.kind in (
            inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)}
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            return names
    return None


def check_architecture_args(arch: str, config: Mapping | None) -> dict:
    """`config` checked as the keyword arguments of architecture `arch` (a timm model name or a
    `MODEL_CLASSES` path) and converted as timm takes them (`arch_kwargs_from_json`). A
    `ConfigError` names the argument that is a loading option (`LOADER_OPTIONS`), a value that is
    not plain data (numbers, strings, booleans, null and lists of them) or that names a file, an
    argument the class does not take (for a class path; a model name's builder checks its own),
    or a size beyond the `MAX_*` bounds. Nothing is built or imported."""
    if config is None:
        config = {}
    if not isinstance(config, Mapping):
        raise ConfigError(f"the architecture's arguments (\"config\") must be a mapping of argument "
                          f"names to values, got {type(config).__name__} {config!r}")
    kwargs = {}
    for key, value in config.items():
        if not isinstance(key, str):
            raise ConfigError(f"architecture argument names must be strings, got {key!r}")
        if key in LOADER_OPTIONS:
            raise ConfigError(f"architecture argument {key!r} is a loading option, not part of an "
                              "architecture: weights come from the folder's model.safetensors (or "
                              f"--checkpoint), never from its config; remove {key!r}")
        if not _plain(value):
            raise ConfigError(f"architecture argument {key!r} must be a number, string, boolean, null or "
                              f"a list of them, got {type(value).__name__} {value!r}")
        if isinstance(value, str) and _names_a_file(value):
            raise ConfigError(f"architecture argument {key}={value!r} looks like a file path; "
                              "architecture arguments describe shapes, never files")
        kwargs[key] = arch_kwargs_from_json(key, value)
    cls = MODEL_CLASSES.get(arch)
    if cls is not None:
        known = _init_parameters(cls)
        if known is not None:
            reject_unknown(cls.__name__, kwargs, known, noun="argument")
    _check_size(kwargs)
    return kwargs


def _check_size(kwargs: dict) -> None:
    """The `MAX_*` bounds on the sizes among `kwargs` (arguments left out keep the
    architecture's own, bounded, defaults)."""
    def ints(value) -> list[int]:
        values = value if isinstance(value, (list, tuple)) else [value]
        return [v for v in values if _whole(v)]

    def bound(name: str, total: int, limit: int, what: str) -> None:
        if total > limit:
            raise ConfigError(f"architecture argument {name}={kwargs[name]!r} asks for {total:,} {what}, "
                              f"more than the {limit:,} sardfq builds; is the config right?")

    blocks = sum(ints(kwargs.get("depth"))) + sum(ints(kwargs.get("depths")))
    for name, limit, what in (("depth", MAX_BLOCKS, "blocks"), ("depths", MAX_BLOCKS, "blocks"),
                              ("embed_dim", MAX_WIDTH, "channels"), ("num_heads", MAX_WIDTH, "heads"),
                              ("num_classes", MAX_CLASSES, "classes"), ("img_size", MAX_IMAGE_SIDE, "pixels a side")):
        if name in kwargs:
            values = ints(kwargs[name])
            bound(name, sum(values) if name == "depths" else max(values, default=0), limit, what)
    width = max(ints(kwargs.get("embed_dim")), default=0)
    stages = len(kwargs["depths"]) if isinstance(kwargs.get("depths"), (list, tuple)) else 1
    ratio = kwargs.get("mlp_ratio", 4.0)
    ratio = ratio if _real(ratio) and 0 < ratio < MAX_WIDTH else 4.0
    if blocks and width:  # Swin doubles the width at each stage (in floats: no huge integers)
        estimate = blocks * (4 + 2 * ratio) * (float(width) * 2.0 ** min(stages - 1, 64)) ** 2
        if estimate > MAX_PARAMETERS:
            raise ConfigError(f"the architecture's arguments ({blocks} blocks of width {width}) make about "
                              f"{estimate:.1e} parameters, more than the {MAX_PARAMETERS:.0e} sardfq builds; "
                              "is the config right?")


def build_architecture(arch: str, config: Mapping | None = None) -> nn.Module:
    """A randomly initialised model: `arch` a timm model name, `hf-hub:` id or a `MODEL_CLASSES`
    class path (`timm.models.vision_transformer.VisionTransformer`), `config` its keyword
    arguments, checked first by `check_architecture_args`."""
    if not isinstance(arch, str) or not arch:
        raise ConfigError(f"arch must be a timm model name or a model class path, got "
                          f"{type(arch).__name__} {arch!r}")
    cls = MODEL_CLASSES.get(arch)
    if cls is None and arch.startswith("timm."):
        raise ConfigError(f"arch {arch!r} is not a model class sardfq builds: name a timm model "
                          f"(e.g. vit_tiny_patch16_224) or one of {', '.join(MODEL_CLASSES)}"
                          f".{close_matches_hint(arch, list(MODEL_CLASSES))}")
    if cls is None:
        _check_timm_name(arch)
    kwargs = check_architecture_args(arch, config)
    try:
        return cls(**kwargs) if cls is not None else timm.create_model(arch, pretrained=False, **kwargs)
    except Exception as exc:  # any value the architecture rejects (an assert on heads, a bad type)
        raise _build_error(arch, kwargs, exc) from None


def _build_error(arch: str, kwargs: dict, exc: Exception) -> ConfigError:
    """The error for arguments a timm architecture rejected: an argument it does not take is named
    with the closest one it does (its class found by building it bare on the meta device, which
    allocates nothing), anything else quoted."""
    if isinstance(exc, TypeError) and "unexpected keyword argument" in str(exc):
        try:
            with torch.device("meta"):
                cls = MODEL_CLASSES.get(arch) or type(timm.create_model(arch, pretrained=False))
            known = _init_parameters(cls)
            if known is not None:
                reject_unknown(cls.__name__, kwargs, known, noun="argument")
        except ConfigError as named:
            return named
        except Exception:  # the plain message below still names the argument
            pass
    return ConfigError(f"cannot build {arch} with {kwargs}: {type(exc).__name__}: {exc}")


_SIZES = ("img_size", "patch_size", "window_size")


def arch_kwargs_from_json(key: str, value):
    """An architecture argument read from JSON as timm takes it: a list becomes an int for a
    square size, else a tuple."""
    if isinstance(value, list):
        square = key in _SIZES and len(value) == 2 and value[0] == value[1]
        return value[0] if square else tuple(value)
    return value


def _read_folder_config(folder: Path) -> dict:
    if not folder.is_dir():
        raise CheckpointError(f"model folder {folder} does not exist")
    path = folder / CONFIG_FILE
    if not path.is_file():
        hint = (" It is a quantized model: load it with sardfq.load_quantized (`sardfq eval` reads it)."
                if (folder / "quant_config.json").is_file() else "")
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


def _load_folder(folder: Path, name: str | None, *, pretrained: bool,
                 **overrides) -> tuple[nn.Module, ModelInfo]:
    """A model folder (embedded or the user's): architecture from config.json, weights from
    model.safetensors; every value checked before it is used (see the module docstring)."""
    meta = _read_folder_config(folder)
    where = folder / CONFIG_FILE
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
    config.update(overrides)
    classes = meta.get("classes") or meta.get("label_names")
    if classes is not None and (not isinstance(classes, list) or not all(isinstance(c, str) for c in classes)):
        raise CheckpointError(f"{where}: \"classes\" must be a list of class names (strings), got "
                              f"{type(classes).__name__} {classes!r}")
    try:
        model = build_architecture(arch, config)
    except (ConfigError, UnknownNameError) as exc:
        raise CheckpointError(f"{where}: {exc}") from None
    check_architecture(model, arch)
    if pretrained:
        if not (folder / WEIGHTS_FILE).is_file():
            raise CheckpointError(f"model folder {folder} has no {WEIGHTS_FILE} (its weights); pass "
                                  "pretrained=False for random ones")
        load_checkpoint(model, folder / WEIGHTS_FILE)
    classes = classes or [str(i) for i in range(model.num_classes)]
    if len(classes) != model.num_classes:
        raise CheckpointError(f"{where} lists {len(classes)} classes but the model has "
                              f"{model.num_classes} outputs")
    default_cfg = getattr(model, "pretrained_cfg", None) or {}
    mean = meta.get("mean") or cfg.get("mean") or default_cfg.get("mean")
    std = meta.get("std") or cfg.get("std") or default_cfg.get("std")
    if mean is None or std is None:
        raise CheckpointError(f"{where} gives no normalization: add \"mean\" and \"std\"")
    built = _built_input_size(model)
    input_size = None if "img_size" in overrides else (meta.get("input_size") or cfg.get("input_size"))
    if input_size is not None and list(input_size) != list(built) and not getattr(
            model.patch_embed, "dynamic_img_size", False):
        raise CheckpointError(f"{where}: input_size {list(input_size)} does not match the architecture, "
                              f"which takes {list(built)} (its img_size and in_chans); fix one of them")
    dataset = meta.get("dataset") or _default_dataset(classes)
    try:
        info = describe_model(model, name or folder.resolve().name, dataset=dataset,
                              input_size=input_size or built, mean=mean, std=std, class_names=classes,
                              arch=arch, arch_config=_jsonable(config))
    except ConfigError as exc:
        raise CheckpointError(f"{where}: {exc}") from None
    return model, info


def _default_dataset(classes) -> str:
    return "cifar10" if tuple(classes) == CIFAR10_CLASSES else "imagefolder"


def _built_input_size(model: nn.Module) -> tuple[int, int, int]:
    pe = model.patch_embed
    return (int(pe.proj.in_channels), *(int(v) for v in pe.img_size))


def _jsonable(value):
    try:
        return to_plain(value)
    except TypeError:
        raise ConfigError(f"architecture argument {value!r} ({type(value).__name__}) cannot be saved as "
                          "JSON") from None


def save_model_folder(model: nn.Module, info: ModelInfo, out: str | os.PathLike, *,
                      extra: dict | None = None, dtype: torch.dtype | None = None) -> Path:
    """Write `model` as a model folder `out`: `config.json` (arch, config, classes, mean, std,
    input_size, dataset, from `info`, plus the keys of `extra`, e.g. a training recipe) and
    `model.safetensors` (in `dtype`, default the model's own). `load_model(out)` reads it back.

    `info` comes from `load_model` (it knows the architecture); change the classes or normalization
    with `info.replace(class_names=..., mean=..., std=...)` first. The folder is replaced whole and
    at once (`sardfq.io.atomic_folder`): an existing `out` must be a model folder or empty. Returns
    the folder."""
    with atomic_folder(out, ours=(CONFIG_FILE,)) as tmp:
        write_model_files(model, info, tmp, extra=extra, dtype=dtype)
    return Path(out)


def write_model_files(model: nn.Module, info: ModelInfo, folder: str | os.PathLike, *,
                      extra: dict | None = None, dtype: torch.dtype | None = None) -> Path:
    """The files of `save_model_folder` written into `folder` (which the caller makes atomic, with
    other files beside them, as a trained teacher's folder does)."""
    from safetensors.torch import save

    if not info.arch:
        raise ConfigError("ModelInfo.arch is empty: load the model with sardfq.load_model (which "
                          "records its architecture) before saving it as a folder")
    if len(info.class_names) != getattr(model, "num_classes", len(info.class_names)):
        raise ConfigError(f"ModelInfo.class_names has {len(info.class_names)} names but the model has "
                          f"{model.num_classes} outputs")
    check_architecture(model, info.arch)
    meta = {"arch": info.arch, "config": _jsonable(info.arch_config), "classes": list(info.class_names),
            "mean": list(info.mean), "std": list(info.std), "input_size": list(info.input_size),
            "dataset": info.dataset, **(extra or {})}
    state = {k: v.detach().to("cpu", dtype if dtype and v.is_floating_point() else v.dtype).contiguous()
             for k, v in model.state_dict().items()}
    folder = Path(folder)
    # weights first: config.json, written last, is what makes a folder a model folder
    atomic_write_bytes(folder / WEIGHTS_FILE, save(state))
    atomic_write_text(folder / CONFIG_FILE, json.dumps(meta, indent=1))
    return folder


def check_architecture(model: nn.Module, name: str = "") -> None:
    """Raise `UnsupportedModelError` naming what `model` lacks for sardfq to quantize and probe it:
    transformer blocks whose `attn` is timm's `Attention` or Swin's `WindowAttention` with `qkv` and
    `attn_drop`, behind a convolutional `patch_embed`."""
    from timm.layers.attention import Attention
    from timm.models.swin_transformer import WindowAttention

    what = f"{name or type(model).__name__} ({type(model).__name__})"
    supported = ("sardfq quantizes and probes ViT/DeiT blocks (timm Attention) and Swin window "
                 "attention (timm WindowAttention)")
    blocks = list(getattr(model, "blocks", None) or []) or [
        block for stage in getattr(model, "layers", None) or [] for block in getattr(stage, "blocks", [])]
    if not blocks:
        raise UnsupportedModelError(f"{what} has no transformer blocks (`blocks`, or Swin's "
                                    f"`layers.*.blocks`); {supported}")
    proj = getattr(getattr(model, "patch_embed", None), "proj", None)
    if not isinstance(proj, nn.Conv2d) or not hasattr(model.patch_embed, "grid_size"):
        raise UnsupportedModelError(f"{what} has no convolutional patch embedding "
                                    f"(`patch_embed.proj`); {supported}")
    for index, block in enumerate(blocks):
        attn = getattr(block, "attn", None)
        missing = ["attn"] if attn is None else [f"attn.{part}" for part in ("qkv", "attn_drop", "proj")
                                                if not isinstance(getattr(attn, part, None), nn.Module)]
        if missing:
            raise UnsupportedModelError(
                f"{what}: block {index} has no {', '.join(missing)} (sardfq records attention at "
                f"`attn.attn_drop` and quantizes `attn.qkv`); {supported}")
        if not isinstance(attn, (Attention, WindowAttention)) or getattr(attn, "gate", None) is not None:
            kind = f"{type(attn).__module__}.{type(attn).__qualname__}"
            kind = f"a gated {kind}" if isinstance(attn, Attention) else kind
            raise UnsupportedModelError(f"{what}: block {index}'s attention is {kind}; {supported}")
    if not getattr(model, "num_classes", 0):
        raise UnsupportedModelError(f"{what} has no classifier head (num_classes is 0): synthesis "
                                    "needs class scores; build it with num_classes=N")


def _check_timm_name(name: str) -> None:
    """An UnknownNameError with the closest names when timm has no model `name` (tags allowed)."""
    if name.startswith(HF_HUB_PREFIX) or timm.is_model(name):
        return
    known = embedded_models() + timm.list_models()
    raise UnknownNameError(
        f"unknown model {name!r}: neither an embedded model, a model folder nor a timm model name."
        f"{close_matches_hint(name, known)} Examples: {', '.join(available_models())}; "
        "`timm.list_models('*vit*')` lists timm's."
    )


def _hub_id(model_name: str) -> str | None:
    """The Hugging Face repository that timm's pretrained weights of `model_name` come from."""
    if model_name.startswith(HF_HUB_PREFIX):
        return model_name[len(HF_HUB_PREFIX):].split("@")[0]
    cfg = timm.models.get_pretrained_cfg(model_name)
    return getattr(cfg, "hf_hub_id", None) if cfg is not None else None


def _hub_weights_cached(model_name: str) -> bool:
    """Whether timm's pretrained weights for `model_name` are in the Hugging Face cache."""
    from huggingface_hub import try_to_load_from_cache

    hub_id = _hub_id(model_name)
    if not hub_id:
        return False
    for filename in ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin"):
        if isinstance(try_to_load_from_cache(hub_id, filename), str):
            return True
    return False


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on")


def _load_timm(name: str, *, pretrained: bool, **timm_kwargs) -> tuple[nn.Module, ModelInfo]:
    _check_timm_name(name)
    timm_kwargs = check_architecture_args(name, timm_kwargs)
    hub = name.startswith(HF_HUB_PREFIX)
    # an hf-hub: id needs its config.json from the hub even for random weights
    if (pretrained or hub) and not _hub_weights_cached(name) and _hub_offline():
        repo = _hub_id(name) or f"timm/{name.split('.')[0]}.<tag>"
        raise WeightsNotFoundError(
            f"no pretrained weights for {name!r} in the Hugging Face cache, and HF_HUB_OFFLINE=1 "
            "forbids downloading them. Download them on a connected machine with "
            f"`huggingface-cli download {repo}` and point HF_HOME at that cache, or pass a local "
            "file (checkpoint=PATH, or --checkpoint PATH on the command line), or a model folder"
            + ("." if hub else "; `pretrained=False` gives random weights.")
        )
    start = time.perf_counter()
    try:
        model = timm.create_model(name, pretrained=pretrained, **timm_kwargs)
    except (OSError, RuntimeError) as exc:
        if pretrained or hub:
            raise WeightsNotFoundError(
                f"could not get pretrained weights for {name!r} ({exc}). Pass checkpoint=PATH or "
                "--checkpoint PATH with a local weights file."
            ) from exc
        raise
    except (TypeError, ValueError, AssertionError) as exc:  # a value the architecture rejects
        raise _build_error(name, timm_kwargs, exc) from None
    log.debug("created %s in %.1fs", name, time.perf_counter() - start)
    check_architecture(model, name)
    cfg = model.pretrained_cfg
    from timm.data import ImageNetInfo

    classes = tuple(ImageNetInfo().label_descriptions())
    dataset = "imagenet"
    if model.num_classes != len(classes):
        names = cfg.get("label_names") or []  # an hf-hub model's config may name its classes
        classes = tuple(names) if len(names) == model.num_classes else tuple(
            str(i) for i in range(model.num_classes))
        dataset = "imagefolder"
    input_size = _built_input_size(model) if "img_size" in timm_kwargs else tuple(cfg["input_size"])
    info = describe_model(model, name, dataset=dataset, input_size=input_size, mean=cfg["mean"],
                     std=cfg["std"], class_names=classes, arch=name, arch_config=_jsonable(timm_kwargs))
    return model, info


def describe_model(model: nn.Module, name: str, *, dataset: str, input_size, mean, std,
                   class_names, arch: str = "", arch_config: dict | None = None) -> ModelInfo:
    """The `ModelInfo` of a built model: blocks, heads, class token and patch grid read off the
    modules, the rest as given."""
    blocks = attention_blocks(model)
    family = "swin" if isinstance(model, timm.models.swin_transformer.SwinTransformer) else "vit"
    grid = tuple(model.patch_embed.grid_size)
    return ModelInfo(
        name=name,
        family=family,
        dataset=dataset,
        input_size=input_size,  # checked and made tuples by ModelInfo
        mean=mean,
        std=std,
        class_names=class_names,
        num_blocks=len(blocks),
        num_heads=tuple(int(b.attn.num_heads) for b in blocks),
        has_class_token=family == "vit" and getattr(model, "cls_token", None) is not None,
        patch_grid=(int(grid[0]), int(grid[1])),
        arch=arch,
        arch_config=dict(arch_config or {}),
    )
