"""The IA-RED² interpreters' own maps: what the pruned forward decided per group (keep probabilities, kept sets),
and the hierarchical ``interpreter`` score built from them (see ``explain``'s module docstring)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import List

import torch
from torch import nn

from video_iared.interpret.token_layout import grid_of, tokens_to_map


@dataclass
class InterpreterOutput:
    """What the IA-RED² interpreters decided on a batch of clips (threshold / keep_ratio inference policy).

    logits (B, K): the pruned model's logits; probs (B, G, T, H, W): each group's keep probability (0 for
    tokens dead before the group, and for groups whose policy is "all", which compute none); kept (B, G, T,
    H, W) bool: alive after group g's decision (hierarchical: kept[:, g] implies kept[:, g - 1]);
    scored (G,) bool: which groups ran their interpreter.
    """

    logits: torch.Tensor
    probs: torch.Tensor
    kept: torch.Tensor
    scored: List[bool]

    @property
    def num_groups(self) -> int:
        return int(self.kept.shape[1])

    def depth(self) -> torch.Tensor:
        """Groups survived (B, T, H, W) long: 0 = dropped by group 0, G = kept to the end."""
        return self.kept.long().sum(1)

    def hierarchical_score(self) -> torch.Tensor:
        """The ``interpreter`` map (B, T, H, W) in [0, 1], float64 (see the module docstring)."""
        G = self.num_groups
        scored = [g for g in range(G) if self.scored[g]]
        if not scored:
            raise ValueError("no interpreter group was active: nothing scored the tokens")
        alive_before = torch.cat([torch.ones_like(self.kept[:, :1]), self.kept[:, :-1]], 1)  # (B, G, ...)
        # float64: in float32, (g + p) / G with p just above the threshold can round onto the next depth
        probs = self.probs.double()
        score = torch.zeros_like(probs[:, 0])
        for g in scored:  # later groups overwrite: the last group that saw a token decides its score
            seen = alive_before[:, g]
            score = torch.where(seen, (g + probs[:, g]) / G, score)
        return score


@torch.no_grad()
def interpreter_maps(model: nn.Module, clips: torch.Tensor) -> InterpreterOutput:
    """Run the IA-RED² model's own (pruned) inference on clips (B, C, T, H, W); its maps per group, from the
    decisions the forward returns (keep probabilities, 0 for dead tokens, and kept sets): nothing of the model
    is modified."""
    if not hasattr(model, "interpreters"):
        raise TypeError(f"{type(model).__name__} has no interpreters: interpreter maps need an IA-RED² model")
    was_training = model.training
    model.eval()
    try:
        policy = model.default_policy()
        if not policy.deterministic:
            raise ValueError(f"interpreter maps need a deterministic policy, got {list(policy.groups)}")
        logits, decisions = model(clips, policy=policy, return_decisions=True)
    finally:
        model.train(was_training)
    grid = grid_of(model, clips)
    B, N = clips.shape[0], grid.num_patches
    probs = [torch.zeros(B, N, device=clips.device) if p is None else p.float() for p in decisions.probs]
    return InterpreterOutput(logits, torch.stack([tokens_to_map(p, grid) for p in probs], 1),
                             torch.stack([tokens_to_map(k, grid) for k in decisions.keep_masks.unbind(1)], 1),
                             [bool(r) for r in decisions.interpreted])
