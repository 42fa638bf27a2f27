"""Images held as uint8 arrays, read without running anything from the files: the data folder
(`SARDFQ_DATA`), the decode-once cache, and decoding that names a damaged file.

The data sets of `sardfq.data` stand on these; they are kept apart so that the data sets' own
module holds what is particular to each data set.
"""
from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .errors import ConfigError, DataNotFoundError
from .io import atomic_path

HOW_TO_PROVIDE = (
    "Pass the folder with --data DIR (Python: root=DIR) or set SARDFQ_DATA=DIR. CIFAR-10 may be "
    "given as train.tar.gz/test.tar.gz of JPEGs (train/<class>/*.jpg), as those folders extracted, "
    "or as torchvision's cifar-10-batches-py; Tiny-ImageNet-200 as DIR/tiny-imagenet-200/ in its "
    "official layout (train/, val/, wnids.txt, words.txt), as DIR/tiny-imagenet-200.zip, or as "
    "DIR/tiny-imagenet-200/train.tar.gz and val.tar.gz of that layout; ImageNet as an ImageFolder-style val/ directory; "
    "a model with its own classes as DIR/val/<class name>/<images> (and DIR/train/... for real images)."
)

def data_root(root: str | os.PathLike | None = None) -> Path:
    """The data root: `root` if given, else `SARDFQ_DATA`; an error when neither names a folder."""
    chosen = root if root is not None else os.environ.get("SARDFQ_DATA")
    if chosen is None:
        raise DataNotFoundError(f"no data folder given and SARDFQ_DATA is not set. {HOW_TO_PROVIDE}")
    path = Path(chosen).expanduser()
    if not path.is_dir():
        raise DataNotFoundError(f"data folder {path} does not exist. {HOW_TO_PROVIDE}")
    return path


def cache_dir() -> Path:
    return Path(os.environ.get("SARDFQ_CACHE", Path.home() / ".cache" / "sardfq"))


@dataclass
class ImageArrays:
    """Decoded images as uint8 (N, 3, H, W) with int64 labels and the class names."""

    images: Tensor
    labels: Tensor
    classes: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index) -> "ImageArrays":
        index = torch.as_tensor(index, dtype=torch.long)
        return ImageArrays(self.images[index], self.labels[index], self.classes)


def cached_arrays(source: Path, split: str, decode, dataset: str = "cifar10", key: str | None = None) -> ImageArrays:
    """`decode()`'s arrays, from the cache when `source` (a file, or `key` for a folder) is unchanged.
    The cache is written only after a whole decode, atomically: an interrupted or failed decode
    leaves nothing that could be read as complete."""
    if key is None:
        stat = source.stat()
        key = f"{source.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    path = cache_dir() / dataset / f"{split}-{hashlib.sha1(key.encode()).hexdigest()[:12]}.npz"
    if path.is_file():
        try:
            with np.load(path) as npz:  # allow_pickle stays off: arrays of numbers and strings only
                return ImageArrays(torch.from_numpy(npz["images"]), torch.from_numpy(npz["labels"]),
                                   tuple(str(c) for c in npz["classes"]))
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache entry is decoded again below
    arrays = decode()
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:  # a crash never leaves half a cache
            np.savez(fh, images=arrays.images.numpy(), labels=arrays.labels.numpy(),
                     classes=np.array(arrays.classes, dtype=str))
    except (OSError, ConfigError):
        pass  # an unwritable cache only costs time
    return arrays


def decode_jpeg(data: bytes, where: str) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            return np.asarray(img.convert("RGB"), dtype=np.uint8)
    except (OSError, ValueError, SyntaxError) as exc:  # Pillow's errors for damaged files
        raise DataNotFoundError(f"image {where} cannot be decoded ({exc}); replace or remove it") from None


def open_image(path: str):
    """ImageFolder's loader, with a damaged image named instead of Pillow's traceback."""
    from PIL import Image

    try:
        with open(path, "rb") as fh, Image.open(fh) as img:
            return img.convert("RGB")
    except (OSError, ValueError, SyntaxError) as exc:
        raise DataNotFoundError(f"image {path} cannot be decoded ({exc}); replace or remove it") from None


def stack_arrays(images: list[np.ndarray], labels: list[int], where: Path, classes: tuple[str, ...],
                 names: list[str] | None = None) -> ImageArrays:
    """Decoded (H, W, 3) images as one (N, 3, H, W) array; images of another size than the first are
    an error naming one of them (`names`: the file of each image)."""
    if not images:
        raise DataNotFoundError(f"no images found in {where}. {HOW_TO_PROVIDE}")
    odd = next((i for i, image in enumerate(images) if image.shape != images[0].shape), None)
    if odd is not None:
        which = f" ({names[odd]} is {images[odd].shape[1]}x{images[odd].shape[0]})" if names else ""
        raise DataNotFoundError(f"the images of {where} differ in size{which}; the data set's images are all "
                                f"{images[0].shape[1]}x{images[0].shape[0]}")
    array = np.stack(images).transpose(0, 3, 1, 2).copy()  # N, 3, H, W
    return ImageArrays(torch.from_numpy(array), torch.tensor(labels, dtype=torch.int64), tuple(classes))
