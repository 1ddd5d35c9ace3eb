"""The index structures of attention groups over packed rows (see ``token_ops`` for the packed layout).

:class:`GroupIndex`: padded groups (a table of rows per group, masked padding slots), built by
``_build_groups``; :class:`RunIndex`: groups that are runs of consecutive rows, bucketed by run length, built by
``_build_runs``; :class:`FrameRuns`: the spatial groups (a CLS copy, then a frame's kept patches) as runs,
built by ``_frame_runs``. ``PackedLayout`` builds and caches them; ``group_attention`` runs attention on them.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Optional, Tuple

import torch


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


# Padded group length: groups of unequal lengths (masked anyway) at least PAD_FROM long are padded to a
# multiple of LENGTH_MULTIPLE. The CPU flash-attention kernel runs much faster on sequence lengths that are
# multiples of 16 than on the lengths just below them (8 groups x 12 heads, 1 thread: bfloat16 L=142 6.0 ms,
# L=144 2.8 ms; L=108 3.1 ms, L=112 2.0 ms; float32 L=142 8.0 ms, L=144 5.6 ms; L=72 2.5 ms, L=80 2.1 ms).
# fvcore counts the padded attention (+1-2 % of the attention MACs at ViT-B sizes; no change when every
# group is full, as in the dense model). Shorter groups are left alone: padding would be a large share of
# their (counted) attention MACs for a few 0.1 ms.
LENGTH_MULTIPLE = 16
PAD_FROM = 24


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

