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

Steering and reporting (``pruning.decisions``): ``forward(x, policy=None, keep_masks=None,
return_decisions=False)``. ``policy`` (a ``PruningPolicy``: per group "sample" (Bernoulli, training),
"threshold" (p > threshold), "keep_ratio" (top-k budget) or "all" (keep every alive token: no interpreter run),
the threshold, the ratios, the execution) defaults to the model's operating point, ``default_policy()``: every
group samples in train mode and uses ``mode`` in eval mode. ``set_operating_point`` changes that operating point
(the calibrated threshold). With ``return_decisions`` the forward returns ``(logits, PruningDecisions)``: keep
masks, keep rates, probabilities, which interpreters ran, the log-probability of the sampled decisions.
The model keeps no per-forward state.
"""
from __future__ import annotations

from typing import Callable, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from video_iared.models.timesformer import TimeSformer
from video_iared.models.token_grid import TokenGrid
from video_iared.pruning.interpreter import Interpreter
from video_iared.pruning.masked import masked_block_forward
from video_iared.pruning.packed_block import packed_block_forward
from video_iared.pruning.decisions import EXECUTIONS, PruningDecisions, PruningPolicy, Threshold, as_threshold
from video_iared.pruning.policy import decide, log_prob
from video_iared.pruning.token_ops import PackedLayout
from video_iared.pruning.varlen import ATTENTION_BACKENDS, resolve_backend

MODES = ("threshold", "keep_ratio")


class IAREDTimeSformer(TimeSformer):
    """TimeSformer with an interpreter in front of every block group; input (B, C, T, H, W) -> (B, K)."""

    returns_decisions = True  # forward(..., return_decisions=True) -> (logits, PruningDecisions)

    def __init__(
        self,
        groups: Sequence[int] = (4, 4, 4),
        interp_heads: int = 6,
        interp_head_dim: int = 64,
        threshold: Union[float, Sequence[float]] = 0.5,
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
        self.mode, self.keep_ratio = mode, [1.0] * len(groups)
        self.threshold: Threshold = 0.5
        self.set_operating_point(threshold=threshold, keep_ratio=keep_ratio)
        if attention_backend not in ATTENTION_BACKENDS:
            raise ValueError(f"attention_backend {attention_backend!r} is not one of {ATTENTION_BACKENDS}")
        self.execution = execution
        self.attention_backend = attention_backend
        self.interpreters = nn.ModuleList(
            Interpreter(self.embed_dim, interp_heads, interp_head_dim, init_keep_prob=init_keep_prob) for _ in groups
        )

    # ------------------------------------------------------------------ policies
    @property
    def num_groups(self) -> int:
        return len(self.groups)

    def set_operating_point(self, threshold: Optional[Union[float, Sequence[float]]] = None, mode: Optional[str] = None,
                            keep_ratio: Optional[Sequence[float]] = None) -> None:
        """The inference decisions of ``default_policy`` (e.g. the threshold calibrated to a cost budget: one for
        every group, or a sequence of one per group)."""
        if mode is not None and mode not in MODES:
            raise ValueError(f"mode {mode!r} is not one of {MODES}")
        ratios = self.keep_ratio if keep_ratio is None else [float(r) for r in keep_ratio]
        if len(ratios) != self.num_groups:
            raise ValueError(f"keep_ratio needs one ratio per group ({self.num_groups}), got {ratios}")
        if threshold is not None:
            threshold = as_threshold(threshold)
            if isinstance(threshold, tuple) and len(threshold) != self.num_groups:
                raise ValueError(f"threshold needs one value per group ({self.num_groups}), got {list(threshold)}")
            self.threshold = threshold
        self.mode = self.mode if mode is None else mode
        self.keep_ratio = ratios

    def policy_for(self, groups: Sequence[str]) -> PruningPolicy:
        """``groups`` (one policy name per group) with this model's threshold and keep ratios."""
        return PruningPolicy(tuple(groups), self.threshold, tuple(self.keep_ratio))

    def default_policy(self) -> PruningPolicy:
        """The policy of a forward given none: every group samples in train mode, uses ``mode`` in eval mode."""
        return self.policy_for(["sample" if self.training else self.mode] * self.num_groups)

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
    def forward(self, x: torch.Tensor, policy: Optional[PruningPolicy] = None,
                keep_masks: Optional[Sequence[torch.Tensor]] = None,
                return_decisions: bool = False) -> Union[torch.Tensor, Tuple[torch.Tensor, PruningDecisions]]:
        """Clip (B, C, T, H, W) -> logits (B, K), or ``(logits, PruningDecisions)`` with ``return_decisions``.

        ``policy``: see the module docstring (None: ``default_policy()``). ``keep_masks`` (optional, tests and
        analysis): one (B, T*H*W) bool mask per group, in (h w t) order, used instead of the interpreters'
        decisions (intersected with the alive tokens; every interpreter runs).
        """
        policy = self.default_policy() if policy is None else policy
        if len(policy.groups) != self.num_groups:
            raise ValueError(f"policy {list(policy.groups)} needs one entry per group ({self.num_groups})")
        tokens, grid = self.embed(x)
        B = x.shape[0]
        decide_fn: Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor]
        if keep_masks is not None:
            if len(keep_masks) != self.num_groups:
                raise ValueError(f"keep_masks needs one mask per group ({self.num_groups}), got {len(keep_masks)}")
            decide_fn = lambda g, probs, alive: self._keep_to_units(keep_masks[g].bool(), grid) & alive  # noqa: E731
        else:
            decide_fn = lambda g, probs, alive: decide(  # noqa: E731
                probs, alive, policy.groups[g], policy.threshold_at(g), policy.keep_ratio[g]
            )
        unit_grid, unit_attn, per_clip = self._units(grid)
        runner = self._run_packed if (policy.execution or self.execution) == "packed" else self._run_masked
        cls, keep_rates, logp, probs, keeps = runner(tokens, unit_grid, unit_attn, policy, decide_fn,
                                                     explicit=keep_masks is not None)
        logits = self.forward_head(cls.unsqueeze(1), grid)
        if not return_decisions:
            return logits
        # per-unit statistics -> per clip
        return logits, PruningDecisions(
            keep_masks=torch.stack([self._units_to_clip(k, grid) for k in keeps], 1),
            keep_rates=keep_rates.reshape(B, per_clip, -1).mean(1).detach(),
            probs=[None if p is None else self._units_to_clip(p.detach(), grid) for p in probs],
            interpreted=torch.tensor([p is not None for p in probs], dtype=torch.bool),
            log_prob=logp.reshape(B, per_clip).sum(1),
            policy=policy,
        )

    def _run_packed(self, tokens, grid, attn_type, policy: PruningPolicy, decide_fn, explicit):
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
            compute = explicit or policy.groups[g] != "all"  # an inactive group costs nothing
            probs = None
            if compute:  # scores of the packed (alive) rows, scattered onto the (units, N) grid
                p = self.interpreters[g].forward_packed(x, layout)
                probs = p.new_zeros(units, N)
                probs[layout.patch_batch, layout.patch_index] = p  # autograd flows into p
            keep = decide_fn(g, probs, alive) if compute else alive.clone()
            if compute and not explicit and policy.groups[g] == "sample":
                logp = logp + log_prob(probs, keep, alive)
            if varlen and compute:
                if not explicit and policy.groups[g] == "keep_ratio" and known is not None:
                    known = round(known * policy.keep_ratio[g])  # topk_keep's round(alive * ratio), in float64
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

    def _run_masked(self, tokens, grid, attn_type, policy: PruningPolicy, decide_fn, explicit):
        units, N = tokens.shape[0], grid.num_patches
        alive = torch.ones(units, N, dtype=torch.bool, device=tokens.device)
        rates, probs_all, keeps = [], [], []
        logp = tokens.new_zeros(units)
        blk = 0
        for g, n_blocks in enumerate(self.groups):
            compute = explicit or policy.groups[g] != "all"
            probs = self.interpreters[g](tokens) * alive.to(tokens.dtype) if compute else None
            keep = decide_fn(g, probs, alive) if compute else alive.clone()
            if compute and not explicit and policy.groups[g] == "sample":
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
