"""Frame sampling: dense (PySlowFast's temporal indices), segment (SSv2), the view layout, fps scaling."""
import numpy as np
import pytest

from video_iared.data.sampling import ClipSampler, dense_indices, segment_indices, view_layout


def test_dense_test_clips_follow_pyslowfast_formula():
    # 300 frames, 8 x 32 = 256-frame clips: delta = 44; 3 clips start at 0, 22, 44
    starts = [0.0, 22.0, 44.0]
    for c, s in enumerate(starts):
        idx = dense_indices(300, 8, 32, c, 3)
        expected = np.linspace(s, s + 255, 8).astype(np.int64)
        assert idx.tolist() == expected.tolist()
    assert dense_indices(300, 8, 32, 0, 3)[:3].tolist() == [0, 36, 72]
    assert dense_indices(300, 8, 32, 2, 3)[-1] == 299
    # a single test clip is centred: start = delta / 2 = 22
    assert dense_indices(300, 8, 32, 0, 1).tolist() == np.linspace(22, 277, 8).astype(np.int64).tolist()


def test_dense_random_training_clip_stays_inside_and_keeps_stride():
    rng = np.random.default_rng(0)
    starts = set()
    for _ in range(50):
        idx = dense_indices(100, 4, 4, -1, 1, rng)
        assert 0 <= idx[0] <= 84 and idx[-1] <= 99
        assert np.all(np.diff(idx) >= 4) and np.all(np.diff(idx) <= 6)
        starts.add(int(idx[0]))
    assert len(starts) > 10  # really random


def test_dense_short_video_repeats_the_last_frame():
    # 20 frames, clip of 8 x 4 = 32: delta 0, linspace(0, 31, 8) clamped to 19
    idx = dense_indices(20, 8, 4, 0, 1)
    assert idx.tolist() == [0, 4, 8, 13, 17, 19, 19, 19]
    assert dense_indices(20, 8, 4, -1, 1, np.random.default_rng(1)).tolist() == idx.tolist()


def test_target_fps_scales_the_span_and_missing_fps_falls_back_to_frames():
    s = ClipSampler("dense", 8, 4, target_fps=30)
    # a 15 fps video: the 32-frame span at 30 fps is 16 frames of the file
    assert s(1000, 0, 1, fps=15.0)[-1] - s(1000, 0, 1, fps=15.0)[0] == 15
    assert s.span(15.0) == 16
    # no usable fps: the span is counted in file frames (no scaling, no division by zero)
    assert s.span(None) == 32 and s(1000, 0, 1, fps=None)[-1] - s(1000, 0, 1, fps=None)[0] == 31


def test_segment_sampling_test_takes_middles_train_stays_in_segments():
    # 41 frames, 4 segments of 10: boundaries 0,10,20,30,40 -> middles 5,15,25,35
    assert segment_indices(41, 4, train=False).tolist() == [5, 15, 25, 35]
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(100):
        idx = segment_indices(41, 4, train=True, rng=rng)
        for i, v in enumerate(idx):
            assert 10 * i <= v <= 10 * (i + 1)
        seen.add(tuple(idx))
    assert len(seen) > 20
    # fewer frames than segments: repeats, all in range
    # seg = 2/8: boundaries round(0.25 i) -> middles 0,0,0,1,1,1,2,2
    assert segment_indices(3, 8, train=False).tolist() == [0, 0, 0, 1, 1, 1, 2, 2]


def test_segment_sampler_testing_is_the_same_for_every_clip():
    s = ClipSampler("segment", 4)
    assert s(41, 0, 2).tolist() == s(41, 1, 2).tolist() == [5, 15, 25, 35]


def test_view_layout_is_clip_major():
    assert view_layout(2, 3) == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]


def test_bad_arguments():
    with pytest.raises(ValueError):
        ClipSampler("uniform", 8)
    with pytest.raises(ValueError):
        dense_indices(0, 8, 4, 0, 1)
    with pytest.raises(ValueError):
        dense_indices(100, 8, 4, 3, 3)
