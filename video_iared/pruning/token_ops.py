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

from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

import torch

# the index structures and the attention over them live in their own modules; their names are re-exported here
from video_iared.pruning.group_attention import SHORT_RUN, group_attention, run_attention, ungroup  # noqa: F401
from video_iared.pruning.group_index import (  # noqa: F401
    LENGTH_MULTIPLE, PAD_FROM, FrameRuns, GroupIndex, RunIndex, _build_groups, _build_runs, _frame_runs,
    _padded_length,
)
from video_iared.pruning.varlen import Segments, offsets, seq_rows

# Spatial attention runs on unpadded frame runs (``FrameRuns``: a D-wide gather before qkv, one attention
# call per distinct length) when the longest frame group has at least RUNS_FROM rows, on padded groups of the
# qkv rows below that. One ViT-B block's spatial update (top-k keep sets, layout built inside the timing,
# 2 threads): as runs x0.99-1.01 at batch 1, x1.14 (keep 0.7) / x1.21 (keep 0.3) at batch 8; at 1 thread
# with 15-row frames (keep 0.09, batch 8) x0.87 — many short buckets, each an attention call. Whole
# TimeSformer-B at batch 8, interleaved A/B: keep 0.3 201.9 -> 190.2 ms/clip, keep 0.7 704.9 -> 693.2.
RUNS_FROM = 32


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
