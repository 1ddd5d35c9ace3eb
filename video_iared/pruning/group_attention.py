"""Multi-head attention within attention groups of packed rows: padded groups (``group_attention``,
``ungroup``) and runs bucketed by length (``run_attention``); the groups are ``group_index``'s structures."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from video_iared.pruning.group_index import GroupIndex, RunIndex


def group_attention(qkv: torch.Tensor, groups: GroupIndex, num_heads: int, scale: float,
                    dropout_p: float = 0.0, key_bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Multi-head attention within padded groups of packed rows.

    qkv (R, 3D) packed (the output of an ``Attention.qkv`` on packed rows) -> (G, L, D): the attention output
    of every slot (padding slots hold garbage and must not be read). Padded keys are masked; every group
    has at least one real key, so no row is NaN. ``key_bias`` (R,) or None: added to every query's logit
    for the key of each row (ToMe's proportional attention passes log token size); it makes the mask an
    additive float one (padding -inf) in q's dtype, as SDPA requires.
    """
    R, three_d = qkv.shape
    D = three_d // 3
    G, L = groups.table.shape
    g = qkv.index_select(0, groups.table.reshape(-1)).reshape(G, L, 3, num_heads, D // num_heads).permute(2, 0, 3, 1, 4)
    q, k, v = g.unbind(0)  # (G, heads, L, dh)
    mask = None
    if key_bias is not None:
        bias = key_bias.index_select(0, groups.table.reshape(-1)).reshape(G, L)
        mask = bias.masked_fill(~groups.valid, float("-inf")).to(q.dtype)[:, None, None, :]
    elif not bool(groups.valid.all()):
        mask = groups.valid[:, None, None, :]
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, scale=scale)
    return out.transpose(1, 2).reshape(G, L, D)


def ungroup(out: torch.Tensor, groups: GroupIndex) -> torch.Tensor:
    """(G, L, D) group outputs -> (R, D) in packed order of the covered rows."""
    return out.reshape(-1, out.shape[-1]).index_select(0, groups.inverse)


# Runs of at most SHORT_RUN rows in bfloat16 / float16 on the cpu: attention computed in float32. The CPU
# flash-attention kernel's fixed cost per (run, head) is higher in bfloat16 than in float32 and dominates
# such short sequences (60 runs x 12 heads, 1 thread: L=2 0.83 ms in bfloat16, 0.33 ms with float32 inputs;
# L=6 1.33 / 1.10 ms; no gain from L=8). The result is at least as accurate (float32 products, one rounding).
SHORT_RUN = 6


def _run_sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout_p: float, scale: float,
              bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``scaled_dot_product_attention`` of one bucket (float32 for short low-precision runs: ``SHORT_RUN``);
    ``bias`` (n, 1, 1, L) or None: an additive mask, cast to the dtype the attention runs in."""
    if q.shape[-2] <= SHORT_RUN and q.dtype in (torch.bfloat16, torch.float16) and q.device.type == "cpu":
        mask = None if bias is None else bias.float()
        with torch.autocast("cpu", enabled=False):
            return F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=mask,
                                                  dropout_p=dropout_p, scale=scale)
    mask = None if bias is None else bias.to(q.dtype)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, scale=scale)


def run_attention(qkv: torch.Tensor, runs: RunIndex, num_heads: int, scale: float,
                  dropout_p: float = 0.0, key_bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Multi-head attention within runs of rows: qkv (R, 3D) in bucket order (``runs.to_buckets``) -> (R, D)
    in bucket order. One attention call per bucket (no padding, so no mask without a bias), on a reshape of
    its rows; each output is written once, into its slice of the result. Runs of one row (a position with
    one kept frame, common after a few groups) are their own value rows: the softmax over a single key is
    exactly 1, whatever its bias. ``key_bias`` (R,) in bucket order or None: added to every query's logit
    for the key of each row (ToMe's proportional attention passes log token size)."""
    R, three_d = qkv.shape
    D, dh = three_d // 3, three_d // 3 // num_heads
    out = qkv.new_empty(R, D)
    start = 0
    for length, rows in runs.buckets:
        part, n = qkv[start:start + rows], rows // length
        if length == 1 and dropout_p == 0.0:
            out[start:start + rows] = part[:, 2 * D:]
        else:
            q, k, v = part.reshape(n, length, 3, num_heads, dh).permute(2, 0, 3, 1, 4).unbind(0)
            bias = None if key_bias is None else key_bias[start:start + rows].reshape(n, 1, 1, length)
            y = _run_sdpa(q, k, v, dropout_p, scale, bias)  # (n, heads, L, dh)
            out[start:start + rows].view(n, length, num_heads, dh).copy_(y.transpose(1, 2))
        start += rows
    return out
