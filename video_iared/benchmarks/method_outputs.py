"""The method benchmark's outputs: ``methods.csv``, ``methods.md`` (printed too), ``methods.json``,
``methods_matched.csv`` (IA-RED² minus each baseline at the matched budget), ``acc_vs_gflops.png`` and
``acc_vs_latency.png`` (error bars: the paired 95 % interval of each row's difference to dense / dense + N)."""
from __future__ import annotations

import csv
import json
import math
import os
import platform
from typing import List, Optional, Sequence

import torch

from video_iared.benchmarks.method_compare import (MATCHED_COLUMNS, MatchedPair, compare_fields, field_names,
                                                   matched_markdown, matched_rows, reference_label, reference_rows,
                                                   row_cell)
from video_iared.benchmarks.method_options import MethodBenchmarkOptions
from video_iared.benchmarks.method_variants import ALL_METHODS, LABELS
from video_iared.benchmarks.variant import Variant


def csv_columns(batch_sizes: Sequence[int]) -> List[str]:
    """The CSV header: identity, accuracy, GFLOPs, then per batch size ms/clip (median, min, max) and clips/s,
    memory, finetune epochs; last the paired top-1 differences to dense / dense + N (``method_compare``)."""
    cols = ["method", "budget", "token_fraction", "top1", "top5", "gflops", "gflops_min", "gflops_max", "gflops_views"]
    for bs in batch_sizes:
        cols += [f"ms_b{bs}", f"ms_b{bs}_min", f"ms_b{bs}_max", f"clips_per_s_b{bs}"]
    return cols + ["peak_mem_mb", "finetune_epochs"] + compare_fields()


def _fmt(v, nd: int = 2) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{v:.{nd}f}" if isinstance(v, float) else str(v)


def write_csv(variants: Sequence[Variant], path: str, batch_sizes: Sequence[int]) -> None:
    _write_rows(path, csv_columns(batch_sizes), [v.row() for v in variants])


def _write_rows(path: str, cols: Sequence[str], rows: Sequence[dict]) -> None:
    """A CSV of ``rows`` (dicts) under the header ``cols``; a missing or None value is an empty cell."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for row in rows:
            w.writerow(["" if row.get(c) is None else row[c] for c in cols])


def markdown_table(variants: Sequence[Variant], batch_sizes: Sequence[int]) -> str:
    """The human table: accuracy, its paired difference to dense / dense + N (points, 95 % interval, "tie" when
    it contains 0), GFLOPs, latency with spread, throughput, memory."""
    dense = next((v for v in variants if v.method == "dense"), None)
    refs = reference_rows(variants)
    head = ["method", "budget", "tokens", "top-1 %"] + [f"Δ top-1 vs {reference_label(rv)} [95 % CI]"
                                                        for rv in refs.values()] + ["GFLOPs/view", "GFLOPs x"]
    for bs in batch_sizes:
        head += [f"ms/clip b{bs} (min–max)", f"clips/s b{bs}"]
    head += ["speed-up b1", "peak MB"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for v in variants:
        r = v.results
        g = r.get("gflops")
        gx = dense.results["gflops"] / g if dense and g else math.nan
        label = LABELS.get(v.method, v.method) + (f" (+{r['finetune_epochs']} ep)" if r.get("finetune_epochs") else "")
        cells = [label, v.budget or "–", _fmt(v.token_fraction, 3), _fmt(r.get("top1"))]
        cells += [row_cell(v, ref) for ref in refs] + [_fmt(g, 4), _fmt(gx)]
        for bs in batch_sizes:
            spread = f"{_fmt(r.get(f'ms_b{bs}_min'), 1)}–{_fmt(r.get(f'ms_b{bs}_max'), 1)}"
            cells += [f"{_fmt(r.get(f'ms_b{bs}'), 1)} ({spread})", _fmt(r.get(f"clips_per_s_b{bs}"), 1)]
        b1 = r.get(f"ms_b{batch_sizes[0]}")
        sp = dense.results.get(f"ms_b{batch_sizes[0]}") / b1 if dense and b1 else math.nan
        cells += [_fmt(sp), _fmt(r.get("peak_mem_mb"), 1)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(variants: Sequence[Variant], x_key: str, x_label: str, path: str, title: str) -> Optional[str]:
    """Top-1 against ``x_key`` for every method (one line each, dense as a point), error bars from each row's
    paired interval to dense + N (else dense): the bar spans the reference's top-1 plus the interval, so a bar
    crossing the reference's level is a tie; None if nothing to plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [v for v in variants if not math.isnan(v.results.get("top1", math.nan)) and x_key in v.results]
    if not pts:
        return None
    refs = reference_rows(variants)
    ref = "dense_n" if "dense_n" in refs else ("dense" if "dense" in refs else None)
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    markers = {"dense": "*", "random": "x", "evit": "s", "tome": "^", "iared_ratio": "o", "iared_threshold": "D"}
    # the thresholded rows with one threshold per group ("thr 0.45/0.87") are a curve of their own
    series = [(m, False) for m in ALL_METHODS] + [("iared_threshold", True)]
    for method, per_group in series:
        mv = sorted((v for v in pts if v.method == method and ("/" in v.budget) == per_group),
                    key=lambda v: v.results[x_key])
        if not mv:
            continue
        xs, ys = [v.results[x_key] for v in mv], [v.results["top1"] for v in mv]
        style = dict(marker="P" if per_group else markers[method],
                     label=LABELS[method] + (" (per group)" if per_group else ""))
        if method == "dense":
            ax.scatter(xs, ys, s=160, color="black", zorder=5, **style)
        else:
            (line,) = ax.plot(xs, ys, linestyle="-", **style)
            if ref is not None:
                ax.errorbar(xs, ys, yerr=_error_bars(mv, ref), fmt="none", ecolor=line.get_color(), capsize=2,
                            alpha=0.7)
        for v in mv:
            if v.budget:
                ax.annotate(v.budget, (v.results[x_key], v.results["top1"]), fontsize=6, xytext=(3, 3),
                            textcoords="offset points")
    ax.set_xlabel(x_label)
    ax.set_ylabel("video top-1 (%)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _error_bars(rows: Sequence[Variant], ref: str) -> List[List[float]]:
    """[below, above] (points) of each row's paired interval against ``ref``, 0 where the row has none."""
    d, lo, hi = field_names(ref)[:3]
    out = [[], []]
    for v in rows:
        r = v.results
        has = r.get(d) is not None
        out[0].append(r[d] - r[lo] if has else 0.0)
        out[1].append(r[hi] - r[d] if has else 0.0)
    return out


def write_outputs(variants: Sequence[Variant], cfg, opts: MethodBenchmarkOptions, out_dir: str, weights_note: str,
                  clip_source: str, mem_note: str, before: str, after: str, device: torch.device,
                  finetune_note: str = "", matched: Sequence[MatchedPair] = ()) -> List[Variant]:
    """methods.csv / .md / .json, methods_matched.csv and the two plots into ``out_dir``; prints the Markdown
    tables. ``matched``: IA-RED² rows against the baselines at matched budget (``method_compare.matched_pairs``)."""
    bs = list(opts.batch_sizes)
    table = markdown_table(variants, bs)
    refs = reference_rows(variants)
    model = (f"TimeSformer {cfg.TIMESFORMER.ATTENTION_TYPE}, dim {cfg.TIMESFORMER.EMBED_DIM}, depth "
             f"{cfg.TIMESFORMER.DEPTH}, {cfg.DATA.NUM_FRAMES}x{cfg.DATA.TEST_CROP_SIZE}, patch "
             f"{cfg.TIMESFORMER.PATCH_SIZE}, groups {list(cfg.IARED.GROUPS)}")
    machine = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
               f"{device}")
    notes = [
        f"model: {model}; {weights_note}",
        f"accuracy: video top-1 on TEST.SPLIT {cfg.TEST.SPLIT} ({cfg.TEST.NUM_ENSEMBLE_VIEWS} clips x "
        f"{cfg.TEST.NUM_SPATIAL_CROPS} crops, mean softmax)" if opts.accuracy else "accuracy: not measured",
        f"GFLOPs: fvcore (1 multiply-add = 1 flop, i.e. GMACs) per view, mean over {opts.gflops_views} {clip_source}"
        + ("; IA-RED² rows: the mean over every test view of the trace-free exact count (checked equal to fvcore's "
           "on those views)" if opts.accuracy else ""),
        f"timing: {clip_source}, {opts.precision}, warm-up {opts.warmup}, {opts.reps} reps interleaved across "
        f"variants, median (min–max) ms per clip; tokens = mean fraction of patch tokens per block",
        f"memory: {mem_note}",
        "Δ top-1: points against the " + " and ".join(f"'{reference_label(rv)}'" for rv in refs.values()) +
        " row over the videos both evaluated (failed ones left out), paired bootstrap 95 % interval (10,000 "
        "resamples of the videos, seed 0); 'tie' when it contains 0; the plots' error bars" if refs else
        "Δ top-1: no dense row with per-video accuracy, no paired differences",
        f"machine: {machine}; before: {before}; after: {after}",
    ] + ([finetune_note] if finetune_note else [])
    parts = ["# Token-reduction methods side by side", ""] + [f"- {n}" for n in notes] + ["", table, ""]
    if matched:
        parts += ["## IA-RED² vs each baseline at the matched budget", "",
                  "Same keep ratio (budget label); ToMe and the thresholded rows: the baseline row nearest in "
                  "GFLOPs per view. Δ = IA-RED² minus baseline, points, paired bootstrap 95 % interval.", "",
                  matched_markdown(matched), ""]
    md = "\n".join(parts)
    with open(os.path.join(out_dir, "methods.md"), "w") as f:
        f.write(md)
    write_csv(variants, os.path.join(out_dir, "methods.csv"), bs)
    matched_table = matched_rows(matched)
    _write_rows(os.path.join(out_dir, "methods_matched.csv"), MATCHED_COLUMNS, matched_table)
    with open(os.path.join(out_dir, "methods.json"), "w") as f:
        json.dump({"notes": notes, "rows": [v.row() for v in variants], "matched": matched_table}, f, indent=1,
                  default=float)
    title = f"{model}\n{cfg.TEST.SPLIT} split, {machine}"
    plot(variants, "gflops", "fvcore GFLOPs per view (GMACs)", os.path.join(out_dir, "acc_vs_gflops.png"), title)
    plot(variants, f"ms_b{bs[0]}", f"ms per clip at batch {bs[0]} (median)",
         os.path.join(out_dir, "acc_vs_latency.png"), title)
    print(md, flush=True)
    print(f"method benchmark written to {out_dir} (methods.md, methods.csv, methods.json, methods_matched.csv, "
          f"acc_vs_gflops.png, acc_vs_latency.png)", flush=True)
    return list(variants)
