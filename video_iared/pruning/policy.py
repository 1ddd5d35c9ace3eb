"""Keep/drop decisions from keep probabilities: Bernoulli sampling, threshold, top-k budget; log-probs.

All functions work on dense (B, N) tensors over the patch grid; ``alive`` (B, N) bool marks the tokens
still kept by the previous groups (a dropped token stays dropped: its probability is multiplied by 0 and
it takes no action, so it contributes nothing to the log-probability).
"""
from __future__ import annotations

from typing import Optional

import torch

POLICIES = ("sample", "threshold", "keep_ratio", "all")
_EPS = 1e-6


def sample_keep(probs: torch.Tensor, alive: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Training: keep ~ Bernoulli(p) for every alive token. (B, N) -> bool (B, N)."""
    u = torch.rand(probs.shape, generator=generator, device=probs.device, dtype=probs.dtype)
    return (u < probs.detach()) & alive


def threshold_keep(probs: torch.Tensor, alive: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Inference: keep when p > threshold. (B, N) -> bool (B, N)."""
    return (probs.detach() > threshold) & alive


def topk_keep(probs: torch.Tensor, alive: torch.Tensor, ratio: float) -> torch.Tensor:
    """Fixed budget: keep the round(ratio * alive_b) most probable alive tokens of each clip b.

    With the same alive count in every clip (true at the first group, and then at every group in this
    mode), every clip keeps the same number of tokens: predictable latency, matched-GFLOPs comparisons.
    """
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"keep ratio must be in (0, 1], got {ratio}")
    score = probs.detach().masked_fill(~alive, float("-inf"))
    k = torch.round(alive.sum(1).to(torch.float64) * ratio).long()  # (B,)
    order = torch.argsort(score, dim=1, descending=True, stable=True)
    rank = torch.zeros_like(order)
    rank.scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand(order.shape))
    return (rank < k.unsqueeze(1)) & alive


def decide(probs: torch.Tensor, alive: torch.Tensor, policy: str, threshold: float = 0.5, ratio: float = 1.0,
           generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """One of :data:`POLICIES` -> keep (B, N) bool; "all" keeps every alive token."""
    if policy == "sample":
        return sample_keep(probs, alive, generator)
    if policy == "threshold":
        return threshold_keep(probs, alive, threshold)
    if policy == "keep_ratio":
        return topk_keep(probs, alive, ratio)
    if policy == "all":
        return alive.clone()
    raise ValueError(f"unknown policy {policy!r}; expected one of {POLICIES}")


def log_prob(probs: torch.Tensor, keep: torch.Tensor, alive: torch.Tensor) -> torch.Tensor:
    """log pi(actions) summed over the alive tokens of each clip: (B, N) -> (B,).

    ``sum_j [a_j log p_j + (1 - a_j) log(1 - p_j)]`` over alive j; differentiable w.r.t. ``probs``.
    """
    p = probs.clamp(_EPS, 1.0 - _EPS)
    a = keep.to(p.dtype)
    lp = a * torch.log(p) + (1.0 - a) * torch.log1p(-p)
    return (lp * alive.to(p.dtype)).sum(1)
