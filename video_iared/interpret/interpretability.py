"""Interpretability of IA-RED² on the synthetic benchmark: every method's token map against the ground-truth
foreground masks, deletion / insertion faithfulness curves, tables (Markdown, CSV) and plots.

The work is done in modules of one job each, whose names stay importable from here: ``views`` (test views and
their foreground), ``view_scores`` (one view's mask scores and curves), ``evaluation``
(``evaluate_interpretability(...)``, plain arguments), ``paired_scores`` (paired differences with their
bootstrap intervals), ``reports`` (tables and plots) and ``from_cfg``
(``evaluate_from_cfg(cfg, checkpoint)`` and ``visualize_from_cfg(cfg, checkpoint, videos)``, the config
boundary used by the tools).
"""
from __future__ import annotations

from video_iared.interpret.evaluation import InterpResult, evaluate_interpretability
from video_iared.interpret.from_cfg import (build_explained_model, evaluate_from_cfg, pick_videos, resolve_checkpoint,
                                            views_from_cfg, visualize_from_cfg)
from video_iared.interpret.paired_scores import PairedMetric, paired_metrics
from video_iared.interpret.reports import paired_markdown, summary_markdown, write_reports
from video_iared.interpret.view_scores import (CURVE_METRICS, LOWER_IS_BETTER, MASK_METRICS, curve_masks,
                                               curve_scores, mask_scores)
from video_iared.interpret.views import View, iter_views, mask_coverage, patch_foreground, upsample_map

__all__ = ["InterpResult", "evaluate_interpretability", "build_explained_model", "evaluate_from_cfg", "pick_videos",
           "resolve_checkpoint", "views_from_cfg", "visualize_from_cfg", "summary_markdown", "write_reports",
           "paired_markdown", "PairedMetric", "paired_metrics",
           "CURVE_METRICS", "LOWER_IS_BETTER", "MASK_METRICS", "curve_masks", "curve_scores", "mask_scores", "View",
           "iter_views", "mask_coverage", "patch_foreground", "upsample_map"]
