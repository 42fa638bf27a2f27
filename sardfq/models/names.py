"""What a model is called and where its weights are: the default and example names, the models
embedded in the package, model folders, `hf-hub:` ids and the Hugging Face cache.

The ground floor of the models wing: it imports nothing of sardfq, so that every other room (and
every wing) can ask what a name means without building anything.
"""
from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import timm

DEFAULT_MODEL = "vit_tiny_cifar10"
CONFIG_FILE = "config.json"  # a model folder: this file and WEIGHTS_FILE
WEIGHTS_FILE = "model.safetensors"
HF_HUB_PREFIX = "hf-hub:"

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


def looks_like_path(name: str) -> bool:
    """Whether `name` is written as a path (a slash, `~` or `.` first), not as a model name or an
    `hf-hub:` id."""
    return not name.startswith(HF_HUB_PREFIX) and ("/" in name or os.sep in name or name.startswith(("~", ".")))


def model_slug(name: str) -> str:
    """A short name for file and run names: a folder's own name, an hf-hub id without slashes."""
    if name.startswith(HF_HUB_PREFIX):
        return "hf-hub-" + name[len(HF_HUB_PREFIX):].replace("/", "--")
    if looks_like_path(name) or is_model_folder(name):
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


# ---------------------------------------------------------------------- the Hugging Face hub cache
def hub_id(model_name: str) -> str | None:
    """The Hugging Face repository that timm's pretrained weights of `model_name` come from."""
    if model_name.startswith(HF_HUB_PREFIX):
        return model_name[len(HF_HUB_PREFIX):].split("@")[0]
    cfg = timm.models.get_pretrained_cfg(model_name)
    return getattr(cfg, "hf_hub_id", None) if cfg is not None else None


def hub_weights_cached(model_name: str) -> bool:
    """Whether timm's pretrained weights for `model_name` are in the Hugging Face cache."""
    from huggingface_hub import try_to_load_from_cache

    repo = hub_id(model_name)
    if not repo:
        return False
    for filename in ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin"):
        if isinstance(try_to_load_from_cache(repo, filename), str):
            return True
    return False


def hub_offline() -> bool:
    """Whether HF_HUB_OFFLINE forbids downloading from the hub."""
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on")
