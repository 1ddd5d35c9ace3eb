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

With per-group thresholds (:func:`calibrate_group_thresholds`, IARED.CALIBRATION_PER_GROUP) one shared threshold
no longer has to fit every interpreter: a later group whose probabilities all sit above it (on the issue-21 bench
group 1 gave p ~0.88 to every token group 0 kept, so the whole budget was spent before block 0) gets its own.
Each group keeps the same fraction r of the tokens alive before it on the calibration clips — its threshold is
the (1 - r) quantile of its keep probabilities there, the groups in order — and r is bisected to the budget.
The thresholds are then fixed numbers: at test time each clip keeps what its probabilities exceed (an
input-adaptive count, unlike the keep_ratio policy's fixed top-k).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence

import torch
from torch import nn

from video_iared.data.device_normalize import as_normalizer
from video_iared.pruning.cost import clip_gflops
from video_iared.pruning.decisions import (PolicyBound, PruningPolicy, Threshold, describe_operating_point,
                                          format_threshold)
from video_iared.pruning.exact_cost import forward_gflops

logger = logging.getLogger(__name__)

# bisection ends above this threshold: p > 0.999 keeps (almost) no patch token
MAX_THRESHOLD = 0.999
MIN_THRESHOLD = 0.001  # ... and, with ``fill``, below this one: p > 0.001 keeps (almost) every token
# per-group thresholds: keep probabilities binned this finely (resolution 1.5e-5; counts summed over processes)
HISTOGRAM_BINS = 1 << 16

ReduceFn = Callable[[List[float]], List[float]]
Normalizer = Callable[[torch.Tensor], torch.Tensor]  # data.device_normalize: uint8 clips -> the model's input


class CalibrationError(ValueError):
    """The budget cannot be met by any threshold (it is below the cost of keeping no patch token)."""


@dataclass
class CostPoint:
    """The thresholded model on the calibration clips: mean fvcore cost fraction, clip top-1, keep per group;
    ``group_keep``: per-group thresholds, the fraction r of its alive tokens each group was set to keep."""

    threshold: Threshold
    cost_fraction: float
    top1: float
    keep_rates: List[float]
    clips: int
    group_keep: Optional[float] = None
    keep_ratio: Optional[List[float]] = None  # keep_ratio mode: the ratios of the point (calibrate_keep_ratio)


@dataclass
class Calibration:
    """The chosen threshold, the budget, the point measured there and every point tried (in order)."""

    threshold: Threshold
    target: float
    chosen: CostPoint
    tried: List[CostPoint] = field(default_factory=list)

    def record(self) -> dict:
        """What a checkpoint stores (``iared_calibration``): plain numbers ("threshold" a list for per-group
        thresholds, with "group_keep" their r; "keep_ratio" instead of "threshold" in keep_ratio mode)."""
        point = ({"keep_ratio": list(self.chosen.keep_ratio)} if self.chosen.keep_ratio is not None else
                 {"threshold": list(self.threshold) if isinstance(self.threshold, tuple) else self.threshold})
        rec = {**point, "target_cost": self.target, "cost_fraction": self.chosen.cost_fraction,
               "top1": self.chosen.top1, "keep_rates": list(self.chosen.keep_rates), "clips": self.chosen.clips}
        if self.chosen.group_keep is not None:
            rec["group_keep"] = self.chosen.group_keep
        return rec


def measure_threshold(model: nn.Module, loader, device: torch.device, threshold: Threshold, dense_gflops: float,
                      reduce_fn: Optional[ReduceFn] = None, fvcore_sample: int = 0,
                      dtype: Optional[torch.dtype] = None, normalizer: Optional[Normalizer] = None) -> CostPoint:
    """Run ``model`` (threshold mode, every group active) on the clips of ``loader`` (dicts with "clip" and
    "label") at ``threshold`` (one, or one per group): mean fvcore GFLOPs per clip (trace-free) / ``dense_gflops``,
    top-1, mean keep rates. ``reduce_fn`` sums a list of numbers over processes (distributed runs; None: this
    process only). ``fvcore_sample``: this process's first clips also traced by fvcore (in float32, outside
    autocast); their mean trace-free and traced GFLOPs are logged side by side. ``dtype``: the autocast dtype of the
    forwards (None: float32) — the test stage's precision, so the threshold is calibrated on the decisions the test
    will make. ``normalizer``: applied to the clips on ``device`` (uint8 clips, DATA.NORMALIZE_ON_DEVICE; None:
    floats)."""
    if model.mode != "threshold":
        raise ValueError(f"threshold calibration needs the model in threshold mode, not {model.mode!r}")
    policy = PruningPolicy.uniform("threshold", model.num_groups, threshold, model.keep_ratio)
    return measure_policy(model, loader, device, policy, dense_gflops, reduce_fn, fvcore_sample, dtype, normalizer)


@torch.no_grad()
def measure_policy(model: nn.Module, loader, device: torch.device, policy: PruningPolicy, dense_gflops: float,
                   reduce_fn: Optional[ReduceFn] = None, fvcore_sample: int = 0,
                   dtype: Optional[torch.dtype] = None, normalizer: Optional[Normalizer] = None) -> CostPoint:
    """:func:`measure_threshold` for any deterministic ``policy`` (its threshold and keep ratios recorded)."""
    normalize = as_normalizer(normalizer)
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
        logger.info("calibration: %s, GFLOPs per clip on the %d clips traced by fvcore: trace-free "
                    "%.6f vs fvcore %.6f", describe_operating_point(policy.threshold, _ratios(policy)), sum(len(s) for s in sample), float(both[0]), float(both[1]))
    totals = sums.tolist()
    totals = reduce_fn(totals) if reduce_fn is not None else totals
    n = totals[2]
    if n == 0:
        raise CalibrationError("no clip to calibrate the threshold on (the loader gave no decodable clip)")
    ratios = _ratios(policy)
    return CostPoint(policy.threshold, totals[0] / n / dense_gflops, 100.0 * totals[1] / n,
                     [v / n for v in totals[3:]], int(n), keep_ratio=ratios)


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
        _log_point(f"threshold {t:.4f}", p)
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
    best = _bisect(at, float(start), MAX_THRESHOLD, best, target, steps)
    return Calibration(best.threshold, target, best, tried)


def _bisect(at: Callable[[float], CostPoint], over: float, within: float, best: CostPoint, target: float,
            steps: int) -> CostPoint:
    """``steps`` halvings between the parameters ``over`` (its cost above the budget) and ``within`` (``best``,
    within it; either order): the point measured within ``target`` closest to ``over``."""
    for _ in range(steps):
        mid = 0.5 * (over + within)
        p = at(mid)
        if p.cost_fraction <= target:
            within, best = mid, p
        else:
            over = mid
    return best


def _fill_budget(at: Callable[[float], CostPoint], within: CostPoint, target: float, steps: int,
                 tried: List[CostPoint]) -> Calibration:
    """Bisect [MIN_THRESHOLD, ``within``'s threshold] for the lowest threshold whose cost is at most ``target``
    (``within`` is such a point); ``at`` measures a threshold and appends it to ``tried``."""
    floor = at(MIN_THRESHOLD)
    if floor.cost_fraction <= target:
        return Calibration(MIN_THRESHOLD, target, floor, tried)
    best = _bisect(at, MIN_THRESHOLD, float(within.threshold), within, target, steps)
    return Calibration(best.threshold, target, best, tried)


def calibrate_group_thresholds(model: nn.Module, loader, device: torch.device, target: float, dense_gflops: float,
                               steps: int = 8, reduce_fn: Optional[ReduceFn] = None, fvcore_sample: int = 4,
                               dtype: Optional[torch.dtype] = None,
                               normalizer: Optional[Normalizer] = None) -> Calibration:
    """One threshold per group (see the module docstring): every group keeps the fraction r of the tokens alive
    before it on ``loader``'s clips, r the largest in [0, 1] (to ``steps`` halvings) whose mean fvcore cost per
    clip is at most ``target`` x ``dense_gflops``. The other arguments as :func:`calibrate_threshold`'s; the
    clips are decoded once. Raises :class:`CalibrationError` when even r = 0 (threshold 0.999 everywhere) costs
    more than the budget. The model is left unchanged: the caller applies ``result.threshold`` (a tuple)."""
    if not 0.0 < target < 1.0:
        raise ValueError(f"target cost fraction must be in (0, 1), got {target}")
    clips = [b for b in loader if b.get("clip") is not None]
    first_group = _probability_histogram(model, clips, device, (), dtype, normalizer, reduce_fn)  # r-independent

    def thresholds(r: float) -> tuple:
        cuts: List[float] = []
        for g in range(model.num_groups):
            hist = first_group if g == 0 else _probability_histogram(model, clips, device, cuts, dtype, normalizer,
                                                                     reduce_fn)
            cuts.append(_keep_fraction_cut(hist, r))
        return tuple(cuts)

    def at(r: float) -> CostPoint:
        p = measure_threshold(model, clips, device, thresholds(r), dense_gflops, reduce_fn,
                              0 if tried else fvcore_sample, dtype, normalizer)
        p.group_keep = float(r)
        _log_point(f"per-group keep {r:.4f}, thresholds {format_threshold(p.threshold)}", p)
        tried.append(p)
        return p

    tried: List[CostPoint] = []
    best = _largest_within(at, target, steps)
    return Calibration(best.threshold, target, best, tried)


@torch.no_grad()
def _probability_histogram(model: nn.Module, clips, device: torch.device, cuts: Sequence[float],
                           dtype: Optional[torch.dtype], normalizer: Optional[Normalizer],
                           reduce_fn: Optional[ReduceFn]) -> torch.Tensor:
    """Counts (HISTOGRAM_BINS,) of group ``len(cuts)``'s keep probabilities over the tokens alive before it, the
    earlier groups thresholded at ``cuts`` (summed over processes with ``reduce_fn``)."""
    normalize = as_normalizer(normalizer)
    g, G = len(cuts), model.num_groups
    # group g keeps every alive token (p > -1) so that the later groups' inputs do not matter; they do not run
    policy = PruningPolicy(("threshold",) * (g + 1) + ("all",) * (G - g - 1),
                           tuple(cuts) + (-1.0,) + (0.0,) * (G - g - 1), model.keep_ratio)
    was_training = model.training
    model.eval()
    counts = torch.zeros(HISTOGRAM_BINS, dtype=torch.float64, device=device)
    try:
        for batch in clips:
            x = normalize(batch["clip"].to(device, non_blocking=True))
            with torch.autocast(device_type=device.type, dtype=dtype, enabled=dtype is not None):
                _, decisions = model(x, policy=policy, return_decisions=True)
            alive = decisions.keep_masks[:, g - 1] if g > 0 else torch.ones_like(decisions.keep_masks[:, 0])
            p = decisions.probs[g].float()[alive]
            bins = (p * HISTOGRAM_BINS).long().clamp_(0, HISTOGRAM_BINS - 1)
            counts += torch.bincount(bins, minlength=HISTOGRAM_BINS).double()
    finally:
        model.train(was_training)
    if reduce_fn is None:
        return counts.cpu()
    return torch.tensor(reduce_fn(counts.tolist()), dtype=torch.float64)


def _keep_fraction_cut(counts: torch.Tensor, r: float) -> float:
    """The threshold (a bin's lower edge, at most MAX_THRESHOLD) above which the fraction ``r`` of the counted
    probabilities lies: the highest edge that keeps at least ``r`` of them (0 keeps every one)."""
    total = float(counts.sum())
    if total == 0 or r <= 0.0:
        return MAX_THRESHOLD
    from_top = counts.flip(0).cumsum(0).flip(0)  # from_top[b]: the counts in bins b and above
    enough = torch.nonzero(from_top >= r * total - 1e-9).flatten()
    edge = float(enough.max()) / HISTOGRAM_BINS if enough.numel() else 0.0
    return min(edge, MAX_THRESHOLD)


def calibrate_keep_ratio(model: nn.Module, loader, device: torch.device, target: float, dense_gflops: float,
                         steps: int = 10, reduce_fn: Optional[ReduceFn] = None, fvcore_sample: int = 4,
                         dtype: Optional[torch.dtype] = None,
                         normalizer: Optional[Normalizer] = None) -> Calibration:
    """keep_ratio mode: the largest uniform keep ratio r (every group keeps round(r x alive) of the tokens alive
    before it) whose mean fvcore GFLOPs per clip on ``loader`` are at most ``target`` x ``dense_gflops``, to
    ``steps`` halvings of [0, 1]. Every clip keeps the same number of tokens, but not the same cost: divided
    attention's time branch costs what the kept tokens' spread over the frames makes it, so the cost is measured
    on the clips, like the threshold's. The other arguments as :func:`calibrate_threshold`'s. Raises
    :class:`CalibrationError` when even r = 0 costs more than the budget."""
    if not 0.0 < target < 1.0:
        raise ValueError(f"target cost fraction must be in (0, 1), got {target}")
    clips = [b for b in loader if b.get("clip") is not None]  # decoded once, for every point
    G = model.num_groups

    def at(r: float) -> CostPoint:
        policy = PruningPolicy.uniform("keep_ratio", G, model.threshold, (max(r, 1e-6),) * G)  # 1e-6: no token
        p = measure_policy(model, clips, device, policy, dense_gflops, reduce_fn, 0 if tried else fvcore_sample,
                           dtype, normalizer)
        p.keep_ratio = [float(r)] * G
        _log_point(f"keep ratio {r:.4f} in every group", p)
        tried.append(p)
        return p

    tried: List[CostPoint] = []
    best = _largest_within(at, target, steps)
    return Calibration(best.threshold, target, best, tried)


def _largest_within(at: Callable[[float], CostPoint], target: float, steps: int) -> CostPoint:
    """The point of the largest fraction r in [0, 1] whose cost is within ``target`` (``at(r)`` measures one; cost
    grows with r): r = 0 and r = 1 first, then ``steps`` halvings between them. Raises :class:`CalibrationError`
    when even r = 0 is over the budget."""
    floor = at(0.0)
    if floor.cost_fraction > target:
        raise CalibrationError(f"target cost {target:.3f} of dense is below the cost of keeping (almost) no patch "
                               f"token ({floor.cost_fraction:.3f}: stem, interpreters, head and the CLS token alone)")
    full = at(1.0)
    return full if full.cost_fraction <= target else _bisect(at, 1.0, 0.0, floor, target, steps)


def _log_point(what: str, p: CostPoint) -> None:
    logger.info("calibration: %s -> cost %.3f of dense (fvcore's count, trace-free, %d clips), top-1 %.2f%%, keep %s",
                what, p.cost_fraction, p.clips, p.top1, "[" + ", ".join(f"{k:.3f}" for k in p.keep_rates) + "]")


def _ratios(policy: PruningPolicy) -> Optional[List[float]]:
    """The keep ratios of a keep_ratio policy (its operating point), None for a thresholded one."""
    return list(policy.keep_ratio) if "keep_ratio" in policy.groups else None
