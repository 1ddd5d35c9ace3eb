"""Paired comparison of two test runs on the same videos: the top-1 difference with its bootstrap interval.

Per-video top-1 correctness (1 / 0) of each run, matched by video index; a video failed in either run (or tested
in one run only) is left out of both and counted. ``paired_top1(a, b)`` gives mean(a) - mean(b) and its paired
bootstrap 95 % interval (``utils.bootstrap.paired_bootstrap_ci``: the same resampled videos for both runs);
``paired_line`` formats it for the run_net summary, "tie" when the interval contains 0.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import torch

from video_iared.engine.results import load_predictions
from video_iared.utils.bootstrap import PairedCI, paired_bootstrap_ci


@dataclass(frozen=True)
class PairedTop1:
    """The top-1 difference of run a minus run b (fractions; ``ci`` None when no video was scored in both),
    over ``videos`` matched videos, ``left_out`` videos failed in either run (or in one run only)."""

    ci: Optional[PairedCI]
    videos: int
    left_out: int


def correct_by_index(records: Sequence[Dict]) -> Dict[int, Optional[int]]:
    """video index -> 1 when the top-1 class of ``probs`` (K,) is ``label``, 0 when not, None when the video failed
    (``probs`` None). ``records``: the test stage's per-video records (``index``, ``label``, ``probs``)."""
    out: Dict[int, Optional[int]] = {}
    for r in records:
        p = r.get("probs")
        out[int(r["index"])] = None if p is None else int(int(torch.as_tensor(p).argmax()) == int(r["label"]))
    return out


def _labels(records: Sequence[Dict]) -> Dict[int, int]:
    return {int(r["index"]): int(r["label"]) for r in records}


def paired_top1(a: Sequence[Dict], b: Sequence[Dict], num_resamples: int = 10_000, confidence: float = 0.95,
                seed: int = 0) -> PairedTop1:
    """Top-1 of records ``a`` minus top-1 of records ``b`` on the videos evaluated in both, with its paired
    bootstrap interval. Raises ValueError when a video index carries another label in ``b`` than in ``a``
    (the two runs tested different lists)."""
    la, lb = _labels(a), _labels(b)
    clash = sorted(k for k in la.keys() & lb.keys() if la[k] != lb[k])
    if clash:
        raise ValueError(f"paired_top1: video {clash[0]} has label {la[clash[0]]} in one run and {lb[clash[0]]} in "
                         f"the other ({len(clash)} such videos): not the same test list")
    ca, cb = correct_by_index(a), correct_by_index(b)
    both = sorted(k for k in ca.keys() & cb.keys() if ca[k] is not None and cb[k] is not None)
    left_out = len(ca.keys() | cb.keys()) - len(both)
    if not both:
        return PairedTop1(None, 0, left_out)
    ci = paired_bootstrap_ci([ca[k] for k in both], [cb[k] for k in both], num_resamples, confidence, seed)
    return PairedTop1(ci, len(both), left_out)


def paired_line(name_a: str, name_b: str, result: PairedTop1) -> str:
    """E.g. ``IA-RED² vs dense: video top-1 -1.25 points, paired bootstrap 95 % interval [-3.12, +0.62] over 160
    videos (0 left out: failed in either run): tie``."""
    head = f"{name_a} vs {name_b}: video top-1 "
    tail = f"({result.left_out} left out: failed in either run)"
    ci = result.ci
    if ci is None:
        return head + f"n/a, no video evaluated in both runs {tail}"
    d, lo, hi = (f"{100.0 * v:+.2f}" for v in (ci.diff, ci.lower, ci.upper))
    verdict = "tie" if ci.tie else (f"{name_a} higher" if ci.diff > 0 else f"{name_a} lower")
    return (head + f"{d} points, paired bootstrap {100 * ci.confidence:g} % interval [{lo}, {hi}] over "
            f"{result.videos} videos {tail}: {verdict}")


def records_from_predictions(pt_path: str) -> List[Dict]:
    """The per-video records (``index``, ``label``, ``probs`` (K,) or None when failed) of a predictions .pt
    (``results.write_predictions``)."""
    p = load_predictions(pt_path)
    failed = p["predictions"] < 0
    return [{"index": int(i), "label": int(y), "probs": None if bool(f) else pr}
            for i, y, f, pr in zip(p["index"].tolist(), p["labels"].tolist(), failed, p["probabilities"])]
