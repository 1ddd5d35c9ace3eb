"""fvcore's count of a pruned forward, computed from its kept sets without a trace.

A pruned clip's cost is a function of its kept tokens only: every linear layer runs on the kept rows, every
attention on segments whose lengths are the kept counts (q.k^T and attn.v cost L^2 * D per segment), every
LayerNorm on the rows it sees. This module restates, in closed form, exactly what fvcore counts when it traces
the model on one clip (``profiling.flops.model_gflops``: its handles for linear / conv / norms / upsampling and
the project's SDPA handle; 1 MAC = 1 flop), so the test stage, predict and the calibration need no trace per
clip. ``tests/test_exact_cost.py`` checks the equality against real traces.

What a one-clip trace of the packed path counts, per block, with Mp kept patches, per-frame counts c_t and
per-position counts n_s (divided attention; ``packed_block``, ``token_ops``):
- temporal: LayerNorm, qkv, proj, temporal_fc on the Mp rows; attention over each position's n_s >= 2 frames
  (a run of one row is its own value: no attention call);
- spatial: LayerNorm on the 1 + Mp rows; when the longest frame group (1 + max c_t) reaches ``RUNS_FROM``, qkv
  on the T CLS copies + Mp rows and attention per frame run (c_t + 1 >= 2); else qkv on the 1 + Mp packed rows
  and attention on T padded groups of length ``_padded_length(1 + max c_t, uneven)``; proj on T + Mp rows;
- joint (and space-only, whose units are the frames): one padded group per unit, CLS included;
- MLP: LayerNorm, fc1, fc2 on the 1 + Mp rows (U + Mp for U units).
The varlen backend (``attention_backend``; ``varlen.segment_attention``) runs every branch as one call over
segments of their own length: temporal attention on every position's n_s frames (length 1 and 0 included),
spatial qkv on the 1 + Mp packed rows and attention per frame on its CLS + c_t patches, joint / space-only per
unit on its CLS + kept patches (no padding): the work is heads * sum L^2 * 2 dh, the count of fvcore's handle
for the ``video_iared::varlen_attention`` op.
The masked path runs the dense shapes whatever is kept. Interpreters (when they ran) cost a non-affine
LayerNorm and the q / k projections of the rows alive before their decision; stem and head are per clip.

The functions take plain tensors (keep masks (B, G, N) in (h w t) order, which interpreters ran) and plain
numbers (:class:`CostArch`); ``arch_of`` reads those numbers off a model. Everything is vectorised over the
batch (no per-clip loop, no host read); results are int64 MACs per clip.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence, Tuple

import torch
from torch import nn

from video_iared.pruning.decisions import PruningDecisions, unwrap
from video_iared.pruning.token_ops import LENGTH_MULTIPLE, PAD_FROM, RUNS_FROM
from video_iared.pruning.varlen import resolve_backend

ATTENTION_TYPES = ("divided_space_time", "joint_space_time", "space_only")


@dataclass(frozen=True)
class CostArch:
    """The architecture numbers a pruned forward's cost depends on.

    ``mlp_hidden``: fc1's width; ``trained_grid``: the patch grid of the position embedding (another grid
    costs fvcore one nearest upsampling); ``stem_kernel_t`` / ``stem_stride``: the conv3d stem's temporal
    kernel and first spatial stride; ``interp_width``: interpreter heads x head width (0: no interpreters);
    ``num_classes``: the head's outputs (0: no head).
    """

    embed_dim: int
    mlp_hidden: int
    attention_type: str
    groups: Tuple[int, ...]
    execution: str = "packed"
    backend: str = "bucketed"  # the packed path's resolved attention backend: "bucketed" | "varlen"
    stem: str = "patch"
    patch_size: int = 16
    in_chans: int = 3
    stem_channels: int = 16
    stem_kernel_t: int = 3
    stem_stride: int = 4
    trained_grid: Tuple[int, int] = (14, 14)
    interp_width: int = 0
    num_classes: int = 400


def arch_of(model: nn.Module) -> CostArch:
    """The :class:`CostArch` of an ``IAREDTimeSformer`` (or a dense ``TimeSformer``: one group, no interpreter)."""
    model = unwrap(model)  # torch.compile, PolicyBound
    pe = model.patch_embed
    conv1 = getattr(pe, "conv1", None)
    interps = getattr(model, "interpreters", None)
    head = model.head
    device = next(model.parameters()).device
    return CostArch(
        embed_dim=int(model.embed_dim),
        mlp_hidden=int(model.blocks[0].mlp.fc1.out_features),
        attention_type=str(model.attention_type),
        groups=tuple(int(g) for g in getattr(model, "groups", [model.depth])),
        execution=str(getattr(model, "execution", "masked")),
        backend=resolve_backend(str(getattr(model, "attention_backend", "bucketed")), device),
        stem=str(model.stem),
        patch_size=int(model.patch_size),
        in_chans=int(model.in_chans),
        stem_channels=int(model.stem_channels),
        stem_kernel_t=int(conv1.kernel_size[0]) if conv1 is not None else 1,
        stem_stride=int(conv1.stride[1]) if conv1 is not None else 1,
        trained_grid=tuple(int(v) for v in pe.grid_size),
        interp_width=int(interps[0].num_heads * interps[0].head_dim) if interps else 0,
        num_classes=int(head.out_features) if isinstance(head, nn.Linear) else 0,
    )


def _ln(rows, dim: int, affine: bool = True):
    """fvcore's LayerNorm / GroupNorm count: 5 per element with affine parameters, 4 without."""
    return rows * dim * (5 if affine else 4)


def stem_macs(arch: CostArch, T: int, H: int, W: int) -> int:
    """One clip's embedding (T frames of H x W pixels): the stem's convolutions (+ GroupNorm), and the position
    embedding's nearest upsampling when the patch grid is not the trained one."""
    p, C, D = arch.patch_size, arch.in_chans, arch.embed_dim
    hp, wp = H // p, W // p
    if arch.stem == "patch":
        macs = T * D * C * p * p * hp * wp  # fvcore conv: batch x prod(weight) x prod(output grid)
    else:
        s, kt, hid = arch.stem_stride, arch.stem_kernel_t, arch.stem_channels
        r = p // s
        first = T * (H // s) * (W // s)
        macs = hid * C * kt * s * s * first + _ln(first, hid) + D * hid * kt * r * r * T * hp * wp
    if (hp, wp) != tuple(arch.trained_grid):
        macs += D * hp * wp  # upsample_nearest2d: one per output element
    return macs


def head_macs(arch: CostArch) -> int:
    """The final LayerNorm on one CLS row and the classifier."""
    return _ln(1, arch.embed_dim) + arch.embed_dim * arch.num_classes


def dense_block_macs(arch: CostArch, T: int, S: int) -> int:
    """One block on the full grid of one clip (T frames x S positions): the dense model's and the masked path's."""
    D, Hd, N = arch.embed_dim, arch.mlp_hidden, T * S
    mlp = lambda rows: _ln(rows, D) + 2 * rows * D * Hd  # noqa: E731
    attn = lambda rows, groups, length: _ln(rows, D) + 4 * rows * D * D + 2 * groups * length * length * D  # noqa: E731
    if arch.attention_type == "divided_space_time":
        temporal = attn(N, S, T) + N * D * D  # + temporal_fc
        return temporal + attn(T * (S + 1), T, S + 1) + mlp(N + 1)
    if arch.attention_type == "joint_space_time":
        return attn(N + 1, 1, N + 1) + mlp(N + 1)
    return attn(T * (S + 1), T, S + 1) + mlp(T * (S + 1))  # space_only: T images with their own CLS


def _padded(longest: torch.Tensor, uneven: torch.Tensor) -> torch.Tensor:
    """``token_ops._padded_length`` on tensors: groups of unequal lengths at least PAD_FROM long are padded to a
    multiple of LENGTH_MULTIPLE."""
    up = torch.div(longest + LENGTH_MULTIPLE - 1, LENGTH_MULTIPLE, rounding_mode="floor") * LENGTH_MULTIPLE
    return torch.where(uneven & (longest >= PAD_FROM), up, longest)


def _attn_pairs(lengths: torch.Tensor) -> torch.Tensor:
    """sum over segments of L^2 for the segments that run an attention call (L >= 2): (..., n) -> (...,)."""
    return (lengths * lengths * (lengths >= 2)).sum(-1)


def divided_block_macs(arch: CostArch, keep: torch.Tensor) -> torch.Tensor:
    """One divided block of the packed path (``arch.backend``), one clip traced alone: keep (C, S, T) bool or 0/1
    -> MACs (C,) int64. Bucketed: runs of length >= 2 attend, spatial frames as runs or padded groups; varlen: every
    segment is one variable-length call (its real length^2 work), the CLS projected once per clip."""
    D, Hd = arch.embed_dim, arch.mlp_hidden
    T = keep.shape[2]
    k = keep.to(torch.int64)
    per_pos, per_frame = k.sum(2), k.sum(1)  # (C, S), (C, T)
    mp = per_pos.sum(1)
    rows = 1 + mp
    if arch.backend == "varlen":
        temporal_attn = 2 * D * (per_pos * per_pos).sum(1)
        spatial_attn = rows * 3 * D * D + 2 * D * ((per_frame + 1) ** 2).sum(1)
    else:
        temporal_attn = 2 * D * _attn_pairs(per_pos)
        longest = 1 + per_frame.amax(1)
        runs = (T + mp) * 3 * D * D + 2 * D * _attn_pairs(per_frame + 1)
        length = _padded(longest, per_frame.amin(1) < per_frame.amax(1))
        padded = rows * 3 * D * D + 2 * D * T * length * length
        spatial_attn = torch.where(longest >= RUNS_FROM, runs, padded)
    temporal = _ln(mp, D) + 5 * mp * D * D + temporal_attn  # qkv, proj, temporal_fc
    spatial = _ln(rows, D) + spatial_attn + (T + mp) * D * D  # + proj
    return temporal + spatial + _ln(rows, D) + 2 * rows * D * Hd


def joint_block_macs(arch: CostArch, counts: torch.Tensor) -> torch.Tensor:
    """One joint-attention block of the packed path over U units per clip (1: joint space-time; T frames:
    space-only), each its CLS + kept patches: counts (C, U) kept patches per unit -> MACs (C,) int64."""
    D, Hd = arch.embed_dim, arch.mlp_hidden
    units = counts.shape[1]
    c = counts.to(torch.int64)
    rows = units + c.sum(1)
    if arch.backend == "varlen":  # one segment per unit, its own length
        pairs = ((1 + c) ** 2).sum(1)
    else:  # padded groups
        length = _padded(1 + c.amax(1), c.amin(1) < c.amax(1))
        pairs = units * length * length
    attn = _ln(rows, D) + 4 * rows * D * D + 2 * D * pairs
    return attn + _ln(rows, D) + 2 * rows * D * Hd


def interpreter_macs(arch: CostArch, alive: torch.Tensor, units: int) -> torch.Tensor:
    """One interpreter per clip: alive (...) int64 patch rows it scores (those alive before its decision on the
    packed path, all N on the masked path), ``units`` CLS rows (T for space-only) -> MACs (...): non-affine
    LayerNorm of the CLS and patch rows, q of the CLS rows, k of the patch rows."""
    D, w = arch.embed_dim, arch.interp_width
    return _ln(units + alive, D, affine=False) + units * D * w + alive * D * w


def _block_macs(arch: CostArch, keep: torch.Tensor) -> torch.Tensor:
    """Per-block MACs of the packed path for every clip and group: keep (B, G, S, T) 0/1 -> (B, G) int64."""
    B, G, S, T = keep.shape
    flat = keep.reshape(B * G, S, T)
    if arch.attention_type == "divided_space_time":
        out = divided_block_macs(arch, flat)
    elif arch.attention_type == "joint_space_time":
        out = joint_block_macs(arch, flat.sum((1, 2)).unsqueeze(1))
    elif arch.attention_type == "space_only":
        out = joint_block_macs(arch, flat.sum(1))
    else:
        raise ValueError(f"unknown attention_type {arch.attention_type!r}; expected one of {ATTENTION_TYPES}")
    return out.reshape(B, G)


def pruned_macs(arch: CostArch, keep_masks: torch.Tensor, interpreted: Sequence[bool] | torch.Tensor,
                T: int, H: int, W: int) -> torch.Tensor:
    """fvcore's count of each clip's forward, as if traced alone: keep_masks (B, G, T*H'*W') bool in (h w t)
    order, the tokens alive after each group's decision (the group's blocks run on them); ``interpreted`` (G,)
    whether each group's interpreter ran; the clip is T frames of H x W pixels -> MACs (B,) int64. Masks that
    are not nested are intersected group by group, as the model does with ``keep_masks``."""
    B, G, N = keep_masks.shape
    keep_masks = keep_masks.to(torch.int64).cumprod(1)  # 0/1: kept by this group and every earlier one
    hp, wp = H // arch.patch_size, W // arch.patch_size
    S = hp * wp
    if G != len(arch.groups) or N != T * S:
        raise ValueError(f"keep_masks {tuple(keep_masks.shape)} do not fit {len(arch.groups)} groups of "
                         f"T*H'*W' = {T}*{hp}*{wp} tokens")
    device = keep_masks.device
    blocks = torch.tensor(arch.groups, dtype=torch.int64, device=device)
    ran = torch.as_tensor(interpreted, dtype=torch.bool).to(device)
    units = T if arch.attention_type == "space_only" else 1
    if arch.execution == "packed":
        body = (_block_macs(arch, keep_masks.reshape(B, G, S, T)) * blocks).sum(1)
        alive_before = torch.cat([torch.full((B, 1), N, dtype=torch.int64, device=device),
                                  keep_masks[:, :-1].sum(2)], 1)  # (B, G)
    elif arch.execution == "masked":
        body = torch.full((B,), dense_block_macs(arch, T, S) * sum(arch.groups), dtype=torch.int64, device=device)
        alive_before = torch.full((B, G), N, dtype=torch.int64, device=device)  # dropped tokens are scored too
    else:
        raise ValueError(f"unknown execution {arch.execution!r}; expected 'packed' or 'masked'")
    interp = interpreter_macs(arch, alive_before, units) * ran
    return body + interp.sum(1) + stem_macs(arch, T, H, W) + head_macs(arch)


def forward_gflops(model: nn.Module, decisions: PruningDecisions, clip_shape: Sequence[int]) -> torch.Tensor:
    """fvcore GFLOPs (GMACs) of each clip of a forward of the IA-RED² ``model``, from the ``decisions`` it returned
    (kept sets, which interpreters ran, the execution); ``clip_shape`` (B, C, T, H, W) of that forward -> (B,)
    float64 on the model's device. Equal to ``clip_gflops`` (one fvcore trace per clip) without tracing."""
    arch = arch_of(model)
    if decisions.policy.execution is not None:
        arch = dataclasses.replace(arch, execution=decisions.policy.execution)
    T, H, W = (int(v) for v in clip_shape[2:])
    return pruned_macs(arch, decisions.keep_masks, decisions.interpreted, T, H, W).to(torch.float64) / 1e9
