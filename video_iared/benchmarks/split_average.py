"""The three-split average of UCF101 / HMDB51 (their protocol reports the mean over the official splits).

Reads each run's ``predictions.csv`` (the test stage's per-video file) and returns per-split video top-1 and
mean GFLOPs per view, and their mean. Failed videos count as they do in the test summary: they are reported,
and top-1 is over the decoded videos.
"""
from __future__ import annotations

import math
import os
from typing import Dict, List, Sequence

from video_iared.engine.results import read_predictions_csv


def split_result(run_dir: str, stem: str = "predictions") -> Dict:
    """``{"run", "videos", "failed", "video_top1", "gflops_per_view"}`` of one run's ``<stem>.csv``."""
    path = run_dir if run_dir.endswith(".csv") else os.path.join(run_dir, f"{stem}.csv")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no predictions file (run the test stage for this split first)")
    rows = read_predictions_csv(path)
    ok = [r for r in rows if r["status"] == "ok"]
    if not ok:
        raise ValueError(f"{path}: no decoded video")
    gflops = [r["gflops"] for r in ok if r["gflops"] is not None]
    return {"run": path, "videos": len(ok), "failed": len(rows) - len(ok),
            "video_top1": 100.0 * sum(r["correct"] for r in ok) / len(ok),
            "gflops_per_view": sum(gflops) / len(gflops) if gflops else math.nan}


def split_average(run_dirs: Sequence[str]) -> Dict:
    """Per-split results and their unweighted mean (the protocol's average of the split accuracies)."""
    splits: List[Dict] = [split_result(d) for d in run_dirs]
    n = len(splits)
    return {"splits": splits, "video_top1": sum(s["video_top1"] for s in splits) / n,
            "gflops_per_view": sum(s["gflops_per_view"] for s in splits) / n}


def format_split_average(result: Dict) -> str:
    """A table, then one machine-readable line ``splits=<n> video_top1_mean=<f> gflops_per_view_mean=<f>``."""
    lines = [f"{'run':<60s} {'videos':>7s} {'failed':>6s} {'top-1 %':>8s} {'GFLOPs/view':>12s}"]
    for s in result["splits"]:
        lines.append(f"{s['run']:<60s} {s['videos']:>7d} {s['failed']:>6d} {s['video_top1']:>8.2f} {s['gflops_per_view']:>12.4f}")
    lines.append(f"splits={len(result['splits'])} video_top1_mean={result['video_top1']:.4f} "
                 f"gflops_per_view_mean={result['gflops_per_view']:.4f}")
    return "\n".join(lines)
