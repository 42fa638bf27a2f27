"""Capture post-softmax attention maps of timm ViT/DeiT and Swin blocks.

`record_attention(model)` is a context manager: inside it the chosen blocks run their attention
unfused (so the softmax is materialized), forward hooks on `attn.attn_drop` keep the maps, and on
exit every hook is removed and fused attention restored. The recorder also turns the raw maps into
*patch attention*: one distribution over the block's patch grid per image and head, which is what
the attention priors are compared with.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Sequence

import torch
from timm.models.swin_transformer import SwinTransformer
from torch import Tensor, nn


def attention_blocks(model: nn.Module) -> list[nn.Module]:
    """The transformer blocks of a timm ViT/DeiT or Swin, in forward order (each has `.attn`)."""
    if isinstance(model, SwinTransformer):
        return [blk for stage in model.layers for blk in stage.blocks]
    if hasattr(model, "blocks"):
        return list(model.blocks)
    raise TypeError(f"{type(model).__name__} is neither a timm VisionTransformer nor a SwinTransformer")


class AttentionRecorder:
    """Holds the maps captured during forward passes; one entry per recorded block index."""

    def __init__(self, model: nn.Module, blocks: Sequence[int]):
        self.model = model
        self.blocks = list(blocks)
        self.is_swin = isinstance(model, SwinTransformer)
        self.num_prefix_tokens = int(getattr(model, "num_prefix_tokens", 0))
        self.has_class_token = not self.is_swin and getattr(model, "cls_token", None) is not None
        self.maps: dict[int, Tensor] = {}  # ViT: B, heads, N, N;  Swin: B*windows, heads, Wa, Wa
        self.grids: dict[int, tuple[int, int]] = {}  # patch grid (h, w) each block ran on
        self._swin_geometry: dict[int, tuple[int, int, tuple[int, int], tuple[int, int]]] = {}

    def clear(self) -> None:
        self.maps.clear()

    def patch_attention(self) -> dict[int, Tensor]:
        """Per block: (B, heads, h*w) attention over the patch grid, each map summing to 1.

        ViT/DeiT with a class token: the class token's row, restricted to patch tokens and
        renormalized. Without one, and for Swin, the attention each patch receives averaged over
        query tokens (for Swin within its window, windows put back in place and the cyclic shift
        undone).
        """
        out = {}
        for idx, probs in self.maps.items():
            if self.is_swin:
                received = self._swin_received(idx, probs)
            elif self.has_class_token:
                received = probs[:, :, 0, self.num_prefix_tokens:]  # B, heads, patches
            else:
                received = probs[:, :, self.num_prefix_tokens:, self.num_prefix_tokens:].mean(dim=2)
            out[idx] = received / received.sum(dim=-1, keepdim=True)
        return out

    def _swin_received(self, idx: int, probs: Tensor) -> Tensor:
        H, W, (wh, ww), (sh, sw) = self._swin_geometry[idx]
        heads = probs.shape[1]
        received = probs.mean(dim=2)  # B*nW, heads, wh*ww
        Hp, Wp = -(-H // wh) * wh, -(-W // ww) * ww  # padded to whole windows
        B = received.shape[0] // ((Hp // wh) * (Wp // ww))
        grid = received.view(B, Hp // wh, Wp // ww, heads, wh, ww)
        grid = grid.permute(0, 3, 1, 4, 2, 5).reshape(B, heads, Hp, Wp)[:, :, :H, :W]
        if sh or sw:
            grid = torch.roll(grid, shifts=(sh, sw), dims=(2, 3))
        return grid.reshape(B, heads, H * W)


@contextmanager
def record_attention(
    model: nn.Module, blocks: Sequence[int] | None = None, *, detach: bool = False
) -> Iterator[AttentionRecorder]:
    """Record post-softmax attention of `blocks` (all by default) for forward passes in the block.

    Maps keep their autograd graph unless `detach=True`, so losses on them reach the input.
    """
    all_blocks = attention_blocks(model)
    indices = list(range(len(all_blocks))) if blocks is None else [int(b) for b in blocks]
    for idx in indices:
        if not 0 <= idx < len(all_blocks):
            raise IndexError(f"block {idx} out of range: the model has {len(all_blocks)} blocks")
    recorder = AttentionRecorder(model, indices)
    handles = []
    fused_before = {}

    for idx in indices:
        blk = all_blocks[idx]
        fused_before[idx] = getattr(blk.attn, "fused_attn", False)
        blk.attn.fused_attn = False

        def keep(_module, _inputs, output, idx=idx):
            recorder.maps[idx] = output.detach() if detach else output

        handles.append(blk.attn.attn_drop.register_forward_hook(keep))
        if recorder.is_swin:

            def geometry(block, inputs, idx=idx):
                _, H, W, _ = inputs[0].shape  # timm Swin blocks take B, H, W, C
                recorder._swin_geometry[idx] = (H, W, tuple(block.window_size), tuple(block.shift_size))
                recorder.grids[idx] = (H, W)

            handles.append(blk.register_forward_pre_hook(geometry))
        else:
            recorder.grids[idx] = tuple(model.patch_embed.grid_size)
    try:
        yield recorder
    finally:
        for handle in handles:
            handle.remove()
        for idx, fused in fused_before.items():
            all_blocks[idx].attn.fused_attn = fused
