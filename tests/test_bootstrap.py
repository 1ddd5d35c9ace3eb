"""utils/bootstrap.py: the paired bootstrap interval on cases whose bootstrap distribution is known exactly."""
import numpy as np
import pytest
import torch

from video_iared.utils.bootstrap import paired_bootstrap_ci


def test_identical_scores_give_a_zero_interval_and_a_tie():
    a = np.random.default_rng(0).uniform(size=50)
    ci = paired_bootstrap_ci(a, a.copy(), num_resamples=500)
    assert (ci.diff, ci.lower, ci.upper, ci.tie) == (0.0, 0.0, 0.0, True)


def test_a_constant_shift_gives_the_shift_exactly():
    b = np.arange(40, dtype=float) % 2  # 0/1 scores; a = b + 0.25 is exact in binary
    ci = paired_bootstrap_ci(b + 0.25, b, num_resamples=500)
    assert (ci.diff, ci.lower, ci.upper, ci.tie) == (0.25, 0.25, 0.25, False)


def test_the_interval_of_a_tiny_case_is_its_enumerated_quantiles():
    # d = a - b = [0, 0, 3]: a resample's mean is the number k of draws of video 2, k ~ Binomial(3, 1/3):
    # P(k) = 8/27, 12/27, 6/27, 1/27, cumulative 0.296, 0.741, 0.963, 1. The 2.5 % quantile is 0, the 97.5 %
    # one 3 (0.963 < 0.975); at 90 % the 95 % quantile is 2 (0.741 < 0.95 <= 0.963).
    a, b = [1.0, 2.0, 5.0], [1.0, 2.0, 2.0]
    ci = paired_bootstrap_ci(a, b, num_resamples=20_000, seed=1)
    assert (ci.diff, ci.lower, ci.upper, ci.tie) == (1.0, 0.0, 3.0, True)
    ci90 = paired_bootstrap_ci(a, b, num_resamples=20_000, confidence=0.9, seed=1)
    assert (ci90.lower, ci90.upper) == (0.0, 2.0)
    # d = [0, 1]: means 0, 0.5, 1 with P 1/4, 1/2, 1/4: the 30 % and 70 % quantiles are both 0.5, no tie
    ci40 = paired_bootstrap_ci([0.0, 1.0], [0.0, 0.0], num_resamples=20_000, confidence=0.4, seed=2)
    assert (ci40.lower, ci40.upper, ci40.tie) == (0.5, 0.5, False)


def test_pairing_is_kept_the_same_indices_for_both_arrays():
    # a and b vary a lot from video to video but differ by exactly +1 on every video: a paired interval is [1, 1];
    # resampling a and b independently would give a wide one.
    b = np.random.default_rng(3).normal(0, 10, size=200)
    ci = paired_bootstrap_ci(b + 1.0, b, num_resamples=1000)
    assert ci.lower == pytest.approx(1.0, abs=1e-9) and ci.upper == pytest.approx(1.0, abs=1e-9)


def test_large_samples_match_the_normal_approximation_and_accept_tensors():
    rng = np.random.default_rng(4)
    a = torch.from_numpy((rng.uniform(size=5000) < 0.8).astype(np.float32))
    b = torch.from_numpy((rng.uniform(size=5000) < 0.7).astype(np.float32))
    ci = paired_bootstrap_ci(a, b, num_resamples=4000, seed=0)
    d = (a - b).double().numpy()
    assert ci.diff == pytest.approx(d.mean())
    assert ci.half_width == pytest.approx(1.96 * d.std() / np.sqrt(d.size), rel=0.1)
    assert ci.lower < ci.diff < ci.upper and not ci.tie
    assert ci.describe(100).endswith("]") and "tie" in paired_bootstrap_ci([0, 1], [1, 0]).describe()


def test_seeded_reproducibility():
    rng = np.random.default_rng(5)
    a, b = rng.uniform(size=300), rng.uniform(size=300)
    assert paired_bootstrap_ci(a, b, num_resamples=800, seed=7) == paired_bootstrap_ci(a, b, num_resamples=800, seed=7)
    assert paired_bootstrap_ci(a, b, num_resamples=800, seed=7) != paired_bootstrap_ci(a, b, num_resamples=800, seed=8)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="same videos"):
        paired_bootstrap_ci([1.0, 0.0, 1.0], [1.0, 0.0])
    with pytest.raises(ValueError, match="non-empty 1-D"):
        paired_bootstrap_ci([], [])
    with pytest.raises(ValueError, match="confidence"):
        paired_bootstrap_ci([1.0], [0.0], confidence=1.0)
    with pytest.raises(ValueError, match="num_resamples"):
        paired_bootstrap_ci([1.0], [0.0], num_resamples=0)
