"""TimeSformer blocks: divided space-time, joint space-time and space-only attention (reference semantics)."""
from __future__ import annotations

from functools import partial
from typing import Callable, Optional

import torch
from einops import rearrange
from timm.layers import DropPath, Mlp
from torch import nn

from .attention import Attention
from .token_grid import TokenGrid

ATTENTION_TYPES = ("divided_space_time", "joint_space_time", "space_only")


class Block(nn.Module):
    """One transformer block; submodule names are those of the official checkpoints.

    ``forward(x, grid)``:
      - divided_space_time: x (B, 1 + T*H*W, D), patch tokens in (h w t) order. Temporal attention over each
        position's T tokens (temporal_norm1, temporal_attn, drop_path, temporal_fc, residual on the patch
        tokens), then spatial attention per frame with the CLS token repeated per frame (norm1, attn; the
        per-frame CLS outputs are averaged into one CLS residual), then the MLP (norm2, mlp).
      - joint_space_time: one attention over all 1 + T*H*W tokens of x (B, 1 + T*H*W, D).
      - space_only: x (B*T, 1 + H*W, D), every frame an image with its own CLS token (as in the reference).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = False, qk_scale: Optional[float] = None,  # the attention's
        drop: float = 0.0, attn_drop: float = 0.0, drop_path: float = 0.0,  # rates
        act_layer: Callable[..., nn.Module] = nn.GELU,
        norm_layer: Callable[..., nn.Module] = partial(nn.LayerNorm, eps=1e-6),
        attention_type: str = "divided_space_time",
    ) -> None:
        super().__init__()
        if attention_type not in ATTENTION_TYPES:
            raise ValueError(f"attention_type {attention_type!r} is not one of {list(ATTENTION_TYPES)}")
        self.attention_type = attention_type
        self.norm1 = norm_layer(dim)
        self.attn = Attention(dim, num_heads, qkv_bias, qk_scale, attn_drop, drop)
        if attention_type == "divided_space_time":
            self.temporal_norm1 = norm_layer(dim)
            self.temporal_attn = Attention(dim, num_heads, qkv_bias, qk_scale, attn_drop, drop)
            self.temporal_fc = nn.Linear(dim, dim)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(in_features=dim, hidden_features=int(dim * mlp_ratio), act_layer=act_layer, drop=drop)

    def forward(self, x: torch.Tensor, grid: TokenGrid) -> torch.Tensor:
        if self.attention_type == "divided_space_time":
            return self._forward_divided(x, grid)
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))

    def _forward_divided(self, x: torch.Tensor, grid: TokenGrid) -> torch.Tensor:
        B, N, D = x.shape
        T, S = grid.T, grid.spatial
        if N != 1 + grid.num_patches:
            raise ValueError(f"divided block got {N} tokens for grid {grid} (expected 1 + {grid.num_patches})")
        cls, patches = x[:, :1], x[:, 1:]

        # Temporal: (b (hw t)) is already (b hw) t in memory, so this reshape is a view.
        xt = patches.reshape(B * S, T, D)
        # drop_path acts on the (b hw) rows here, as in the reference.
        res_t = self.drop_path(self.temporal_attn(self.temporal_norm1(xt)))
        xt = patches + self.temporal_fc(res_t.reshape(B, S * T, D))

        # Spatial: every frame attends over its H*W patches plus a copy of the CLS token.
        xs = rearrange(xt, "b (s t) d -> (b t) s d", t=T)
        cls_rep = cls.expand(B, T, D).reshape(B * T, 1, D)
        res_s = self.drop_path(self.attn(self.norm1(torch.cat((cls_rep, xs), dim=1))))
        cls_res = res_s[:, 0].reshape(B, T, D).mean(dim=1, keepdim=True)  # one CLS residual per clip
        res_s = rearrange(res_s[:, 1:], "(b t) s d -> b (s t) d", b=B)

        x = torch.cat((cls, xt), dim=1) + torch.cat((cls_res, res_s), dim=1)
        return x + self.drop_path(self.mlp(self.norm2(x)))
