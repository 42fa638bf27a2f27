"""Bit-exact shortcuts of the synthesis forward pass: work whose result no loss reads is skipped.

`class_token_tail(model)`: a timm ViT that classifies from its class token uses, of its last
block's output, the class token only. Inside the context the last block runs its attention over
every token as before (so the attention maps recorded inside it, and the attention outputs
captured at the output projection's input, are unchanged), then the output projection, the second
LayerNorm and the MLP on the class token alone. The patch tokens of that block's output are then
left as stale sums that nothing reads (the classifier takes token 0). On the default teacher this
skips 12% of the matrix products of a synthesis step, forward and backward (1.14x on a step).

Bit for bit: the class token's values are computed by the same kernels on the same operands, and
the gradients the full pass sends to the skipped rows are exact zeros, so the pixel gradient is
the same float. That rests on the BLAS computing each row of a product the same way whatever the
number of rows, which MKL does on the development CPU except for short products (passes of 1-4
images and their crops, up to 20 rows, came out different at 2 threads; 16 images and more, the
same at 1 and 2 threads): the shortcut is taken from `MIN_ROWS` rows up only (32 images and their
crops make 64 rows or more; PSAQ-ViT's 32 images, 32).
`tests/test_synthesis.py` checks synthesized images against the plain path.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from timm.layers.attention import Attention
from timm.models.vision_transformer import Block, VisionTransformer
from torch import Tensor, nn

MIN_ROWS = 32  # [choice] forward passes of fewer rows run whole (see the module docstring)


def supports_class_token_tail(model: nn.Module) -> bool:
    """Whether `class_token_tail` applies: a plain timm VisionTransformer (not a subclass with its
    own head, such as DeiT's distilled one) pooling its class token, whose last block is a timm
    `Block` with timm `Attention`."""
    if type(model) is not VisionTransformer or model.global_pool != "token":
        return False
    if getattr(model, "attn_pool", None) is not None or getattr(model, "cls_token", None) is None:
        return False
    if len(model.blocks) == 0:
        return False
    last = model.blocks[-1]
    return type(last) is Block and type(last.attn) is Attention


def _class_token(_module: nn.Module, args: tuple) -> tuple | None:
    x: Tensor = args[0]  # B, N, C
    if x.shape[0] < MIN_ROWS:
        return None  # unchanged: both hooks of a pass see the same B, so both leave it whole
    return (x[:, :1].contiguous(),) + tuple(args[1:])  # B, 1, C: the class token


@contextmanager
def class_token_tail(model: nn.Module, enabled: bool = True) -> Iterator[bool]:
    """Run the last block of `model` past its attention on the class token only (see the module
    docstring); yields whether the shortcut is on (off when `enabled` is False or the model is not
    supported). Enter it inside any context that hooks the output projection's input (its hooks
    must run first: they see every token)."""
    if not enabled or not supports_class_token_tail(model):
        yield False
        return
    last = model.blocks[-1]
    # the residual sums broadcast the class token's (B, 1, C) branch over the B, N, C stream
    handles = [last.attn.proj.register_forward_pre_hook(_class_token),
               last.norm2.register_forward_pre_hook(_class_token)]
    try:
        yield True
    finally:
        for handle in handles:
            handle.remove()
