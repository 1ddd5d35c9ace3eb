"""The test views of the synthetic benchmark with their ground-truth foreground, in the views' own geometry.

A test view is built from frames ``indices`` of the video, short-side scaled and cropped by the test transform.
The foreground mask goes through the SAME code (``TestTransform`` applied to the mask as a 0/255 image,
un-normalised), so it is the fraction of foreground in every view pixel; a patch is foreground when the mean of
its pixels' fractions is at least ``fg_fraction``; a pixel when its fraction is >= 0.5.
"""
from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Callable, Iterator, List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from video_iared.data.readers import VideoDecodeError, build_reader
from video_iared.data.transforms import TestTransform
from video_iared.data.video_dataset import load_frames
from video_iared.synthetic import load_mask

# the interpretability modules log under one name, the one their log lines have always carried
logger = logging.getLogger("video_iared.interpret.interpretability")


@dataclass
class View:
    """One test view of one video: the model input, the frames to show and the foreground.

    clip (C, T, S, S) model input: normalised float, or uint8 (``iter_views(normalize=False)``, normalised on
    the device by ``evaluate_interpretability``'s normaliser); display (T, S, S, 3) float in [0, 1]; coverage (T, S, S)
    float: foreground fraction of every view pixel; indices (T,) the video frames used.
    """

    video: int
    path: str
    label: int
    view: int
    clip: torch.Tensor
    display: np.ndarray
    coverage: np.ndarray
    indices: np.ndarray


def mask_coverage(mask: np.ndarray, transform: Callable[[np.ndarray], torch.Tensor]) -> torch.Tensor:
    """bool (T, H, W) per-frame mask -> foreground fraction (crops, T, S, S), through ``transform`` (a test
    transform with mean 0, std 1: it returns the image scaled to [0, 1]) — the clip's own resize and crop."""
    img = np.repeat((np.asarray(mask, dtype=np.uint8) * 255)[..., None], 3, axis=-1)
    return transform(img)[:, 0]


def patch_foreground(coverage: np.ndarray, patch: int, fraction: float) -> np.ndarray:
    """Pixel fractions (T, S, S) -> bool (T, S/patch, S/patch): the mean over the patch >= ``fraction``."""
    cov = torch.as_tensor(coverage, dtype=torch.float32)
    pooled = F.avg_pool2d(cov.unsqueeze(1), patch).squeeze(1)
    return (pooled >= fraction - 1e-6).numpy()


def upsample_map(m: np.ndarray, patch: int) -> np.ndarray:
    """Patch map (T, h, w) -> pixel map (T, h*patch, w*patch) (each patch's value on all its pixels)."""
    return np.repeat(np.repeat(np.asarray(m), patch, axis=-2), patch, axis=-1)


def iter_views(records: Sequence, data_dir: str, backend: str, sampler, crop_size: int, num_crops: int,
               num_clips: int, mean: Sequence[float], std: Sequence[float], decode_timeout: float = 0.0,
               failures: Optional[List[str]] = None, normalize: bool = True) -> Iterator[View]:
    """Every view of every listed video, with its frames and mask mapped through the same geometry.

    ``records``: ``VideoRecord``s; ``sampler``: a ``ClipSampler``; views ordered as in the multi-view test
    (view ``v`` = clip ``v // num_crops``, crop ``v % num_crops``). A video that fails to decode is logged
    and appended to ``failures`` (never replaced); a missing mask raises (wrong data directory). ``normalize``
    False: the views' ``clip`` stays uint8 (DATA.NORMALIZE_ON_DEVICE); ``display`` and the mask are the same."""
    model_tf = TestTransform(crop_size, num_crops, mean, std, normalize=normalize)
    raw_tf = TestTransform(crop_size, num_crops, [0.0] * 3, [1.0] * 3)
    reader_fn = functools.partial(build_reader, backend=backend, threads=1)
    for vi, rec in enumerate(records):
        mask = load_mask(data_dir, rec.path)
        picked: List[np.ndarray] = []

        def indices_fn(n: int, fps: Optional[float]) -> List[np.ndarray]:
            if n != mask.shape[0]:
                raise ValueError(f"{rec.path} ({rec.source}): the video has {n} frames but its mask has "
                                 f"{mask.shape[0]}")
            picked[:] = [sampler(n, c, num_clips, fps=fps) for c in range(num_clips)]
            return picked

        try:
            clips = load_frames(reader_fn, rec.path, indices_fn, decode_timeout)
        except VideoDecodeError as e:
            logger.warning("interpretability: undecodable video %s (%s): %s", rec.path, rec.source, e.reason)
            if failures is not None:
                failures.append(rec.path)
            continue
        for c, (frames, idx) in enumerate(zip(clips, picked)):
            if mask.shape[1:] != frames.shape[1:3]:
                raise ValueError(f"{rec.path} ({rec.source}): mask frames are {mask.shape[1:]} but video frames "
                                 f"{frames.shape[1:3]}")
            model_views = model_tf(frames)  # (crops, C, T, S, S)
            shown = raw_tf(frames).permute(0, 2, 3, 4, 1).numpy()  # (crops, T, S, S, 3)
            cover = mask_coverage(mask[idx], raw_tf).numpy()  # (crops, T, S, S)
            for k in range(num_crops):
                yield View(vi, rec.path, rec.label, c * num_crops + k, model_views[k], shown[k], cover[k], idx)
