"""Paired differences of the interpretability metrics: each interpreter map (each group's and the kept set's)
minus each other method (raw attention, rollout, Grad-CAM, Chefer, random) over the same views, with the paired
bootstrap 95 % interval (``utils.bootstrap.paired_bootstrap_ci``) resampling *videos*: the views of one video are
correlated (the same object and scene), so each video counts once, with the mean of each map's scores over its
views, and the same resampled videos are used for both maps.

A view whose metric is NaN for either map (e.g. no deletion curve on it, ``INTERP.CURVE_VIEWS``) is left out of
that comparison (a video with no view left is left out).
An interval containing 0 is a tie; otherwise the interpreter is "better" or "worse", by the
metric's direction (``view_scores.LOWER_IS_BETTER``: a lower deletion AUC is better).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from video_iared.interpret.explain import BASELINE_METHODS, INTERPRETER_METHODS
from video_iared.interpret.view_scores import CURVE_METRICS, LOWER_IS_BETTER, MASK_METRICS
from video_iared.utils.bootstrap import PairedCI, paired_bootstrap_ci

VIEW_KEY = ("video", "view")  # what makes two per-view rows the same view
UNIT_KEY = "video"  # the resampled unit: the views of one video go together


@dataclass(frozen=True)
class PairedMetric:
    """``metric`` of ``method`` minus that of ``versus`` over ``views`` views of ``videos`` videos (``ci`` None
    when none had both)."""

    method: str
    versus: str
    metric: str
    ci: Optional[PairedCI]
    views: int
    videos: int = 0

    @property
    def verdict(self) -> str:
        """"tie" (the interval contains 0), "better" or "worse" for ``method`` by the metric's direction; "n/a"."""
        if self.ci is None:
            return "n/a"
        if self.ci.tie:
            return "tie"
        return "better" if (self.ci.diff < 0) == (self.metric in LOWER_IS_BETTER) else "worse"

    def cell(self) -> str:
        """E.g. ``+0.120 [+0.081, +0.158] better``."""
        if self.ci is None:
            return "n/a"
        d, lo, hi = (f"{v:+.3f}" for v in (self.ci.diff, self.ci.lower, self.ci.upper))
        return f"{d} [{lo}, {hi}] {self.verdict}"


def _by_view(per_view: Sequence[Dict[str, object]], method: str, metric: str) -> Dict[Tuple, float]:
    return {tuple(r[k] for k in VIEW_KEY): float(r[metric]) for r in per_view
            if r["method"] == method and math.isfinite(float(r[metric]))}


def paired_metrics(per_view: Sequence[Dict[str, object]], methods: Sequence[str],
                   metrics: Sequence[str] = MASK_METRICS + CURVE_METRICS, num_resamples: int = 10_000,
                   confidence: float = 0.95, seed: int = 0) -> List[PairedMetric]:
    """Every interpreter method of ``methods`` minus every baseline of ``methods``, on every metric with a view
    scored by both, in the order (interpreter, baseline, metric). ``per_view``: rows {"video", "view", "method",
    metric: value} (``InterpResult.per_view``)."""
    out = []
    for a in (m for m in methods if m in INTERPRETER_METHODS):
        for b in (m for m in methods if m in BASELINE_METHODS):
            for k in metrics:
                sa, sb = _by_view(per_view, a, k), _by_view(per_view, b, k)
                both = sorted(sa.keys() & sb.keys())
                if not both:
                    continue
                ua, ub = _video_means(both, sa), _video_means(both, sb)
                ci = paired_bootstrap_ci(ua, ub, num_resamples, confidence, seed)
                out.append(PairedMetric(a, b, k, ci, len(both), len(ua)))
    return out


def _video_means(views: Sequence[Tuple], scores: Dict[Tuple, float]) -> List[float]:
    """The mean score over each video's ``views`` (sorted keys of VIEW_KEY), one value per video in order."""
    unit = VIEW_KEY.index(UNIT_KEY)
    sums: Dict[object, List[float]] = {}
    for v in views:
        sums.setdefault(v[unit], []).append(scores[v])
    return [sum(s) / len(s) for s in sums.values()]
