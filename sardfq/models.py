"""Load a Vision Transformer by name: the embedded CIFAR-10 teacher or a timm ViT/DeiT/Swin.

`load_model` returns the ordinary timm module plus a `ModelInfo` with what the rest of sardfq
needs (input size, normalization, classes, blocks, heads, class token, patch grid), so no other
module inspects a model's construction.
"""
from __future__ import annotations

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

from .errors import CheckpointError, ConfigError, UnknownNameError, WeightsNotFoundError
from .registry import close_matches_hint

log = logging.getLogger(__name__)

EMBEDDED_MODELS = ("vit_tiny_cifar10",)
DEFAULT_MODEL = "vit_tiny_cifar10"

# timm architectures sardfq knows how to quantize and probe (the attention adapters cover them).
SUPPORTED_TIMM_MODELS = (
    "deit_tiny_patch16_224",
    "deit_small_patch16_224",
    "deit_base_patch16_224",
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
    dataset: str  # "cifar10" or "imagenet": the data its classes come from
    input_size: tuple[int, int, int]  # C, H, W
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: tuple[str, ...] = field(repr=False)
    num_blocks: int
    num_heads: tuple[int, ...]  # per block, in forward order
    has_class_token: bool
    patch_grid: tuple[int, int]  # patch tokens per side at the input (Swin: of its first stage)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_size(self) -> int:
        return self.input_size[1]

    def to_dict(self) -> dict:
        return asdict(self)


def weights_dir(name: str = DEFAULT_MODEL) -> Path:
    """The folder inside the package holding an embedded model's config.json and model.safetensors."""
    return Path(str(resources.files("sardfq") / "weights" / name))


def available_models() -> list[str]:
    return list(EMBEDDED_MODELS) + list(SUPPORTED_TIMM_MODELS)


def _check_name(name: str) -> None:
    if name in EMBEDDED_MODELS or name in SUPPORTED_TIMM_MODELS:
        return
    base = name.split(".")[0]  # timm pretrained tags, e.g. deit_tiny_patch16_224.fb_in1k
    if base in SUPPORTED_TIMM_MODELS:
        return
    known = available_models()
    raise UnknownNameError(
        f"unknown model {name!r}.{close_matches_hint(name, known)} Supported: {', '.join(known)}."
    )


def resolve_device(name: str | None = None, *, what: str = "device") -> torch.device:
    """torch.device for `name` (None: CUDA when available, else the CPU). Asking for CUDA on a
    machine without it is a ConfigError that names `what` (a field or a command-line option)."""
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(name).startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"{what}: {name!r} asked for, but this machine has no CUDA GPU; use cpu")
    return torch.device(name)


def load_model(
    name: str = DEFAULT_MODEL,
    *,
    pretrained: bool = True,
    checkpoint: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    **timm_kwargs,
) -> tuple[nn.Module, ModelInfo]:
    """Build model `name` in eval mode and return `(model, info)`.

    - `vit_tiny_cifar10`: the embedded teacher, weights shipped inside the package.
    - a timm name (see `SUPPORTED_TIMM_MODELS`): weights from `checkpoint` (a .safetensors/.pth file)
      or else from the Hugging Face cache; `pretrained=False` gives random initialization.
    `timm_kwargs` go to `timm.create_model` (e.g. `img_size=32, depth=2` for tiny test models).
    """
    _check_name(name)
    if name in EMBEDDED_MODELS:
        model, info = _load_embedded(name, pretrained=pretrained and checkpoint is None, **timm_kwargs)
    else:
        model, info = _load_timm(name, pretrained=pretrained and checkpoint is None, **timm_kwargs)
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


def _load_embedded(name: str, *, pretrained: bool, **overrides) -> tuple[nn.Module, ModelInfo]:
    folder = weights_dir(name)
    meta = json.loads((folder / "config.json").read_text())
    config = {**meta["config"], **overrides}
    model = timm.models.vision_transformer.VisionTransformer(**config)
    if pretrained:
        load_checkpoint(model, folder / "model.safetensors")
    c, h, w = 3, config["img_size"], config["img_size"]
    info = _describe(model, name, dataset="cifar10", input_size=(c, h, w), mean=meta["mean"],
                     std=meta["std"], class_names=meta["classes"])
    return model, info


def _hub_weights_cached(model_name: str) -> bool:
    """Whether timm's pretrained weights for `model_name` are in the Hugging Face cache."""
    from huggingface_hub import try_to_load_from_cache

    cfg = timm.models.get_pretrained_cfg(model_name)
    hub_id = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    if not hub_id:
        return False
    for filename in ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin"):
        if isinstance(try_to_load_from_cache(hub_id, filename), str):
            return True
    return False


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on")


def _load_timm(name: str, *, pretrained: bool, **timm_kwargs) -> tuple[nn.Module, ModelInfo]:
    if pretrained and not _hub_weights_cached(name) and _hub_offline():
        raise WeightsNotFoundError(
            f"no pretrained weights for {name!r} in the Hugging Face cache, and HF_HUB_OFFLINE=1 "
            "forbids downloading them. Either pass a local file (checkpoint=PATH, or --checkpoint "
            f"PATH on the command line), or download them on a connected machine with "
            f"`huggingface-cli download timm/{name.split('.')[0]}.<tag>` and point HF_HOME at that "
            "cache; `pretrained=False` gives random weights."
        )
    start = time.perf_counter()
    try:
        model = timm.create_model(name, pretrained=pretrained, **timm_kwargs)
    except (OSError, RuntimeError) as exc:
        if pretrained:
            raise WeightsNotFoundError(
                f"could not get pretrained weights for {name!r} ({exc}). Pass checkpoint=PATH or "
                "--checkpoint PATH with a local weights file."
            ) from exc
        raise
    log.debug("created %s in %.1fs", name, time.perf_counter() - start)
    cfg = model.pretrained_cfg
    from timm.data import ImageNetInfo

    classes = tuple(ImageNetInfo().label_descriptions())
    if model.num_classes != len(classes):
        classes = tuple(str(i) for i in range(model.num_classes))
    input_size = tuple(cfg["input_size"])
    if "img_size" in timm_kwargs:
        s = timm_kwargs["img_size"]
        input_size = (input_size[0], s, s) if isinstance(s, int) else (input_size[0], *s)
    info = _describe(model, name, dataset="imagenet", input_size=input_size, mean=cfg["mean"],
                     std=cfg["std"], class_names=classes)
    return model, info


def _describe(model: nn.Module, name: str, *, dataset: str, input_size, mean, std,
              class_names) -> ModelInfo:
    from .attention import attention_blocks

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
        class_names=tuple(class_names),
        num_blocks=len(blocks),
        num_heads=tuple(int(b.attn.num_heads) for b in blocks),
        has_class_token=family == "vit" and getattr(model, "cls_token", None) is not None,
        patch_grid=(int(grid[0]), int(grid[1])),
    )
