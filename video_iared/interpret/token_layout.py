"""The patch-grid layout every map shares: clips -> ``TokenGrid``, (h w t) token vectors <-> (B, T, H, W) maps."""
from __future__ import annotations

import torch
from einops import rearrange

from video_iared.models.timesformer import TimeSformer
from video_iared.models.token_grid import TokenGrid


def grid_of(model: TimeSformer, clips: torch.Tensor) -> TokenGrid:
    """The patch grid of clips (B, C, T, H, W) for ``model``."""
    p = model.patch_size
    return TokenGrid(clips.shape[2], clips.shape[3] // p, clips.shape[4] // p)


def tokens_to_map(values: torch.Tensor, grid: TokenGrid) -> torch.Tensor:
    """Per-patch values (B, T*H*W) in the reference (h w t) token order -> (B, T, H, W) maps."""
    return rearrange(values, "b (h w t) -> b t h w", h=grid.H, w=grid.W, t=grid.T)


def map_to_tokens(maps: torch.Tensor) -> torch.Tensor:
    """(B, T, H, W) maps -> (B, T*H*W) in (h w t) token order (the inverse of ``tokens_to_map``)."""
    return rearrange(maps, "b t h w -> b (h w t)")


def check_attention_type(model: TimeSformer) -> None:
    """Raise unless ``model`` has one CLS token per clip (divided or joint space-time attention)."""
    if model.attention_type not in ("divided_space_time", "joint_space_time"):
        raise ValueError(f"explanations support divided_space_time and joint_space_time attention, not "
                         f"{model.attention_type!r} (space_only has one CLS per frame)")
