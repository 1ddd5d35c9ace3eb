"""The reports of an evaluation: the Markdown summary, the paired-difference table with its intervals, the CSV
tables (summary, per video, per view, curves, paired differences) and the plots."""
from __future__ import annotations

import csv
import os
from typing import Dict, List

from video_iared.interpret.evaluation import InterpResult
from video_iared.interpret.view_scores import CURVE_METRICS, LOWER_IS_BETTER, MASK_METRICS
from video_iared.interpret.visualize import save_bar_plot, save_curve_plot


def _fmt(ms: tuple) -> str:
    mean, std, n = ms
    return "n/a" if n == 0 else f"{mean:.3f} ± {std:.3f}"


def _heads(topk: float) -> Dict[str, str]:
    return {"auc_patch": "AUC (patch)", "auc_pixel": "AUC (pixel)", "ap_patch": "AP (patch)",
            "iou_topk": f"IoU top-{topk * 100:g}%", "pointing": "pointing game",
            "deletion_acc": "deletion AUC (acc) ↓", "insertion_acc": "insertion AUC (acc) ↑",
            "deletion_prob": "deletion AUC (p) ↓", "insertion_prob": "insertion AUC (p) ↑"}


def summary_markdown(res: InterpResult, topk: float) -> str:
    """The table of every method (mean ± std over videos) with a header naming the set-up."""
    heads = _heads(topk)
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


def paired_markdown(res: InterpResult, topk: float) -> str:
    """The paired-difference table: a row per (interpreter map, other method), a column per metric, each cell
    the difference over the same views with its paired bootstrap 95 % interval and "tie" / "better" / "worse";
    "" when there is no pair (no interpreter or no baseline method was evaluated)."""
    if not res.paired:
        return ""
    heads = _heads(topk)
    metrics = [k for k in MASK_METRICS + CURVE_METRICS if any(p.metric == k for p in res.paired)]
    cells = {(p.method, p.versus, p.metric): p for p in res.paired}
    pairs = list(dict.fromkeys((p.method, p.versus) for p in res.paired))
    lines = ["| map | vs | " + " | ".join(heads[k] for k in metrics) + " |", "|---|---|" + "---|" * len(metrics)]
    for a, b in pairs:
        lines.append(f"| {a} | {b} | " + " | ".join(cells[(a, b, k)].cell() if (a, b, k) in cells else "n/a"
                                                   for k in metrics) + " |")
    views = sorted({p.views for p in res.paired})
    videos = sorted({p.videos for p in res.paired})
    lower = [heads[k] for k in metrics if k in LOWER_IS_BETTER]
    note = (f"Paired differences (map minus the other method) over the same views ({views[0]}–{views[-1]} views "
            f"of {videos[0]}–{videos[-1]} videos per comparison; a view without the metric for either map left out), "
            f"paired bootstrap {100 * res.paired[0].ci.confidence:g} % interval ({res.paired[0].ci.num_resamples} "
            f"resamples of the videos, each scored by the mean over its views, seed 0); tie: the interval contains 0; better / worse for the map"
            + (f" (lower is better for {', '.join(lower)})" if lower else "") + ".")
    return "\n".join([note, ""] + lines) + "\n"


def paired_rows(res: InterpResult) -> List[Dict[str, object]]:
    """The paired differences as flat records (interpretability_ci.csv)."""
    out = []
    for p in res.paired:
        ci = p.ci
        out.append({"method": p.method, "versus": p.versus, "metric": p.metric, "diff": ci.diff, "lower": ci.lower,
                    "upper": ci.upper, "tie": ci.tie, "verdict": p.verdict, "views": p.views, "videos": p.videos,
                    "confidence": ci.confidence, "lower_is_better": p.metric in LOWER_IS_BETTER})
    return out


def _write_dicts(path: str, keys: List[str], rows) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        for r in rows:
            w.writerow({k: r[k] for k in keys})


def write_reports(res: InterpResult, out_dir: str, topk: float) -> Dict[str, str]:
    """interpretability.md / .csv (summary), interpretability_ci.md / .csv (paired differences with intervals),
    interpretability_per_video.csv, interpretability_per_view.csv, interpretability_curves.csv,
    interpretability_bars.png, interpretability_curves.png in ``out_dir``; returns their paths."""
    os.makedirs(out_dir, exist_ok=True)
    paths = {k: os.path.join(out_dir, f"interpretability{s}") for k, s in
             (("md", ".md"), ("csv", ".csv"), ("per_video", "_per_video.csv"), ("curves_csv", "_curves.csv"),
              ("bars", "_bars.png"), ("curves_png", "_curves.png"), ("ci_md", "_ci.md"), ("ci_csv", "_ci.csv"),
              ("per_view", "_per_view.csv"))}
    with open(paths["md"], "w") as f:
        f.write(summary_markdown(res, topk))
    metrics = MASK_METRICS + CURVE_METRICS
    with open(paths["csv"], "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["method"] + [f"{k}_{s}" for k in metrics for s in ("mean", "std", "n")])
        for m, row in res.summary.items():
            w.writerow([m] + [f"{x:.6f}" if isinstance(x, float) else x for k in metrics for x in row[k]])
    _write_dicts(paths["per_video"], ["video", "path", "label", "views", "correct", "method"] + list(metrics),
                 res.per_video)
    _write_dicts(paths["per_view"], ["video", "path", "label", "view", "correct", "method"] + list(metrics),
                 res.per_view)
    with open(paths["ci_md"], "w") as f:
        f.write(paired_markdown(res, topk))
    _write_dicts(paths["ci_csv"], ["method", "versus", "metric", "diff", "lower", "upper", "tie", "verdict", "views",
                                   "confidence", "lower_is_better"], paired_rows(res))
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
