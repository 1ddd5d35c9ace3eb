"""The method benchmark's variants: every method at every budget, and the budget arithmetic that matches them.

Keep ratios r: random, EViT and IA-RED² keep_ratio keep the top r of the alive tokens in front of every group,
hierarchically (``ratio_token_fraction``); ToMe gets, per r, the merge count per frame per block whose token
fraction is closest to theirs (``tome_r_for_fraction``); IA-RED² thresholded policies run at the given thresholds.
"""
from __future__ import annotations

import math
from typing import List, Optional, Sequence

from torch import nn

from video_iared.baselines.token_reduction import Budget, build_baseline
from video_iared.benchmarks.variant import Variant
from video_iared.pruning.decisions import PolicyBound, PruningPolicy, Threshold

ALL_METHODS = ("dense", "random", "evit", "tome", "iared_ratio", "iared_threshold")
LABELS = {"dense": "dense", "random": "random drop", "evit": "EViT top-k", "tome": "ToMe (per frame)",
          "iared_ratio": "IA-RED² keep_ratio", "iared_threshold": "IA-RED² threshold"}


def ratio_token_fraction(groups: Sequence[int], ratio: float) -> float:
    """Mean fraction of patch tokens per block when every group keeps ``ratio`` of the alive tokens."""
    alive, total = 1.0, 0.0
    for n in groups:
        alive *= ratio
        total += alive * n
    return total / sum(groups)


def tome_token_counts(tokens_per_frame: int, depth: int, r: int) -> List[int]:
    """Patches per frame at every block when ToMe merges min(r, |A|) of them in front of every block."""
    n, out = tokens_per_frame, []
    for _ in range(depth):
        if n >= 2:
            n -= min(r, (n + 1) // 2)
        out.append(n)
    return out


def tome_r_for_fraction(tokens_per_frame: int, depth: int, fraction: float) -> int:
    """The merge count r whose mean token fraction is closest to ``fraction`` (ties: the smaller r)."""
    best, best_err = 0, float("inf")
    for r in range(0, tokens_per_frame + 1):
        f = sum(tome_token_counts(tokens_per_frame, depth, r)) / (depth * tokens_per_frame)
        if abs(f - fraction) < best_err - 1e-12:
            best, best_err = r, abs(f - fraction)
    return best


def build_variants(dense: nn.Module, iared: Optional[nn.Module], methods: Sequence[str], groups: Sequence[int],
                   keep_ratios: Sequence[float], thresholds: Sequence[Threshold], tome_rs: Optional[Sequence[int]],
                   timesformer_kwargs: dict, seed: int = 0, calibrated: Optional[Threshold] = None) -> List[Variant]:
    """The variants to measure. ``dense`` carries the dense weights (random / EViT / ToMe run on it as is);
    ``iared`` (an ``IAREDTimeSformer`` with trained interpreters, or None) serves both IA-RED² methods.
    ``calibrated``: the threshold the IA-RED² checkpoint was calibrated to (its row is labelled so); a threshold
    may be a tuple of one per group (IARED.CALIBRATION_PER_GROUP)."""
    unknown = [m for m in methods if m not in ALL_METHODS]
    if unknown:
        raise ValueError(f"unknown methods {unknown}; choose from {ALL_METHODS}")
    depth, G = sum(groups), len(groups)
    out: List[Variant] = []
    if "dense" in methods:
        out.append(Variant.at_budget("dense", "", dense, 1.0))
    for method in ("random", "evit"):
        if method in methods:
            base = build_baseline(method, dense, groups, [1.0] * G, seed=seed, timesformer_kwargs=timesformer_kwargs)
            for r in keep_ratios:
                row = PolicyBound(base, Budget(keep_ratio=(float(r),) * G))
                out.append(Variant.at_budget(method, f"keep {r:g}", row, ratio_token_fraction(groups, r)))
    if "tome" in methods:
        base = build_baseline("tome", dense, groups, seed=seed, timesformer_kwargs=timesformer_kwargs)
        S = (base.img_size // base.patch_size) ** 2
        rs = list(tome_rs) if tome_rs else [tome_r_for_fraction(S, depth, ratio_token_fraction(groups, r))
                                            for r in keep_ratios]
        for r in rs:
            out.append(Variant.at_budget("tome", f"r {r}", PolicyBound(base, Budget(merge_r=int(r))),
                                         sum(tome_token_counts(S, depth, int(r))) / (depth * S)))
    if iared is not None:
        if "iared_ratio" in methods:
            for r in keep_ratios:
                policy = PruningPolicy.uniform("keep_ratio", G, iared.threshold, (float(r),) * G)
                out.append(Variant.at_budget("iared_ratio", f"keep {r:g}", PolicyBound(iared, policy),
                                             ratio_token_fraction(groups, r)))
        if "iared_threshold" in methods:
            for t in thresholds:
                # the fraction depends on the clips: filled in from the measured keep rates
                name = f"thr {t:g}" if not isinstance(t, tuple) else "thr " + "/".join(f"{v:.4g}" for v in t)
                label = name + (" (calibrated)" if calibrated is not None and t == calibrated else "")
                policy = PruningPolicy.uniform("threshold", G, t, iared.keep_ratio)
                out.append(Variant.at_budget("iared_threshold", label, PolicyBound(iared, policy), math.nan))
    return out


def token_fraction_from_rates(rates: Sequence[float], groups: Sequence[int]) -> float:
    """Measured keep rate after each group (G,) -> mean fraction of the patch tokens per block."""
    return sum(r * n for r, n in zip(rates, groups)) / sum(groups)
