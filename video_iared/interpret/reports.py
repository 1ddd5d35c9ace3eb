"""The reports of an evaluation: the Markdown summary, the CSV tables (summary, per video, curves) and the plots."""
from __future__ import annotations

import csv
import os
from typing import Dict

from video_iared.interpret.evaluation import InterpResult
from video_iared.interpret.view_scores import CURVE_METRICS, MASK_METRICS
from video_iared.interpret.visualize import save_bar_plot, save_curve_plot


def _fmt(ms: tuple) -> str:
    mean, std, n = ms
    return "n/a" if n == 0 else f"{mean:.3f} ± {std:.3f}"


def summary_markdown(res: InterpResult, topk: float) -> str:
    """The table of every method (mean ± std over videos) with a header naming the set-up."""
    heads = {"auc_patch": "AUC (patch)", "auc_pixel": "AUC (pixel)", "ap_patch": "AP (patch)",
             "iou_topk": f"IoU top-{topk * 100:g}%", "pointing": "pointing game",
             "deletion_acc": "deletion AUC (acc) ↓", "insertion_acc": "insertion AUC (acc) ↑",
             "deletion_prob": "deletion AUC (p) ↓", "insertion_prob": "insertion AUC (p) ↑"}
    metrics = [k for k in MASK_METRICS + CURVE_METRICS if any(res.summary[m][k][2] for m in res.summary)]
    lines = ["| method | " + " | ".join(heads[k] for k in metrics) + " |",
             "|---|" + "---|" * len(metrics)]
    for m, row in res.summary.items():
        lines.append(f"| {m} | " + " | ".join(_fmt(row[k]) for k in metrics) + " |")
    names = {"dense": "dense forward", "iared": "IA-RED² (pruned) forward"}
    acc = ", ".join(f"{names.get(k, k)} {v:.2f}%" for k, v in res.accuracy.items())
    keep = ", ".join(f"{k:.3f}" for k in res.keep_rates)
    notes = [f"{res.videos} videos, {res.views} views ({len(res.failed)} failed); clip-level top-1: {acc}; "
             f"keep rate after each group: [{keep}]; foreground patches: {100 * res.fg_patch_rate:.1f}% (chance AP).",
             "mean ± std over videos (each video's views averaged first). Chance: AUC 0.5, AP = the foreground rate."]
    return "\n".join(notes + [""] + lines) + "\n"


def write_reports(res: InterpResult, out_dir: str, topk: float) -> Dict[str, str]:
    """interpretability.md / .csv (summary), interpretability_per_video.csv, interpretability_curves.csv,
    interpretability_bars.png, interpretability_curves.png in ``out_dir``; returns their paths."""
    os.makedirs(out_dir, exist_ok=True)
    paths = {k: os.path.join(out_dir, f"interpretability{s}") for k, s in
             (("md", ".md"), ("csv", ".csv"), ("per_video", "_per_video.csv"), ("curves_csv", "_curves.csv"),
              ("bars", "_bars.png"), ("curves_png", "_curves.png"))}
    with open(paths["md"], "w") as f:
        f.write(summary_markdown(res, topk))
    metrics = MASK_METRICS + CURVE_METRICS
    with open(paths["csv"], "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["method"] + [f"{k}_{s}" for k in metrics for s in ("mean", "std", "n")])
        for m, row in res.summary.items():
            w.writerow([m] + [f"{x:.6f}" if isinstance(x, float) else x for k in metrics for x in row[k]])
    with open(paths["per_video"], "w", newline="") as f:
        keys = ["video", "path", "label", "views", "correct", "method"] + list(metrics)
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        for r in res.per_video:
            w.writerow({k: r[k] for k in keys})
    with open(paths["curves_csv"], "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["method", "curve"] + [f"{x:.3f}" for x in res.fractions])
        for m, d in res.curves.items():
            for k, arr in d.items():
                w.writerow([m, k] + [f"{x:.6f}" for x in arr])
    save_bar_plot(paths["bars"], res.summary, list(MASK_METRICS),
                  title=f"Token maps vs foreground ({res.videos} videos)")
    if res.curves:
        save_curve_plot(paths["curves_png"], res.fractions, res.curves)
    else:
        del paths["curves_png"]
    return paths
