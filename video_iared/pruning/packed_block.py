"""One TimeSformer block run on the kept tokens only (the packed path: what makes pruning save time).

The block's own submodules are reused (``norm1``, ``attn.qkv``, ``attn.proj``, ``temporal_norm1``,
``temporal_attn``, ``temporal_fc``, ``norm2``, ``mlp``, ``drop_path``), so the pruned model has exactly the
dense model's parameters. Norms, proj and the MLP run on the packed rows (M, D). The temporal branch
(qkv to temporal_fc) runs on its rows in bucket order (runs bucketed by length, see ``token_ops``); the
spatial branch's qkv runs on frame runs (each frame's CLS copy + its kept patches, unpadded) when frames
are long, else on the packed rows with the attention on padded per-frame groups; joint attention on padded
per-clip groups. Running qkv on *padded* groups instead lost 7-28 % (shared/README.md).

Semantics with an irregular kept set (all coincide with the dense block when every token is kept):
- temporal attention: among the kept frames of each spatial position; a position with no kept frame has
  no group (nothing to compute);
- spatial attention: per frame, the frame's CLS copy plus its kept patches; a frame whose patches are all
  dropped still has its CLS copy (which then attends to itself only);
- the CLS update is the mean of the T per-frame CLS outputs over ALL T frames (as in the dense block), so
  the CLS does not change scale when frames empty out;
- joint attention: the CLS and all kept patches of the clip; space-only: the spatial rule above.

``backend`` "varlen" (``varlen.resolve_backend``) runs each attention branch as ONE variable-length call over
the whole batch (``varlen.segment_attention``): qkv on the packed rows (the CLS projected once per clip), the
rows gathered into segment order, no bucket, no host read. A branch with a key bias (ToMe's proportional
attention) or an active attention dropout keeps the bucketed path (``varlen_attn`` takes neither); training
without attention dropout (the configs' default) runs varlen, gradients included.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from video_iared.pruning.token_ops import PackedLayout, group_attention, run_attention
from video_iared.pruning.varlen import segment_attention

ATTENTION_TYPES = ("divided_space_time", "joint_space_time", "space_only")


def _drop_active(module: nn.Module) -> bool:
    return module.training and float(getattr(module, "drop_prob", 0.0) or 0.0) > 0.0


def drop_path_rows(module: nn.Module, y: torch.Tensor, row_batch: torch.Tensor) -> torch.Tensor:
    """Apply a (timm) DropPath to packed rows with one drop decision per CLIP, not per row.

    y (R, D), row_batch (R,) clip id of each row. Identity in eval mode or for ``nn.Identity``.
    """
    if not _drop_active(module):
        return y
    p = float(module.drop_prob)
    keep_prob = 1.0 - p
    num_clips = int(row_batch.max()) + 1 if row_batch.numel() else 0
    mask = y.new_empty(num_clips).bernoulli_(keep_prob)
    if getattr(module, "scale_by_keep", True):
        mask = mask / keep_prob
    return y * mask[row_batch].unsqueeze(-1)


def _attn_dropout(attn: nn.Module) -> float:
    p = getattr(attn, "attn_drop", 0.0)
    p = p.p if isinstance(p, nn.Dropout) else float(p)
    return p if attn.training else 0.0


def _proj(attn: nn.Module, y: torch.Tensor) -> torch.Tensor:
    y = attn.proj(y)
    drop = getattr(attn, "proj_drop", None)
    return drop(y) if drop is not None else y


def _varlen_fits(attn: nn.Module, key_bias: Optional[torch.Tensor]) -> bool:
    """Whether this attention can run as one variable-length call: no key bias, no attention dropout."""
    return key_bias is None and _attn_dropout(attn) == 0.0


def _spatial_update(block: nn.Module, xs: torch.Tensor, layout: PackedLayout,
                    key_bias: Optional[torch.Tensor] = None, varlen: bool = False) -> torch.Tensor:
    """Spatial attention residual for packed rows ``xs`` (M, D): per-frame groups with the CLS copy.

    Returns (M, D): rows 0..B-1 the CLS update (mean over all T frames), then the patch updates.
    ``key_bias`` (M,) or None: per packed row (the groups read full packed rows). ``varlen``: one
    variable-length call (``segment_attention``) where the attention allows it.
    """
    B, T = layout.batch, layout.T
    attn = block.attn
    if varlen and _varlen_fits(attn, key_bias):
        out = segment_attention(attn.qkv(block.norm1(xs)), layout.spatial_segments(), attn.num_heads, attn.scale)
        res = _proj(attn, out)  # every frame's CLS copy (B*T rows), then the patch rows in packed order
    elif (frames := layout.spatial_runs()) is not None:  # frame runs (long frames)
        qkv = attn.qkv(block.norm1(xs).index_select(0, frames.rows))
        bias = None if key_bias is None else key_bias.index_select(0, frames.rows)
        out = run_attention(qkv, frames.runs, attn.num_heads, attn.scale, _attn_dropout(attn), bias)
        res = _proj(attn, out.index_select(0, frames.readout))
    else:  # padded groups (short frames)
        qkv = attn.qkv(block.norm1(xs))
        groups = layout.spatial_groups()
        out = group_attention(qkv, groups, attn.num_heads, attn.scale, _attn_dropout(attn), key_bias)
        # every frame's CLS copy (B*T rows), then the patch rows in packed order: one gather
        res = _proj(attn, out.reshape(-1, out.shape[-1]).index_select(0, groups.readout))
    if _drop_active(block.drop_path):  # as dense: drop_path before the CLS mean
        row_batch = torch.cat([torch.arange(B, device=xs.device).repeat_interleave(T), layout.patch_batch])
        res = drop_path_rows(block.drop_path, res, row_batch)
    res_cls = res[: B * T].reshape(B, T, -1).mean(1)
    return torch.cat([res_cls, res[B * T:]], 0)


def _temporal_update(block: nn.Module, xp: torch.Tensor, layout: PackedLayout,
                     key_bias: Optional[torch.Tensor] = None, varlen: bool = False) -> torch.Tensor:
    """Temporal attention residual (after temporal_fc) for the packed patch rows xp (Mp, D).

    Bucketed: from the qkv layer to temporal_fc the branch runs on the rows in bucket order
    (``PackedLayout.temporal_runs``): one gather of the D-wide normed rows and one of the D-wide result,
    instead of a padded gather of the 3D-wide qkv rows. (The norm itself sees the rows in packed order.)
    Varlen: the packed rows are already in segment order (a position's kept frames are consecutive), so the
    branch runs on them as they are, one call. ``key_bias`` (Mp,) or None: per packed PATCH row, like ``xp``.
    """
    if xp.shape[0] == 0:
        return xp
    attn = block.temporal_attn
    if varlen and _varlen_fits(attn, key_bias):
        qkv = attn.qkv(block.temporal_norm1(xp))
        res = _proj(attn, segment_attention(qkv, layout.temporal_segments(), attn.num_heads, attn.scale))
        if _drop_active(block.drop_path):
            res = drop_path_rows(block.drop_path, res, layout.patch_batch)
        return block.temporal_fc(res)
    runs = layout.temporal_runs()
    qkv = attn.qkv(runs.to_buckets(block.temporal_norm1(xp)))
    bias = None if key_bias is None else runs.to_buckets(key_bias)
    out = run_attention(qkv, runs, attn.num_heads, attn.scale, _attn_dropout(attn), bias)
    res = _proj(attn, out)
    if _drop_active(block.drop_path):
        res = drop_path_rows(block.drop_path, res, runs.to_buckets(layout.patch_batch))
    return runs.from_buckets(block.temporal_fc(res))


def _joint_update(block: nn.Module, x: torch.Tensor, layout: PackedLayout,
                  key_bias: Optional[torch.Tensor] = None, varlen: bool = False) -> torch.Tensor:
    """Joint attention residual for packed rows x (M, D): one group per clip; ``key_bias`` (M,) or None."""
    attn = block.attn
    qkv = attn.qkv(block.norm1(x))
    if varlen and _varlen_fits(attn, key_bias):
        res = _proj(attn, segment_attention(qkv, layout.joint_segments(), attn.num_heads, attn.scale))
    else:
        groups = layout.joint_groups()
        out = group_attention(qkv, groups, attn.num_heads, attn.scale, _attn_dropout(attn), key_bias)
        res = _proj(attn, out.reshape(-1, out.shape[-1]).index_select(0, groups.readout))
    return drop_path_rows(block.drop_path, res, layout.row_batch)


def packed_block_forward(block: nn.Module, x: torch.Tensor, layout: PackedLayout, attention_type: str,
                         key_bias: Optional[torch.Tensor] = None, backend: str = "bucketed") -> torch.Tensor:
    """Run ``block`` on packed rows x (M, D) laid out by ``layout``; returns (M, D).

    ``key_bias`` (M,) or None: per packed row, added to every query's attention logit for that row as a key,
    in each of the block's attentions (ToMe's proportional attention: log token size; 0 for the CLS).
    ``backend``: "bucketed" or "varlen" (resolved: ``varlen.resolve_backend``; see the module docstring).
    """
    if backend not in ("bucketed", "varlen"):
        raise ValueError(f"packed_block_forward: backend {backend!r} must be resolved to 'bucketed' or 'varlen'")
    varlen = backend == "varlen"
    B = layout.batch
    if attention_type == "divided_space_time":
        cls, xp = x[:B], x[B:]
        xt = xp + _temporal_update(block, xp, layout, None if key_bias is None else key_bias[B:], varlen)
        xs = torch.cat([cls, xt], 0)
        x = xs + _spatial_update(block, xs, layout, key_bias, varlen)
    elif attention_type == "space_only":
        x = x + _spatial_update(block, x, layout, key_bias, varlen)
    elif attention_type == "joint_space_time":
        x = x + _joint_update(block, x, layout, key_bias, varlen)
    else:
        raise ValueError(f"unknown attention_type {attention_type!r}; expected one of {ATTENTION_TYPES}")
    return x + drop_path_rows(block.drop_path, block.mlp(block.norm2(x)), layout.row_batch)
