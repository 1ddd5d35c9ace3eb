"""Scores of a token map against a ground-truth mask, and of a deletion / insertion curve (numpy only).

Every function takes a score array and a same-shaped bool label array (any shape; flattened), higher
score = "more important". Ties are handled the way the definitions require, so a constant map gets chance
values: ROC-AUC by the Mann-Whitney U statistic with average ranks (a tie counts 1/2), average precision
over distinct score thresholds (sklearn's step-wise definition), the pointing game as the expected hit rate
of a uniformly random pick among the maximal tokens.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import numpy as np


def _flat(scores, labels) -> Tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(labels).reshape(-1)
    if s.shape != y.shape:
        raise ValueError(f"scores and labels differ in size: {np.shape(scores)} vs {np.shape(labels)}")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores contain NaN or inf")
    return s, y.astype(bool)


def average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of x (ascending), tied values sharing the mean of their ranks."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    # boundaries of runs of equal values
    starts = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]])
    ends = np.r_[starts[1:], len(xs)]
    ranks_sorted = np.repeat((starts + ends + 1) / 2.0, ends - starts)  # mean of ranks start+1 .. end
    ranks = np.empty_like(ranks_sorted)
    ranks[order] = ranks_sorted
    return ranks


def roc_auc(scores, labels) -> float:
    """Area under the ROC curve = P(score of a random positive > score of a random negative) + 1/2 P(tie).

    NaN when the labels hold only one class."""
    s, y = _flat(scores, labels)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    r = average_ranks(s)
    u = r[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def average_precision(scores, labels) -> float:
    """AP = sum_k (R_k - R_{k-1}) P_k over the distinct score thresholds, highest first (tied tokens enter
    together). A constant map gets the positive rate. NaN without positives."""
    s, y = _flat(scores, labels)
    n_pos = int(y.sum())
    if n_pos == 0:
        return math.nan
    order = np.argsort(-s, kind="mergesort")
    ss, yy = s[order], y[order]
    tp = np.cumsum(yy)
    last = np.r_[ss[1:] != ss[:-1], True]  # the last index of every run of tied scores
    tp, k = tp[last], np.flatnonzero(last) + 1
    precision, recall = tp / k, tp / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def topk_mask(scores, k: float, rng: Optional[np.random.Generator] = None) -> np.ndarray:
    """Bool mask (same shape) of the ``ceil(k * n)`` highest scores, k in (0, 1]; ties broken at random
    (``rng``, seeded 0 by default) so a constant map selects a random subset, not the first tokens."""
    if not 0.0 < k <= 1.0:
        raise ValueError(f"top-k fraction must be in (0, 1], got {k}")
    s = np.asarray(scores, dtype=np.float64)
    order = rank_order(s.reshape(-1), rng)
    n = int(math.ceil(k * s.size - 1e-9))
    out = np.zeros(s.size, dtype=bool)
    out[order[:n]] = True
    return out.reshape(s.shape)


def topk_iou(scores, labels, k: float, rng: Optional[np.random.Generator] = None) -> float:
    """IoU of the top-k fraction of tokens with the foreground tokens. NaN without foreground."""
    s, y = _flat(scores, labels)
    if not y.any():
        return math.nan
    sel = topk_mask(s, k, rng)
    return float((sel & y).sum() / (sel | y).sum())


def pointing_game(scores, labels, frame_axis: Optional[int] = 0) -> float:
    """Fraction of frames whose maximal token is foreground (expected value over ties).

    ``frame_axis`` names the axis of frames in (T, H, W) arrays; frames without foreground are skipped
    (NaN when no frame has any); ``None`` treats the whole array as one image."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels).astype(bool)
    if s.shape != y.shape:
        raise ValueError(f"scores and labels differ in shape: {s.shape} vs {y.shape}")
    if frame_axis is None:
        s, y = s.reshape(1, -1), y.reshape(1, -1)
    else:
        s = np.moveaxis(s, frame_axis, 0).reshape(s.shape[frame_axis], -1)
        y = np.moveaxis(y, frame_axis, 0).reshape(y.shape[frame_axis], -1)
    hits = []
    for sf, yf in zip(s, y):
        if not yf.any():
            continue
        top = sf == sf.max()
        hits.append((top & yf).sum() / top.sum())
    return float(np.mean(hits)) if hits else math.nan


def rank_order(scores: np.ndarray, rng: Optional[np.random.Generator] = None) -> np.ndarray:
    """Indices of a 1-D score array from the highest score to the lowest, ties in random order."""
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    rng = rng if rng is not None else np.random.default_rng(0)
    tiebreak = rng.random(s.size)
    return np.lexsort((tiebreak, -s))  # the last key is the primary one


def curve_auc(x: Sequence[float], y: Sequence[float]) -> float:
    """Trapezoidal area under y(x), divided by the x range (so a constant curve c has area c)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1 or x.size < 2:
        raise ValueError(f"curve_auc needs two 1-D arrays of the same length >= 2, got {x.shape} and {y.shape}")
    if np.any(np.diff(x) <= 0):
        raise ValueError("curve_auc: x must be strictly increasing")
    return float(np.sum((y[1:] + y[:-1]) * np.diff(x)) / 2.0 / (x[-1] - x[0]))


def mean_std(values: Sequence[float]) -> Tuple[float, float, int]:
    """Mean, standard deviation (ddof 0) and count of the finite values (NaN, NaN, 0 when there are none)."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=np.float64)
    if v.size == 0:
        return math.nan, math.nan, 0
    return float(v.mean()), float(v.std()), int(v.size)
