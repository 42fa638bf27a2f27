"""A calibration set: the images a quantizer is calibrated on, with labels and provenance.

Stored as one safetensors file: tensors `images` (N, C, H, W float32, normalized for the model),
`labels` (N int64), optionally `soft_targets` (N, classes float32), and a JSON `sardfq` metadata
entry (method, switches, seed, model, iterations, final loss terms, wall time, ...). Every source
(Gaussian noise, real images, PSAQ-ViT, SARDFQ and its ablations) produces this one format, so the
quantizer never knows where its images came from.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from .errors import CheckpointError, ConfigError
from .io import atomic_path
from .models import ModelInfo

FORMAT_VERSION = 1


@dataclass
class CalibrationSet:
    images: Tensor  # N, C, H, W, normalized float32
    labels: Tensor  # N, int64
    soft_targets: Tensor | None = None  # N, classes
    metadata: dict = field(default_factory=dict)

    def __post_init__(self):
        """A set that would calibrate silently wrong (NaN pixels give NaN ranges) is refused here,
        whether it was made in Python or read from a file."""
        for name in ("images", "labels", "soft_targets"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Tensor):
                raise ConfigError(f"calibration set {name} must be a tensor, got {type(value).__name__}")
        if self.images.ndim != 4:
            raise ConfigError(f"calibration images must be N, C, H, W; got shape {tuple(self.images.shape)}")
        if len(self.images) == 0:
            raise ConfigError("the calibration set holds no images")
        if not self.images.is_floating_point() or not bool(torch.isfinite(self.images).all()):
            raise ConfigError("calibration images must be finite floating-point values (normalized pixels); "
                              f"these are {self.images.dtype}" + ("" if not self.images.is_floating_point()
                                                                 else " with NaN or infinite values"))
        if self.labels.ndim != 1 or len(self.labels) != len(self.images) or self.labels.is_floating_point():
            raise ConfigError(f"{len(self.images)} calibration images need as many integer labels, got "
                              f"{self.labels.dtype} of shape {tuple(self.labels.shape)}")
        if bool((self.labels < 0).any()):
            raise ConfigError("calibration labels must be class indices >= 0")
        if self.soft_targets is not None and (
                self.soft_targets.ndim != 2 or len(self.soft_targets) != len(self.images)
                or not bool(torch.isfinite(self.soft_targets.float()).all())):
            raise ConfigError(f"{len(self.images)} calibration images need as many finite soft-target rows, "
                              f"got shape {tuple(self.soft_targets.shape)}")
        if not isinstance(self.metadata, dict):
            raise ConfigError(f"calibration set metadata must be a mapping, got {type(self.metadata).__name__}")

    def __len__(self) -> int:
        return len(self.images)

    def save(self, path: str | os.PathLike) -> Path:
        """Write atomically: a crash never leaves a file that looks complete."""
        from safetensors.torch import save_file

        path = Path(path)
        tensors = {"images": self.images.detach().float().cpu().contiguous(),
                   "labels": self.labels.detach().long().cpu().contiguous()}
        if self.soft_targets is not None:
            tensors["soft_targets"] = self.soft_targets.detach().float().cpu().contiguous()
        meta = {"sardfq": json.dumps({**self.metadata, "format_version": FORMAT_VERSION})}
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata=meta)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "CalibrationSet":
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"calibration set {path} does not exist; create one with "
                                  "`sardfq synthesize MODEL --out FILE`")
        try:
            with safe_open(str(path), framework="pt") as fh:
                keys = set(fh.keys())
                tensors = {k: fh.get_tensor(k) for k in keys}
                meta = json.loads((fh.metadata() or {}).get("sardfq", "{}"))
        except Exception as exc:  # truncated or foreign files raise many different types
            raise CheckpointError(f"could not read calibration set {path}: {exc}") from exc
        if not {"images", "labels"} <= keys:
            raise CheckpointError(f"{path} is not a sardfq calibration set (needs images and labels)")
        try:
            return cls(tensors["images"], tensors["labels"], tensors.get("soft_targets"), meta)
        except ConfigError as exc:
            raise CheckpointError(f"calibration set {path}: {exc}") from None


def calibration_images(calib: Tensor | CalibrationSet | str | os.PathLike,
                       info: ModelInfo | None = None) -> Tensor:
    """The images (N, C, H, W, normalized) of a tensor, a `CalibrationSet` or a calibration file."""
    if isinstance(calib, (str, os.PathLike)):
        calib = CalibrationSet.load(Path(calib))
    images = calib.images if isinstance(calib, CalibrationSet) else calib
    if not isinstance(images, Tensor) or images.ndim != 4:
        raise ConfigError(f"calibration images must be a tensor N, C, H, W; got {type(images).__name__} "
                          f"{tuple(getattr(images, 'shape', ()))}")
    if info is not None and tuple(images.shape[1:]) != tuple(info.input_size):
        raise ConfigError(f"calibration images are {tuple(images.shape[1:])} (C, H, W) but {info.name} takes "
                          f"{tuple(info.input_size)}: synthesize a set for this model")
    if len(images) == 0:
        raise ConfigError("no calibration images")
    if not images.is_floating_point() or not bool(torch.isfinite(images).all()):
        raise ConfigError("calibration images must be finite floating-point values (normalized pixels)")
    return images.float()
