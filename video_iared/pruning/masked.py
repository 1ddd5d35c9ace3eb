"""The masked reference path: a block on the FULL token grid with the dropped tokens masked out.

Dropped tokens are zeroed and excluded from every attention as keys; their own outputs are discarded (the
residual updates are multiplied by the keep mask), so they stay zero and never influence a kept token. It
computes what the packed path computes (tests check the logits agree) at the dense cost, with fixed shapes:
the reference for tests, and usable for training when sampling keeps most tokens anyway.
"""
from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from video_iared.models.token_grid import TokenGrid


def _full_mask(keep: torch.Tensor) -> torch.Tensor:
    """keep (B, N) -> (B, 1 + N, 1) float with the CLS always kept."""
    ones = torch.ones(keep.shape[0], 1, dtype=torch.bool, device=keep.device)
    return torch.cat([ones, keep], 1).unsqueeze(-1)


def masked_block_forward(block: nn.Module, x: torch.Tensor, keep: torch.Tensor, grid: TokenGrid,
                         attention_type: str) -> torch.Tensor:
    """x (B, 1 + N, D) with dropped tokens zero, keep (B, N) bool -> (B, 1 + N, D), dropped tokens zero.

    ``attention_type`` "joint_space_time" covers space-only too (run with frames as the batch, grid T=1).
    """
    B, _, D = x.shape
    full = _full_mask(keep).to(x.dtype)
    if attention_type == "divided_space_time":
        T, S = grid.T, grid.spatial
        cls, patches = x[:, :1], x[:, 1:]
        km = keep.reshape(B * S, T)
        # a position with no kept frame attends to everything (finite numbers); its output is discarded
        tmask = torch.where(km.any(1, keepdim=True), km, torch.ones_like(km))[:, None, None, :]
        res_t = block.drop_path(block.temporal_attn(block.temporal_norm1(patches.reshape(B * S, T, D)), tmask))
        xt = patches + block.temporal_fc(res_t.reshape(B, S * T, D)) * full[:, 1:]

        xs = rearrange(xt, "b (s t) d -> (b t) s d", t=T)
        ks = rearrange(keep, "b (s t) -> (b t) s", t=T)
        smask = torch.cat([torch.ones(B * T, 1, dtype=torch.bool, device=x.device), ks], 1)[:, None, None, :]
        cls_rep = cls.expand(B, T, D).reshape(B * T, 1, D)
        res_s = block.drop_path(block.attn(block.norm1(torch.cat((cls_rep, xs), 1)), smask))
        cls_res = res_s[:, 0].reshape(B, T, D).mean(1, keepdim=True)  # mean over ALL T frames
        res_s = rearrange(res_s[:, 1:], "(b t) s d -> b (s t) d", b=B) * full[:, 1:]
        x = torch.cat((cls, xt), 1) + torch.cat((cls_res, res_s), 1)
    elif attention_type == "joint_space_time":
        jmask = full.squeeze(-1).bool()[:, None, None, :]
        x = x + block.drop_path(block.attn(block.norm1(x), jmask)) * full
    else:
        raise ValueError(f"masked path: unknown attention_type {attention_type!r}")
    return x + block.drop_path(block.mlp(block.norm2(x))) * full
