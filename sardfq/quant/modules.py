"""Quantized replacements for the layers of timm ViT/DeiT/Swin, swapped in by qualified name.

Each wraps the *original* parameters (the same `nn.Parameter` objects, under the same names, so a
quantized model's state dict is the FP one plus quantizer buffers) and applies its quantizers:
The quantizers are given to them (`sardfq.quant.placement` builds them), so this module needs none
of their code: any module with `active` and `observing` works.
- `QuantLinear` / `QuantConv2d`: the input (per tensor) and the weight (per output channel);
- `QuantAttention` (timm `Attention`) and `QuantWindowAttention` (Swin `WindowAttention`): both
  operands of q @ k^T, the post-softmax map (log2 by default) and v of attn @ v, while the linear
  layers inside are `QuantLinear`s themselves. timm's math is kept exactly: the same scale, q/k
  norms, Swin relative position bias and shift mask. With every attention quantizer off, and
  timm's fused attention on, the forward calls the same fused kernel, so the output equals timm's
  bit for bit.
"""
from __future__ import annotations

import torch.nn.functional as F
from timm.layers.attention import maybe_add_mask, resolve_self_attn_mask
from torch import Tensor, nn


class QuantLinear(nn.Module):
    def __init__(self, linear: nn.Linear, w_quant: nn.Module, a_quant: nn.Module):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight = linear.weight  # out, in (the original Parameter)
        self.bias = linear.bias
        self.w_quant = w_quant
        self.a_quant = a_quant

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(self.a_quant(x), self.w_quant(self.weight), self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"


class QuantConv2d(nn.Module):
    def __init__(self, conv: nn.Conv2d, w_quant: nn.Module, a_quant: nn.Module):
        super().__init__()
        if conv.padding_mode != "zeros":
            raise TypeError(f"QuantConv2d supports padding_mode='zeros' only, got {conv.padding_mode!r}")
        self.weight = conv.weight  # out, in, kh, kw
        self.bias = conv.bias
        self.stride, self.padding = conv.stride, conv.padding
        self.dilation, self.groups = conv.dilation, conv.groups
        self.w_quant = w_quant
        self.a_quant = a_quant

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(self.a_quant(x), self.w_quant(self.weight), self.bias, self.stride,
                        self.padding, self.dilation, self.groups)


class _AttentionQuantizers(nn.Module):
    """Shared by both attention modules: the four quantizers around the two matmuls."""

    q_quant: nn.Module
    k_quant: nn.Module
    attn_quant: nn.Module
    v_quant: nn.Module

    def _set_quantizers(self, q: nn.Module, k: nn.Module, attn: nn.Module, v: nn.Module) -> None:
        self.q_quant, self.k_quant, self.attn_quant, self.v_quant = q, k, attn, v

    def _matmuls_quantized(self) -> bool:
        return any(qz.active or qz.observing
                   for qz in (self.q_quant, self.k_quant, self.attn_quant, self.v_quant))


class QuantAttention(_AttentionQuantizers):
    """timm `Attention` (ViT/DeiT) with quantized matmul operands."""

    def __init__(self, attn: nn.Module, qkv: QuantLinear, proj: QuantLinear, q_quant: nn.Module,
                 k_quant: nn.Module, attn_quant: nn.Module, v_quant: nn.Module):
        super().__init__()
        if getattr(attn, "gate", None) is not None:
            raise TypeError("gated timm Attention is not supported")
        self.num_heads, self.head_dim = attn.num_heads, attn.head_dim
        self.attn_dim, self.scale = attn.attn_dim, attn.scale
        self.fused_attn = attn.fused_attn
        self.qkv, self.proj = qkv, proj
        self.q_norm, self.k_norm, self.norm = attn.q_norm, attn.k_norm, attn.norm
        self.attn_drop, self.proj_drop = attn.attn_drop, attn.proj_drop
        self._set_quantizers(q_quant, k_quant, attn_quant, v_quant)

    def forward(self, x: Tensor, attn_mask: Tensor | None = None, is_causal: bool = False) -> Tensor:
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # B, heads, N, head_dim
        q, k = self.q_norm(q), self.k_norm(k)
        if self.fused_attn and not self._matmuls_quantized():
            x = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask,
                                               dropout_p=self.attn_drop.p if self.training else 0.0,
                                               is_causal=is_causal)
        else:
            q = self.q_quant(q * self.scale)
            attn = q @ self.k_quant(k).transpose(-2, -1)  # B, heads, N, N
            attn = maybe_add_mask(attn, resolve_self_attn_mask(N, attn, attn_mask, is_causal))
            attn = self.attn_quant(attn.softmax(dim=-1))
            attn = self.attn_drop(attn)  # hooked by sardfq.record_attention
            x = attn @ self.v_quant(v)
        x = x.transpose(1, 2).reshape(B, N, self.attn_dim)
        x = self.norm(x)
        return self.proj_drop(self.proj(x))


class QuantWindowAttention(_AttentionQuantizers):
    """timm Swin `WindowAttention` with quantized matmul operands; bias and mask added in FP."""

    def __init__(self, attn: nn.Module, qkv: QuantLinear, proj: QuantLinear, q_quant: nn.Module,
                 k_quant: nn.Module, attn_quant: nn.Module, v_quant: nn.Module):
        super().__init__()
        self.dim, self.window_size, self.window_area = attn.dim, attn.window_size, attn.window_area
        self.num_heads, self.scale = attn.num_heads, attn.scale
        self.fused_attn = attn.fused_attn
        self.relative_position_bias_table = attn.relative_position_bias_table
        self.register_buffer("relative_position_index", attn.relative_position_index, persistent=False)
        self.qkv, self.proj = qkv, proj
        self.attn_drop, self.proj_drop, self.softmax = attn.attn_drop, attn.proj_drop, attn.softmax
        self._set_quantizers(q_quant, k_quant, attn_quant, v_quant)

    def _get_rel_pos_bias(self) -> Tensor:
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        bias = bias.view(self.window_area, self.window_area, -1).permute(2, 0, 1).contiguous()
        return bias.unsqueeze(0)  # 1, heads, Wa, Wa

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        B_, N, C = x.shape  # B * windows, window area, C
        qkv = self.qkv(x).reshape(B_, N, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # B_, heads, N, head_dim
        if self.fused_attn and not self._matmuls_quantized():
            attn_mask = self._get_rel_pos_bias()
            if mask is not None:
                num_win = mask.shape[0]
                mask = mask.view(1, num_win, 1, N, N).expand(B_ // num_win, -1, self.num_heads, -1, -1)
                attn_mask = attn_mask + mask.reshape(-1, self.num_heads, N, N)
            x = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask,
                                               dropout_p=self.attn_drop.p if self.training else 0.0)
        else:
            q = self.q_quant(q * self.scale)
            attn = q @ self.k_quant(k).transpose(-2, -1)  # B_, heads, N, N
            attn = attn + self._get_rel_pos_bias()
            if mask is not None:
                num_win = mask.shape[0]
                attn = attn.view(-1, num_win, self.num_heads, N, N) + mask.unsqueeze(1).unsqueeze(0)
                attn = attn.view(-1, self.num_heads, N, N)
            attn = self.attn_quant(self.softmax(attn))
            attn = self.attn_drop(attn)
            x = attn @ self.v_quant(v)
        x = x.transpose(1, 2).reshape(B_, N, -1)
        return self.proj_drop(self.proj(x))
