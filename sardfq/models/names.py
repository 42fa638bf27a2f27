"""What a model is called and where its weights are: model folders, `hf-hub:` ids and the Hugging
Face cache, with the names that need no torch (the default and example names, the models embedded
in the package, a folder's file names) from `sardfq.model_files`, re-exported here.

The ground floor of the models wing: it imports nothing of sardfq but `sardfq.model_files`, so that
every other room (and every wing) can ask what a name means without building anything.
"""
from __future__ import annotations

import os
from pathlib import Path

import timm

from ..model_files import (CONFIG_FILE, DEFAULT_MODEL, HF_HUB_PREFIX, TIMM_EXAMPLES,  # noqa: F401  (names of the wing)
                           WEIGHTS_FILE, available_models, embedded_models, looks_like_path, weights_dir)


def is_model_folder(name: str | os.PathLike) -> bool:
    """Whether `name` is a folder holding a model `config.json` (not an embedded model's name)."""
    return Path(name).expanduser().is_dir() and (Path(name).expanduser() / CONFIG_FILE).is_file()


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
