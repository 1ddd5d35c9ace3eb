"""Index bookkeeping for running blocks on the kept tokens only (the packed layout).

A batch of pruned clips is stored as one packed tensor ``x`` (M, D), M = B + sum_b kept_b:

- rows ``0 .. B-1`` are the CLS tokens of the B clips (so ``x[:B]`` is a view, never a copy),
- rows ``B ..`` are the kept patch tokens, clip after clip, each clip's patches in the reference
  ``(h w t)`` order (patch index ``p = (h * W + w) * T + t``).

Per-token layers (norms, qkv, proj, temporal_fc, MLP) run on ``x`` directly. Attention runs on padded
groups gathered from the packed rows (:class:`GroupIndex`): per spatial position (temporal attention),
per frame with that frame's CLS copy (spatial attention), or per clip (joint attention). Padded slots are
masked out of the keys and their outputs are never read back, so a clip's result does not depend on the
other clips in the batch (beyond floating-point reduction order).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional

import torch
import torch.nn.functional as F


@dataclass
class GroupIndex:
    """Padded attention groups over packed rows.

    ``table`` (G, L) long: the packed row each slot reads (padding slots read row 0 and are masked);
    ``valid`` (G, L) bool: real slots; ``inverse`` (R,) long: for each covered row r (in packed order of the
    rows this index covers), its flat slot ``g * L + l`` — gathering the flat (G*L, D) output with it
    brings the results back into packed order.
    """

    table: torch.Tensor
    valid: torch.Tensor
    inverse: torch.Tensor

    @property
    def num_groups(self) -> int:
        return int(self.table.shape[0])

    @property
    def length(self) -> int:
        return int(self.table.shape[1])


def _build_groups(gid: torch.Tensor, rows: torch.Tensor, counts: torch.Tensor, prefix_rows: Optional[torch.Tensor],
                  drop_empty: bool) -> GroupIndex:
    """Padded groups from per-row group ids.

    gid (R,) group of each row (any order); rows (R,) the packed row each element reads; counts
    (num_groups,) elements per group (taken from the keep mask: a sum, which fvcore ignores, where a
    bincount would be an op it does not know); prefix_rows (num_groups,) or None: a row placed at slot 0 of
    every group (the CLS copy); drop_empty: remove groups without any element (only without a prefix).
    """
    device = gid.device
    order = torch.argsort(gid, stable=True)
    gid_sorted = gid[order]
    starts = torch.cumsum(counts, 0) - counts
    slot_sorted = torch.arange(gid.shape[0], device=device) - starts[gid_sorted]  # rank within the group
    offset = 0 if prefix_rows is None else 1
    if drop_empty:
        present = counts > 0
        new_id = torch.cumsum(present.long(), 0) - 1  # compact id of each present group
        gid_sorted = new_id[gid_sorted]
        counts = counts[present]
    num_groups = int(counts.shape[0])
    length = max(offset + (int(counts.max()) if num_groups > 0 else 0), 1)
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
    return GroupIndex(table, valid, inverse)


@dataclass
class PackedLayout:
    """Where every kept token of a batch lives in the packed tensor, and its attention groups.

    Built from ``keep`` (B, N) bool over the N = T*H*W patches of each clip ((h w t) order). Attributes:
    ``counts`` (B,) kept patches per clip; ``patch_batch`` / ``patch_index`` (Mp,) clip and grid index of
    every kept patch in packed order (packed row = B + position); ``row_batch`` (M,) clip of every row.
    """

    keep: torch.Tensor
    T: int
    H: int
    W: int
    counts: torch.Tensor = field(init=False)
    patch_batch: torch.Tensor = field(init=False)
    patch_index: torch.Tensor = field(init=False)
    row_batch: torch.Tensor = field(init=False)
    _groups: Dict[str, GroupIndex] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        if self.keep.dim() != 2 or self.keep.shape[1] != self.T * self.H * self.W:
            raise ValueError(
                f"keep must be (B, T*H*W) = (B, {self.T * self.H * self.W}), got {tuple(self.keep.shape)}"
            )
        self.keep = self.keep.bool()
        nz = self.keep.nonzero()  # row-major: sorted by clip, then by (h w t) index
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
    def temporal_groups(self) -> GroupIndex:
        """Kept tokens of the same clip and spatial position; rows index the PATCH rows (0 .. Mp-1).

        A position with no kept frame has no group.
        """
        if "temporal" not in self._groups:
            S = self.H * self.W
            gid = self.patch_batch * S + torch.div(self.patch_index, self.T, rounding_mode="floor")
            rows = torch.arange(self.num_patches, device=gid.device)
            counts = self.keep.reshape(self.batch * S, self.T).sum(1)
            self._groups["temporal"] = _build_groups(gid, rows, counts, None, drop_empty=True)
        return self._groups["temporal"]

    def spatial_groups(self) -> GroupIndex:
        """Per (clip, frame): that clip's CLS row at slot 0, then the kept patches of the frame.

        Rows index the full packed rows (CLS 0 .. B-1, patches B ..). Every frame has a group, even one
        whose patches are all dropped (it holds the CLS copy alone). ``inverse`` covers the patch rows.
        """
        if "spatial" not in self._groups:
            B, T = self.batch, self.T
            gid = self.patch_batch * T + torch.remainder(self.patch_index, T)
            rows = B + torch.arange(self.num_patches, device=gid.device)
            cls_rows = torch.div(torch.arange(B * T, device=gid.device), T, rounding_mode="floor")
            counts = self.keep.reshape(B, self.H * self.W, T).sum(1).reshape(B * T)
            self._groups["spatial"] = _build_groups(gid, rows, counts, cls_rows, drop_empty=False)
        return self._groups["spatial"]

    def joint_groups(self) -> GroupIndex:
        """Per clip: its CLS at slot 0, then all its kept patches. ``inverse`` covers the patch rows."""
        if "joint" not in self._groups:
            B = self.batch
            rows = B + torch.arange(self.num_patches, device=self.keep.device)
            self._groups["joint"] = _build_groups(
                self.patch_batch, rows, self.counts, torch.arange(B, device=self.keep.device), drop_empty=False
            )
        return self._groups["joint"]

    # ---------------------------------------------------------------- conversions
    def pack(self, tokens: torch.Tensor) -> torch.Tensor:
        """Full tokens (B, 1+N, D) -> packed (M, D): the CLS rows, then the kept patches."""
        return torch.cat([tokens[:, 0], tokens[:, 1:][self.patch_batch, self.patch_index]], 0)

    def unpack(self, x: torch.Tensor) -> torch.Tensor:
        """Packed (M, D) -> full (B, 1+N, D) with zeros at the dropped tokens."""
        B, N = self.keep.shape
        out = x.new_zeros(B, N, x.shape[-1])
        out[self.patch_batch, self.patch_index] = x[B:]
        return torch.cat([x[:B].unsqueeze(1), out], 1)

    def shrink(self, x: torch.Tensor, new_keep: torch.Tensor) -> "tuple[torch.Tensor, PackedLayout]":
        """Drop packed rows: ``new_keep`` (B, N) must be a subset of ``self.keep``.

        Returns (packed rows of the new layout (M', D), new layout). Order is preserved, so this is one
        boolean gather of the surviving patch rows.
        """
        B = self.batch
        survive = new_keep[self.patch_batch, self.patch_index]
        x_new = torch.cat([x[:B], x[B:][survive]], 0)
        return x_new, PackedLayout(new_keep & self.keep, self.T, self.H, self.W)


def group_attention(qkv: torch.Tensor, groups: GroupIndex, num_heads: int, scale: float,
                    dropout_p: float = 0.0) -> torch.Tensor:
    """Multi-head attention within padded groups of packed rows.

    qkv (R, 3D) packed (the output of an ``Attention.qkv`` on packed rows) -> (G, L, D): the attention output
    of every slot (padding slots hold garbage and must not be read). Padded keys are masked; every group
    has at least one real key, so no row is NaN.
    """
    R, three_d = qkv.shape
    D = three_d // 3
    G, L = groups.table.shape
    g = qkv[groups.table.reshape(-1)].reshape(G, L, 3, num_heads, D // num_heads).permute(2, 0, 3, 1, 4)
    q, k, v = g.unbind(0)  # (G, heads, L, dh)
    mask = None
    if not bool(groups.valid.all()):
        mask = groups.valid[:, None, None, :]
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, scale=scale)
    return out.transpose(1, 2).reshape(G, L, D)


def ungroup(out: torch.Tensor, groups: GroupIndex) -> torch.Tensor:
    """(G, L, D) group outputs -> (R, D) in packed order of the covered rows."""
    return out.reshape(-1, out.shape[-1])[groups.inverse]
