"""The baseline attribution maps from a captured dense forward: raw attention, attention rollout (with its
divided space-time operators), Grad-CAM and Chefer's gradient-weighted rollout, all (B, T, H, W)."""
from __future__ import annotations

from typing import Optional, Sequence

import torch

from video_iared.interpret.attention_capture import AttentionCapture
from video_iared.interpret.token_layout import tokens_to_map
from video_iared.models.token_grid import TokenGrid


def temporal_operator(att: torch.Tensor, grid: TokenGrid) -> torch.Tensor:
    """Per-position temporal matrices (B, H*W, T, T) -> one (B, 1+N, 1+N) operator over the clip's tokens
    ((h w t) order: each position's T tokens are contiguous, so it is block-diagonal); the CLS row is e_0."""
    B = att.shape[0]
    S, T = grid.spatial, grid.T
    op = att.new_zeros(B, 1 + S * T, 1 + S * T)
    op[:, 0, 0] = 1.0
    base = 1 + torch.arange(S, device=att.device) * T
    rows = (base[:, None] + torch.arange(T, device=att.device))  # (S, T)
    op[:, rows[:, :, None], rows[:, None, :]] = att
    return op


def spatial_operator(att: torch.Tensor, grid: TokenGrid) -> torch.Tensor:
    """Per-frame spatial matrices (B, T, 1+H*W, 1+H*W) (CLS copy first) -> one (B, 1+N, 1+N) operator.

    Patch (s, t) reads the CLS token and the patches of frame t; the CLS row is the mean over frames of the
    frames' CLS rows (the divided block averages its T CLS outputs)."""
    B = att.shape[0]
    S, T = grid.spatial, grid.T
    op = att.new_zeros(B, 1 + S * T, 1 + S * T)
    idx = 1 + torch.arange(S, device=att.device)[None, :] * T + torch.arange(T, device=att.device)[:, None]  # (T, S)
    op[:, idx[:, :, None], idx[:, None, :]] = att[:, :, 1:, 1:]
    op[:, idx, 0] = att[:, :, 1:, 0]
    op[:, 0, 0] = att[:, :, 0, 0].mean(1)
    op[:, 0, idx] = att[:, :, 0, 1:] / T
    return op


def block_operators(temporal: Optional[torch.Tensor], spatial: torch.Tensor, grid: TokenGrid, B: int,
                    rule: str) -> torch.Tensor:
    """One block's (B, 1+N, 1+N) token-mixing operator from its head-averaged attentions.

    ``temporal`` (B*H*W, T, T) or None (joint); ``spatial`` divided (B*T, 1+S, 1+S) / joint (B, 1+N, 1+N).
    rule "rollout": each attention becomes ``0.5 A + 0.5 I``; rule "chefer": ``I + A`` (A already the
    gradient-weighted map). Divided: ``Spatial @ Temporal``.
    """
    def with_identity(a: torch.Tensor) -> torch.Tensor:
        eye = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
        return 0.5 * a + 0.5 * eye if rule == "rollout" else a + eye

    if rule not in ("rollout", "chefer"):
        raise ValueError(f"unknown rule {rule!r}")
    if temporal is None:
        return with_identity(spatial)
    t_op = temporal_operator(with_identity(temporal).reshape(B, grid.spatial, grid.T, grid.T), grid)
    s_op = spatial_operator(with_identity(spatial).reshape(B, grid.T, 1 + grid.spatial, 1 + grid.spatial), grid)
    return s_op @ t_op


def compose_cls_row(temporal: Sequence[Optional[torch.Tensor]], spatial: Sequence[torch.Tensor], grid: TokenGrid,
                    B: int, rule: str) -> torch.Tensor:
    """The CLS row of ``M_L ... M_1`` over all blocks, (B, 1+N): computed as a row vector from the left
    (e_0 M_L M_{L-1} ...), which is O(N^2) per block instead of a full matrix product."""
    row = None
    for t_att, s_att in zip(reversed(list(temporal)), reversed(list(spatial))):
        op = block_operators(t_att, s_att, grid, B, rule)
        row = op[:, 0] if row is None else (row.unsqueeze(1) @ op).squeeze(1)
    return row


def raw_attention_map(att: torch.Tensor, grid: TokenGrid, B: int, attention_type: str) -> torch.Tensor:
    """The last block's CLS attention over the patches, heads averaged -> (B, T, H, W).

    Divided: att (B*T, heads, 1+S, 1+S), row 0 of every frame's spatial attention. Joint: att (B, heads,
    1+N, 1+N), row 0 over all patches."""
    a = att.detach().mean(1)[:, 0, 1:]
    if attention_type == "divided_space_time":
        return a.reshape(B, grid.T, grid.H, grid.W)
    return tokens_to_map(a, grid)


def gradcam_map(last_input: torch.Tensor, grid: TokenGrid) -> torch.Tensor:
    """Grad-CAM on the tokens entering the last block (B, 1+N, D) (``.grad`` filled) -> (B, T, H, W)."""
    if last_input is None or last_input.grad is None:
        raise RuntimeError("Grad-CAM needs the gradient of the last block's input (run the backward first)")
    act, grad = last_input.detach()[:, 1:], last_input.grad[:, 1:]
    alpha = grad.mean(1, keepdim=True)  # (B, 1, D): channel weights averaged over the patch tokens
    cam = torch.relu((alpha * act).sum(-1))
    return tokens_to_map(cam, grid)


def chefer_map(cap: AttentionCapture, grid: TokenGrid, B: int) -> torch.Tensor:
    """Gradient-weighted rollout (Chefer et al. 2021, generic attention explainability) -> (B, T, H, W)."""
    def weighted(a: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        if a is None:
            return None
        if a.grad is None:
            raise RuntimeError("chefer: an attention map has no gradient (run the backward first)")
        return (a.grad * a.detach()).clamp(min=0).mean(1)

    t_bar = [weighted(a) for a in cap.temporal]
    s_bar = [weighted(a) for a in cap.spatial]
    row = compose_cls_row(t_bar, s_bar, grid, B, "chefer")
    return tokens_to_map(row[:, 1:], grid)
