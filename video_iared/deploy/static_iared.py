"""IA-RED² with the kept tokens gathered into one fixed-shape tensor: the form that exports to ONNX.

The packed execution (``pruning.packed_block``) sizes its attention groups from the kept set at run time
(Python ints read from the keep mask), so a traced graph would be valid for the traced clip's kept set only.
Here the kept patch tokens of every clip sit in one ``(B, 1 + k_g, D)`` tensor:

- keep_ratio mode: every clip keeps ``k_g = round(ratio_g * k_{g-1})`` tokens after group g (the count
  ``policy.topk_keep`` keeps), a Python int known at export time: static shapes, any batch size;
- threshold mode (batch 1): the kept positions come from ONNX ``NonZero``, so ``k_g`` is a dynamic axis.

Per-token layers (norms, qkv, proj, temporal_fc, MLP: over 90 % of a ViT-B block's FLOPs) run on the kept rows
only; the attention itself runs on the full T x H x W grid with the dropped tokens' keys masked out (the
masked path's maths, ``pruning.masked``), its qkv rows scattered into the grid and its outputs gathered back.
So the attention costs what the dense model's does, the rest scales with the kept tokens. The logits equal
the eager model's (``tests/test_export_onnx.py``: packed keep_ratio and threshold, float32, 1e-5).
Divided and joint space-time attention; not space_only (every frame its own CLS).
"""
from __future__ import annotations

from typing import List, Optional

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from video_iared.pruning.iared import IAREDTimeSformer


def kept_counts(num_patches: int, ratios: List[float]) -> List[int]:
    """Tokens every clip keeps after each group in keep_ratio mode (``policy.topk_keep``'s rounding: float64
    product, round half to even; at least one token)."""
    counts, alive = [], num_patches
    for r in ratios:
        alive = max(int(torch.round(torch.tensor(alive * float(r), dtype=torch.float64))), 1)
        counts.append(alive)
    return counts


def _attend(attn: nn.Module, qkv: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``Attention``'s core without its qkv and proj layers: qkv (N, L, 3D), mask (N, L) bool over the keys
    -> (N, L, D). A query whose keys are all masked attends to all of them (finite; its output is discarded)."""
    n, L, three_d = qkv.shape
    q, k, v = qkv.reshape(n, L, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
    mask = mask | ~mask.any(1, keepdim=True)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :], scale=attn.scale)
    return out.transpose(1, 2).reshape(n, L, three_d // 3)


def _to_grid(rows: torch.Tensor, idx: torch.Tensor, num_patches: int) -> torch.Tensor:
    """Kept rows (B, k, C) at grid positions idx (B, k) -> (B, N, C), zeros elsewhere."""
    grid = rows.new_zeros(rows.shape[0], num_patches, rows.shape[2])
    return grid.scatter(1, idx.unsqueeze(-1).expand(-1, -1, rows.shape[2]), rows)


def _from_grid(grid: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """(B, N, C) -> the rows at idx (B, k): (B, k, C)."""
    return grid.gather(1, idx.unsqueeze(-1).expand(-1, -1, grid.shape[2]))


def gathered_divided_block(block: nn.Module, x: torch.Tensor, idx: torch.Tensor, T: int, S: int) -> torch.Tensor:
    """One divided space-time block on the kept tokens: x (B, 1 + k, D) (CLS, then the kept patches at grid
    positions idx (B, k) in (h w t) order) -> (B, 1 + k, D), as ``masked_block_forward`` computes them."""
    B, _, D = x.shape
    N = T * S
    cls, p = x[:, :1], x[:, 1:]
    keep = torch.zeros(B, N, dtype=torch.bool, device=x.device).scatter(1, idx, True)
    ta = block.temporal_attn
    qkv = _to_grid(ta.qkv(block.temporal_norm1(p)), idx, N)  # (B, N, 3D), positions major: (b s) t rows
    out = _attend(ta, qkv.reshape(B * S, T, 3 * D), keep.reshape(B * S, T))
    p = p + block.temporal_fc(ta.proj(_from_grid(out.reshape(B, N, D), idx)))

    sa = block.attn
    qkv = sa.qkv(block.norm1(torch.cat((cls, p), 1)))  # (B, 1 + k, 3D)
    frames = rearrange(_to_grid(qkv[:, 1:], idx, N), "b (s t) c -> (b t) s c", t=T)
    seq = torch.cat((qkv[:, :1].expand(B, T, 3 * D).reshape(B * T, 1, 3 * D), frames), 1)
    fmask = rearrange(keep, "b (s t) -> (b t) s", t=T)
    out = _attend(sa, seq, torch.cat((torch.ones_like(fmask[:, :1]), fmask), 1))  # (B*T, 1 + S, D)
    cls_res = sa.proj(out[:, 0]).reshape(B, T, D).mean(1, keepdim=True)
    res = sa.proj(_from_grid(rearrange(out[:, 1:], "(b t) s d -> b (s t) d", b=B), idx))
    x = torch.cat((cls, p), 1) + torch.cat((cls_res, res), 1)
    return x + block.mlp(block.norm2(x))


def gathered_joint_block(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A joint space-time block on the kept tokens only (no grid needed): x (B, 1 + k, D) -> same."""
    x = x + block.attn(block.norm1(x))
    return x + block.mlp(block.norm2(x))


class StaticIARED(nn.Module):
    """An eval-mode ``IAREDTimeSformer`` run on gathered kept tokens (see the module docstring); shares its
    parameters. clip (B, C, T, H, W) -> logits (B, K); threshold mode needs B = 1."""

    def __init__(self, model: IAREDTimeSformer, mode: Optional[str] = None) -> None:
        super().__init__()
        if model.attention_type == "space_only":
            raise ValueError("static IA-RED² export: space_only attention is not supported (divided or joint only)")
        self.model = model
        self.mode = mode or model.mode
        if self.mode not in ("keep_ratio", "threshold"):
            raise ValueError(f"static IA-RED² export: mode {self.mode!r} is not keep_ratio or threshold")

    def _select(self, g: int, probs: torch.Tensor, idx: torch.Tensor, k: int) -> torch.Tensor:
        """Positions in ``idx``'s rows (B, k_new), ascending, of the tokens group g keeps."""
        if self.mode == "keep_ratio":
            return torch.topk(probs, k, dim=1).indices.sort(dim=1).values
        if probs.shape[0] != 1:
            raise ValueError("static IA-RED² export: threshold mode keeps a different count per clip: batch 1 only")
        cut = self.model.policy_for(["threshold"] * self.model.num_groups).threshold_at(g)  # one, or one per group
        return torch.nonzero(probs[0] > cut).reshape(1, -1)  # ONNX NonZero: a dynamic count

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        m = self.model
        x, grid = m.embed(clip)
        B = x.shape[0]
        counts = kept_counts(grid.num_patches, m.keep_ratio)
        idx = torch.arange(grid.num_patches, device=x.device).unsqueeze(0).expand(B, -1)
        blk = 0
        for g, n_blocks in enumerate(m.groups):
            pos = self._select(g, m.interpreters[g](x), idx, counts[g])
            idx = idx.gather(1, pos)
            x = torch.cat((x[:, :1], x[:, 1:].gather(1, pos.unsqueeze(-1).expand(-1, -1, x.shape[2]))), 1)
            for block in m.blocks[blk: blk + n_blocks]:
                if m.attention_type == "divided_space_time":
                    x = gathered_divided_block(block, x, idx, grid.T, grid.spatial)
                else:
                    x = gathered_joint_block(block, x)
            blk += n_blocks
        return m.forward_head(x, grid)
