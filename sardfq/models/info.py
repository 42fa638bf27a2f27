"""`ModelInfo`: what the rest of sardfq needs to know about a loaded model (input size,
normalization, classes, blocks, heads, class token, patch grid, and how to rebuild the
architecture), so that no other module inspects a model's construction; `describe_model` reads it
off a built model.

The noun every wing imports, so it sits low in the models wing: it needs only the errors, the
attention blocks and the plain-value checks.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass, field

import timm
from torch import nn

from ..attention import attention_blocks
from ..errors import ConfigError
from .values import is_real, is_sequence, is_whole

DATASETS = ("cifar10", "tinyimagenet", "imagenet", "imagefolder")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                   "truck")


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
        if not is_sequence(size) or len(size) != 3 or not all(is_whole(v) and v > 0 for v in size):
            fail("input_size", "must be [channels, height, width], three positive integers")
        for name in ("mean", "std"):
            values = getattr(self, name)
            if not is_sequence(values) or len(values) != size[0] or not all(
                    is_real(v) and math.isfinite(v) for v in values):
                fail(name, f"must be {size[0]} finite numbers, one per input channel")
        if not all(v > 0 for v in self.std):
            fail("std", "must be positive (inputs are divided by it)")
        names = self.class_names
        if not is_sequence(names) or not names or not all(isinstance(c, str) for c in names):
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
