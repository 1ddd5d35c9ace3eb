"""Multi-head self-attention through ``F.scaled_dot_product_attention`` (reference parameter names)."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn


class Attention(nn.Module):
    """Multi-head attention over (N, L, D) token sequences.

    Same parameters and maths as the reference (``qkv``: D -> 3D, softmax(q k^T * scale) v, ``proj``), computed
    with SDPA so the fused CPU/GPU kernels are used. ``attn_mask`` (bool, True = attend, broadcastable to
    (N, heads, L, L)) lets callers mask padded tokens. ``fused = False`` computes the same thing with explicit
    matmuls (the reference's way; kept for speed comparisons).
    """

    def __init__(self, dim: int, num_heads: int = 8, qkv_bias: bool = False, qk_scale: Optional[float] = None,
                 attn_drop: float = 0.0, proj_drop: float = 0.0) -> None:
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = qk_scale or self.head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = attn_drop  # a probability: SDPA applies it to the attention weights
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.fused = True

    def forward(self, x: torch.Tensor, attn_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """x (N, L, D) -> (N, L, D)."""
        N, L, D = x.shape
        qkv = self.qkv(x).reshape(N, L, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (N, heads, L, head_dim)
        if self.fused:
            x = F.scaled_dot_product_attention(
                q, k, v, attn_mask=attn_mask, dropout_p=self.attn_drop if self.training else 0.0, scale=self.scale
            )
        else:
            attn = (q * self.scale) @ k.transpose(-2, -1)
            if attn_mask is not None:
                attn = attn.masked_fill(~attn_mask, float("-inf")) if attn_mask.dtype == torch.bool else attn + attn_mask
            attn = F.dropout(attn.softmax(dim=-1), self.attn_drop, self.training)
            x = attn @ v
        x = x.transpose(1, 2).reshape(N, L, D)
        return self.proj_drop(self.proj(x))
