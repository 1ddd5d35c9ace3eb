"""REINFORCE reward, baselines and policy loss of IA-RED² (BlockDrop's reward form).

``R = 1 - (kept / all)^2`` when the clip is classified correctly, ``R = -tau`` otherwise; the loss is
``-(R - b) * sum(log pi(actions))`` averaged over the batch, with the baseline b none / batch mean /
self-critical (the reward of the greedy, thresholded policy on the same clip).
"""
from __future__ import annotations

from typing import Optional

import torch

BASELINES = ("none", "mean", "greedy")


def compute_reward(correct: torch.Tensor, kept_fraction: torch.Tensor, tau: float) -> torch.Tensor:
    """correct (B,) bool, kept_fraction (B,) in [0, 1] -> rewards (B,) float."""
    kept_fraction = kept_fraction.to(torch.float32)
    return torch.where(correct.bool(), 1.0 - kept_fraction**2, torch.full_like(kept_fraction, -float(tau)))


def compute_baseline(rewards: torch.Tensor, kind: str, greedy_rewards: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The baseline b (B,) for ``kind`` in :data:`BASELINES`."""
    if kind == "none":
        return torch.zeros_like(rewards)
    if kind == "mean":
        return rewards.mean().expand_as(rewards)
    if kind == "greedy":
        if greedy_rewards is None:
            raise ValueError("the greedy (self-critical) baseline needs the greedy policy's rewards")
        return greedy_rewards.to(rewards.dtype)
    raise ValueError(f"unknown baseline {kind!r}; expected one of {BASELINES}")


def policy_loss(rewards: torch.Tensor, baseline: torch.Tensor, log_probs: torch.Tensor) -> torch.Tensor:
    """-(R - b) * log pi, averaged over the batch; gradients flow only through ``log_probs`` (B,)."""
    advantage = (rewards - baseline).detach()
    return -(advantage * log_probs).mean()


def kept_fraction(keep_rates: torch.Tensor, blocks_per_group) -> torch.Tensor:
    """Fraction of the patch-token block evaluations that run: sum_g keep_g * blocks_g / depth.

    keep_rates (B, G) (kept patches of group g / all patches) -> (B,). With one group this is kept / all;
    with several it is the compute fraction the reward should trade against accuracy.
    """
    w = torch.tensor(list(blocks_per_group), dtype=keep_rates.dtype, device=keep_rates.device)
    return (keep_rates * w).sum(1) / w.sum()
