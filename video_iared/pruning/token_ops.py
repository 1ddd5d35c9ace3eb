"""Index bookkeeping for running blocks on the kept tokens only (the packed layout).

A batch of pruned clips is stored as one packed tensor ``x`` (M, D), M = B + sum_b kept_b:

- rows ``0 .. B-1`` are the CLS tokens of the B clips (so ``x[:B]`` is a view, never a copy),
- rows ``B ..`` are the kept patch tokens, clip after clip, each clip's patches in the reference
  ``(h w t)`` order (patch index ``p = (h * W + w) * T + t``).

Per-token layers (norms, proj, MLP) run on ``x`` directly; each attention branch's qkv runs on its own
row order. Temporal attention (per spatial position) needs no padding: a position's kept frames are
consecutive packed rows, so its group is a run of rows; the runs are bucketed by length (:class:`RunIndex`)
and every bucket is a plain reshape — no padded gather of the qkv rows, no mask, and one attention call per
distinct length (at most T). Spatial attention (per frame, with that frame's CLS copy) runs the same way on
frame runs (:class:`FrameRuns`: the normed rows gathered D-wide into runs before qkv, so the CLS is
projected once per frame, as in the dense block) when frames hold at least ``RUNS_FROM`` rows, and on padded
groups of the qkv rows (:class:`GroupIndex`, padded slots masked out of the keys) below that; joint attention
(per clip) on padded groups. Either way a clip's result does not depend on the other clips in the batch
(beyond floating-point reduction order; which spatial form runs depends on the batch's longest frame, and
fvcore's count with it: the padded form counts the padding, the runs form the T CLS projections).

Rows are gathered with ``index_select``: 1.8x faster than advanced indexing for these row gathers
(1110 rows of 2304 floats, 1 thread: 1.0 vs 1.8 ms).

The attention backend "varlen" (``pruning.varlen``) runs every attention branch of a block as ONE
variable-length call over all clips of the batch; :class:`PackedLayout` builds its segments
(``temporal_segments`` / ``spatial_segments`` / ``joint_segments``) on the device. The bucketed backend (the
default on the CPU) is the grouping above, with host reads for its Python-int shapes and one call per bucket.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F

from video_iared.pruning.varlen import Segments, offsets, seq_rows

@dataclass
class GroupIndex:
    """Padded attention groups over packed rows.

    ``table`` (G, L) long: the packed row each slot reads (padding slots read row 0 and are masked);
    ``valid`` (G, L) bool: real slots; ``inverse`` (R,) long: for each covered row r (in packed order of the
    rows this index covers), its flat slot ``g * L + l`` — gathering the flat (G*L, D) output with it
    brings the results back into packed order. ``readout`` (G + R,) long, for groups with a prefix row: slot
    0 of every group, then ``inverse`` — one gather of the flat output gives the prefix rows' outputs (the
    per-frame CLS copies), then the covered rows' outputs in packed order.
    """

    table: torch.Tensor
    valid: torch.Tensor
    inverse: torch.Tensor
    readout: Optional[torch.Tensor] = None

    @property
    def num_groups(self) -> int:
        return int(self.table.shape[0])

    @property
    def length(self) -> int:
        return int(self.table.shape[1])


# Padded group length: groups of unequal lengths (masked anyway) at least PAD_FROM long are padded to a
# multiple of LENGTH_MULTIPLE. The CPU flash-attention kernel runs much faster on sequence lengths that are
# multiples of 16 than on the lengths just below them (8 groups x 12 heads, 1 thread: bfloat16 L=142 6.0 ms,
# L=144 2.8 ms; L=108 3.1 ms, L=112 2.0 ms; float32 L=142 8.0 ms, L=144 5.6 ms; L=72 2.5 ms, L=80 2.1 ms).
# fvcore counts the padded attention (+1-2 % of the attention MACs at ViT-B sizes; no change when every
# group is full, as in the dense model). Shorter groups are left alone: padding would be a large share of
# their (counted) attention MACs for a few 0.1 ms.
LENGTH_MULTIPLE = 16
PAD_FROM = 24
# Spatial attention runs on unpadded frame runs (``FrameRuns``: a D-wide gather before qkv, one attention
# call per distinct length) when the longest frame group has at least RUNS_FROM rows, on padded groups of the
# qkv rows below that. One ViT-B block's spatial update (top-k keep sets, layout built inside the timing,
# 2 threads): as runs x0.99-1.01 at batch 1, x1.14 (keep 0.7) / x1.21 (keep 0.3) at batch 8; at 1 thread
# with 15-row frames (keep 0.09, batch 8) x0.87 — many short buckets, each an attention call. Whole
# TimeSformer-B at batch 8, interleaved A/B: keep 0.3 201.9 -> 190.2 ms/clip, keep 0.7 704.9 -> 693.2.
RUNS_FROM = 32


def _padded_length(longest: int, uneven: bool) -> int:
    """The group length for groups whose longest holds ``longest`` slots (see ``LENGTH_MULTIPLE``)."""
    if not uneven or longest < PAD_FROM:
        return longest
    return -(-longest // LENGTH_MULTIPLE) * LENGTH_MULTIPLE


def _sort_by_group(gid: torch.Tensor, counts: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(order, gid_sorted, rank_sorted): the elements sorted by group (stable: their order within a group kept),
    their groups, and each sorted element's rank within its group. gid (R,) group of each element; counts
    (num_groups,) elements per group."""
    order = torch.argsort(gid, stable=True)
    gid_sorted = gid.index_select(0, order)
    first = (torch.cumsum(counts, 0) - counts).index_select(0, gid_sorted)  # each group's first sorted slot
    return order, gid_sorted, torch.arange(gid.shape[0], device=gid.device) - first


def _build_groups(gid: torch.Tensor, rows: torch.Tensor, counts: torch.Tensor,
                  prefix_rows: Optional[torch.Tensor]) -> GroupIndex:
    """Padded groups from per-row group ids (the length from ``_padded_length``).

    gid (R,) group of each row (any order); rows (R,) the packed row each element reads; counts
    (num_groups,) elements per group (taken from the keep mask: a sum, which fvcore ignores, where a
    bincount would be an op it does not know); prefix_rows (num_groups,) or None: a row placed at slot 0 of
    every group (the CLS copy).
    """
    device = gid.device
    order, gid_sorted, slot_sorted = _sort_by_group(gid, counts)
    offset = 0 if prefix_rows is None else 1
    num_groups = int(counts.shape[0])
    most = int(counts.max()) if num_groups > 0 else 0
    uneven = num_groups > 0 and int(counts.min()) < most
    length = _padded_length(max(offset + most, 1), uneven)
    table = torch.zeros(num_groups, length, dtype=torch.long, device=device)
    valid = torch.zeros(num_groups, length, dtype=torch.bool, device=device)
    if prefix_rows is not None:
        table[:, 0] = prefix_rows
        valid[:, 0] = True
    table[gid_sorted, slot_sorted + offset] = rows[order]
    valid[gid_sorted, slot_sorted + offset] = True
    flat_sorted = gid_sorted * length + slot_sorted + offset
    inverse = torch.zeros_like(flat_sorted)
    inverse[order] = flat_sorted
    readout = None if prefix_rows is None else torch.cat([torch.arange(num_groups, device=device) * length, inverse])
    return GroupIndex(table, valid, inverse, readout)


@dataclass
class RunIndex:
    """Attention groups that are runs of consecutive rows, bucketed by run length.

    ``buckets`` ((L, rows), ...): consecutive slices of the rows in bucket order, each ``rows // L`` runs of
    L rows, so a bucket reshapes to (runs, L, ...) as it is. ``order`` (R,) long: the rows sorted by the
    length of their run (stable: every run stays contiguous and in place among its equals); ``restore``
    (R,) long: its inverse. Both None when every run has the same length (the rows are in bucket order).
    """

    order: Optional[torch.Tensor]
    restore: Optional[torch.Tensor]
    buckets: Tuple[Tuple[int, int], ...]

    @property
    def num_groups(self) -> int:
        return sum(rows // length for length, rows in self.buckets)

    def to_buckets(self, x: torch.Tensor) -> torch.Tensor:
        """Rows (R, ...) in packed order -> bucket order (a gather; ``x`` itself when already in order)."""
        return x if self.order is None else x.index_select(0, self.order)

    def from_buckets(self, y: torch.Tensor) -> torch.Tensor:
        """Rows (R, ...) in bucket order -> packed order."""
        return y if self.restore is None else y.index_select(0, self.restore)


def _length_buckets(lengths: torch.Tensor) -> Tuple[Tuple[int, int], ...]:
    """((L, rows), ...) for runs of the given lengths, ascending L, runs without rows left out. Python ints
    (a histogram of ``lengths.tolist()``: a bincount would be an op fvcore does not know)."""
    histogram = Counter(lengths.tolist())
    return tuple((length, length * histogram[length]) for length in sorted(histogram) if length > 0)


def _build_runs(lengths: torch.Tensor, row_length: torch.Tensor) -> RunIndex:
    """Runs from their lengths: lengths (num_runs,) back to back in row order (0: a run without rows);
    row_length (R,) the length of the run of every row."""
    buckets = _length_buckets(lengths)
    if len(buckets) <= 1:
        return RunIndex(None, None, buckets)
    order = torch.argsort(row_length, stable=True)
    return RunIndex(order, torch.argsort(order), buckets)


@dataclass
class FrameRuns:
    """Spatial attention groups as runs: per (clip, frame) its CLS copy, then the frame's kept patches.

    ``rows`` (R,) long, R = B*T + Mp: the packed row each slot reads, groups back to back in bucket order
    (``runs.buckets``: groups sorted by length, stable), so gathering the packed rows with it gives rows that
    reshape per bucket with no padding and no mask. ``readout`` (R,) long: the slots of the B*T CLS copies in
    (clip, frame) order, then the slots of the patch rows in packed order — one gather of the run outputs
    brings them back.
    """

    rows: torch.Tensor
    readout: torch.Tensor
    runs: RunIndex


def _frame_runs(counts: torch.Tensor, gid: torch.Tensor, T: int) -> FrameRuns:
    """:class:`FrameRuns` from the kept patches per (clip, frame) ``counts`` (B*T,) and the (clip, frame) group
    of every kept patch in packed order ``gid`` (Mp,) (see ``PackedLayout.spatial_runs``)."""
    device = counts.device
    B = int(counts.shape[0]) // T
    lengths = counts + 1  # the CLS copy
    group_order = torch.argsort(lengths, stable=True)
    sorted_len = lengths.index_select(0, group_order)
    start = torch.empty_like(lengths)
    start[group_order] = torch.cumsum(sorted_len, 0) - sorted_len
    order, _, rank_sorted = _sort_by_group(gid, counts)  # patches by frame, packed order within a frame
    rank = torch.empty_like(gid)
    rank[order] = rank_sorted
    patch_slot = start.index_select(0, gid) + 1 + rank
    num_slots = B * T + int(gid.shape[0])
    rows = torch.empty(num_slots, dtype=torch.long, device=device)
    rows[start] = torch.div(torch.arange(B * T, device=device), T, rounding_mode="floor")
    rows[patch_slot] = B + torch.arange(gid.shape[0], device=device)
    return FrameRuns(rows, torch.cat([start, patch_slot]), RunIndex(None, None, _length_buckets(lengths)))


@dataclass
class PackedLayout:
    """Where every kept token of a batch lives in the packed tensor, and its attention groups.

    Built from ``keep`` (B, N) bool over the N = T*H*W patches of each clip ((h w t) order). Attributes:
    ``counts`` (B,) kept patches per clip; ``patch_batch`` / ``patch_index`` (Mp,) clip and grid index of
    every kept patch in packed order (packed row = B + position); ``row_batch`` (M,) clip of every row.
    ``known_patches``: Mp when the caller knows it (keep_ratio decisions): the kept tokens are then found with
    ``torch.nonzero_static`` (no host read); None: ``nonzero`` (the size read back).
    """

    keep: torch.Tensor
    T: int
    H: int
    W: int
    known_patches: Optional[int] = None
    counts: torch.Tensor = field(init=False)
    patch_batch: torch.Tensor = field(init=False)
    patch_index: torch.Tensor = field(init=False)
    row_batch: torch.Tensor = field(init=False)
    _groups: Dict[str, object] = field(init=False, default_factory=dict)  # index structures, cached

    def __post_init__(self) -> None:
        if self.keep.dim() != 2 or self.keep.shape[1] != self.T * self.H * self.W:
            raise ValueError(
                f"keep must be (B, T*H*W) = (B, {self.T * self.H * self.W}), got {tuple(self.keep.shape)}"
            )
        self.keep = self.keep.bool()
        # row-major: sorted by clip, then by (h w t) index
        nz = self.keep.nonzero() if self.known_patches is None else torch.nonzero_static(
            self.keep, size=int(self.known_patches))
        self.patch_batch = nz[:, 0]
        self.patch_index = nz[:, 1]
        self.counts = self.keep.sum(1)
        B = self.batch
        self.row_batch = torch.cat([torch.arange(B, device=self.keep.device), self.patch_batch])

    @property
    def batch(self) -> int:
        return int(self.keep.shape[0])

    @property
    def num_patches(self) -> int:
        """Kept patch rows in the whole batch (Mp)."""
        return int(self.patch_index.shape[0])

    @property
    def num_rows(self) -> int:
        """All packed rows, CLS included (M = B + Mp)."""
        return self.batch + self.num_patches

    # ---------------------------------------------------------------- attention groups (cached)
    def temporal_runs(self) -> RunIndex:
        """Kept tokens of the same clip and spatial position: in (h w t) order they are consecutive patch
        rows (rows index the PATCH rows, 0 .. Mp-1). A position with no kept frame has no group."""
        if "temporal" not in self._groups:
            S = self.H * self.W
            lengths = self.keep.reshape(self.batch * S, self.T).sum(1)
            position = self.patch_batch * S + torch.div(self.patch_index, self.T, rounding_mode="floor")
            self._groups["temporal"] = _build_runs(lengths, lengths.index_select(0, position))
        return self._groups["temporal"]

    def spatial_groups(self) -> GroupIndex:
        """Per (clip, frame): that clip's CLS row at slot 0, then the kept patches of the frame.

        Rows index the full packed rows (CLS 0 .. B-1, patches B ..). Every frame has a group, even one
        whose patches are all dropped (it holds the CLS copy alone). ``inverse`` covers the patch rows.
        """
        if "spatial" not in self._groups:
            B, T = self.batch, self.T
            counts, gid = self._frames()
            rows = B + torch.arange(self.num_patches, device=gid.device)
            cls_rows = torch.div(torch.arange(B * T, device=gid.device), T, rounding_mode="floor")
            self._groups["spatial"] = _build_groups(gid, rows, counts, cls_rows)
        return self._groups["spatial"]

    def _frames(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """(kept patches per (clip, frame) (B*T,), the (clip, frame) group of every kept patch (Mp,)), cached."""
        if "frames" not in self._groups:
            B, T = self.batch, self.T
            counts = self.keep.reshape(B, self.H * self.W, T).sum(1).reshape(B * T)
            self._groups["frames"] = (counts, self.patch_batch * T + torch.remainder(self.patch_index, T))
        return self._groups["frames"]

    def spatial_runs(self) -> Optional[FrameRuns]:
        """The spatial groups of :meth:`spatial_groups` as unpadded runs (:class:`FrameRuns`), or None when
        the longest group is shorter than ``RUNS_FROM`` (then the padded groups are faster)."""
        if "spatial_runs" not in self._groups:
            counts, gid = self._frames()
            use_runs = self.batch > 0 and 1 + int(counts.max()) >= RUNS_FROM
            self._groups["spatial_runs"] = _frame_runs(counts, gid, self.T) if use_runs else None
        return self._groups["spatial_runs"]

    def joint_groups(self) -> GroupIndex:
        """Per clip: its CLS at slot 0, then all its kept patches. ``inverse`` covers the patch rows."""
        if "joint" not in self._groups:
            B = self.batch
            rows = B + torch.arange(self.num_patches, device=self.keep.device)
            self._groups["joint"] = _build_groups(
                self.patch_batch, rows, self.counts, torch.arange(B, device=self.keep.device)
            )
        return self._groups["joint"]

    # ---------------------------------------------------------------- conversions
    def pack(self, tokens: torch.Tensor) -> torch.Tensor:
        """Full tokens (B, 1+N, D) -> packed (M, D): the CLS rows, then the kept patches (one row gather)."""
        B, n1, D = tokens.shape
        rows = torch.cat([torch.arange(B, device=tokens.device) * n1, self.patch_batch * n1 + 1 + self.patch_index])
        return tokens.reshape(B * n1, D).index_select(0, rows)

    def unpack(self, x: torch.Tensor) -> torch.Tensor:
        """Packed (M, D) -> full (B, 1+N, D) with zeros at the dropped tokens."""
        B, N = self.keep.shape
        out = x.new_zeros(B, N, x.shape[-1])
        out[self.patch_batch, self.patch_index] = x[B:]
        return torch.cat([x[:B].unsqueeze(1), out], 1)

    def shrink(self, x: torch.Tensor, new_keep: torch.Tensor,
               known_patches: Optional[int] = None) -> "tuple[torch.Tensor, PackedLayout]":
        """Drop packed rows: ``new_keep`` (B, N) must be a subset of ``self.keep``; ``known_patches``: the
        number of patches it keeps when known (no host read), else None.

        Returns (packed rows of the new layout (M', D), new layout). Order is preserved, so this is one
        gather of the CLS rows and the surviving patch rows.
        """
        B = self.batch
        survive = new_keep[self.patch_batch, self.patch_index]
        kept = survive.nonzero() if known_patches is None else torch.nonzero_static(survive, size=known_patches)
        rows = torch.cat([torch.arange(B, device=x.device), B + kept.squeeze(1)])
        return x.index_select(0, rows), PackedLayout(new_keep & self.keep, self.T, self.H, self.W, known_patches)

    # ---------------------------------------------------------------- variable-length segments (cached)
    def temporal_segments(self) -> Segments:
        """Per (clip, position): its kept frames, over the PATCH rows (Mp,). In (h w t) order these are
        consecutive rows, so the patch rows are already in segment order. B*S segments (empty ones for positions
        without a kept frame), maximum length T."""
        if "seg_temporal" not in self._groups:
            S = self.H * self.W
            lengths = self.keep.reshape(self.batch * S, self.T).sum(1)
            self._groups["seg_temporal"] = Segments(offsets(lengths), self.T, None, None)
        return self._groups["seg_temporal"]

    def spatial_segments(self) -> Segments:
        """Per (clip, frame): the clip's CLS row, then the frame's kept patches by position, over the packed rows
        (M,). Elements (the output order): the B*T CLS copies in (clip, frame) order, then the patch rows in
        packed order. B*T segments, maximum length 1 + H*W."""
        if "seg_spatial" not in self._groups:
            B, T, S = self.batch, self.T, self.H * self.W
            device = self.keep.device
            counts, gid = self._frames()
            cu = offsets(1 + counts)
            start = cu[:-1].long()
            k = self.keep.reshape(B, S, T).long()
            before = (torch.cumsum(k, 1) - k).reshape(B, S * T)  # kept patches of the same frame at earlier positions
            rank = before[self.patch_batch, self.patch_index]
            pos = torch.cat([start, start.index_select(0, gid) + 1 + rank])
            src = torch.cat([torch.div(torch.arange(B * T, device=device), T, rounding_mode="floor"),
                             B + torch.arange(self.num_patches, device=device)])
            self._groups["seg_spatial"] = Segments(cu, 1 + S, pos, seq_rows(src, pos))
        return self._groups["seg_spatial"]

    def joint_segments(self) -> Segments:
        """Per clip: its CLS, then all its kept patches, over the packed rows (M,); elements in packed row order.
        B segments, maximum length 1 + T*H*W."""
        if "seg_joint" not in self._groups:
            B, N = self.keep.shape
            device = self.keep.device
            cu = offsets(1 + self.counts)
            start = cu[:-1].long()
            first = (torch.cumsum(self.counts, 0) - self.counts).index_select(0, self.patch_batch)
            rank = torch.arange(self.num_patches, device=device) - first
            pos = torch.cat([start, start.index_select(0, self.patch_batch) + 1 + rank])
            self._groups["seg_joint"] = Segments(cu, 1 + N, pos, seq_rows(torch.arange(self.num_rows, device=device),
                                                                            pos))
        return self._groups["seg_joint"]


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
