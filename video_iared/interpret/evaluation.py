"""The quantitative evaluation: every method's maps on every view, scored against the foreground and by
deletion / insertion curves, averaged per video and summarised per method (``evaluate_interpretability``)."""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterator, List, Optional, Sequence

import numpy as np
import torch
from torch import nn

from video_iared.data.device_normalize import as_normalizer
from video_iared.interpret import interp_metrics as im
from video_iared.interpret.explain import METHODS, Explanation, explain
from video_iared.interpret.paired_scores import PairedMetric, paired_metrics
from video_iared.interpret.view_scores import CURVE_METRICS, MASK_METRICS, curve_scores, mask_scores
from video_iared.interpret.views import View, patch_foreground

logger = logging.getLogger("video_iared.interpret.interpretability")  # the evaluation's one logger name (views.py)


@dataclass
class InterpResult:
    """Per-video scores (averaged over the video's views), per-view scores, mean curves, paired differences.

    per_video: list of {"video", "path", "label", "correct", "method", metric: value}; curves: method ->
    metric -> (F,) mean over views; fractions (F,); summary: method -> metric -> (mean, std, n); per_view: the
    same rows per view (+ "view"); paired: each interpreter map minus each baseline per metric over the same
    views, with its paired bootstrap 95 % interval (``paired_scores``)."""

    per_video: List[Dict[str, object]]
    curves: Dict[str, Dict[str, np.ndarray]]
    fractions: np.ndarray
    summary: Dict[str, Dict[str, tuple]]
    videos: int
    views: int
    failed: List[str]
    accuracy: Dict[str, float]
    keep_rates: List[float]
    fg_patch_rate: float
    per_view: List[Dict[str, object]] = field(default_factory=list)
    paired: List[PairedMetric] = field(default_factory=list)


@dataclass
class _Tally:
    """The running state of an evaluation: its settings, and what the views scored so far add up to (in view
    order). ``add_batch`` scores one batch of views from its explanation; ``result`` summarises."""

    methods: Sequence[str]
    fractions: np.ndarray
    patch: int
    fg_fraction: float
    topk: float
    curves_on: bool
    curve_views: int
    seed: int
    per_view: List[Dict[str, object]] = field(default_factory=list)
    curve_sum: Dict[str, Dict[str, np.ndarray]] = field(default_factory=dict)
    curve_n: int = 0
    acc: Dict[str, List[float]] = field(default_factory=lambda: {"dense": [], "iared": []})
    keep: List[List[float]] = field(default_factory=list)
    fg_rates: List[float] = field(default_factory=list)

    def add_batch(self, model: nn.Module, clips: torch.Tensor, buf: List[View], exp: Explanation) -> None:
        """Score the views ``buf`` (their model inputs ``clips`` (B, C, T, S, S)) from their explanation."""
        dense_pred = exp.dense_logits.argmax(1)
        pruned_pred = exp.interp.logits.argmax(1) if exp.interp is not None else None
        if exp.interp is not None:
            self.keep.extend(exp.interp.kept.float().mean((2, 3, 4)).cpu().numpy().tolist())
        for b, v in enumerate(buf):
            maps = {m: exp.maps[m][b].cpu().numpy() for m in self.methods}
            scores = mask_scores(maps, v.coverage, self.patch, self.fg_fraction, self.topk, self.seed)
            self.fg_rates.append(float(patch_foreground(v.coverage, self.patch, self.fg_fraction).mean()))
            self.acc["dense"].append(float(dense_pred[b] == v.label))
            if pruned_pred is not None:
                self.acc["iared"].append(float(pruned_pred[b] == v.label))
            curves = None
            if self.curves_on and v.view < self.curve_views:
                curves = curve_scores(model, clips[b], v.label, maps, self.fractions, seed=self.seed)
                self._add_curves(curves)
            self._add_rows(v, int(dense_pred[b] == v.label), scores, curves)

    def _add_curves(self, curves: Dict[str, Dict[str, np.ndarray]]) -> None:
        self.curve_n += 1
        for m, cm in curves.items():
            for k, arr in cm.items():
                self.curve_sum.setdefault(m, {}).setdefault(k, np.zeros_like(self.fractions))
                self.curve_sum[m][k] = self.curve_sum[m][k] + arr

    def _add_rows(self, v: View, correct: int, scores: Dict[str, Dict[str, float]],
                  curves: Optional[Dict[str, Dict[str, np.ndarray]]]) -> None:
        for m in self.methods:
            row = {"video": v.video, "path": v.path, "label": v.label, "view": v.view,
                   "correct": correct, "method": m, **scores[m]}
            for k in CURVE_METRICS:
                row[k] = im.curve_auc(self.fractions, curves[m][k]) if curves is not None else math.nan
            self.per_view.append(row)

    def result(self, failed: Optional[List[str]]) -> InterpResult:
        """Per-video and per-view rows, the summary per method, the mean curves, the paired differences; raises
    when no view was scored."""
        if not self.per_view:
            raise RuntimeError("interpretability: no view was evaluated (every video failed, or the list is empty)")
        methods = self.methods
        per_video = _average_views(self.per_view, methods)
        metrics = MASK_METRICS + CURVE_METRICS
        summary = {m: {k: im.mean_std([r[k] for r in per_video if r["method"] == m]) for k in metrics}
                   for m in methods}
        curves = {m: {k: a / max(self.curve_n, 1) for k, a in d.items()} for m, d in self.curve_sum.items()}
        keep_rates = np.mean(np.asarray(self.keep), 0).tolist() if self.keep else []
        return InterpResult(per_video, curves, self.fractions, summary, len({r["video"] for r in per_video}),
                            len(self.per_view) // len(methods), list(failed or []),
                            {k: float(np.mean(a)) * 100 for k, a in self.acc.items() if a}, keep_rates,
                            float(np.mean(self.fg_rates)), list(self.per_view),
                            paired_metrics(self.per_view, methods, metrics))


def _batches(views: Iterator[View], size: int) -> Iterator[List[View]]:
    """The views in lists of ``size`` (the last one shorter)."""
    buf: List[View] = []
    for v in views:
        buf.append(v)
        if len(buf) == size:
            yield buf
            buf = []
    if buf:
        yield buf


def evaluate_interpretability(model: nn.Module, views: Iterator[View], patch: int, methods: Sequence[str] = METHODS,
                              fg_fraction: float = 0.5, topk: float = 0.1, curve_steps: int = 10,
                              curve_views: int = 1, target: str = "pred", batch: int = 8, seed: int = 0,
                              device: Optional[torch.device] = None,
                              failed: Optional[List[str]] = None,
                              normalizer: Optional[Callable[[torch.Tensor], torch.Tensor]] = None) -> InterpResult:
    """Every method's maps on every view against the foreground; deletion / insertion curves.

    ``curve_views``: curves on the first n views of each video (0: none; they cost one forward per
    distinct keep set). ``target``: "pred" (explain the dense prediction) or "label" (the true class).
    Views run ``batch`` at a time; ``normalizer`` turns their clips into the model's input on ``device``
    (``device_normalize``: uint8 clips; None: float clips only)."""
    if target not in ("pred", "label"):
        raise ValueError(f"target must be 'pred' or 'label', got {target!r}")
    normalize = as_normalizer(normalizer)
    device = device or next(model.parameters()).device
    model.eval()
    fractions = np.linspace(0.0, 1.0, curve_steps + 1) if curve_steps > 0 else np.zeros(0)
    tally = _Tally(methods, fractions, patch, fg_fraction, topk, curve_steps > 0, curve_views, seed)
    t0 = time.time()
    for buf in _batches(views, batch):
        clips = normalize(torch.stack([v.clip for v in buf]).to(device, non_blocking=True))
        labels = torch.tensor([v.label for v in buf], device=device)
        exp = explain(model, clips, methods, labels if target == "label" else None, seed=seed + len(tally.per_view))
        tally.add_batch(model, clips, buf, exp)
        logger.info("interpretability: %d views done, %.1f s", len(tally.per_view) // len(methods), time.time() - t0)
    return tally.result(failed)


def _average_views(rows: List[Dict[str, object]], methods: Sequence[str]) -> List[Dict[str, object]]:
    """Per-view rows -> per-video rows (mean of each metric over the video's views, NaNs ignored)."""
    out = []
    videos = sorted({r["video"] for r in rows})
    by_key: Dict[tuple, List[Dict[str, object]]] = {}
    for r in rows:
        by_key.setdefault((r["video"], r["method"]), []).append(r)
    for vid in videos:
        for m in methods:
            rs = by_key.get((vid, m), [])
            if not rs:
                continue
            row = {k: rs[0][k] for k in ("video", "path", "label", "method")}
            row["views"] = len(rs)
            row["correct"] = float(np.mean([r["correct"] for r in rs]))
            for k in MASK_METRICS + CURVE_METRICS:
                vals = [r[k] for r in rs if np.isfinite(r[k])]
                row[k] = float(np.mean(vals)) if vals else math.nan
            out.append(row)
    return out
