"""Resizing position and time embeddings: on the fly in the forward pass, and when loading weights."""
from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from timm.layers import resample_abs_pos_embed


def pos_embed_for_grid(pos_embed: torch.Tensor, trained_hw: Tuple[int, int], H: int, W: int) -> torch.Tensor:
    """The (1, 1 + H*W, D) position embedding for an H x W patch grid, from one trained at ``trained_hw``.

    Forward-time resizing follows the reference TimeSformer (2-D nearest neighbour on the patch part,
    CLS entry unchanged), so a model tested at another crop size gives the reference's outputs.
    """
    if (H, W) == tuple(trained_hw):
        return pos_embed
    cls_pos, patch_pos = pos_embed[:, :1], pos_embed[:, 1:]
    h0, w0 = trained_hw
    patch_pos = patch_pos.transpose(1, 2).reshape(1, -1, h0, w0)
    patch_pos = F.interpolate(patch_pos, size=(H, W), mode="nearest")
    return torch.cat((cls_pos, patch_pos.flatten(2).transpose(1, 2)), dim=1)


def time_embed_for_frames(time_embed: torch.Tensor, T: int) -> torch.Tensor:
    """The (1, T, D) time embedding for T frames (nearest neighbour in time, as the reference does)."""
    if time_embed.shape[1] == T:
        return time_embed
    return F.interpolate(time_embed.transpose(1, 2), size=T, mode="nearest").transpose(1, 2)


def square_grid(num_patches: int, key: str = "pos_embed") -> Tuple[int, int]:
    """The (h, w) of a square patch grid holding ``num_patches`` patches; errors name ``key``."""
    side = int(round(math.sqrt(num_patches)))
    if side * side != num_patches:
        raise ValueError(f"{key}: {num_patches} patch positions do not form a square grid; cannot resize")
    return side, side


def resize_pos_embed(
    pos_embed: torch.Tensor, new_hw: Tuple[int, int], old_hw: Optional[Tuple[int, int]] = None
) -> torch.Tensor:
    """Resize a checkpoint's (1, 1 + h*w, D) position embedding to ``new_hw`` (timm's bicubic resampling).

    ``old_hw`` defaults to the square grid implied by the token count. The CLS entry is kept.
    """
    if old_hw is None:
        old_hw = square_grid(pos_embed.shape[1] - 1)
    return resample_abs_pos_embed(pos_embed, new_size=list(new_hw), old_size=list(old_hw), num_prefix_tokens=1)


def resize_time_embed(time_embed: torch.Tensor, T: int) -> torch.Tensor:
    """Resize a checkpoint's (1, T0, D) time embedding to T frames (nearest, as the reference loader does)."""
    return time_embed_for_frames(time_embed, T)
