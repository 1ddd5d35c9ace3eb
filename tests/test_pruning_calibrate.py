"""Threshold calibration to a cost budget (``pruning.calibrate``): fvcore cost per clip measured on real clips,
the budget met, the result reproducible by an independent measurement; and the engine's use of it."""
import pytest
import torch

from video_iared.pruning.calibrate import (HISTOGRAM_BINS, MAX_THRESHOLD, CalibrationError, _keep_fraction_cut,
                                           calibrate_group_thresholds, calibrate_keep_ratio, calibrate_threshold,
                                           measure_threshold)
from video_iared.pruning.decisions import PruningPolicy
from video_iared.pruning.cost import clip_gflops, dense_gflops
from video_iared.pruning.iared import IAREDTimeSformer

T, S, K = 4, 32, 3


def _model():
    torch.manual_seed(0)
    m = IAREDTimeSformer(groups=(1, 1), interp_heads=2, interp_head_dim=8, img_size=S, patch_size=8, num_frames=T,
                         embed_dim=32, depth=2, num_heads=2, num_classes=K).eval()
    with torch.no_grad():  # interpreters with a wide spread of keep probabilities
        for interp in m.interpreters:
            interp.qk.weight.normal_(0.0, 0.5)
    return m


def _loader(n_batches=3, batch=4):
    g = torch.Generator().manual_seed(1)
    return [{"clip": torch.randn(batch, 3, T, S, S, generator=g), "label": torch.randint(0, K, (batch,), generator=g)}
            for _ in range(n_batches)]


def _dense(m, loader):
    return dense_gflops(m, loader[0]["clip"][:1])


def test_calibrated_threshold_meets_the_budget_and_a_new_measurement_agrees():
    m, loader = _model(), _loader(2, 3)
    dense = _dense(m, loader)
    full = measure_threshold(m, loader, torch.device("cpu"), 0.0, dense)
    assert full.clips == 6 and full.cost_fraction > 0.6
    cal = calibrate_threshold(m, loader, torch.device("cpu"), 0.6, dense, start=0.0, steps=4)
    assert cal.chosen.cost_fraction <= 0.6 and cal.threshold > 0.0
    assert m.threshold == 0.5  # the caller applies the result
    # bisection bracket: a lower threshold tried went over the budget, within (0.999 - 0) / 2^4 of the choice
    over = [p.threshold for p in cal.tried if p.cost_fraction > 0.6]
    assert over and max(over) < cal.threshold <= max(over) + 0.999 / 2**4 + 1e-9
    # independent measurement: every clip traced at the chosen threshold
    m.set_operating_point(threshold=cal.threshold)
    per_clip = torch.cat([clip_gflops(m, b["clip"]) for b in loader])
    assert float(per_clip.mean()) / dense == pytest.approx(cal.chosen.cost_fraction, rel=1e-9)
    assert cal.record()["threshold"] == cal.threshold and cal.record()["target_cost"] == 0.6


def test_a_model_within_budget_keeps_its_threshold():
    m, loader = _model(), _loader(1)
    dense = _dense(m, loader)
    cal = calibrate_threshold(m, loader, torch.device("cpu"), 0.99, dense, start=0.5)
    assert cal.threshold == 0.5 and len(cal.tried) == 1


def test_fill_lowers_the_threshold_of_a_model_under_budget_to_use_the_budget():
    m, loader = _model(), _loader(2, 3)
    dense = _dense(m, loader)
    at_start = measure_threshold(m, loader, torch.device("cpu"), 0.7, dense)
    target = at_start.cost_fraction + 0.1  # within budget at 0.7, with room left
    assert target < 0.99
    assert calibrate_threshold(m, loader, torch.device("cpu"), target, dense, start=0.7).threshold == 0.7
    cal = calibrate_threshold(m, loader, torch.device("cpu"), target, dense, start=0.7, steps=5, fill=True)
    assert cal.threshold < 0.7 and at_start.cost_fraction < cal.chosen.cost_fraction <= target
    # the bracket: a lower threshold tried went over the budget, within (0.7 - 0.001) / 2^5 of the choice
    over = [p.threshold for p in cal.tried if p.cost_fraction > target]
    assert over and max(over) < cal.threshold <= max(over) + 0.699 / 2**5 + 1e-9
    assert cal.tried[0].threshold == 0.7 and cal.tried[1].threshold == 0.001 and len(cal.tried) == 2 + 5
    # a budget that even threshold 0.001 (every token) meets: 0.001
    assert calibrate_threshold(m, loader, torch.device("cpu"), 0.999, dense, start=0.7, fill=True).threshold == 0.001


def test_a_budget_below_the_fixed_costs_is_refused():
    m, loader = _model(), _loader(1)
    with pytest.raises(CalibrationError, match="below the cost at threshold 0.999"):
        calibrate_threshold(m, loader, torch.device("cpu"), 0.01, _dense(m, loader), start=0.5)


def test_no_clip_is_an_error():
    m = _model()
    with pytest.raises(CalibrationError, match="no clip"):
        measure_threshold(m, [{"clip": None, "label": None}], torch.device("cpu"), 0.5, 1.0)


def test_reduce_fn_sums_over_processes():
    """Two 'processes' with the same clips: the reduced means equal one process's."""
    m, loader = _model(), _loader(1)
    dense = _dense(m, loader)
    one = measure_threshold(m, loader, torch.device("cpu"), 0.5, dense)
    two = measure_threshold(m, loader, torch.device("cpu"), 0.5, dense, reduce_fn=lambda v: [2 * x for x in v])
    assert two.clips == 2 * one.clips and two.cost_fraction == pytest.approx(one.cost_fraction)
    assert two.top1 == pytest.approx(one.top1) and two.keep_rates == pytest.approx(one.keep_rates)
    # a process whose shard is empty gets the others' totals, hence the same point (no error, no hang)
    totals = [one.cost_fraction * dense * one.clips, one.top1 / 100 * one.clips, one.clips,
              *[k * one.clips for k in one.keep_rates]]
    empty = measure_threshold(m, [], torch.device("cpu"), 0.5, dense,
                              reduce_fn=lambda v: [a + b for a, b in zip(v, totals)])
    assert empty.clips == one.clips and empty.cost_fraction == pytest.approx(one.cost_fraction)


def test_calibration_refuses_a_model_not_in_threshold_mode():
    m, loader = _model(), _loader(1)
    m.set_operating_point(mode="keep_ratio")
    with pytest.raises(ValueError, match="needs the model in threshold mode"):
        measure_threshold(m, loader, torch.device("cpu"), 0.5, 1.0)


def test_per_group_thresholds_keep_the_same_fraction_in_every_group_within_the_budget():
    m, loader = _model(), _loader(2, 3)
    dense = _dense(m, loader)
    steps = 5
    cal = calibrate_group_thresholds(m, loader, torch.device("cpu"), 0.6, dense, steps=steps)
    assert isinstance(cal.threshold, tuple) and len(cal.threshold) == 2 and m.threshold == 0.5
    r, n = cal.chosen.group_keep, 6 * T * (S // 8) ** 2  # 384 patch tokens over the clips
    assert cal.chosen.cost_fraction <= 0.6 and 0.0 < r < 1.0
    # every group kept the fraction r of the tokens alive before it (to a token: the cut is a probability)
    k0, k1 = cal.chosen.keep_rates
    assert abs(k0 - r) <= 1.0 / n + 1e-9 and abs(k1 - r * k0) <= 1.0 / n + 1e-9
    # the bracket: r = 0 and r = 1 first, then a larger r went over the budget, within 1 / 2^steps of the choice
    assert [p.group_keep for p in cal.tried[:2]] == [0.0, 1.0] and len(cal.tried) == 2 + steps
    over = [p.group_keep for p in cal.tried if p.cost_fraction > 0.6]
    assert over and r < min(over) <= r + 1.0 / 2**steps + 1e-9
    # independent measurement: every clip traced with the model set to the chosen thresholds
    m.set_operating_point(threshold=cal.threshold)
    per_clip = torch.cat([clip_gflops(m, b["clip"]) for b in loader])
    assert float(per_clip.mean()) / dense == pytest.approx(cal.chosen.cost_fraction, rel=1e-9)
    rec = cal.record()
    assert rec["threshold"] == list(cal.threshold) and rec["group_keep"] == r and rec["target_cost"] == 0.6


def test_per_group_thresholds_of_a_budget_that_pays_for_every_token_keep_every_token():
    m, loader = _model(), _loader(1)
    cal = calibrate_group_thresholds(m, loader, torch.device("cpu"), 0.999, 10.0 * _dense(m, loader))
    assert cal.chosen.group_keep == 1.0 and cal.chosen.keep_rates == [1.0, 1.0] and len(cal.tried) == 2
    with pytest.raises(CalibrationError, match="keeping \\(almost\\) no patch token"):
        calibrate_group_thresholds(m, loader, torch.device("cpu"), 0.01, _dense(m, loader))


def test_a_cut_keeps_the_fraction_of_the_histogram_above_it():
    """Hand-checked: 10 probabilities, 4 at 0.9, 3 at 0.6, 3 at 0.2 (as bin indices)."""
    counts = torch.zeros(HISTOGRAM_BINS, dtype=torch.float64)
    for p, c in ((0.9, 4), (0.6, 3), (0.2, 3)):
        counts[int(p * HISTOGRAM_BINS)] = c
    edge = lambda p: int(p * HISTOGRAM_BINS) / HISTOGRAM_BINS  # noqa: E731
    assert _keep_fraction_cut(counts, 0.4) == edge(0.9)  # the 4 at 0.9
    assert _keep_fraction_cut(counts, 0.5) == edge(0.6)  # at least half: the 7 at 0.6 and above
    assert _keep_fraction_cut(counts, 0.7) == edge(0.6)
    assert _keep_fraction_cut(counts, 0.71) == edge(0.2)
    assert _keep_fraction_cut(counts, 1.0) == edge(0.2)
    assert _keep_fraction_cut(counts, 0.0) == MAX_THRESHOLD
    assert _keep_fraction_cut(torch.zeros(HISTOGRAM_BINS), 0.5) == MAX_THRESHOLD


def test_a_policy_with_one_threshold_per_group_applies_each_to_its_group():
    m, loader = _model(), _loader(1)
    x = loader[0]["clip"]
    _, ref = m(x, policy=PruningPolicy.uniform("threshold", 2, 0.0), return_decisions=True)  # every token
    t0 = float(ref.probs[0].median())
    _, first = m(x, policy=PruningPolicy.uniform("threshold", 2, (t0, 0.0)), return_decisions=True)
    assert torch.equal(first.keep_masks[:, 0], ref.probs[0] > t0)
    t1 = float(first.probs[1][first.keep_masks[:, 0]].median())
    _, both = m(x, policy=PruningPolicy.uniform("threshold", 2, (t0, t1)), return_decisions=True)
    assert torch.equal(both.keep_masks[:, 0], first.keep_masks[:, 0])
    assert torch.equal(both.keep_masks[:, 1], first.keep_masks[:, 0] & (first.probs[1] > t1))
    assert both.keep_rates[:, 1].sum() < both.keep_rates[:, 0].sum()
    m.set_operating_point(threshold=[t0, t1])
    assert m.threshold == (t0, t1) and m.default_policy().threshold_at(1) == t1
    with pytest.raises(ValueError, match="one value per group"):
        m.set_operating_point(threshold=[0.5, 0.5, 0.5])
    with pytest.raises(ValueError, match="one value per group"):
        PruningPolicy.uniform("threshold", 2, (0.5,))


def test_keep_ratio_mode_gets_the_largest_ratio_within_the_budget():
    m, loader = _model(), _loader(2, 3)
    m.set_operating_point(mode="keep_ratio")
    dense = _dense(m, loader)
    steps = 6
    cal = calibrate_keep_ratio(m, loader, torch.device("cpu"), 0.6, dense, steps=steps)
    r = cal.chosen.keep_ratio
    assert r[0] == r[1] and 0.0 < r[0] < 1.0 and cal.chosen.cost_fraction <= 0.6 and len(cal.tried) == 2 + steps
    assert cal.record()["keep_ratio"] == r and "threshold" not in cal.record()
    # the bracket: a larger ratio tried went over the budget, within 1 / 2^steps of the choice
    over = [p.keep_ratio[0] for p in cal.tried if p.cost_fraction > 0.6]
    assert over and r[0] < min(over) <= r[0] + 1.0 / 2**steps + 1e-9
    # independent measurement: every clip traced with the model at the chosen ratios
    m.set_operating_point(keep_ratio=r)
    per_clip = torch.cat([clip_gflops(m, b["clip"]) for b in loader])
    assert float(per_clip.mean()) / dense == pytest.approx(cal.chosen.cost_fraction, rel=1e-9)
    with pytest.raises(CalibrationError, match="keeping \\(almost\\) no patch token"):
        calibrate_keep_ratio(m, loader, torch.device("cpu"), 0.01, dense)
