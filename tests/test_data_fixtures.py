"""Shared helpers of the data tests: small real encoded videos whose frames identify themselves.

Frame t of a ``make_frames`` video has a top band of gray level ``level(t)`` (so a decoded frame's index
can be read back despite compression) and a white square moving right by 2 px per frame (temporal order).
The left half of the bottom band is red, the right half blue (a horizontal flip is visible).
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from video_iared.utils.video_io import write_video

STEP = 6  # gray-level step between consecutive frames: >> the codec error at crf 18


def level(t: int) -> int:
    return 8 + STEP * t


def make_frames(num_frames: int = 32, height: int = 48, width: int = 64) -> np.ndarray:
    """uint8 (T, H, W, 3) self-identifying frames (num_frames <= 40 keeps the gray levels distinct)."""
    assert num_frames <= 40
    f = np.full((num_frames, height, width, 3), 96, np.uint8)
    for t in range(num_frames):
        f[t, : height // 4] = level(t)
        x = (2 * t) % (width - 8)
        f[t, height // 4 + 2: height // 4 + 10, x: x + 8] = 255
        f[t, -height // 4:, : width // 2] = (200, 30, 30)
        f[t, -height // 4:, width // 2:] = (30, 30, 200)
    return f


def write_test_video(path: str, num_frames: int = 32, height: int = 48, width: int = 64, fps: int = 16, gop: int = 8) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    write_video(path, make_frames(num_frames, height, width), fps=fps, gop=gop)
    return path


def frame_ids(frames: np.ndarray) -> np.ndarray:
    """The frame index each decoded uint8 (T, H, W, 3) frame shows (from its top band's gray level)."""
    h = frames.shape[1]
    gray = frames[:, 1: h // 4 - 1, 2:-2].astype(np.float64).mean(axis=(1, 2, 3))
    return np.round((gray - 8) / STEP).astype(np.int64)


def write_list(path: str, rows: Sequence[str]) -> str:
    with open(path, "w") as f:
        f.write("\n".join(rows) + "\n")
    return path


def test_frame_ids_read_back_the_written_frames():
    f = make_frames(40)
    assert frame_ids(f).tolist() == list(range(40))
