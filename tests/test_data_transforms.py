"""Transforms: output layout (C, T, H, W), normalisation, jitter/crop ranges, flips, evenly spaced test crops."""
import numpy as np
import pytest
import torch

from data_fixtures import make_frames
from video_iared.data.transforms import TestTransform, TrainTransform, crop_offsets, short_side_scale

MEAN, STD = [0.45] * 3, [0.225] * 3


def _ramp(t, h, w):
    """Frames whose red channel is the column index and green channel the row index."""
    f = np.zeros((t, h, w, 3), np.uint8)
    f[..., 0] = np.arange(w, dtype=np.uint8)[None, None, :]
    f[..., 1] = np.arange(h, dtype=np.uint8)[None, :, None]
    return f


def test_train_transform_shape_and_normalisation():
    frames = np.full((4, 48, 64, 3), round(0.45 * 255), np.uint8)
    out = TrainTransform((48, 56), 32, True, MEAN, STD)(frames, np.random.default_rng(0))
    assert out.shape == (3, 4, 32, 32) and out.dtype == torch.float32
    assert out.abs().max() < 0.01  # (0.45 - 0.45) / 0.225
    white = TrainTransform((48, 48), 48, False, MEAN, STD)(np.full((2, 48, 64, 3), 255, np.uint8))
    assert torch.allclose(white, torch.full_like(white, (1 - 0.45) / 0.225))


def test_train_transform_scale_jitter_and_crop_positions_vary():
    frames = _ramp(2, 96, 128)
    t = TrainTransform((96, 120), 64, False, [0.0] * 3, [1.0] * 3)
    rng = np.random.default_rng(0)
    lefts = {round(float(t(frames, rng)[0, 0, 0, 0]) * 255) for _ in range(30)}
    assert len(lefts) > 5


def test_flip_only_when_allowed():
    frames = make_frames(4, 48, 64)  # bottom band: red left half, blue right half

    def red_on_left(clip):
        band = clip[:, :, -6:, :]  # (C, T, 6, W) normalised
        return bool((band[0, :, :, :8].mean() > band[0, :, :, -8:].mean()).item())

    rng = np.random.default_rng(0)
    flipping = TrainTransform((48, 48), 48, True, MEAN, STD)
    results = [red_on_left(flipping(frames, rng)) for _ in range(40)]
    assert 5 < sum(results) < 35  # both orientations occur
    never = TrainTransform((48, 48), 48, False, MEAN, STD)
    assert all(red_on_left(never(frames, rng)) for _ in range(40))


def test_short_side_scale_keeps_aspect():
    x = torch.zeros(2, 3, 48, 64, dtype=torch.uint8)
    assert short_side_scale(x, 32).shape == (2, 3, 32, 43)
    assert short_side_scale(torch.zeros(1, 3, 64, 48, dtype=torch.uint8), 32).shape == (1, 3, 43, 32)


def test_crop_offsets_evenly_spaced_any_count():
    assert crop_offsets(100, 64, 1) == [18]
    assert crop_offsets(100, 64, 3) == [0, 18, 36]
    assert crop_offsets(100, 64, 5) == [0, 9, 18, 27, 36]
    with pytest.raises(ValueError):
        crop_offsets(32, 64, 1)


@pytest.mark.parametrize("h,w", [(64, 96), (96, 64)])
def test_test_crops_span_the_long_side(h, w):
    crops = TestTransform(64, 3, [0.0] * 3, [1.0] * 3)(_ramp(2, h, w))
    assert crops.shape == (3, 3, 2, 64, 64)
    first_px = (crops[:, :, 0, 0, 0] * 255).round()  # (crops, C): red = column, green = row
    ch = 0 if w > h else 1
    assert first_px[:, ch].tolist() == [0.0, 16.0, 32.0]  # start / centre / end along the long side
    assert first_px[:, 1 - ch].tolist() == [0.0, 0.0, 0.0]
    single = TestTransform(64, 1, [0.0] * 3, [1.0] * 3)(_ramp(2, h, w))
    assert torch.equal(single[0], crops[1])
