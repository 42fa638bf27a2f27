"""Top-1/top-5 accuracy of a model on a data set and, against a reference model (the FP teacher),
top-1 agreement and KL divergence, with every image's outcome kept so that two runs evaluated on
the same images can be compared image by image (`sardfq.compare`)."""
from __future__ import annotations

import base64
import hashlib
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from .errors import ConfigError


@dataclass
class PerImage:
    """Each evaluated image's outcome, in data-set order: top-1 correct, top-1 equal to the
    reference's, KL(reference || model) in nats. `labels_sha1` identifies the images (their labels
    in order), so that only runs on the same images are paired."""

    correct: np.ndarray  # bool (N,)
    labels_sha1: str
    agree: np.ndarray | None = None  # bool (N,)
    kl: np.ndarray | None = None  # float32 (N,)

    def to_dict(self) -> dict:
        """Compact JSON: bits packed and float16 values, base64-encoded (about 3 bytes an image)."""
        def bits(a):
            return None if a is None else base64.b64encode(np.packbits(a.astype(bool)).tobytes()).decode()

        return {"n": int(len(self.correct)), "labels_sha1": self.labels_sha1, "correct": bits(self.correct),
                "agree": bits(self.agree),
                "kl": None if self.kl is None else base64.b64encode(self.kl.astype("<f2").tobytes()).decode()}

    @classmethod
    def from_dict(cls, d: dict) -> "PerImage":
        """The inverse of `to_dict`; values that do not decode to `n` images are a ConfigError."""
        try:
            n = d["n"]

            def bits(s):
                if s is None:
                    return None
                values = np.unpackbits(np.frombuffer(base64.b64decode(s, validate=True), np.uint8))[:n]
                if len(values) != n:
                    raise ValueError(f"{len(values)} outcomes for {n} images")
                return values.astype(bool)

            kl = None if d.get("kl") is None else np.frombuffer(base64.b64decode(d["kl"], validate=True),
                                                                "<f2").astype(np.float32)
            if kl is not None and len(kl) != n:
                raise ValueError(f"{len(kl)} KL values for {n} images")
            return cls(correct=bits(d["correct"]), labels_sha1=str(d["labels_sha1"]), agree=bits(d.get("agree")),
                       kl=kl)
        except (KeyError, TypeError, ValueError) as exc:  # binascii.Error is a ValueError
            raise ConfigError(f"per-image results cannot be decoded ({type(exc).__name__}: {exc})") from None


@dataclass
class EvalResult:
    model: str
    top1: float  # fraction in [0, 1]
    top5: float
    n_images: int
    seconds: float
    agreement: float | None = None  # fraction of images where top-1 equals the reference's
    kl: float | None = None  # mean KL(reference || model) of the softmax outputs, nats
    per_image: PerImage | None = field(default=None, repr=False)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["per_image"] = self.per_image.to_dict() if self.per_image is not None else None
        return d


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: Dataset | DataLoader,
    *,
    name: str = "",
    batch_size: int = 256,
    reference: nn.Module | None = None,
    reference_logits: torch.Tensor | None = None,
    device: str | torch.device = "cpu",
    progress: bool = True,
    num_workers: int = 0,
) -> EvalResult:
    """Accuracy of `model` over `data` (a Dataset of (image, label) or a DataLoader); with a
    `reference`, also its top-1 agreement with it and the KL divergence from it. The reference's
    outputs may be given instead as `reference_logits` (N, classes) in the data's order, as
    `reference_outputs` computes them: a sweep then runs the full-precision model once, not once
    per run (the numbers are the same)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size (--batch-size) must be a positive number of images, got {batch_size!r}")
    loader = data if isinstance(data, DataLoader) else DataLoader(
        data, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    was_training = model.training
    model.eval()
    if reference is not None:
        reference.eval()
    if reference_logits is not None and len(reference_logits) != len(loader.dataset):
        raise ConfigError(f"reference_logits has {len(reference_logits)} rows for {len(loader.dataset)} images")
    correct, top5, agree, kl, labels_seen = [], [], [], [], []
    seen = 0
    start = time.perf_counter()
    # closed on an error too, so that an error message is not printed onto a half-drawn bar
    with tqdm(loader, desc=f"eval {name}".strip(), unit="batch", disable=not progress, leave=False) as bar:
        for images, labels in bar:
            images, labels = images.to(device), labels.to(device)
            logits = model(images).float()
            k = min(5, logits.shape[1])
            topk = logits.topk(k, dim=1).indices  # B, k
            hit = topk == labels[:, None]
            correct.append(hit[:, 0].cpu())
            top5.append(hit.any(dim=1).cpu())
            labels_seen.append(labels.cpu())
            if reference is not None or reference_logits is not None:
                ref = (reference(images).float() if reference_logits is None
                       else reference_logits[seen:seen + len(images)].to(logits.device))
                seen += len(images)
                agree.append((ref.argmax(1) == topk[:, 0]).cpu())
                ref_logp = ref.log_softmax(1)
                kl.append((ref_logp.exp() * (ref_logp - logits.log_softmax(1))).sum(1).clamp_min(0).cpu())
            bar.set_postfix(top1=f"{torch.cat(correct).float().mean():.4f}")
    model.train(was_training)
    if not correct:
        raise ConfigError("nothing to evaluate: the data set is empty (is --limit at least 1?)")
    correct_t = torch.cat(correct)
    labels_t = torch.cat(labels_seen).to(torch.int64).numpy()
    per_image = PerImage(correct=correct_t.numpy(), labels_sha1=hashlib.sha1(labels_t.tobytes()).hexdigest(),
                         agree=torch.cat(agree).numpy() if agree else None,
                         kl=torch.cat(kl).numpy() if kl else None)
    return EvalResult(
        model=name,
        top1=correct_t.sum().item() / len(correct_t),  # exact fractions, not float32 means
        top5=torch.cat(top5).sum().item() / len(correct_t),
        n_images=len(correct_t),
        seconds=time.perf_counter() - start,
        agreement=per_image.agree.sum().item() / len(correct_t) if agree else None,
        kl=float(per_image.kl.mean()) if kl else None,
        per_image=per_image,
    )


@torch.no_grad()
def reference_outputs(model: nn.Module, data: Dataset, *, batch_size: int = 256,
                      device: str | torch.device = "cpu") -> torch.Tensor:
    """`model`'s float32 logits (N, classes) on `data`, batched as `evaluate` batches it, for its
    `reference_logits`."""
    loader = DataLoader(data, batch_size=batch_size, shuffle=False)
    was_training = model.training
    model.eval()
    try:
        return torch.cat([model(images.to(device)).float().cpu() for images, _ in loader])
    finally:
        model.train(was_training)

