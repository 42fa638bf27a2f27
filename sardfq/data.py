"""Data sets: CIFAR-10 (tarballs of JPEGs or torchvision's pickles), Tiny-ImageNet-200 (its official
layout, the official zip, or tarballs of that layout), ImageNet validation folders, and a user's own
ImageFolder (`DIR/val/<class>/*.png`, `DIR/train/...`) for a model of any classes.

The root comes from an argument or the `SARDFQ_DATA` environment variable. CIFAR-10 and
Tiny-ImageNet are decoded once and cached as uint8 arrays (under `SARDFQ_CACHE`, default
`~/.cache/sardfq`), since decoding 60,000 (110,000) JPEGs takes longer than any evaluation. Both
are held class by class (`ARRAY_DATASETS`, `load_arrays`), so an even spread of indices is an even
spread of classes.

Reading a data folder runs no code from it: images are decoded by Pillow, and torchvision's pickled
CIFAR-10 batches are read by an unpickler that builds only plain containers and numpy arrays
(`ArrayUnpickler`), so a pickle that names any other function is refused before it is called. A
damaged image or batch is a `DataNotFoundError` naming the file.
"""
from __future__ import annotations

import logging
import os
import pickle
import tarfile
from collections import Counter
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from .errors import ConfigError, DataNotFoundError
from .image_arrays import (HOW_TO_PROVIDE, ImageArrays, cache_dir, cached_arrays, data_root, decode_jpeg,  # noqa: F401
                           open_image, stack_arrays)
from .models import CIFAR10_CLASSES, ModelInfo

log = logging.getLogger(__name__)

SPLITS = ("train", "test")



# Every 10th training image (5,000, class-balanced) is held out of calibration: the `real` method
# never draws it, and `heldout_dataset` evaluates on it to choose hyper-parameters without ever
# looking at the test set. (The teacher did train on these images; they rank settings, no more.)
HELDOUT_EVERY = 10


def heldout_mask(n_train: int) -> Tensor:
    """True for the training images held out of calibration."""
    return torch.arange(n_train) % HELDOUT_EVERY == HELDOUT_EVERY - 1


def load_cifar10(split: str = "test", root: str | os.PathLike | None = None) -> ImageArrays:
    """CIFAR-10 `split` ("train" or "test") as uint8 arrays, decoding once and caching the result."""
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {SPLITS}, got {split!r}")
    base = data_root(root)
    candidates = [base, base / "cifar10", base / "cifar-10"]
    for folder in candidates:
        tarball = folder / f"{split}.tar.gz"
        if tarball.is_file():
            return cached_arrays(tarball, split, lambda: _decode_tarball(tarball, split))
        if (folder / split).is_dir() and any((folder / split).iterdir()):
            return _decode_folder(folder / split)
        if (folder / "cifar-10-batches-py").is_dir():
            return _decode_pickles(folder / "cifar-10-batches-py", split)
    looked = ", ".join(str(c) for c in candidates)
    raise DataNotFoundError(
        f"CIFAR-10 {split} split not found; looked for {split}.tar.gz, {split}/ and "
        f"cifar-10-batches-py/ in: {looked}. {HOW_TO_PROVIDE}"
    )


def _class_index(class_name: str, where: Path) -> int:
    try:
        return CIFAR10_CLASSES.index(class_name)
    except ValueError:
        raise DataNotFoundError(f"unexpected class folder {class_name!r} in {where}") from None


def _decode_tarball(tarball: Path, split: str) -> ImageArrays:
    entries = []
    try:
        with tarfile.open(tarball, "r:gz") as tar:
            for member in tar:
                parts = Path(member.name).parts
                if member.isfile() and member.name.endswith((".jpg", ".jpeg", ".png")) and len(parts) >= 2:
                    entries.append((parts[-2], member.name, tar.extractfile(member).read()))
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DataNotFoundError(f"cannot read {tarball}: {exc}; re-download it. {HOW_TO_PROVIDE}") from exc
    entries.sort(key=lambda e: e[1])  # the order the files are listed in never matters
    return stack_arrays([decode_jpeg(e[2], f"{e[1]} in {tarball}") for e in entries],
                        [_class_index(e[0], tarball) for e in entries], tarball, CIFAR10_CLASSES)


def _decode_folder(folder: Path) -> ImageArrays:
    images, labels = [], []
    for class_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        label = _class_index(class_dir.name, folder)
        for file in sorted(class_dir.iterdir()):
            images.append(decode_jpeg(file.read_bytes(), str(file)))
            labels.append(label)
    return stack_arrays(images, labels, folder, CIFAR10_CLASSES)


class ArrayUnpickler(pickle.Unpickler):
    """Unpickles plain containers, numbers, strings and numpy arrays, and nothing else: a pickle
    can name any function for the unpickler to call, so only numpy's array-rebuilding functions
    (and the codec Python 2 pickles use for bytes) are looked up; any other name is an
    `UnpicklingError` naming it, raised before anything is called."""

    ALLOWED = frozenset({
        (module, name) for module in ("numpy.core.multiarray", "numpy._core.multiarray")
        for name in ("_reconstruct", "scalar")
    } | {("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
         ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")})

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"it refers to {module}.{name}, which is neither a container nor "
                                         "a numpy array (a pickle that names a function runs it)")
        return super().find_class(module, name)


def _read_batch(file: Path) -> tuple[np.ndarray, list[int]]:
    """One torchvision CIFAR-10 batch file: (images N x 3072 uint8, labels)."""
    try:
        with open(file, "rb") as fh:
            batch = ArrayUnpickler(fh, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, OSError, ValueError, TypeError, AttributeError,
            IndexError, KeyError) as exc:  # what a damaged or hostile pickle raises
        raise DataNotFoundError(f"{file} is not a CIFAR-10 batch that sardfq reads: {exc}. Replace it with "
                                f"torchvision's original files, or use the tarball layout. {HOW_TO_PROVIDE}") from None
    data = batch.get("data") if isinstance(batch, dict) else None
    labels = batch.get("labels") if isinstance(batch, dict) else None
    if (not isinstance(data, np.ndarray) or data.ndim != 2 or data.shape[1] != 3 * 32 * 32
            or not isinstance(labels, list) or len(labels) != len(data)
            or not all(isinstance(v, int) and 0 <= v < len(CIFAR10_CLASSES) for v in labels)):
        raise DataNotFoundError(f"{file} is not a CIFAR-10 batch: it needs 'data' (N x 3072 pixels) and "
                                f"'labels' (N class indices 0-9). {HOW_TO_PROVIDE}")
    return np.asarray(data, dtype=np.uint8), labels


def _decode_pickles(folder: Path, split: str) -> ImageArrays:
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    data, labels = [], []
    for name in names:
        file = folder / name
        if not file.is_file():
            raise DataNotFoundError(f"{file} is missing from torchvision's CIFAR-10 layout. {HOW_TO_PROVIDE}")
        images, batch_labels = _read_batch(file)
        data.append(images.reshape(-1, 3, 32, 32))
        labels.extend(batch_labels)
    return ImageArrays(torch.from_numpy(np.concatenate(data)), torch.tensor(labels, dtype=torch.int64),
                       CIFAR10_CLASSES)


# ------------------------------------------------------------------------------ Tiny-ImageNet-200
TINY_IMAGENET = "tiny-imagenet-200"
_TIN_PARTS = {"train": "train", "test": "val", "val": "val"}  # the labelled val split is the test set
_IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")


def load_tiny_imagenet(split: str = "test", root: str | os.PathLike | None = None) -> ImageArrays:
    """Tiny-ImageNet-200 `split` ("train": 500 images a class; "test" or "val": the 10,000 labelled
    validation images) as uint8 (N, 3, 64, 64) arrays held class by class, decoding once and caching.

    Found under the data root as `tiny-imagenet-200/` in the official layout, as
    `tiny-imagenet-200.zip` (the official archive), or as `tiny-imagenet-200/train.tar.gz` and
    `val.tar.gz` holding that layout. Class `i` is the i-th of the sorted `wnids.txt`, named by the
    first name `words.txt` gives it; greyscale JPEGs become RGB. A file that contradicts the layout
    (a class outside `wnids.txt`, an unannotated validation image, a class with another count than
    the others, an image that does not decode) is a `DataNotFoundError` naming it.
    """
    if split not in _TIN_PARTS:
        raise ConfigError(f"split must be one of {tuple(_TIN_PARTS)}, got {split!r}")
    part = _TIN_PARTS[split]
    base = data_root(root)
    folders = [base / TINY_IMAGENET, base] if base.name != TINY_IMAGENET else [base]
    for folder in folders:
        tarball = folder / f"{part}.tar.gz"
        if tarball.is_file():
            return cached_arrays(tarball, part, lambda: _parse_tiny_imagenet(_tar_files(tarball, part), part, tarball),
                           dataset=TINY_IMAGENET)
        if (folder / part).is_dir() and (folder / "wnids.txt").is_file():
            files = _folder_files(folder, part)
            key = f"{folder.resolve()}:" + ";".join(f"{n}:{p.stat().st_size}:{p.stat().st_mtime_ns}"
                                                    for n, p in sorted(files.items()))
            return cached_arrays(folder, part, lambda: _parse_tiny_imagenet(
                {n: p.read_bytes for n, p in files.items()}, part, folder), dataset=TINY_IMAGENET, key=key)
    archive = base / f"{TINY_IMAGENET}.zip"
    if archive.is_file():
        return cached_arrays(archive, part, lambda: _parse_tiny_imagenet(_zip_files(archive, part), part, archive),
                       dataset=TINY_IMAGENET)
    looked = ", ".join(str(f) for f in folders)
    raise DataNotFoundError(f"Tiny-ImageNet-200 {split} split not found: looked for {part}.tar.gz and "
                            f"{part}/ beside wnids.txt in {looked}, and for {archive}. {HOW_TO_PROVIDE}")


def _relative(name: str, part: str) -> str | None:
    """An archive member's path inside the data set (`wnids.txt`, `train/<wnid>/images/x.JPEG`),
    or None when it belongs to neither `part` nor the class lists."""
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    if parts and parts[0] == TINY_IMAGENET:
        parts = parts[1:]
    if parts in (["wnids.txt"], ["words.txt"]) or (len(parts) > 1 and parts[0] == part):
        return "/".join(parts)
    return None


def _tar_files(tarball: Path, part: str) -> dict:
    files = {}
    try:
        with tarfile.open(tarball, "r:gz") as tar:
            for member in tar:  # read, never extracted: a member's path cannot reach outside
                name = _relative(member.name, part) if member.isfile() else None
                if name is not None:
                    data = tar.extractfile(member).read()
                    files[name] = lambda data=data: data
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DataNotFoundError(f"cannot read {tarball}: {exc}; re-download it. {HOW_TO_PROVIDE}") from None
    return files


def _zip_files(archive: Path, part: str) -> dict:
    import zipfile

    try:
        zf = zipfile.ZipFile(archive)
        files = {}
        for entry in zf.infolist():
            name = None if entry.is_dir() else _relative(entry.filename, part)
            if name is not None:
                files[name] = lambda entry=entry: zf.read(entry)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataNotFoundError(f"cannot read {archive}: {exc}; re-download it. {HOW_TO_PROVIDE}") from None
    return files


def _folder_files(folder: Path, part: str) -> dict[str, Path]:
    files = {name: folder / name for name in ("wnids.txt", "words.txt") if (folder / name).is_file()}
    for path in (folder / part).rglob("*"):
        if path.is_file():
            files[path.relative_to(folder).as_posix()] = path
    return files


def _text(files: dict, name: str, where: Path) -> list[str]:
    if name not in files:
        raise DataNotFoundError(f"{where} has no {name}; Tiny-ImageNet-200's official layout holds "
                                f"tiny-imagenet-200/{name}. {HOW_TO_PROVIDE}")
    try:
        return [line.strip() for line in files[name]().decode("utf-8").splitlines() if line.strip()]
    except (UnicodeDecodeError, OSError) as exc:
        raise DataNotFoundError(f"{name} in {where} cannot be read as text ({exc})") from None


def _parse_tiny_imagenet(files: dict, part: str, where: Path) -> ImageArrays:
    """`files` (path inside the data set -> a function returning its bytes) as arrays of `part`."""
    wnids = sorted(_text(files, "wnids.txt", where))
    if len(set(wnids)) != len(wnids) or len(wnids) < 2:
        raise DataNotFoundError(f"wnids.txt in {where} must list at least 2 distinct class ids, one a line")
    words = dict(line.split("\t", 1) for line in _text(files, "words.txt", where) if "\t" in line) \
        if "words.txt" in files else {}
    classes = tuple(words.get(w, w).split(",")[0].strip() or w for w in wnids)
    if len(set(classes)) != len(classes):  # two ids with one first name: keep the ids apart
        classes = tuple(f"{c} ({w})" for c, w in zip(classes, wnids))
    label_of = {w: i for i, w in enumerate(wnids)}
    entries: list[tuple[int, str]] = []  # (label, file)
    images = {n for n in files if n.startswith(f"{part}/") and n.lower().endswith(_IMAGE_SUFFIXES)}
    if part == "train":
        for name in images:
            wnid = name.split("/")[1]
            if wnid not in label_of:
                raise DataNotFoundError(f"{name} in {where}: class folder {wnid} is not in wnids.txt")
            entries.append((label_of[wnid], name))
    else:
        annotated = set()
        for line in _text(files, "val/val_annotations.txt", where):
            fields = line.split("\t")
            name = f"val/images/{fields[0]}"
            if len(fields) < 2 or fields[1] not in label_of:
                raise DataNotFoundError(f"val/val_annotations.txt in {where}: the line {line!r} names "
                                        f"{'no class' if len(fields) < 2 else 'class ' + fields[1]}, which is not in wnids.txt")
            if name not in images:
                raise DataNotFoundError(f"val/val_annotations.txt in {where} annotates {fields[0]}, "
                                        "which is not among the validation images")
            entries.append((label_of[fields[1]], name))
            annotated.add(name)
        unlabelled = sorted(images - annotated)
        if unlabelled:
            raise DataNotFoundError(f"{unlabelled[0]} in {where} has no line in val/val_annotations.txt "
                                    f"({len(unlabelled)} images have none)")
    counts = Counter(label for label, _ in entries)
    usual = Counter(counts.values()).most_common(1)[0][0] if counts else 0
    for label, wnid in enumerate(wnids):
        if counts[label] != usual:
            raise DataNotFoundError(f"class {wnid} has {counts[label]} {part} images in {where} where the "
                                    f"others have {usual} (official: 500 train and 50 val a class); the "
                                    "data set is incomplete or altered")
    entries.sort()
    log.info("decoding %d Tiny-ImageNet %s images from %s (once: the arrays are cached)", len(entries), part, where)
    decoded = [decode_jpeg(files[name](), f"{name} in {where}") for _, name in entries]
    return stack_arrays(decoded, [label for label, _ in entries], where, classes, [name for _, name in entries])


ARRAY_DATASETS = {"cifar10": load_cifar10, "tinyimagenet": load_tiny_imagenet}


def load_arrays(dataset: str, split: str = "test", root: str | os.PathLike | None = None) -> ImageArrays:
    """`split` ("train" or "test") of a data set held as arrays (`ARRAY_DATASETS`: the teachers'
    CIFAR-10 and Tiny-ImageNet-200; Tiny-ImageNet's test split is its labelled val split)."""
    if dataset not in ARRAY_DATASETS:
        raise ConfigError(f"dataset must be one of {', '.join(ARRAY_DATASETS)}, got {dataset!r}")
    return ARRAY_DATASETS[dataset](split, root)


def normalize(images: Tensor, info: ModelInfo) -> Tensor:
    """uint8 or [0, 1] float images (N, 3, H, W) -> the model's normalized float input."""
    x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
    mean = torch.tensor(info.mean, device=x.device).view(1, -1, 1, 1)
    std = torch.tensor(info.std, device=x.device).view(1, -1, 1, 1)
    return (x - mean) / std


def denormalize(images: Tensor, info: ModelInfo) -> Tensor:
    """The model's normalized input -> [0, 1] images (clamped), for display."""
    mean = torch.tensor(info.mean, device=images.device).view(1, -1, 1, 1)
    std = torch.tensor(info.std, device=images.device).view(1, -1, 1, 1)
    return (images * std + mean).clamp(0, 1)


def pixel_range(info: ModelInfo) -> tuple[Tensor, Tensor]:
    """Lowest and highest valid normalized pixel per channel, as (1, 3, 1, 1) tensors."""
    mean = torch.tensor(info.mean).view(1, -1, 1, 1)
    std = torch.tensor(info.std).view(1, -1, 1, 1)
    return (0 - mean) / std, (1 - mean) / std


class ArrayDataset(Dataset):
    """Normalized float images from `ImageArrays`, with optional train-time augmentation
    (random crop with zero padding 4, horizontal flip: the teacher's recipe)."""

    def __init__(self, arrays: ImageArrays, info: ModelInfo, *, augment: bool = False):
        self.arrays = arrays
        self.info = info
        self.augment = augment

    def __len__(self) -> int:
        return len(self.arrays)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        image = self.arrays.images[index]
        if self.augment:
            image = _random_crop_flip(image)
        return normalize(image.unsqueeze(0), self.info)[0], int(self.arrays.labels[index])


def _random_crop_flip(image: Tensor, pad: int = 4) -> Tensor:
    _, h, w = image.shape
    padded = torch.nn.functional.pad(image, (pad, pad, pad, pad))
    top, left = torch.randint(0, 2 * pad + 1, (2,)).tolist()
    image = padded[:, top:top + h, left:left + w]
    return image.flip(-1) if torch.rand(()) < 0.5 else image


def imagenet_val(info: ModelInfo, model: torch.nn.Module, root: str | os.PathLike | None = None) -> Dataset:
    """ImageNet validation images in ImageFolder layout, with timm's eval transform for `model`."""
    from timm.data import create_transform, resolve_data_config
    from torchvision.datasets import ImageFolder

    base = data_root(root)
    candidates = [base / "imagenet" / "val", base / "val", base]
    for folder in candidates:
        if folder.is_dir() and sum(1 for p in folder.iterdir() if p.is_dir()) >= 2:
            transform = create_transform(**resolve_data_config({}, model=model))
            return ImageFolder(str(folder), transform=transform, loader=open_image)
    looked = ", ".join(str(c) for c in candidates)
    raise DataNotFoundError(
        f"ImageNet validation folders not found; looked in: {looked} (want one folder per class "
        f"holding its images). {HOW_TO_PROVIDE}"
    )


def image_folder(info: ModelInfo, split: str, root: str | os.PathLike | None = None) -> Dataset:
    """The `split` ("val" or "train") images of a model with its own classes: `ROOT/<split>/<class
    name>/<images>` (for "val", ROOT itself when its folders are class names), resized (shorter side)
    and centre-cropped to the model's input, normalized with its mean/std. Folder names map to the
    model's outputs by class name, so a folder may hold a subset of the classes."""
    from torchvision import transforms
    from torchvision.datasets import ImageFolder

    base = data_root(root)
    candidates = [base / split] + ([base] if split == "val" else [])
    classes = {name: i for i, name in enumerate(info.class_names)}
    for folder in candidates:
        subfolders = sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
        if not subfolders or (folder == base and not set(subfolders) <= set(classes)):
            continue
        unknown = [name for name in subfolders if name not in classes]
        if unknown:
            raise DataNotFoundError(
                f"{folder} holds folders that are not classes of {info.name}: {', '.join(unknown[:5])}; "
                f"its classes are {', '.join(info.class_names[:20])}")
        _, h, w = info.input_size
        transform = transforms.Compose([
            transforms.Resize(min(h, w)), transforms.CenterCrop((h, w)), transforms.ToTensor(),
            transforms.Normalize(info.mean, info.std)])
        dataset = ImageFolder(str(folder), transform=transform, loader=open_image)
        to_model = [classes[name] for name in dataset.classes]  # ImageFolder index -> model output
        dataset.target_transform = to_model.__getitem__
        return dataset
    raise DataNotFoundError(
        f"no {split} images for {info.name}: want one folder per class name "
        f"({', '.join(info.class_names[:5])}{', ...' if info.num_classes > 5 else ''}) holding its "
        f"images, in {' or '.join(str(c) for c in candidates)}. {HOW_TO_PROVIDE}")


def eval_dataset(info: ModelInfo, model: torch.nn.Module, root: str | os.PathLike | None = None,
                 *, limit: int | None = None) -> Dataset:
    """The test/validation set that matches the model's classes, normalized for it: CIFAR-10's test
    split, Tiny-ImageNet-200's 10,000 validation images, ImageNet's validation folders, or the `val/` ImageFolder of a model with its own classes."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ConfigError(f"limit (--limit) must be a positive number of images, got {limit!r}")
    if info.dataset in ARRAY_DATASETS:
        dataset = ArrayDataset(load_arrays(info.dataset, "test", root), info)
    elif info.dataset == "imagenet":
        dataset = imagenet_val(info, model, root)
    else:
        dataset = image_folder(info, "val", root)
    return _even_spread(dataset, limit)


def heldout_dataset(info: ModelInfo, root: str | os.PathLike | None = None, *,
                    limit: int | None = None) -> Dataset:
    """The training images held out of calibration (`heldout_mask`), normalized for the model: the
    set on which hyper-parameters are chosen. CIFAR-10 and Tiny-ImageNet models only."""
    if info.dataset not in ARRAY_DATASETS:
        raise ConfigError(f"a held-out selection split exists for CIFAR-10 and Tiny-ImageNet models only, "
                          f"not {info.name}")
    train = load_arrays(info.dataset, "train", root)
    return _even_spread(ArrayDataset(train.subset(heldout_mask(len(train)).nonzero()[:, 0]), info), limit)


def even_spread(n: int, limit: int) -> list[int]:
    """`limit` indices spread evenly over range(n), first and last included: the evaluation subset
    behind every `limit` (images are stored class by class, so the first `limit` would be one class)."""
    return np.linspace(0, n - 1, limit).round().astype(int).tolist()


def _even_spread(dataset: Dataset, limit: int | None) -> Dataset:
    if limit is not None and limit < len(dataset):
        # images are stored class by class: take an even spread, not the first class only
        dataset = torch.utils.data.Subset(dataset, even_spread(len(dataset), limit))
    return dataset


# ------------------------------------------------------------------ real calibration images
def real_images(info: ModelInfo, n: int, *, generator: torch.Generator,
                root: str | os.PathLike | None = None) -> tuple[Tensor, Tensor]:
    """n distinct training images drawn with `generator`, normalized for the model: (images, labels)."""
    allowed, load = real_image_source(info, root)
    return load(allowed[torch.randperm(len(allowed), generator=generator)[:n]])


def real_image_source(info: ModelInfo, root: str | os.PathLike | None = None
                      ) -> tuple[Tensor, Callable[[Tensor], tuple[Tensor, Tensor]]]:
    """The training images the model may calibrate on: (indices allowed, load(indices) -> normalized
    images and labels). CIFAR-10 and Tiny-ImageNet never give their held-out selection images; ImageNet
    models and models with their own classes read a `train/` folder of class folders."""
    if info.dataset in ARRAY_DATASETS:
        train = load_arrays(info.dataset, "train", root)
        allowed = (~heldout_mask(len(train))).nonzero()[:, 0]  # never the selection images
        return allowed, lambda index: (normalize(train.images[index], info), train.labels[index])
    dataset = _imagenet_train(info, root) if info.dataset == "imagenet" else _own_train(info, root)

    def load(index: Tensor) -> tuple[Tensor, Tensor]:
        pairs = [dataset[i] for i in index.tolist()]
        return torch.stack([p[0] for p in pairs]), torch.tensor([p[1] for p in pairs])

    return torch.arange(len(dataset)), load


def _own_train(info: ModelInfo, root: str | os.PathLike | None):
    try:
        return image_folder(info, "train", root)
    except DataNotFoundError as exc:
        raise DataNotFoundError(f"the 'real' calibration method (and the 'real' attention prior) "
                                f"need training images: {exc}") from None


def _imagenet_train(info: ModelInfo, root: str | os.PathLike | None):
    from timm.data import create_transform
    from torchvision.datasets import ImageFolder

    base = data_root(root)
    candidates = [base / "imagenet" / "train", base / "train"]
    for folder in candidates:
        if folder.is_dir() and sum(1 for p in folder.iterdir() if p.is_dir()) >= 2:
            transform = create_transform(input_size=info.input_size, mean=info.mean, std=info.std,
                                         is_training=False)
            return ImageFolder(str(folder), transform=transform, loader=open_image)
    raise DataNotFoundError(
        f"the 'real' calibration method (and the 'real' attention prior) for the ImageNet model "
        f"{info.name!r} needs ImageNet training images: an ImageFolder-style train/ directory (one "
        f"folder per class) in one of: {', '.join(str(c) for c in candidates)}. Pass --data DIR "
        "(Python: data_root=DIR) or set SARDFQ_DATA."
    )
