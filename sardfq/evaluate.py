"""Top-1/top-5 accuracy of a model on a data set, optionally with its agreement with a reference."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm


@dataclass
class EvalResult:
    model: str
    top1: float  # fraction in [0, 1]
    top5: float
    n_images: int
    seconds: float
    agreement: float | None = None  # fraction of images where top-1 equals the reference's

    def to_dict(self) -> dict:
        return asdict(self)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: Dataset | DataLoader,
    *,
    name: str = "",
    batch_size: int = 256,
    reference: nn.Module | None = None,
    device: str | torch.device = "cpu",
    progress: bool = True,
    num_workers: int = 0,
) -> EvalResult:
    """Accuracy of `model` over `data` (a Dataset of (image, label) or a DataLoader)."""
    loader = data if isinstance(data, DataLoader) else DataLoader(
        data, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    was_training = model.training
    model.eval()
    if reference is not None:
        reference.eval()
    top1 = top5 = agree = seen = 0
    start = time.perf_counter()
    bar = tqdm(loader, desc=f"eval {name}".strip(), unit="batch", disable=not progress, leave=False)
    for images, labels in bar:
        images, labels = images.to(device), labels.to(device)
        logits = model(images)
        k = min(5, logits.shape[1])
        topk = logits.topk(k, dim=1).indices  # B, k
        hit = topk == labels[:, None]
        top1 += hit[:, 0].sum().item()
        top5 += hit.any(dim=1).sum().item()
        if reference is not None:
            agree += (reference(images).argmax(1) == topk[:, 0]).sum().item()
        seen += len(labels)
        bar.set_postfix(top1=f"{top1 / seen:.4f}")
    model.train(was_training)
    if seen == 0:
        raise ValueError("evaluate() got an empty data set")
    return EvalResult(
        model=name,
        top1=top1 / seen,
        top5=top5 / seen,
        n_images=seen,
        seconds=time.perf_counter() - start,
        agreement=agree / seen if reference is not None else None,
    )
