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

- `arch`: a timm model name (`"vit_tiny_patch16_224"`) or a timm class path
  (`"timm.models.vision_transformer.VisionTransformer"`);
- `config`: keyword arguments for it (`img_size`, `patch_size`, `depth`, `num_classes`, ...);
- `classes`: the class names, in the order of the model's outputs (default `"0"`..`"N-1"`);
- `mean`, `std`: the input normalization (default: the timm architecture's own);
- `input_size`: `[3, H, W]` (default: read off the built model);
- `dataset`: where its evaluation images come from: `"imagefolder"` (the default: `val/` of the
  folder given with `--data`), `"cifar10"` or `"imagenet"`.

Other keys (a training recipe, a log) are kept for the reader and ignored. timm's own hub layout
(`architecture`, `model_args`, `num_classes`, `label_names`, `pretrained_cfg.mean/std/input_size`)
is read too, so a folder from `huggingface-cli download timm/NAME --local-dir DIR` loads as well.
`save_model_folder(model, info, out)` writes the format; every folder under `sardfq/weights/`
holding a `config.json` is an embedded model, loaded by its folder name.
"""
from __future__ import annotations

import dataclasses
import importlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

import timm
import torch
from torch import nn

from .attention import attention_blocks
from .errors import (CheckpointError, ConfigError, UnknownNameError, UnsupportedModelError,
                     WeightsNotFoundError, close_matches_hint)
from .io import atomic_write_bytes, atomic_write_text, to_plain

log = logging.getLogger(__name__)

DEFAULT_MODEL = "vit_tiny_cifar10"
CONFIG_FILE = "config.json"  # a model folder: this file and WEIGHTS_FILE
WEIGHTS_FILE = "model.safetensors"
HF_HUB_PREFIX = "hf-hub:"
DATASETS = ("cifar10", "imagenet", "imagefolder")
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
    dataset: str  # where its evaluation images come from: "cifar10", "imagenet" or "imagefolder"
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
    if str(name).startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"{what}: {name!r} asked for, but this machine has no CUDA GPU; use cpu")
    return torch.device(name)


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
            state = torch.load(path, map_location="cpu", weights_only=True)
            for key in ("state_dict", "model", "model_ema"):
                if isinstance(state, dict) and key in state and isinstance(state[key], dict):
                    state = state[key]
                    break
    except Exception as exc:  # corrupt or truncated files raise many different types
        raise CheckpointError(f"could not read checkpoint {path}: {exc}") from exc
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(state).__name__}, not a state dict")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0:3]
        raise CheckpointError(
            f"checkpoint {path} does not fit {type(model).__name__}: {' '.join(first)}"
        ) from exc


def build_architecture(arch: str, config: dict | None = None) -> nn.Module:
    """A randomly initialised model: `arch` a timm model name, `hf-hub:` id or timm class path
    (`timm.models.vision_transformer.VisionTransformer`), `config` its keyword arguments."""
    kwargs = {k: arch_kwargs_from_json(k, v) for k, v in (config or {}).items()}
    if arch.startswith("timm."):  # a class path
        module_name, _, class_name = arch.rpartition(".")
        try:
            cls = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"arch {arch!r} is not a class of this timm ({timm.__version__}): {exc}") from None
    else:
        _check_timm_name(arch)
        cls = None
    try:
        return cls(**kwargs) if cls is not None else timm.create_model(arch, pretrained=False, **kwargs)
    except TypeError as exc:  # an argument the architecture does not take
        raise ConfigError(f"cannot build {arch} with {kwargs}: {exc}") from None


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
    model.safetensors."""
    meta = _read_folder_config(folder)
    cfg = meta.get("pretrained_cfg") or {}  # timm's hub layout
    arch = meta.get("arch") or meta["architecture"]
    config = dict(meta.get("config") or meta.get("model_args") or {})
    if "num_classes" in meta:
        config.setdefault("num_classes", meta["num_classes"])
    config.update(overrides)
    try:
        model = build_architecture(arch, config)
    except (ConfigError, UnknownNameError) as exc:
        raise CheckpointError(f"{folder / CONFIG_FILE}: {exc}") from None
    check_architecture(model, arch)
    if pretrained:
        if not (folder / WEIGHTS_FILE).is_file():
            raise CheckpointError(f"model folder {folder} has no {WEIGHTS_FILE} (its weights); pass "
                                  "pretrained=False for random ones")
        load_checkpoint(model, folder / WEIGHTS_FILE)
    classes = meta.get("classes") or meta.get("label_names") or [str(i) for i in range(model.num_classes)]
    if len(classes) != model.num_classes:
        raise CheckpointError(f"{folder / CONFIG_FILE} lists {len(classes)} classes but the model has "
                              f"{model.num_classes} outputs")
    default_cfg = getattr(model, "pretrained_cfg", None) or {}
    mean = meta.get("mean") or cfg.get("mean") or default_cfg.get("mean")
    std = meta.get("std") or cfg.get("std") or default_cfg.get("std")
    if mean is None or std is None:
        raise CheckpointError(f"{folder / CONFIG_FILE} gives no normalization: add \"mean\" and \"std\"")
    input_size = None if "img_size" in overrides else (meta.get("input_size") or cfg.get("input_size"))
    input_size = input_size or _built_input_size(model)
    dataset = meta.get("dataset") or _default_dataset(classes)
    if dataset not in DATASETS:
        raise CheckpointError(f"{folder / CONFIG_FILE}: dataset must be one of {', '.join(DATASETS)}, "
                              f"got {dataset!r}")
    info = describe_model(model, name or folder.resolve().name, dataset=dataset, input_size=input_size,
                     mean=mean, std=std, class_names=classes, arch=arch,
                     arch_config=_jsonable(config))
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
    """Write `model` as a model folder `out` (created): `config.json` (arch, config, classes, mean,
    std, input_size, dataset, from `info`, plus the keys of `extra`, e.g. a training recipe) and
    `model.safetensors` (in `dtype`, default the model's own). `load_model(out)` reads it back.

    `info` comes from `load_model` (it knows the architecture); change the classes or normalization
    with `info.replace(class_names=..., mean=..., std=...)` first. Returns the folder."""
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
    folder = Path(out)
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
    except TypeError as exc:  # an argument the architecture does not take
        raise ConfigError(f"cannot build {name} with {timm_kwargs}: {exc}") from None
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
        input_size=tuple(int(v) for v in input_size),
        mean=tuple(float(v) for v in mean),
        std=tuple(float(v) for v in std),
        class_names=tuple(str(c) for c in class_names),
        num_blocks=len(blocks),
        num_heads=tuple(int(b.attn.num_heads) for b in blocks),
        has_class_token=family == "vit" and getattr(model, "cls_token", None) is not None,
        patch_grid=(int(grid[0]), int(grid[1])),
        arch=arch,
        arch_config=dict(arch_config or {}),
    )
