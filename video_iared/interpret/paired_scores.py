"""Paired differences of the interpretability metrics: each interpreter map (each group's and the kept set's)
minus each other method (raw attention, rollout, Grad-CAM, Chefer, random) over the same views, with the paired
bootstrap 95 % interval (``utils.bootstrap.paired_bootstrap_ci``: the same resampled views for both maps).

A view whose metric is NaN for either map (e.g. no deletion curve on it, ``INTERP.CURVE_VIEWS``) is left out of
that comparison. An interval containing 0 is a tie; otherwise the interpreter is "better" or "worse", by the
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


@dataclass(frozen=True)
class PairedMetric:
    """``metric`` of ``method`` minus that of ``versus`` over ``views`` views (``ci`` None when none had both)."""

    method: str
    versus: str
    metric: str
    ci: Optional[PairedCI]
    views: int

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
                ci = paired_bootstrap_ci([sa[v] for v in both], [sb[v] for v in both], num_resamples, confidence,
                                         seed)
                out.append(PairedMetric(a, b, k, ci, len(both)))
    return out
