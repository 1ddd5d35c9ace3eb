"""A small 3-D convolutional stem: an alternative to the linear patch embedding for models trained from scratch.

The reference TimeSformer embeds each frame's 16x16 patches with one linear map and starts from ImageNet
weights; trained from scratch on a few hundred clips, that model never learns motion (it behaves as a bag
of patches: configs/synthetic_dense.yaml records the measurements). Two strided Conv3d layers with a
temporal kernel in front of the transformer ("early convolutions", Xiao et al. 2021, here in space-time)
give every token local appearance *and* motion features from the first step. The token grid is the patch
embedding's — T frames x (H / patch) x (W / patch) — so everything downstream (embeddings, blocks, token
pruning) is unchanged; the stem runs once on the full clip, before any token is dropped.
"""
from __future__ import annotations

from typing import Tuple

import torch
from einops import rearrange
from torch import nn


class ConvStemEmbed(nn.Module):
    """(B, C, T, H, W) -> tokens (B*T, H'*W', D), T, H', W' — the interface of :class:`PatchEmbed`.

    ``conv1``: (k_t, s, s) kernel, stride (1, s, s), s = 4 -> ``norm`` (GroupNorm, one group: independent of
    the batch) -> GELU -> ``conv2``: (k_t, p/s, p/s) kernel, stride (1, p/s, p/s) to ``embed_dim``. Both pad
    time by k_t // 2, so T is kept; ``patch_size`` p must be a multiple of 4.
    """

    FIRST_STRIDE = 4

    def __init__(self, img_size: int = 224, patch_size: int = 16, in_chans: int = 3, embed_dim: int = 768,
                 hidden_chans: int = 16, temporal_kernel: int = 3) -> None:
        super().__init__()
        s = self.FIRST_STRIDE
        if patch_size % s != 0:
            raise ValueError(f"conv stem: patch_size {patch_size} is not a multiple of {s}")
        if img_size % patch_size != 0:
            raise ValueError(f"img_size {img_size} is not a multiple of patch_size {patch_size}")
        if temporal_kernel < 1 or temporal_kernel % 2 == 0:
            raise ValueError(f"conv stem: temporal_kernel must be odd and >= 1, got {temporal_kernel}")
        self.img_size = img_size
        self.patch_size = patch_size
        self.grid_size = (img_size // patch_size, img_size // patch_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.in_chans = in_chans
        r, pad = patch_size // s, temporal_kernel // 2
        self.conv1 = nn.Conv3d(in_chans, hidden_chans, (temporal_kernel, s, s), (1, s, s), (pad, 0, 0))
        self.norm = nn.GroupNorm(1, hidden_chans)
        self.act = nn.GELU()
        self.conv2 = nn.Conv3d(hidden_chans, embed_dim, (temporal_kernel, r, r), (1, r, r), (pad, 0, 0))

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, int, int, int]:
        if x.dim() != 5:
            raise ValueError(f"ConvStemEmbed expects a clip batch (B, C, T, H, W), got shape {tuple(x.shape)}")
        H, W = x.shape[-2:]
        if H % self.patch_size or W % self.patch_size:
            raise ValueError(f"clip size {H}x{W} is not a multiple of the patch size {self.patch_size}")
        y = self.conv2(self.act(self.norm(self.conv1(x))))  # (B, D, T, H', W')
        T, hp, wp = y.shape[-3:]
        return rearrange(y, "b d t h w -> (b t) (h w) d"), T, hp, wp
