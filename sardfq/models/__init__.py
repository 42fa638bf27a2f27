"""The models wing: load a Vision Transformer (an embedded teacher, any timm ViT/DeiT/Swin, or a
model folder) and describe it.

`load_model` returns the ordinary timm module plus a `ModelInfo` with what the rest of sardfq
needs (input size, normalization, classes, blocks, heads, class token, patch grid, and how to
rebuild the architecture), so no other module inspects a model's construction.

The rooms, bottom up (each imports only rooms listed before it):

- `names`: what a model is called and where its weights are (embedded models, folders, the
  Hugging Face cache); `values`: the plain-value checks that the next two share;
- `info`: `ModelInfo` and `describe_model`, the noun every wing imports;
- `architecture`: which architectures sardfq takes (`check_architecture`), and building one from
  a description, checked and size-bounded first (`build_architecture`);
- `checkpoints`: weights from a file, read as data (`load_checkpoint`);
- `devices`: a device name read once (`resolve_device`), and how a record names a device;
- here: `load_model`, the one door in (embedded models, folders, timm names and `hf-hub:` ids),
  and the model folder format both ways (`save_model_folder` writes what `load_model` reads).
  The door stands in the wing's `__init__` rather than in a room of its own on purpose: it needs
  the rooms above, every module that imports `sardfq.models` stands a floor above it, and a room
  between them would add a floor to the whole house (`tests/test_layout.py` caps it at nine).
  Every public name of the rooms is re-exported here, so `from sardfq.models import X` reaches
  all of them.

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

Loading a folder is reading data, never running code from it (the checks are in
`sardfq.model_files` for what the files say on their own, which the command line runs before it
imports torch, then in `architecture` and `checkpoints`): `arch` is looked up among timm's
registered model names and `MODEL_CLASSES` (nothing is imported by name), its arguments are plain
values checked against the class before it is built, options that make timm load a file
(`checkpoint_path`, `pretrained`, `pretrained_cfg_overlay`, ...) are refused, the architecture's
size is bounded, and weights come only from safetensors (whose header is read and checked before
the model is built, or `torch.load(weights_only=True)` for a `.pth` checkpoint), refused when they
hold NaN or integer values for float parameters.
"""
from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import timm
import torch
from torch import nn

from ..errors import CheckpointError, ConfigError, UnknownNameError, WeightsNotFoundError
from ..io import atomic_folder, atomic_write_bytes, atomic_write_text, to_plain
from ..model_files import check_arch_name, folder_fields, read_folder_config, safetensors_header
from .architecture import (LOADER_OPTIONS, MAX_BLOCKS, MAX_CLASSES, MAX_IMAGE_SIDE, MAX_PARAMETERS, MAX_WIDTH,
                           MODEL_CLASSES, arch_kwargs_from_json, build_architecture, build_error, built_input_size,
                           check_architecture, check_architecture_args, check_timm_name)
from .checkpoints import check_state_dict, load_checkpoint, load_torch_file
from .devices import device_description, model_device, resolve_device
from .info import CIFAR10_CLASSES, DATASETS, ModelInfo, describe_model
from .names import (CONFIG_FILE, DEFAULT_MODEL, HF_HUB_PREFIX, TIMM_EXAMPLES, WEIGHTS_FILE, available_models,
                    embedded_models, hub_id, hub_offline, hub_weights_cached, is_model_folder, looks_like_path,
                    model_fingerprint, model_slug, weights_dir)

__all__ = [
    "CIFAR10_CLASSES", "CONFIG_FILE", "DATASETS", "DEFAULT_MODEL", "HF_HUB_PREFIX", "LOADER_OPTIONS", "MAX_BLOCKS",
    "MAX_CLASSES", "MAX_IMAGE_SIDE", "MAX_PARAMETERS", "MAX_WIDTH", "MODEL_CLASSES", "ModelInfo", "TIMM_EXAMPLES",
    "WEIGHTS_FILE", "arch_kwargs_from_json", "available_models", "build_architecture", "check_architecture",
    "check_architecture_args", "check_state_dict", "describe_model", "device_description", "embedded_models",
    "is_model_folder", "load_checkpoint", "load_model", "load_torch_file", "model_device", "model_fingerprint",
    "model_slug", "resolve_device", "save_model_folder", "weights_dir", "write_model_files",
]

log = logging.getLogger(__name__)


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
    if name in embedded_models() and not looks_like_path(name):
        model, info = _load_folder(weights_dir(name), name, pretrained=pretrained, **timm_kwargs)
    elif looks_like_path(name) or (Path(name).is_dir() and not timm.is_model(name)):
        model, info = _load_folder(Path(name).expanduser(), None, pretrained=pretrained, **timm_kwargs)
    else:
        model, info = _load_timm(name, pretrained=pretrained, **timm_kwargs)
    if checkpoint is not None:
        load_checkpoint(model, checkpoint)
    return model.to(device).eval(), info


def _load_timm(name: str, *, pretrained: bool, **timm_kwargs) -> tuple[nn.Module, ModelInfo]:
    check_timm_name(name)
    timm_kwargs = check_architecture_args(name, timm_kwargs)
    hub = name.startswith(HF_HUB_PREFIX)
    # an hf-hub: id needs its config.json from the hub even for random weights
    if (pretrained or hub) and not hub_weights_cached(name) and hub_offline():
        repo = hub_id(name) or f"timm/{name.split('.')[0]}.<tag>"
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
        raise build_error(name, timm_kwargs, exc) from None
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
    input_size = built_input_size(model) if "img_size" in timm_kwargs else tuple(cfg["input_size"])
    info = describe_model(model, name, dataset=dataset, input_size=input_size, mean=cfg["mean"],
                     std=cfg["std"], class_names=classes, arch=name, arch_config=_jsonable(timm_kwargs))
    return model, info


def _load_folder(folder: Path, name: str | None, *, pretrained: bool,
                 **overrides) -> tuple[nn.Module, ModelInfo]:
    """A model folder (embedded or the user's): architecture from config.json, weights from
    model.safetensors; every value checked before it is used (see the module docstring)."""
    meta = read_folder_config(folder)
    where = folder / CONFIG_FILE
    # the files first, as data (`sardfq.model_files`, which the command line checks before torch loads)
    arch, config, classes, cfg = folder_fields(meta, where)
    try:
        check_arch_name(arch)
    except ConfigError as exc:
        raise CheckpointError(f"{where}: {exc}") from None
    if pretrained and (folder / WEIGHTS_FILE).is_file():
        safetensors_header(folder / WEIGHTS_FILE)  # not safetensors, or cut short: refused before building
    config.update(overrides)
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
    built = built_input_size(model)
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
