"""The IA-RED² TimeSformer: interpreters in front of block groups, hierarchical space-time token pruning.

``IAREDTimeSformer`` subclasses the dense ``TimeSformer`` (same parameter names, plus ``interpreters.N.*``),
so a dense checkpoint loads into it with only the interpreter keys missing. Before group g runs, its
interpreter scores the still-alive patch tokens; the group's policy decides which survive; dropped tokens
are gone for all later groups. The CLS token is always kept.

Execution (``execution``): "packed" runs every block on the kept tokens only (``packed_block``); "masked"
runs the full grid with the dropped tokens masked out (``masked``; the reference path). Both give the same
logits for the same decisions. ``attention_backend`` (packed only; ``varlen.resolve_backend``): "bucketed"
runs each attention on buckets of equal-length groups, "varlen" as one variable-length call per branch over the
batch with the layout built on the device: no host read per forward in keep_ratio mode (the kept counts follow
from the ratios: ``torch.nonzero_static``), one per interpreting group otherwise (the group's kept count);
"auto": varlen on CUDA, ``varlen.AUTO_CPU_BACKEND`` on the CPU.

Policies per group (``policies()``): "sample" (Bernoulli, training), "threshold" (p > threshold),
"keep_ratio" (top-k budget), "all" (keep every alive token: the groups after the current curriculum step).

After each forward the model holds, for the clips of that batch:
``last_keep_rates`` (B, G): kept patches / all patches after each group's decision;
``last_log_prob`` (B,): sum of log pi over the sampled decisions (0 where no group sampled);
``last_probs``: per group, the keep probabilities (B, N) in (h w t) order (detached; 0 for dead tokens);
``last_keep_masks`` (B, G, N) bool: the tokens alive after each group's decision, (h w t) order;
``last_interpreted`` (G,) bool: whether each group's interpreter ran (``pruning.exact_cost`` reads both).
"""
from __future__ import annotations

from typing import Callable, List, Optional, Sequence

import torch
from torch import nn

from video_iared.models.timesformer import TimeSformer
from video_iared.models.token_grid import TokenGrid
from video_iared.pruning.interpreter import Interpreter
from video_iared.pruning.masked import masked_block_forward
from video_iared.pruning.packed_block import packed_block_forward
from video_iared.pruning.policy import POLICIES, decide, log_prob
from video_iared.pruning.token_ops import PackedLayout
from video_iared.pruning.varlen import ATTENTION_BACKENDS, resolve_backend

EXECUTIONS = ("packed", "masked")
MODES = ("threshold", "keep_ratio")


class IAREDTimeSformer(TimeSformer):
    """TimeSformer with an interpreter in front of every block group; input (B, C, T, H, W) -> (B, K)."""

    def __init__(
        self,
        groups: Sequence[int] = (4, 4, 4),
        interp_heads: int = 6,
        interp_head_dim: int = 64,
        threshold: float = 0.5,
        mode: str = "threshold",
        keep_ratio: Optional[Sequence[float]] = None,
        execution: str = "packed",
        init_keep_prob: float = 0.5,
        attention_backend: str = "auto",
        **timesformer_kwargs,
    ) -> None:
        super().__init__(**timesformer_kwargs)
        groups = [int(g) for g in groups]
        if not groups or any(g <= 0 for g in groups) or sum(groups) != self.depth:
            raise ValueError(f"groups {groups} must be positive block counts summing to depth {self.depth}")
        if mode not in MODES:
            raise ValueError(f"mode {mode!r} is not one of {MODES}")
        if execution not in EXECUTIONS:
            raise ValueError(f"execution {execution!r} is not one of {EXECUTIONS}")
        self.groups = groups
        self.threshold = float(threshold)
        self.mode = mode
        self.keep_ratio = [float(r) for r in (keep_ratio if keep_ratio is not None else [1.0] * len(groups))]
        if len(self.keep_ratio) != len(groups):
            raise ValueError(f"keep_ratio needs one ratio per group ({len(groups)}), got {self.keep_ratio}")
        if attention_backend not in ATTENTION_BACKENDS:
            raise ValueError(f"attention_backend {attention_backend!r} is not one of {ATTENTION_BACKENDS}")
        self.execution = execution
        self.attention_backend = attention_backend
        self.interpreters = nn.ModuleList(
            Interpreter(self.embed_dim, interp_heads, interp_head_dim, init_keep_prob=init_keep_prob) for _ in groups
        )
        # Curriculum state: groups >= active_groups keep every alive token. ``group_policy`` overrides the
        # per-group policies entirely (e.g. earlier groups thresholded while the current one samples).
        self.active_groups = len(groups)
        self.group_policy: Optional[List[str]] = None
        self.last_keep_rates: Optional[torch.Tensor] = None
        self.last_log_prob: Optional[torch.Tensor] = None
        self.last_probs: List[Optional[torch.Tensor]] = []
        self.last_keep_masks: Optional[torch.Tensor] = None
        self.last_interpreted: Optional[torch.Tensor] = None

    # ------------------------------------------------------------------ policies
    @property
    def num_groups(self) -> int:
        return len(self.groups)

    def policies(self) -> List[str]:
        """The policy of every group for the next forward (see the module docstring)."""
        if self.group_policy is not None:
            if len(self.group_policy) != self.num_groups or any(p not in POLICIES for p in self.group_policy):
                raise ValueError(f"group_policy {self.group_policy} needs {self.num_groups} entries of {POLICIES}")
            return list(self.group_policy)
        act = "sample" if self.training else self.mode
        return [act if g < self.active_groups else "all" for g in range(self.num_groups)]

    def arch(self):
        a = dict(super().arch())
        a["iared_groups"] = list(self.groups)
        return a

    # ------------------------------------------------------------------ layout helpers
    def _units(self, grid: TokenGrid):
        """(grid of one attention unit, attention type used on the units, units per clip).

        Space-only runs every frame as an image with its own CLS: the units are the B*T frames, each a
        T=1 grid, and its block is a joint attention over the frame.
        """
        if self.attention_type == "space_only":
            return TokenGrid(1, grid.H, grid.W), "joint_space_time", grid.T
        return grid, self.attention_type, 1

    def _keep_to_units(self, keep: torch.Tensor, grid: TokenGrid) -> torch.Tensor:
        """Clip keep (B, N) in (h w t) order -> unit keep (units, N_u)."""
        if self.attention_type != "space_only":
            return keep
        B = keep.shape[0]
        return keep.reshape(B, grid.spatial, grid.T).transpose(1, 2).reshape(B * grid.T, grid.spatial)

    def _units_to_clip(self, t: torch.Tensor, grid: TokenGrid) -> torch.Tensor:
        """Unit tensor (units, N_u) -> clip tensor (B, N) in (h w t) order."""
        if self.attention_type != "space_only":
            return t
        B = t.shape[0] // grid.T
        return t.reshape(B, grid.T, grid.spatial).transpose(1, 2).reshape(B, grid.num_patches)

    # ------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor, keep_masks: Optional[Sequence[torch.Tensor]] = None) -> torch.Tensor:
        """Clip (B, C, T, H, W) -> logits (B, K).

        ``keep_masks`` (optional, tests and analysis): one (B, T*H*W) bool mask per group, in (h w t) order,
        used instead of the interpreters' decisions (intersected with the alive tokens).
        """
        tokens, grid = self.embed(x)
        B = x.shape[0]
        policies = self.policies()
        decide_fn: Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor]
        if keep_masks is not None:
            if len(keep_masks) != self.num_groups:
                raise ValueError(f"keep_masks needs one mask per group ({self.num_groups}), got {len(keep_masks)}")
            decide_fn = lambda g, probs, alive: self._keep_to_units(keep_masks[g].bool(), grid) & alive  # noqa: E731
        else:
            decide_fn = lambda g, probs, alive: decide(  # noqa: E731
                probs, alive, policies[g], self.threshold, self.keep_ratio[g]
            )
        unit_grid, unit_attn, per_clip = self._units(grid)
        runner = self._run_packed if self.execution == "packed" else self._run_masked
        cls, keep_rates, logp, probs, keeps = runner(tokens, unit_grid, unit_attn, policies, decide_fn,
                                                     explicit=keep_masks is not None)
        # per-unit statistics -> per clip
        self.last_keep_rates = keep_rates.reshape(B, per_clip, -1).mean(1).detach()
        self.last_log_prob = logp.reshape(B, per_clip).sum(1)
        self.last_probs = [None if p is None else self._units_to_clip(p.detach(), grid) for p in probs]
        self.last_keep_masks = torch.stack([self._units_to_clip(k, grid) for k in keeps], 1)
        self.last_interpreted = torch.tensor([p is not None for p in probs], dtype=torch.bool)
        return self.forward_head(cls.unsqueeze(1), grid)

    def _run_packed(self, tokens, grid, attn_type, policies, decide_fn, explicit):
        units, N = tokens.shape[0], grid.num_patches
        backend = resolve_backend(self.attention_backend, tokens.device)
        varlen = backend == "varlen"
        # varlen: kept patches per unit when the same in every unit and known without a read (None: unknown)
        known: Optional[int] = N
        alive = torch.ones(units, N, dtype=torch.bool, device=tokens.device)
        layout = PackedLayout(alive, grid.T, grid.H, grid.W, units * N if varlen else None)
        x = layout.pack(tokens)
        rates, probs_all, keeps = [], [], []
        logp = tokens.new_zeros(units)
        blk = 0
        for g, n_blocks in enumerate(self.groups):
            compute = explicit or policies[g] != "all"  # an inactive group costs nothing
            probs = None
            if compute:  # scores of the packed (alive) rows, scattered onto the (units, N) grid
                p = self.interpreters[g].forward_packed(x, layout)
                probs = p.new_zeros(units, N)
                probs[layout.patch_batch, layout.patch_index] = p  # autograd flows into p
            keep = decide_fn(g, probs, alive) if compute else alive.clone()
            if compute and not explicit and policies[g] == "sample":
                logp = logp + log_prob(probs, keep, alive)
            if varlen and compute:
                if not explicit and policies[g] == "keep_ratio" and known is not None:
                    known = round(known * self.keep_ratio[g])  # topk_keep's round(alive * ratio), in float64
                    total = units * known
                else:  # threshold / sample / explicit masks: the group's one host read
                    known, total = None, int(keep.sum())
                x, layout = layout.shrink(x, keep, total)
            elif not varlen and not torch.equal(keep, alive):
                x, layout = layout.shrink(x, keep)
            alive = keep
            rates.append(keep.sum(1).to(tokens.dtype) / N)
            probs_all.append(probs)
            keeps.append(keep)
            for block in self.blocks[blk: blk + n_blocks]:
                x = packed_block_forward(block, x, layout, attn_type, backend=backend)
            blk += n_blocks
        return x[:units], torch.stack(rates, 1), logp, probs_all, keeps

    def _run_masked(self, tokens, grid, attn_type, policies, decide_fn, explicit):
        units, N = tokens.shape[0], grid.num_patches
        alive = torch.ones(units, N, dtype=torch.bool, device=tokens.device)
        rates, probs_all, keeps = [], [], []
        logp = tokens.new_zeros(units)
        blk = 0
        for g, n_blocks in enumerate(self.groups):
            compute = explicit or policies[g] != "all"
            probs = self.interpreters[g](tokens) * alive.to(tokens.dtype) if compute else None
            keep = decide_fn(g, probs, alive) if compute else alive.clone()
            if compute and not explicit and policies[g] == "sample":
                logp = logp + log_prob(probs, keep, alive)
            alive = keep
            ones = torch.ones(units, 1, dtype=tokens.dtype, device=tokens.device)
            tokens = tokens * torch.cat([ones, keep.to(tokens.dtype)], 1).unsqueeze(-1)
            rates.append(keep.sum(1).to(tokens.dtype) / N)
            probs_all.append(probs)
            keeps.append(keep)
            for block in self.blocks[blk: blk + n_blocks]:
                tokens = masked_block_forward(block, tokens, keep, grid, attn_type)
            blk += n_blocks
        return tokens[:, 0], torch.stack(rates, 1), logp, probs_all, keeps
