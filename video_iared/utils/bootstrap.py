"""Paired bootstrap confidence intervals for the difference of two methods scored on the same videos.

``paired_bootstrap_ci(a, b)`` resamples video indices with replacement, the same indices for both score
arrays (so the pairing is kept), and reads the percentile interval of mean(a) - mean(b) off the resamples.
A difference whose interval contains 0 is a ``tie``. The resampling is vectorised in chunks of at most
``CHUNK_ELEMENTS`` drawn indices, so 20,000 videos x 10,000 resamples take seconds and ~100 MB.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CHUNK_ELEMENTS = 1 << 22  # indices drawn at once (resamples per chunk = this // number of videos)


@dataclass(frozen=True)
class PairedCI:
    """mean(a) - mean(b) and its bootstrap interval [lower, upper] at ``confidence``."""

    diff: float
    lower: float
    upper: float
    tie: bool  # the interval contains 0
    confidence: float
    num_resamples: int

    @property
    def half_width(self) -> float:
        return (self.upper - self.lower) / 2.0

    def describe(self, scale: float = 1.0, digits: int = 2) -> str:
        """E.g. ``+1.25 [-0.40, +2.90] tie`` (values times ``scale``, e.g. 100 for points)."""
        d, lo, hi = (f"{scale * v:+.{digits}f}" for v in (self.diff, self.lower, self.upper))
        return f"{d} [{lo}, {hi}]" + (" tie" if self.tie else "")


def _scores(x, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"paired_bootstrap_ci: {name} must be a non-empty 1-D array of per-video scores, "
                         f"got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"paired_bootstrap_ci: {name} holds non-finite scores")
    return arr


def paired_bootstrap_ci(a, b, num_resamples: int = 10_000, confidence: float = 0.95, seed: int = 0) -> PairedCI:
    """Percentile bootstrap interval of mean(a) - mean(b) for per-video scores ``a``, ``b`` (N,) of the same
    videos in the same order (e.g. 0/1 correctness, per-video AUC). Same ``seed``, same interval.

    Raises ValueError when the lengths differ, an array is empty or not 1-D, or the settings are out of range.
    """
    a, b = _scores(a, "a"), _scores(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"paired_bootstrap_ci: a and b must score the same videos, got {a.size} and {b.size} scores")
    if num_resamples < 1:
        raise ValueError(f"paired_bootstrap_ci: num_resamples must be >= 1, got {num_resamples}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"paired_bootstrap_ci: confidence must be in (0, 1), got {confidence}")
    d = a - b  # mean(a[idx]) - mean(b[idx]) = mean(d[idx]): the same indices for both
    n = d.size
    rng = np.random.default_rng(seed)
    chunk = max(1, CHUNK_ELEMENTS // n)
    stats = np.empty(num_resamples)
    for start in range(0, num_resamples, chunk):
        stop = min(start + chunk, num_resamples)
        idx = rng.integers(0, n, size=(stop - start, n))
        stats[start:stop] = d[idx].mean(axis=1)
    alpha = 1.0 - confidence
    lower, upper = np.quantile(stats, [alpha / 2.0, 1.0 - alpha / 2.0])
    lower, upper = float(lower), float(upper)
    return PairedCI(float(d.mean()), lower, upper, bool(lower <= 0.0 <= upper), float(confidence),
                    int(num_resamples))
