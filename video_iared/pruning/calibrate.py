"""Calibrate the inference threshold to a cost budget: fvcore GFLOPs per clip measured on held-out clips.

Where the REINFORCE curriculum lands is not set by the recipe: on the synthetic benchmark the same recipe
kept 35-44 % of the tokens over three seeds (2.24x to 1.91x fewer GFLOPs). For a model that must run within
a budget, :func:`calibrate_threshold` raises the keep threshold until the mean cost per clip on the given
clips is at most ``target`` times the dense model's — fvcore's count of every clip, like the test stage's
figures, taken from the kept sets of the forward (``exact_cost.forward_gflops``: no trace per clip; the
first clips of the first point are also traced and logged beside it). The threshold is only ever raised:
a model already within the budget keeps its threshold. Cost is not exactly monotonic in the threshold
(later groups score features that depend on what earlier groups kept), so bisection only ever returns a
threshold whose measured cost met the budget.

With ``fill`` (IARED.CALIBRATION_FILL) the budget is an operating point rather than a ceiling: a model already
within it gets the *lowest* threshold whose cost still meets it (bisection below its threshold), so it keeps as
many tokens as the budget pays for — budgets 0.7 and 0.5 then give two different models even when the curriculum
landed below both.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable, List, Optional

import torch
from torch import nn

from video_iared.data.device_normalize import as_normalizer
from video_iared.pruning.cost import clip_gflops
from video_iared.pruning.decisions import PolicyBound, PruningPolicy
from video_iared.pruning.exact_cost import forward_gflops

logger = logging.getLogger(__name__)

# bisection ends above this threshold: p > 0.999 keeps (almost) no patch token
MAX_THRESHOLD = 0.999
MIN_THRESHOLD = 0.001  # ... and, with ``fill``, below this one: p > 0.001 keeps (almost) every token

ReduceFn = Callable[[List[float]], List[float]]
Normalizer = Callable[[torch.Tensor], torch.Tensor]  # data.device_normalize: uint8 clips -> the model's input


class CalibrationError(ValueError):
    """The budget cannot be met by any threshold (it is below the cost of keeping no patch token)."""


@dataclass
class CostPoint:
    """The thresholded model on the calibration clips: mean fvcore cost fraction, clip top-1, keep per group."""

    threshold: float
    cost_fraction: float
    top1: float
    keep_rates: List[float]
    clips: int


@dataclass
class Calibration:
    """The chosen threshold, the budget, the point measured there and every point tried (in order)."""

    threshold: float
    target: float
    chosen: CostPoint
    tried: List[CostPoint] = field(default_factory=list)

    def record(self) -> dict:
        """What a checkpoint stores (``iared_calibration``): plain numbers."""
        return {"threshold": self.threshold, "target_cost": self.target, "cost_fraction": self.chosen.cost_fraction,
                "top1": self.chosen.top1, "keep_rates": list(self.chosen.keep_rates), "clips": self.chosen.clips}


@torch.no_grad()
def measure_threshold(model: nn.Module, loader, device: torch.device, threshold: float, dense_gflops: float,
                      reduce_fn: Optional[ReduceFn] = None, fvcore_sample: int = 0,
                      dtype: Optional[torch.dtype] = None, normalizer: Optional[Normalizer] = None) -> CostPoint:
    """Run ``model`` (threshold mode, every group active) on the clips of ``loader`` (dicts with "clip" and
    "label") at ``threshold``: mean fvcore GFLOPs per clip (trace-free) / ``dense_gflops``, top-1, mean keep
    rates. ``reduce_fn`` sums a list of numbers over processes (distributed runs; None: this process only).
    ``fvcore_sample``: this process's first clips also traced by fvcore (in float32, outside autocast); their mean
    trace-free and traced GFLOPs are logged side by side. ``dtype``: the autocast dtype of the forwards (None:
    float32) — the test stage's precision, so the threshold is calibrated on the decisions the test will make.
    ``normalizer``: applied to the clips on ``device`` (uint8 clips, DATA.NORMALIZE_ON_DEVICE; None: floats)."""
    normalize = as_normalizer(normalizer)
    if model.mode != "threshold":
        raise ValueError(f"threshold calibration needs the model in threshold mode, not {model.mode!r}")
    policy = PruningPolicy.uniform("threshold", model.num_groups, threshold, model.keep_ratio)
    bound = PolicyBound(model, policy)
    was_training = model.training
    model.eval()
    sums = torch.zeros(3 + model.num_groups, dtype=torch.float64, device=device)  # gflops, correct, clips, keeps
    sample: List[torch.Tensor] = []  # (n, 2): trace-free, fvcore
    try:
        for batch in loader:
            if batch.get("clip") is None:
                continue
            x = normalize(batch["clip"].to(device, non_blocking=True))
            y = torch.as_tensor(batch["label"]).to(device)
            with torch.autocast(device_type=device.type, dtype=dtype, enabled=dtype is not None):
                logits, decisions = model(x, policy=policy, return_decisions=True)
            correct = (logits.argmax(1) == y).sum().double()
            keep = decisions.keep_rates.sum(0).double()
            gflops = forward_gflops(model, decisions, x.shape)  # (n,): the kept sets of this forward, on the device
            sums += torch.cat([torch.stack([gflops.sum(), correct, correct.new_tensor(x.shape[0])]), keep])
            need = fvcore_sample - sum(len(s) for s in sample)
            if need > 0:
                sample.append(torch.stack([gflops[:need].cpu(), clip_gflops(bound, x[:need])], 1))
    finally:
        model.train(was_training)
    if sample:
        both = torch.cat(sample).mean(0)
        logger.info("calibration: threshold %.4f, GFLOPs per clip on the %d clips traced by fvcore: trace-free "
                    "%.6f vs fvcore %.6f", threshold, sum(len(s) for s in sample), float(both[0]), float(both[1]))
    totals = sums.tolist()
    totals = reduce_fn(totals) if reduce_fn is not None else totals
    n = totals[2]
    if n == 0:
        raise CalibrationError("no clip to calibrate the threshold on (the loader gave no decodable clip)")
    return CostPoint(float(threshold), totals[0] / n / dense_gflops, 100.0 * totals[1] / n,
                     [v / n for v in totals[3:]], int(n))


def calibrate_threshold(model: nn.Module, loader, device: torch.device, target: float, dense_gflops: float,
                        start: float, steps: int = 8, reduce_fn: Optional[ReduceFn] = None,
                        fvcore_sample: int = 4, dtype: Optional[torch.dtype] = None,
                        normalizer: Optional[Normalizer] = None, fill: bool = False) -> Calibration:
    """The lowest threshold in [``start``, 0.999] (to a bisection of ``steps`` halvings) whose mean fvcore cost
    per clip on ``loader`` is at most ``target`` x ``dense_gflops``; ``start`` itself when it already is, unless
    ``fill``: then the lowest such threshold in [0.001, ``start``] (0.001 when even that is within budget).
    At the first point, ``fvcore_sample`` clips are also traced by fvcore (logged beside the trace-free count).
    ``dtype``: the forwards' autocast dtype, ``normalizer`` the clips' (``measure_threshold``).

    The clips are decoded once and held on the host for every point of the bisection (what the loader gives:
    uint8 with DATA.NORMALIZE_ON_DEVICE, 308 MB for 256 TimeSformer-B 8x224 clips; float32 four times that), so
    a point costs one forward pass over them, not a decode.

    Raises :class:`CalibrationError` when even threshold 0.999 costs more than the budget. The model is left
    unchanged: the caller applies ``result.threshold`` (``model.set_operating_point``).
    """
    if not 0.0 < target < 1.0:
        raise ValueError(f"target cost fraction must be in (0, 1), got {target}")

    clips = [b for b in loader if b.get("clip") is not None]  # decoded once, for every point

    def at(t: float) -> CostPoint:
        p = measure_threshold(model, clips, device, t, dense_gflops, reduce_fn, 0 if tried else fvcore_sample,
                              dtype, normalizer)
        logger.info("calibration: threshold %.4f -> cost %.3f of dense (fvcore's count, trace-free, %d clips), "
                    "top-1 %.2f%%, keep %s",
                    t, p.cost_fraction, p.clips, p.top1, "[" + ", ".join(f"{k:.3f}" for k in p.keep_rates) + "]")
        tried.append(p)
        return p

    tried: List[CostPoint] = []
    first = at(start)
    if first.cost_fraction <= target:
        if not fill or start <= MIN_THRESHOLD:
            return Calibration(float(start), target, first, tried)
        return _fill_budget(at, first, target, steps, tried)
    best = at(MAX_THRESHOLD)
    if best.cost_fraction > target:
        raise CalibrationError(f"target cost {target:.3f} of dense is below the cost at threshold {MAX_THRESHOLD} "
                               f"({best.cost_fraction:.3f}: stem, interpreters, head and the CLS token alone)")
    best = _bisect(at, float(start), best, target, steps)
    return Calibration(best.threshold, target, best, tried)


def _bisect(at: Callable[[float], CostPoint], lo: float, within: CostPoint, target: float, steps: int) -> CostPoint:
    """``steps`` halvings of [``lo``, ``within``'s threshold], where ``lo`` is over the budget and ``within`` meets
    it: the point of the lowest threshold measured within ``target``."""
    hi, best = within.threshold, within
    for _ in range(steps):
        mid = 0.5 * (lo + hi)
        p = at(mid)
        if p.cost_fraction <= target:
            hi, best = mid, p
        else:
            lo = mid
    return best


def _fill_budget(at: Callable[[float], CostPoint], within: CostPoint, target: float, steps: int,
                 tried: List[CostPoint]) -> Calibration:
    """Bisect [MIN_THRESHOLD, ``within``'s threshold] for the lowest threshold whose cost is at most ``target``
    (``within`` is such a point); ``at`` measures a threshold and appends it to ``tried``."""
    floor = at(MIN_THRESHOLD)
    if floor.cost_fraction <= target:
        return Calibration(MIN_THRESHOLD, target, floor, tried)
    best = _bisect(at, MIN_THRESHOLD, within, target, steps)
    return Calibration(best.threshold, target, best, tried)
