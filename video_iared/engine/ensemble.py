"""Combining the per-view outputs of one video into one prediction, and choosing view subsets.

View ``v`` of a video is temporal clip ``v // crops``, spatial crop ``v % crops`` (the data contract).
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

import torch

ENSEMBLE_METHODS = ("mean_softmax", "sum_logits", "max")


def ensemble_views(view_logits: torch.Tensor, method: str = "mean_softmax") -> torch.Tensor:
    """Class probabilities of one video from its views' logits (V, K) -> (K,) (sums to 1).

    - ``mean_softmax``: the mean of the views' softmax probabilities (the default).
    - ``sum_logits``: the reference TimeSformer rule (sum of logits); reported as the softmax of the mean
      logits, which ranks classes exactly like the sum.
    - ``max``: per class, the largest probability any view gives it, renormalised to sum to 1 (same ranking).
    """
    if view_logits.ndim != 2 or view_logits.shape[0] == 0:
        raise ValueError(f"view_logits must be (V, K) with V >= 1, got {tuple(view_logits.shape)}")
    x = view_logits.float()
    if method == "mean_softmax":
        return x.softmax(dim=1).mean(dim=0)
    if method == "sum_logits":
        return x.mean(dim=0).softmax(dim=0)
    if method == "max":
        m = x.softmax(dim=1).amax(dim=0)
        return m / m.sum()
    raise ValueError(f"TEST.ENSEMBLE_METHOD: unknown method {method!r} (one of {list(ENSEMBLE_METHODS)})")


def spread(k: int, n: int) -> List[int]:
    """``k`` of ``n`` indices, evenly spread and centred (k=1 of 3 -> [1]; 2 of 4 -> [0, 2] ... [1, 3])."""
    if not 1 <= k <= n:
        raise ValueError(f"cannot pick {k} of {n}")
    return sorted({min(n - 1, int((i + 0.5) * n / k)) for i in range(k)})


def view_subset(num_clips: int, num_crops: int, use_clips: int, use_crops: int) -> List[int]:
    """View indices (into ``num_clips * num_crops`` views) of ``use_clips`` clips x ``use_crops`` crops."""
    return [c * num_crops + s for c in spread(use_clips, num_clips) for s in spread(use_crops, num_crops)]


def sweep_settings(num_clips: int, num_crops: int) -> List[Tuple[int, int]]:
    """The (clips, crops) settings of a view sweep: clip counts 1, 2, 4, ... and the full count; crops 1 and all."""
    clips = sorted({c for c in (2 ** i for i in range(8)) if c <= num_clips} | {num_clips})
    crops = sorted({1, num_crops})
    return [(c, s) for c in clips for s in crops]


def sweep_names(settings: Sequence[Tuple[int, int]]) -> List[str]:
    return [f"{c}x{s}" for c, s in settings]
