"""The method benchmark's paired comparisons: every row's video top-1 minus the dense row's (and the "dense + N"
row's, the dense row finetuned with ``--finetune-epochs``), and every IA-RED² row minus each baseline at the
matched budget, each with its paired bootstrap 95 % interval over the videos both rows evaluated.

The pairing and the interval are the run_net summary's (``engine.comparison.paired_top1``: per-video 0/1
correctness matched by video index, a video failed in either row left out and counted). Needs the rows'
``video_records`` (filled by ``method_measure.measure_accuracy``); rows without them get no comparison.
"""
from __future__ import annotations

import math

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

from video_iared.benchmarks.method_variants import LABELS
from video_iared.benchmarks.variant import Variant
from video_iared.engine.comparison import PairedTop1, paired_top1

# the reference rows, by the key prefix of their fields: "dense" (not finetuned), "dense_n" (finetuned N epochs)
REFERENCES = ("dense", "dense_n")
FIELD_SUFFIXES = ("", "_lo", "_hi", "_tie", "_videos", "_left_out")
BASELINES = ("random", "evit", "tome")
IARED_METHODS = ("iared_ratio", "iared_threshold")


def field_names(ref: str) -> List[str]:
    """The methods.csv / .json fields of the difference against ``ref`` ("dense" | "dense_n"): the difference in
    points, the interval's ends, whether it is a tie, the videos compared and those left out."""
    return [f"top1_vs_{ref}{s}" for s in FIELD_SUFFIXES]


def compare_fields() -> List[str]:
    """Every comparison field, in the column order of methods.csv (after the existing columns)."""
    return [f for ref in REFERENCES for f in field_names(ref)]


def reference_rows(variants: Sequence[Variant]) -> Dict[str, Variant]:
    """"dense": the first dense row not finetuned; "dense_n": the first dense row finetuned (``finetune_epochs``);
    each only when there is one with per-video records."""
    out: Dict[str, Variant] = {}
    for v in variants:
        if v.method != "dense" or not v.video_records:
            continue
        out.setdefault("dense_n" if v.results.get("finetune_epochs") else "dense", v)
    return out


def reference_label(var: Variant) -> str:
    """The table's name of a reference row: "dense" or "dense + N"."""
    n = var.results.get("finetune_epochs")
    return f"dense + {n}" if n else "dense"


def _points(p: PairedTop1) -> list:
    """[difference, lower, upper (points), tie, videos, left out]; None for the first four without a video."""
    ci = p.ci
    values = [None] * 4 if ci is None else [100.0 * ci.diff, 100.0 * ci.lower, 100.0 * ci.upper, ci.tie]
    return values + [p.videos, p.left_out]


def _fields(ref: str, p: PairedTop1) -> Dict[str, object]:
    return dict(zip(field_names(ref), _points(p)))


def add_paired_top1(variants: Sequence[Variant], num_resamples: int = 10_000, seed: int = 0) -> Dict[str, Variant]:
    """Fill every row's ``results`` with its top-1 difference (points) against each reference row that exists
    (``field_names``; the reference row itself gets none against itself). Returns the reference rows used."""
    refs = reference_rows(variants)
    for v in variants:
        if not v.video_records:
            continue
        for ref, rv in refs.items():
            if rv is not v:
                v.results.update(_fields(ref, paired_top1(v.video_records, rv.video_records, num_resamples,
                                                          seed=seed)))
    return refs


@dataclass(frozen=True)
class MatchedPair:
    """An IA-RED² row and a baseline row at the matched budget, and top-1 of the first minus the second."""

    iared: Variant
    baseline: Variant
    result: PairedTop1


def _match(row: Variant, candidates: Sequence[Variant]) -> Optional[Variant]:
    """The candidate at ``row``'s budget label, else the one nearest in measured GFLOPs per view (ToMe's merge
    counts, IA-RED²'s thresholds: the same token fraction is not the same cost when a policy keeps more tokens
    early, or an interpreter runs), else in token fraction where GFLOPs were not measured; None without
    candidates."""
    same = [c for c in candidates if c.budget == row.budget]
    if same:
        return same[0]
    for key in (lambda v: v.results.get("gflops", math.nan), lambda v: v.token_fraction):
        known = [c for c in candidates if math.isfinite(key(c))]
        if known and math.isfinite(key(row)):
            return min(known, key=lambda c: abs(key(c) - key(row)))
    return None


def matched_pairs(variants: Sequence[Variant], num_resamples: int = 10_000, seed: int = 0) -> List[MatchedPair]:
    """Every IA-RED² row against each baseline method at the matched budget (``_match``), with the paired
    interval of the top-1 difference; rows without per-video records are skipped."""
    rows = [v for v in variants if v.video_records]
    out = []
    for a in (v for v in rows if v.method in IARED_METHODS):
        for method in BASELINES:
            b = _match(a, [v for v in rows if v.method == method])
            if b is not None:
                out.append(MatchedPair(a, b, paired_top1(a.video_records, b.video_records, num_resamples,
                                                         seed=seed)))
    return out


def ci_cell(p: Optional[PairedTop1]) -> str:
    """A table cell: ``+1.25 [-0.40, +2.90] tie`` (points), "–" without a comparison."""
    return "–" if p is None or p.ci is None else p.ci.describe(100.0)


def row_cell(var: Variant, ref: str) -> str:
    """The cell of ``var``'s difference against ``ref`` from its ``results`` fields ("–" when there is none)."""
    r = var.results
    d, lo, hi, tie = (r.get(f) for f in field_names(ref)[:4])
    if d is None:
        return "–"
    return f"{d:+.2f} [{lo:+.2f}, {hi:+.2f}]" + (" tie" if tie else "")


def _label(v: Variant) -> str:
    return f"{LABELS.get(v.method, v.method)} {v.budget}".strip()


def matched_markdown(pairs: Sequence[MatchedPair]) -> str:
    """The second table of methods.md: IA-RED² minus each baseline at the matched budget."""
    head = ["IA-RED² row", "baseline row", "tokens (IA-RED² / baseline)", "GFLOPs/view (IA-RED² / baseline)",
            "videos", "Δ top-1 [95 % CI]"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for p in pairs:
        a, b = p.iared, p.baseline
        g = f"{a.results.get('gflops', float('nan')):.4f} / {b.results.get('gflops', float('nan')):.4f}"
        lines.append(f"| {_label(a)} | {_label(b)} | {a.token_fraction:.3f} / {b.token_fraction:.3f} | {g} | "
                     f"{p.result.videos} | {ci_cell(p.result)} |")
    return "\n".join(lines)


MATCHED_COLUMNS = ["iared_method", "iared_budget", "baseline_method", "baseline_budget", "iared_token_fraction",
                   "baseline_token_fraction", "iared_gflops", "baseline_gflops", "top1_diff", "top1_diff_lo",
                   "top1_diff_hi", "tie", "videos", "left_out"]


def matched_rows(pairs: Sequence[MatchedPair]) -> List[Dict[str, object]]:
    """The matched comparisons as flat records (methods_matched.csv, methods.json "matched"); points."""
    out = []
    for p in pairs:
        a, b = p.iared, p.baseline
        out.append(dict(zip(MATCHED_COLUMNS, [a.method, a.budget, b.method, b.budget, a.token_fraction,
                                              b.token_fraction, a.results.get("gflops"), b.results.get("gflops")]
                            + _points(p.result))))
    return out
