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

from torch import Tensor

from .errors import CheckpointError
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
        if self.images.ndim != 4:
            raise ValueError(f"images must be N, C, H, W; got shape {tuple(self.images.shape)}")
        if len(self.labels) != len(self.images):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")
        if self.soft_targets is not None and len(self.soft_targets) != len(self.images):
            raise ValueError(f"{len(self.images)} images but {len(self.soft_targets)} soft targets")

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
        return cls(tensors["images"], tensors["labels"], tensors.get("soft_targets"), meta)


def calibration_images(calib: Tensor | CalibrationSet | str | os.PathLike,
                       info: ModelInfo | None = None) -> Tensor:
    """The images (N, C, H, W, normalized) of a tensor, a `CalibrationSet` or a calibration file."""
    if isinstance(calib, (str, os.PathLike)):
        calib = CalibrationSet.load(Path(calib))
    images = calib.images if isinstance(calib, CalibrationSet) else calib
    if not isinstance(images, Tensor) or images.ndim != 4:
        raise ValueError(f"calibration images must be a tensor N, C, H, W; got {type(images).__name__} "
                         f"{tuple(getattr(images, 'shape', ()))}")
    if info is not None and tuple(images.shape[1:]) != tuple(info.input_size):
        raise ValueError(f"calibration images are {tuple(images.shape[1:])} but {info.name} takes "
                         f"{tuple(info.input_size)}")
    if len(images) == 0:
        raise ValueError("no calibration images")
    return images.float()
