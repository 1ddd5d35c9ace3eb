"""Which frames make a clip: dense sampling (Kinetics), segment sampling (SSv2) and the view layout.

All functions return int64 frame indices clamped to ``[0, num_video_frames - 1]``; a video shorter than
the clip repeats its last frame, as PySlowFast does.
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import numpy as np


def dense_clip_size(num_frames: int, sampling_rate: int, fps: Optional[float] = None, target_fps: float = 0.0) -> float:
    """Frames of the video one clip spans: ``num_frames * sampling_rate``, scaled by ``fps / target_fps``
    when a target frame rate is set and the video's fps is known (PySlowFast's TARGET_FPS convention)."""
    size = float(num_frames * sampling_rate)
    if target_fps and target_fps > 0 and fps:
        size = size / target_fps * fps
    return size


def dense_indices(
    num_video_frames: int,
    num_frames: int,
    sampling_rate: int,
    clip_idx: int,
    num_clips: int,
    rng: Optional[np.random.Generator] = None,
    fps: Optional[float] = None,
    target_fps: float = 0.0,
) -> np.ndarray:
    """Dense sampling of ``num_frames`` frames ``sampling_rate`` apart (PySlowFast's temporal indices).

    ``clip_idx = -1`` draws a random start in ``[0, delta]`` (training); otherwise clip ``clip_idx`` of
    ``num_clips`` evenly spaced clips: ``start = delta * clip_idx / (num_clips - 1)``, or ``delta / 2``
    for a single clip. ``delta = max(num_video_frames - clip_size, 0)``, ``end = start + clip_size - 1``,
    indices ``= linspace(start, end, num_frames)`` truncated to ints and clamped. Returns (num_frames,).
    """
    if num_video_frames <= 0:
        raise ValueError(f"num_video_frames must be > 0, got {num_video_frames}")
    clip_size = dense_clip_size(num_frames, sampling_rate, fps, target_fps)
    delta = max(num_video_frames - clip_size, 0.0)
    if clip_idx == -1:
        rng = rng if rng is not None else np.random.default_rng()
        start = rng.uniform(0.0, delta)
    elif num_clips == 1:
        start = delta / 2.0
    else:
        if not 0 <= clip_idx < num_clips:
            raise ValueError(f"clip_idx {clip_idx} outside [0, {num_clips})")
        start = delta * clip_idx / (num_clips - 1)
    end = start + clip_size - 1
    idx = np.linspace(start, end, num_frames).astype(np.int64)  # truncation, like torch's .long()
    return np.clip(idx, 0, num_video_frames - 1)


def segment_indices(
    num_video_frames: int,
    num_frames: int,
    train: bool,
    rng: Optional[np.random.Generator] = None,
) -> np.ndarray:
    """Segment sampling (TimeSformer's SSv2 convention): the video is split into ``num_frames`` equal
    segments of ``(n - 1) / num_frames`` frames; training takes a random frame of each segment
    (``randint(start, end)`` inclusive), testing its middle ``(start + end) // 2``. Returns (num_frames,)."""
    if num_video_frames <= 0:
        raise ValueError(f"num_video_frames must be > 0, got {num_video_frames}")
    seg = float(num_video_frames - 1) / num_frames
    rng = rng if rng is not None else np.random.default_rng()
    out = []
    for i in range(num_frames):
        start = int(np.round(seg * i))
        end = int(np.round(seg * (i + 1)))
        out.append(int(rng.integers(start, end + 1)) if train else (start + end) // 2)
    return np.clip(np.asarray(out, dtype=np.int64), 0, num_video_frames - 1)


def view_layout(num_clips: int, num_crops: int) -> List[Tuple[int, int]]:
    """(clip, crop) of every view: view ``v`` is clip ``v // num_crops``, crop ``v % num_crops``."""
    return [(v // num_crops, v % num_crops) for v in range(num_clips * num_crops)]


class ClipSampler:
    """Picks the frame indices of one clip; plain arguments, no config.

    Args:
        mode: "dense" (Kinetics) or "segment" (SSv2).
        num_frames: frames per clip.
        sampling_rate: frame stride of dense sampling (ignored by segment sampling).
        target_fps: dense sampling only: scale the clip span by ``fps / target_fps`` (0 = off).
    """

    def __init__(self, mode: str, num_frames: int, sampling_rate: int = 1, target_fps: float = 0.0):
        if mode not in ("dense", "segment"):
            raise ValueError(f"sampling mode must be 'dense' or 'segment', got {mode!r}")
        self.mode, self.num_frames, self.sampling_rate, self.target_fps = mode, num_frames, sampling_rate, target_fps

    def __call__(
        self,
        num_video_frames: int,
        clip_idx: int = -1,
        num_clips: int = 1,
        rng: Optional[np.random.Generator] = None,
        fps: Optional[float] = None,
    ) -> np.ndarray:
        """Indices (num_frames,) of clip ``clip_idx`` of ``num_clips`` (-1: a random training clip)."""
        if self.mode == "dense":
            return dense_indices(num_video_frames, self.num_frames, self.sampling_rate, clip_idx, num_clips,
                                 rng, fps, self.target_fps)
        if clip_idx == -1:
            return segment_indices(num_video_frames, self.num_frames, True, rng)
        # SSv2 testing has one temporal view per video (the segment middles); more clips repeat it.
        return segment_indices(num_video_frames, self.num_frames, False)

    def span(self, fps: Optional[float] = None) -> float:
        """Frames one clip needs to avoid repeating frames (dense: the clip size; segment: num_frames)."""
        if self.mode == "dense":
            return dense_clip_size(self.num_frames, self.sampling_rate, fps, self.target_fps)
        return float(self.num_frames)
