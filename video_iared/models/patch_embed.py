"""Per-frame patch embedding: one Conv2d applied to every frame, as in the reference TimeSformer."""
from __future__ import annotations

from typing import Tuple

import torch
from einops import rearrange
from torch import nn


class PatchEmbed(nn.Module):
    """Cut every frame into ``patch_size`` squares and project each to ``embed_dim``.

    Input (B, C, T, H, W) -> tokens (B*T, H'*W', D) with frames as the batch, H' = H // patch_size,
    patches in row-major (h w) order; also returns T, H', W'. Parameter names match the official
    checkpoints (``patch_embed.proj.{weight,bias}``).
    """

    def __init__(self, img_size: int = 224, patch_size: int = 16, in_chans: int = 3, embed_dim: int = 768) -> None:
        super().__init__()
        if img_size % patch_size != 0:
            raise ValueError(f"img_size {img_size} is not a multiple of patch_size {patch_size}")
        self.img_size = img_size
        self.patch_size = patch_size
        self.grid_size = (img_size // patch_size, img_size // patch_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, int, int, int]:
        if x.dim() != 5:
            raise ValueError(f"PatchEmbed expects a clip batch (B, C, T, H, W), got shape {tuple(x.shape)}")
        B, C, T, H, W = x.shape
        p = self.patch_size
        if H % p or W % p:
            raise ValueError(f"clip size {H}x{W} is not a multiple of the patch size {p}")
        x = rearrange(x, "b c t h w -> (b t) c h w")
        x = self.proj(x)  # (B*T, D, H', W')
        hp, wp = x.shape[-2], x.shape[-1]
        return x.flatten(2).transpose(1, 2), T, hp, wp
