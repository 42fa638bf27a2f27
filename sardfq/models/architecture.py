"""Which architectures sardfq takes, and building one from a description.

Which models work is decided by structure, not by a list of names: transformer blocks whose
attention is timm's `Attention` (ViT, DeiT, DeiT-III, ...) or Swin's `WindowAttention`, each with
an `attn.qkv` projection and an `attn.attn_drop` (whose input is the post-softmax map sardfq
records), behind a convolutional `patch_embed` (`check_architecture`). Anything else is an
`UnsupportedModelError` that names what is missing.

An architecture read from a file is data, checked before anything is built
(`check_architecture_args`): its name is a timm model name or one of `MODEL_CLASSES` (nothing is
imported by name; the rules that need no timm are `sardfq.model_files.check_arch_name`), its
arguments are plain values the class takes, none of them a loading option (`LOADER_OPTIONS`), and
its size is within the `MAX_*` bounds. `build_architecture` then builds it with random weights.
"""
from __future__ import annotations

import inspect
from typing import Mapping

import timm
import torch
from torch import nn

from ..errors import ConfigError, UnknownNameError, UnsupportedModelError, close_matches_hint, reject_unknown
from ..model_files import (HF_HUB_PREFIX, MODEL_CLASS_PATHS, available_models, check_arch_name, embedded_models,
                           names_a_file)
from .values import is_real, is_whole


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


def check_timm_name(name: str) -> None:
    """An UnknownNameError with the closest names when timm has no model `name` (tags allowed)."""
    if name.startswith(HF_HUB_PREFIX) or timm.is_model(name):
        return
    known = embedded_models() + timm.list_models()
    raise UnknownNameError(
        f"unknown model {name!r}: neither an embedded model, a model folder nor a timm model name."
        f"{close_matches_hint(name, known)} Examples: {', '.join(available_models())}; "
        "`timm.list_models('*vit*')` lists timm's."
    )


def timm_model_classes() -> dict[str, type]:
    """timm's ViT and Swin classes and their subclasses in timm, by their full names."""
    from timm.models.swin_transformer import SwinTransformer
    from timm.models.vision_transformer import VisionTransformer

    found, todo = {}, [VisionTransformer, SwinTransformer]
    while todo:
        cls = todo.pop()
        if cls.__module__.startswith("timm."):
            found[f"{cls.__module__}.{cls.__qualname__}"] = cls
        todo.extend(cls.__subclasses__())
    return dict(sorted(found.items()))


# The only classes a model folder may name by class path (`sardfq.model_files.MODEL_CLASS_PATHS`,
# where the command line reads them without timm), found in timm. A name not here is refused,
# never imported.
MODEL_CLASSES: dict[str, type] = {path: cls for path, cls in timm_model_classes().items()
                                  if path in MODEL_CLASS_PATHS}


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
        if isinstance(value, str) and names_a_file(value):
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
        return [v for v in values if is_whole(v)]

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
    ratio = ratio if is_real(ratio) and 0 < ratio < MAX_WIDTH else 4.0
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
    check_arch_name(arch)  # not a string, a file, a class path not allowed
    cls = MODEL_CLASSES.get(arch)
    if cls is None:
        check_timm_name(arch)
    kwargs = check_architecture_args(arch, config)
    try:
        return cls(**kwargs) if cls is not None else timm.create_model(arch, pretrained=False, **kwargs)
    except Exception as exc:  # any value the architecture rejects (an assert on heads, a bad type)
        raise build_error(arch, kwargs, exc) from None


def build_error(arch: str, kwargs: dict, exc: Exception) -> ConfigError:
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


def built_input_size(model: nn.Module) -> tuple[int, int, int]:
    """The (channels, height, width) a built model takes, read off its patch embedding."""
    pe = model.patch_embed
    return (int(pe.proj.in_channels), *(int(v) for v in pe.img_size))
