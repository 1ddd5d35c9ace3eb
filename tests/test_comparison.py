"""engine/comparison.py: run_net's paired top-1 comparison on hand-made records whose interval is known."""
import math

import pytest
import torch

from video_iared.engine.comparison import correct_by_index, paired_line, paired_top1, records_from_predictions
from video_iared.engine.results import write_predictions

K = 3


def _records(outcomes, labels=None):
    """Records of videos 0..n-1: outcome 1 = top-1 right, 0 = wrong, None = failed (no probabilities)."""
    out = []
    for i, o in enumerate(outcomes):
        label = labels[i] if labels else i % K
        probs = None
        if o is not None:
            pred = label if o else (label + 1) % K
            probs = torch.full((K,), 0.1)
            probs[pred] = 0.8
        out.append({"index": i, "label": label, "probs": probs, "path": f"v{i}.mp4",
                    "error": None if o is not None else "undecodable"})
    return out


def test_one_video_won_of_two_gives_its_enumerated_interval_and_a_tie():
    # d = a - b = [1, 0]: a resample's mean is 0, 0.5 or 1 with P 1/4, 1/2, 1/4, so the 2.5 % quantile is 0 and the
    # 97.5 % one 1: +50 points in [+0, +100], which contains 0
    r = paired_top1(_records([1, 0]), _records([0, 0]), num_resamples=20_000)
    assert (r.ci.diff, r.ci.lower, r.ci.upper, r.ci.tie, r.videos, r.left_out) == (0.5, 0.0, 1.0, True, 2, 0)
    assert paired_line("IA-RED²", "dense", r) == (
        "IA-RED² vs dense: video top-1 +50.00 points, paired bootstrap 95 % interval [+0.00, +100.00] over 2 videos "
        "(0 left out: failed in either run): tie")


def test_every_video_won_or_lost_is_exact_and_not_a_tie():
    r = paired_top1(_records([1] * 10), _records([0] * 10), num_resamples=500)
    assert (r.ci.diff, r.ci.lower, r.ci.upper, r.ci.tie) == (1.0, 1.0, 1.0, False)
    assert paired_line("IA-RED²", "dense + N", r).endswith("+100.00 points, paired bootstrap 95 % interval "
                                                           "[+100.00, +100.00] over 10 videos (0 left out: failed "
                                                           "in either run): IA-RED² higher")
    lost = paired_top1(_records([0] * 10), _records([1] * 10), num_resamples=500)
    assert paired_line("IA-RED²", "dense", lost).endswith(": IA-RED² lower")


def test_a_realistic_case_matches_the_normal_approximation():
    # 400 videos: 40 only a gets right, 20 only b, the rest alike. d has mean 20/400 = 0.05 and variance
    # 60/400 - 0.05^2 = 0.1475, so the mean's standard error is sqrt(0.1475 / 400) = 0.0192: 95 % interval
    # +5.00 +- 1.96 x 1.92 = [+1.24, +8.76] points, not a tie
    a = [1] * 40 + [0] * 20 + [1] * 200 + [0] * 140
    b = [0] * 40 + [1] * 20 + [1] * 200 + [0] * 140
    r = paired_top1(_records(a), _records(b))
    assert r.ci.diff == pytest.approx(0.05)
    assert 100 * r.ci.lower == pytest.approx(1.24, abs=0.5) and 100 * r.ci.upper == pytest.approx(8.76, abs=0.5)
    assert not r.ci.tie
    # the same pairs in another order: the pairing is by video index, so a shuffle of both gives the same interval
    perm = torch.randperm(400, generator=torch.Generator().manual_seed(0)).tolist()
    ra, rb = _records(a), _records(b)
    shuffled = paired_top1([ra[i] for i in perm], [rb[i] for i in perm])
    assert (shuffled.ci.lower, shuffled.ci.upper) == (r.ci.lower, r.ci.upper)


def test_failed_and_unmatched_videos_are_left_out_and_counted():
    a = _records([1, 1, None, 1, 0])  # video 2 failed in a
    b = _records([0, 1, 1, None, 0])[:4] + [_records([0] * 6)[5]]  # video 3 failed in b; 4 untested, 5 only in b
    r = paired_top1(a, b, num_resamples=200)
    # matched and scored in both: videos 0 and 1 -> d = [1, 0]; left out: 2, 3 (failed), 4 (only a), 5 (only b)
    assert (r.videos, r.left_out, r.ci.diff) == (2, 4, 0.5)
    assert "over 2 videos (4 left out: failed in either run)" in paired_line("IA-RED²", "dense", r)
    none = paired_top1(_records([None, 1]), _records([1, None]))
    assert none.ci is None and none.left_out == 2
    assert "n/a, no video evaluated in both runs" in paired_line("IA-RED²", "dense", none)


def test_another_label_for_the_same_video_is_an_error():
    with pytest.raises(ValueError, match="video 1 has label"):
        paired_top1(_records([1, 1]), _records([1, 1], labels=[0, 2]))


def test_records_come_back_from_the_predictions_file(tmp_path):
    recs = _records([1, 0, None, 1])
    for r in recs:
        r["gflops"] = math.nan if r["probs"] is None else 1.0
    _, pt = write_predictions(str(tmp_path / "predictions"), recs, K)
    back = records_from_predictions(pt)
    assert correct_by_index(back) == {0: 1, 1: 0, 2: None, 3: 1} == correct_by_index(recs)
    assert [r["label"] for r in back] == [r["label"] for r in recs]
