"""decord reader: decord indexes the file on open and seeks itself; we only adapt errors and metadata."""
from __future__ import annotations

import numpy as np

from .base import VideoDecodeError, VideoReader, sanitize_fps

try:
    import decord
except ImportError as e:  # pragma: no cover
    raise ImportError("decord (`pip install decord`) is required for the decord reader") from e


class DecordReader(VideoReader):
    """Random access to the frames of one video file through decord (RGB, native resolution).

    Args:
        path: the video file.
        threads: decoder threads (1 in loader workers).
    """

    def __init__(self, path: str, threads: int = 1):
        self.path = path
        try:
            self._vr = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=threads)
            self.num_frames = len(self._vr)
        except Exception as e:  # decord raises DECORDError / RuntimeError for unreadable files
            raise VideoDecodeError(path, f"cannot open: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from e
        if self.num_frames <= 0:
            raise VideoDecodeError(path, "the video stream holds no frames")
        try:
            raw_fps = self._vr.get_avg_fps()
        except Exception:
            raw_fps = None
        self.fps = sanitize_fps(raw_fps, path)

    def _read(self, idx: np.ndarray) -> np.ndarray:
        # decord decodes each distinct index once and seeks between them; ask for the sorted union.
        uniq, inverse = np.unique(idx, return_inverse=True)
        try:
            batch = self._vr.get_batch(uniq.tolist())
            # pytorchvideo's decord decoder switches decord's global bridge to torch (set_bridge("torch")), after
            # which get_batch returns torch tensors in this process: accept both
            batch = batch.asnumpy() if hasattr(batch, "asnumpy") else batch.numpy()
        except Exception as e:
            raise VideoDecodeError(self.path, f"decoding failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from e
        if batch.shape[0] != uniq.size:
            raise VideoDecodeError(self.path, f"decord returned {batch.shape[0]} frames for {uniq.size} indices")
        return np.ascontiguousarray(batch[inverse])

    def close(self) -> None:
        self._vr = None
