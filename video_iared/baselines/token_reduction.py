"""Token-reduction baselines on the same TimeSformer and the same packed execution path as IA-RED².

``TokenReductionTimeSformer`` subclasses the dense ``TimeSformer`` (no new parameters: a dense checkpoint
loads strictly) and runs its blocks with ``packed_block_forward`` on a ``PackedLayout``, exactly as
``IAREDTimeSformer`` does, so the methods differ only in how they pick the tokens. Methods:

- ``"random"``: before every group, keep ``round(keep_ratio[g] * alive)`` alive patch tokens of each clip
  drawn uniformly at random over space-time (the model's own seeded generator; ``reseed()`` restarts it).
- ``"evit"``: EViT-style top-k by the CLS attention. Before group g > 0 the score of a token is the CLS
  query's attention to it in the SPATIAL attention of the last block of group g-1 (the divided block's only
  attention with a CLS query: per frame, the frame's CLS copy over that frame's kept patches; averaged over
  heads); captured with a forward hook on that block's ``attn.qkv``, so no projection is recomputed. Group 0
  has no preceding block: its scores come from block 0's own spatial ``attn.qkv`` applied to the embedded
  tokens (a probe that costs one qkv projection, counted by fvcore). The fusion of the dropped tokens into
  one extra token (EViT's option) is NOT implemented: the packed layout gives every token a (position,
  frame) cell — divided attention needs it — and a fused token has none.
- ``"tome"``: ToMe-style bipartite soft matching applied PER FRAME: before every block, within each frame
  the kept patches are split alternately into sets A and B, each A token is matched to its most similar B
  token (cosine similarity of the keys of the preceding block's spatial attention, averaged over heads;
  before block 0, of the embedded tokens), and the ``merge_r`` best-matched A tokens are merged into their
  B partners (size-weighted mean; token sizes are tracked). Why per frame: a merged token inherits its B
  partner's grid cell, which keeps the spatial attention (per frame) and the temporal attention (per
  position, across frames) well defined; merging across frames would put one token in two frames.
  Proportional attention, ``softmax(scale * q k^T + log s)`` with s the key's size (the CLS: 1), is applied
  in every block to both attentions: the spatial one (per frame) and the temporal one (per position),
  since a merged token stands for ``s`` original tokens of its frame (``packed_block_forward``'s
  ``key_bias``). In the spatial attention this makes a merged token weigh exactly as its ``s`` tokens
  would if they were identical; in the temporal attention it is a modelling choice (the ``s`` originals sat
  at different positions of the frame, and a dense position group would hold only one). ToMe merges inside a block between attention and MLP; here it merges
  between blocks (same token counts, shifted by one MLP).

``forward(x, policy=Budget(...), return_decisions=True)`` returns ``(logits, ReductionDecisions)``: ``keep_rates``
(B, S) — kept patches / all patches after each reduction step (one step per group for random / evit, one per
block for tome) — and ``keeps``: the S keep masks (B, T*H*W) bool, (h w t) order (for tome: the grid cells
still holding a token). The budget defaults to the model's ``keep_ratio`` / ``merge_r``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

from video_iared.models.timesformer import TimeSformer
from video_iared.pruning.decisions import ReductionDecisions
from video_iared.pruning.packed_block import packed_block_forward
from video_iared.pruning.policy import topk_keep
from video_iared.pruning.token_ops import GroupIndex, PackedLayout, ungroup

METHODS = ("random", "evit", "tome")
SUPPORTED_ATTENTION = ("divided_space_time", "joint_space_time")


@dataclass(frozen=True)
class Budget:
    """What one forward of a baseline reduces (its ``policy``): ``keep_ratio`` per group (random / EViT) and
    ``merge_r`` per frame per block (ToMe); None: the model's own."""

    keep_ratio: Optional[Tuple[float, ...]] = None
    merge_r: Optional[int] = None

    def __post_init__(self) -> None:
        if self.keep_ratio is not None:
            ratios = tuple(float(r) for r in self.keep_ratio)
            if any(not 0.0 < r <= 1.0 for r in ratios):
                raise ValueError(f"keep_ratio entries must be in (0, 1], got {list(ratios)}")
            object.__setattr__(self, "keep_ratio", ratios)
        if self.merge_r is not None and int(self.merge_r) < 0:
            raise ValueError(f"merge_r must be >= 0, got {self.merge_r}")


def _cls_groups(layout: PackedLayout, attention_type: str) -> GroupIndex:
    """The attention groups whose slot 0 is a CLS query: per frame (divided) or per clip (joint)."""
    return layout.spatial_groups() if attention_type == "divided_space_time" else layout.joint_groups()


def cls_attention(qkv: torch.Tensor, groups: GroupIndex, num_heads: int, scale: float) -> torch.Tensor:
    """CLS attention to every covered patch row, mean over heads.

    qkv (M, 3D) packed rows (an ``attn.qkv`` output) -> (Mp,) in packed patch order: for each group, the
    softmax over its valid slots of ``scale * q_slot0 . k_slot`` (the CLS self-weight takes its share too, as
    in the attention the block computes), averaged over the heads.
    """
    D = qkv.shape[1] // 3
    G, L = groups.table.shape
    g = qkv[groups.table.reshape(-1)].reshape(G, L, 3, num_heads, D // num_heads)
    q = g[:, 0, 0]  # (G, h, dh): the CLS query of every group
    k = g[:, :, 1]  # (G, L, h, dh)
    logits = torch.einsum("ghd,glhd->ghl", q, k) * scale
    logits = logits.masked_fill(~groups.valid[:, None, :], float("-inf"))
    attn = logits.softmax(-1).mean(1)  # (G, L)
    return ungroup(attn.unsqueeze(-1), groups).squeeze(-1)


def _to_grid(values: torch.Tensor, layout: PackedLayout, fill: float = 0.0) -> torch.Tensor:
    """Packed patch values (Mp,) -> (B, N) over the grid (``fill`` at the dropped tokens)."""
    out = values.new_full(layout.keep.shape, fill)
    out[layout.patch_batch, layout.patch_index] = values
    return out


def bipartite_merge_plan(metric: torch.Tensor, groups: GroupIndex, r: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """ToMe's bipartite soft matching within every group (frame); slot 0 (the CLS) never merges.

    metric (R, C) features of the packed rows the group table reads. Valid patch slots 1, 3, 5, ... form A
    (sources), slots 2, 4, ... form B (destinations); each A token's best B match by cosine similarity; the r
    best-matched A tokens of each group merge (fewer where a group has fewer A tokens or no B token).
    Returns (src_rows, dst_rows) (n,) packed row indices: row src merges into row dst.
    """
    G, L = groups.table.shape
    if r <= 0 or L < 3:
        empty = groups.table.new_zeros(0)
        return empty, empty
    m = F.normalize(metric, dim=-1)[groups.table]  # (G, L, C)
    a_slots = torch.arange(1, L, 2, device=metric.device)
    b_slots = torch.arange(2, L, 2, device=metric.device)
    a_valid, b_valid = groups.valid[:, a_slots], groups.valid[:, b_slots]
    sim = torch.einsum("gac,gbc->gab", m[:, a_slots], m[:, b_slots])
    sim = sim.masked_fill(~b_valid[:, None, :], float("-inf"))
    best, best_b = sim.max(-1)  # (G, La)
    best = best.masked_fill(~a_valid, float("-inf"))
    k = min(r, a_slots.numel())
    top, top_a = best.topk(k, dim=-1)  # (G, k)
    ok = torch.isfinite(top)
    gi = torch.arange(G, device=metric.device).unsqueeze(1).expand_as(top_a)
    src = groups.table[gi, a_slots[top_a]][ok]
    dst = groups.table[gi, b_slots[best_b.gather(1, top_a)]][ok]
    return src, dst


def merge_rows(x: torch.Tensor, size: torch.Tensor, src: torch.Tensor, dst: torch.Tensor):
    """Merge rows ``src`` into rows ``dst`` (n,): every destination becomes the size-weighted mean of itself and
    its sources, its size the sum. x (R, D), size (R, 1) -> (x', size') (R, D), (R, 1); the source rows are left
    as they were (the caller drops them)."""
    xs = x * size
    num = xs.index_add(0, dst, xs[src])
    den = size.index_add(0, dst, size[src])
    return num / den, den


class TokenReductionTimeSformer(TimeSformer):
    """TimeSformer with a parameter-free token-reduction method; input (B, C, T, H, W) -> logits (B, K).

    ``method``: one of :data:`METHODS`. ``groups``: blocks per group (random / evit reduce in front of every
    group; sum = depth). ``keep_ratio``: fraction of the alive tokens kept at each group (random / evit).
    ``merge_r``: tokens merged per frame before every block (tome; capped by the frame's A set).
    ``seed``: the random method's generator seed.
    """

    def __init__(
        self,
        method: str = "random",
        groups: Sequence[int] = (4, 4, 4),
        keep_ratio: Optional[Sequence[float]] = None,
        merge_r: int = 0,
        seed: int = 0,
        **timesformer_kwargs,
    ) -> None:
        super().__init__(**timesformer_kwargs)
        if method not in METHODS:
            raise ValueError(f"method {method!r} is not one of {METHODS}")
        if self.attention_type not in SUPPORTED_ATTENTION:
            raise ValueError(f"token-reduction baselines support attention {SUPPORTED_ATTENTION}, "
                             f"not {self.attention_type!r}")
        groups = [int(g) for g in groups]
        if not groups or any(g <= 0 for g in groups) or sum(groups) != self.depth:
            raise ValueError(f"groups {groups} must be positive block counts summing to depth {self.depth}")
        ratios = [float(r) for r in (keep_ratio if keep_ratio is not None else [1.0] * len(groups))]
        if len(ratios) != len(groups) or any(not 0.0 < r <= 1.0 for r in ratios):
            raise ValueError(f"keep_ratio needs one ratio in (0, 1] per group ({len(groups)}), got {ratios}")
        if int(merge_r) < 0:
            raise ValueError(f"merge_r must be >= 0, got {merge_r}")
        if method == "tome" and self.attention_type != "divided_space_time":
            raise ValueError("the ToMe baseline merges per frame: it needs divided_space_time attention")
        self.method = method
        self.groups = groups
        self.keep_ratio = ratios
        self.merge_r = int(merge_r)
        self.seed = int(seed)
        self._gen = torch.Generator().manual_seed(self.seed)

    def reseed(self, seed: Optional[int] = None) -> None:
        """Restart the random method's generator (same seed, same draws)."""
        self.seed = self.seed if seed is None else int(seed)
        self._gen = torch.Generator().manual_seed(self.seed)

    def describe(self) -> str:
        if self.method == "tome":
            return f"tome r={self.merge_r} per frame per block"
        return f"{self.method} keep_ratio={self.keep_ratio} per group {self.groups}"

    # ------------------------------------------------------------------ scores
    def _probe_qkv(self, x: torch.Tensor) -> torch.Tensor:
        """Block 0's spatial qkv on packed rows (the EViT score before the first group)."""
        blk = self.blocks[0]
        return blk.attn.qkv(blk.norm1(x))

    def _scores(self, g: int, x: torch.Tensor, layout: PackedLayout, captured: Optional[torch.Tensor]) -> torch.Tensor:
        """(B, N) score of every token (higher = keep) for the decision in front of group g."""
        if self.method == "random":
            # drawn on the cpu generator (same draws on any device); fvcore sees one cheap aten::rand
            u = torch.rand(layout.keep.shape, generator=self._gen)
            return u.to(device=x.device, dtype=x.dtype)
        qkv = captured if captured is not None else self._probe_qkv(x)
        attn = self.blocks[0].attn  # every block has the same head count and scale
        return _to_grid(cls_attention(qkv, _cls_groups(layout, self.attention_type), attn.num_heads, attn.scale),
                        layout)

    # ------------------------------------------------------------------ forward
    returns_decisions = True  # forward(..., return_decisions=True) -> (logits, ReductionDecisions)

    def forward(self, x: torch.Tensor, policy: Optional[Budget] = None,
                return_decisions: bool = False) -> Union[torch.Tensor, Tuple[torch.Tensor, ReductionDecisions]]:
        """Clip (B, C, T, H, W) -> logits (B, K), or ``(logits, ReductionDecisions)`` with ``return_decisions``.
        ``policy``: the budget of this forward (None: the model's ``keep_ratio`` / ``merge_r``)."""
        policy = policy or Budget()
        ratios = list(policy.keep_ratio) if policy.keep_ratio is not None else self.keep_ratio
        if len(ratios) != len(self.groups):
            raise ValueError(f"keep_ratio needs one ratio per group ({len(self.groups)}), got {ratios}")
        merge_r = self.merge_r if policy.merge_r is None else int(policy.merge_r)
        tokens, grid = self.embed(x)
        B, N = tokens.shape[0], grid.num_patches
        alive = torch.ones(B, N, dtype=torch.bool, device=tokens.device)
        layout = PackedLayout(alive, grid.T, grid.H, grid.W)
        packed = layout.pack(tokens)
        keeps: List[torch.Tensor] = []
        if self.method == "tome":
            packed, rates = self._run_tome(packed, layout, merge_r, keeps)
        else:
            packed, rates = self._run_groups(packed, layout, ratios, keeps)
        logits = self.forward_head(packed[:B].unsqueeze(1), grid)
        if not return_decisions:
            return logits
        return logits, ReductionDecisions(keeps, torch.stack(rates, 1).detach())

    def _run_groups(self, x: torch.Tensor, layout: PackedLayout, ratios: Sequence[float],
                    keeps: List[torch.Tensor]) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """random / evit: one top-k decision in front of every group, then the group's blocks, packed."""
        N = layout.keep.shape[1]
        captured: List[torch.Tensor] = []
        rates = []
        blk = 0
        for g, n_blocks in enumerate(self.groups):
            alive = layout.keep
            if ratios[g] < 1.0:
                scores = self._scores(g, x, layout, captured[-1] if captured else None)
                keep = topk_keep(scores, alive, ratios[g])
                if not torch.equal(keep, alive):
                    x, layout = layout.shrink(x, keep)
            rates.append(layout.keep.sum(1).to(x.dtype) / N)
            keeps.append(layout.keep)
            captured.clear()
            # EViT needs the CLS attention of this group's last block for the next decision.
            need = self.method == "evit" and g + 1 < len(self.groups) and ratios[g + 1] < 1.0
            for i, block in enumerate(self.blocks[blk: blk + n_blocks]):
                hook = None
                if need and i == n_blocks - 1:
                    hook = block.attn.qkv.register_forward_hook(lambda m, inp, out: captured.append(out))
                try:
                    x = packed_block_forward(block, x, layout, self.attention_type)
                finally:
                    if hook is not None:
                        hook.remove()
            blk += n_blocks
        return x, rates

    def _run_tome(self, x: torch.Tensor, layout: PackedLayout, merge_r: int,
                  keeps: List[torch.Tensor]) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """tome: per-frame bipartite merging in front of every block; sizes carried as an extra column, their
        logs passed to every block as the key bias (proportional attention) while merging is on."""
        N = layout.keep.shape[1]
        D = x.shape[1]
        size = x.new_ones(x.shape[0], 1)
        rates = []
        keys: Optional[torch.Tensor] = None
        heads = self.blocks[0].attn.num_heads
        for block in self.blocks:
            if merge_r > 0:
                metric = x if keys is None else keys
                src, dst = bipartite_merge_plan(metric, layout.spatial_groups(), merge_r)
                if src.numel():
                    x, size = merge_rows(x, size, src, dst)
                    keep = layout.keep.clone()
                    keep[layout.patch_batch[src - layout.batch], layout.patch_index[src - layout.batch]] = False
                    both, layout = layout.shrink(torch.cat([x, size], 1), keep)
                    x, size = both[:, :D], both[:, D:]
            rates.append(layout.keep.sum(1).to(x.dtype) / N)
            keeps.append(layout.keep)
            key_bias = size[:, 0].log() if merge_r > 0 else None
            captured: List[torch.Tensor] = []
            hook = block.attn.qkv.register_forward_hook(lambda m, inp, out: captured.append(out))
            try:
                x = packed_block_forward(block, x, layout, self.attention_type, key_bias)
            finally:
                hook.remove()
            k = captured[-1][:, D: 2 * D]
            keys = k.reshape(k.shape[0], heads, D // heads).mean(1)
        return x, rates


def build_baseline(method: str, dense: TimeSformer, groups: Sequence[int], keep_ratio: Optional[Sequence[float]] = None,
                   merge_r: int = 0, seed: int = 0, timesformer_kwargs: Optional[dict] = None) -> TokenReductionTimeSformer:
    """A baseline model carrying ``dense``'s weights (strict load: baselines add no parameter).

    ``timesformer_kwargs``: the dense model's constructor arguments (``build.timesformer_kwargs(cfg)``);
    without them the architecture is read from the dense model (``dense.arch()``).
    """
    kw = dict(timesformer_kwargs) if timesformer_kwargs is not None else _kwargs_from_model(dense)
    model = TokenReductionTimeSformer(method=method, groups=groups, keep_ratio=keep_ratio, merge_r=merge_r, seed=seed,
                                      **kw)
    model.load_state_dict(dense.state_dict(), strict=True)
    return model.to(next(dense.parameters()).device).eval()


def _kwargs_from_model(dense: TimeSformer) -> dict:
    return dict(
        img_size=dense.img_size, patch_size=dense.patch_size, in_chans=dense.in_chans,
        num_classes=dense.num_classes, embed_dim=dense.embed_dim, depth=dense.depth, num_heads=dense.num_heads,
        mlp_ratio=dense.blocks[0].mlp.fc1.out_features / dense.embed_dim, num_frames=dense.num_frames,
        attention_type=dense.attention_type, drop_path_rate=0.0, stem=dense.stem, stem_channels=dense.stem_channels,
    )
