"""The reader protocol shared by the PyAV and decord readers, its error type and the shared helpers.

A reader opens one video file and answers ``num_frames`` (frames counted in the file, never derived from
fps), ``fps`` (the container's frame rate, or ``None`` when that metadata is missing or absurd),
``duration`` (seconds, ``None`` without a valid fps) and ``get_frames(indices) -> uint8 (T, H, W, C)``.
"""
from __future__ import annotations

import logging
import math
from typing import Optional, Sequence

import numpy as np

logger = logging.getLogger(__name__)

# Frame rates outside (0, MAX_VALID_FPS] are treated as broken metadata (some files report 90000 or 0).
MAX_VALID_FPS = 1000.0

# (message kind, path) pairs already logged in this process: a video opened every epoch is reported once.
_LOGGED: set = set()


def log_once(kind: str, path: str, level: int, msg: str, *args) -> None:
    """Log ``msg`` the first time ``kind`` happens to ``path`` in this process."""
    if (kind, path) not in _LOGGED:
        _LOGGED.add((kind, path))
        logger.log(level, msg, *args)


class VideoDecodeError(RuntimeError):
    """A video that cannot be opened or decoded; carries the path and the reason."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def sanitize_fps(value: Optional[float], path: str = "") -> Optional[float]:
    """``value`` as a float when it is a plausible frame rate, else ``None`` (logged with the raw value).

    Callers that get ``None`` fall back to counting frames: sampling then works in frame units only.
    """
    try:
        fps = float(value) if value is not None else float("nan")
    except (TypeError, ValueError, ZeroDivisionError):
        fps = float("nan")
    if math.isfinite(fps) and 0.0 < fps <= MAX_VALID_FPS:
        return fps
    log_once("fps", path, logging.WARNING, "%s: fps metadata %r is missing or absurd; falling back to counting frames",
             path, value)
    return None


class VideoReader:
    """Base class of the readers: subclasses set ``path``, ``num_frames``, ``fps`` and implement ``_read``."""

    path: str
    num_frames: int
    fps: Optional[float]

    @property
    def duration(self) -> Optional[float]:
        """Seconds of video, or ``None`` when the fps metadata is unusable (never divides by zero)."""
        return self.num_frames / self.fps if self.fps else None

    def clamp_indices(self, indices: Sequence[int]) -> np.ndarray:
        """Indices as int64, those past the end clamped to the last frame (PySlowFast repeats the last
        frame of a short video); logged once per video and process, not on every call."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and idx.min() < 0:
            raise VideoDecodeError(self.path, f"negative frame index {int(idx.min())} requested")
        if idx.size and idx.max() >= self.num_frames:
            log_once("clamp", self.path, logging.INFO,
                     "%s: frame indices up to %d requested but the video has %d frames; repeating the last frame",
                     self.path, int(idx.max()), self.num_frames)
            idx = np.minimum(idx, self.num_frames - 1)
        return idx

    def get_frames(self, indices: Sequence[int]) -> np.ndarray:
        """Frames at ``indices`` (any order, repeats allowed) as uint8 (T, H, W, C) RGB."""
        idx = self.clamp_indices(indices)
        if idx.size == 0:
            raise VideoDecodeError(self.path, "no frame indices requested")
        return self._read(idx)

    def _read(self, idx: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def close(self) -> None:
        """Release the file; the reader is unusable afterwards."""

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
