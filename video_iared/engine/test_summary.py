"""What a multi-view test gives, summarised: video accuracy, the view sweep, the machine-readable last line.

``summarize(records, num_classes, views)`` over the per-video records of ``multiview_test.run_multiview``;
``summary_line`` is the line that ends the test stage (a contract: scripts parse it with ``parse_summary_line``).
"""
from __future__ import annotations

import math
from typing import Dict, List, Sequence

import torch

from video_iared.engine.ensemble import ensemble_views, sweep_settings, view_subset
from video_iared.engine.meters import mean_class_accuracy, topk_correct


def summarize(records: List[Dict], num_classes: int, views: int) -> Dict:
    """Video-level top-1 / top-5 / mean class accuracy (percent) over the videos that were evaluated.

    ``videos`` counts evaluated videos, ``failed`` the ones that could not be decoded (not in the accuracy).
    ``gflops_per_view`` is the mean over every evaluated view.
    """
    ok = [r for r in records if r["probs"] is not None]
    failed = len(records) - len(ok)
    out = {"video_top1": math.nan, "video_top5": math.nan, "mean_class_acc": math.nan,
           "videos": len(ok), "failed": failed, "views": views, "gflops_per_view": math.nan}
    if not ok:
        return out
    probs = torch.stack([r["probs"] for r in ok])
    labels = torch.tensor([r["label"] for r in ok])
    c1, c5 = topk_correct(probs, labels, (1, 5))
    out["video_top1"] = 100.0 * c1 / len(ok)
    out["video_top5"] = 100.0 * c5 / len(ok)
    out["mean_class_acc"] = mean_class_accuracy(probs.argmax(1), labels, num_classes)
    g = [(r["gflops"], r["view_logits"].shape[0]) for r in ok if not math.isnan(r["gflops"])]
    if g:
        out["gflops_per_view"] = sum(a * n for a, n in g) / sum(n for _, n in g)
    keeps = [r["keep_rates"] for r in ok if r.get("keep_rates") is not None]
    if keeps:
        out["keep_rates"] = torch.tensor(keeps).mean(0).tolist()
    return out


def view_sweep(records: List[Dict], num_clips: int, num_crops: int, method: str) -> List[Dict]:
    """Video top-1 / top-5 for fewer clips x crops, from the same per-view logits (no extra decoding)."""
    ok = [r for r in records if r["view_logits"] is not None]
    rows = []
    if not ok:
        return rows
    labels = torch.tensor([r["label"] for r in ok])
    for clips, crops in sweep_settings(num_clips, num_crops):
        idx = view_subset(num_clips, num_crops, clips, crops)
        probs = torch.stack([ensemble_views(r["view_logits"][idx], method) for r in ok])
        c1, c5 = topk_correct(probs, labels, (1, 5))
        rows.append({"clips": clips, "crops": crops, "views": len(idx),
                     "video_top1": 100.0 * c1 / len(ok), "video_top5": 100.0 * c5 / len(ok)})
    return rows


def summary_line(summary: Dict) -> str:
    """The machine-readable line that ends the test stage."""
    return ("video_top1={video_top1:.4f} video_top5={video_top5:.4f} videos={videos:d} failed={failed:d} "
            "views={views:d} gflops_per_view={gflops_per_view:.6f}").format(**summary)


def parse_summary_line(line: str) -> Dict[str, float]:
    """The fields of a summary line (a label before the first field is ignored)."""
    out: Dict[str, float] = {}
    for tok in line.split():
        if "=" in tok:
            k, v = tok.split("=", 1)
            out[k] = int(v) if k in ("videos", "failed", "views") else float(v)
    return out


def sweep_table(rows: Sequence[Dict]) -> str:
    lines = ["clips x crops  views  video top-1  video top-5"]
    for r in rows:
        lines.append(f"{r['clips']:>5d} x {r['crops']:<5d}  {r['views']:>5d}  {r['video_top1']:>10.2f}  {r['video_top5']:>10.2f}")
    return "\n".join(lines)
