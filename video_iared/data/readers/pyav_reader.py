"""PyAV reader: indexes the packets once, then seeks to the keyframe before each needed frame and
decodes forward, so one clip never costs a decode of the whole video.

Frames are identified by presentation timestamp: the packet index (demuxed, not decoded) gives every
frame's pts in presentation order, and a decoded frame's position is the rank of its pts. This is exact
with B-frames and does not trust the container's frame count or fps.
"""
from __future__ import annotations

import bisect
import logging
from typing import Dict, List

import numpy as np

from .base import VideoDecodeError, VideoReader, log_once, sanitize_fps

try:  # av is a hard dependency; the guard only turns a broken install into a clear error
    import av
except ImportError as e:  # pragma: no cover
    raise ImportError("PyAV (`pip install av`) is required for the pyav reader") from e


class PyAVReader(VideoReader):
    """Random access to the frames of one video file through PyAV.

    Args:
        path: the video file.
        threads: decoder threads (1 in loader workers: the workers already use the cores).
    """

    def __init__(self, path: str, threads: int = 1):
        self.path = path
        try:
            self._container = av.open(path)
        except Exception as e:  # FileNotFoundError, av.error.InvalidDataError, ...
            raise VideoDecodeError(path, f"cannot open: {type(e).__name__}: {e}") from e
        try:
            if not self._container.streams.video:
                kinds = sorted({s.type for s in self._container.streams}) or ["none"]
                raise VideoDecodeError(path, f"no video stream (streams: {', '.join(kinds)})")
            self._stream = self._container.streams.video[0]
            self._stream.codec_context.thread_count = threads
            self._index_packets()
            self.fps = sanitize_fps(self._stream.average_rate or self._stream.guessed_rate, path)
        except VideoDecodeError:
            self.close()
            raise
        except Exception as e:
            self.close()
            raise VideoDecodeError(path, f"cannot index packets: {type(e).__name__}: {e}") from e

    def _index_packets(self) -> None:
        """Demux (without decoding) to learn every frame's pts and which frames are keyframes."""
        pts: List[int] = []
        key: List[int] = []
        for packet in self._container.demux(self._stream):
            if packet.size == 0 or packet.pts is None:  # the flush packet at the end
                continue
            pts.append(int(packet.pts))
            if packet.is_keyframe:
                key.append(int(packet.pts))
        if not pts:
            raise VideoDecodeError(self.path, "the video stream holds no frames")
        pts.sort()
        self._pts = pts
        self._pts_to_index: Dict[int, int] = {p: i for i, p in enumerate(pts)}
        # Keyframe positions (frame indices), sorted; frame 0 is decodable after a seek to the start.
        self._keyframes = sorted({self._pts_to_index[p] for p in key} | {0})
        self.num_frames = len(pts)
        self.frames_decoded = 0  # frames the decoder produced so far (seeking keeps this near the request)

    def _keyframe_before(self, index: int) -> int:
        return self._keyframes[bisect.bisect_right(self._keyframes, index) - 1]

    def _read(self, idx: np.ndarray) -> np.ndarray:
        wanted = sorted(set(int(i) for i in idx))
        frames: Dict[int, np.ndarray] = {}
        try:
            self._decode_union(wanted, frames)
            missing = [i for i in wanted if i not in frames]
            if missing:
                # A broken seek index can land past the wanted frames: decode once from the start instead.
                log_once("seek", self.path, logging.WARNING,
                         "%s: seeking missed %d frames; decoding from the start", self.path, len(missing))
                self._decode_union(missing, frames, seek=False)
        except Exception as e:  # av.error.* on corrupt data
            raise VideoDecodeError(self.path, f"decoding failed: {type(e).__name__}: {e}") from e
        missing = [i for i in wanted if i not in frames]
        if missing:
            raise VideoDecodeError(
                self.path, f"{len(missing)} of {len(wanted)} requested frames could not be decoded "
                f"(first {missing[:5]}; the file has {self.num_frames} packets)"
            )
        return np.stack([frames[int(i)] for i in idx])

    def _decode_union(self, wanted: List[int], frames: Dict[int, np.ndarray], seek: bool = True) -> None:
        """Decode the sorted ``wanted`` frames in one forward pass, seeking forward only when the next
        wanted frame lies past a keyframe that has not been reached (skipping undecoded GOPs). With
        ``seek=False`` the pass starts at the first frame and never skips."""
        pos = -1  # index of the last decoded frame; -1 forces the first seek
        i = 0
        while i < len(wanted):
            target = wanted[i]
            key = self._keyframe_before(target) if seek else 0
            if pos < 0 or key > pos + 1:
                self._container.seek(self._pts[key], stream=self._stream, backward=True, any_frame=False)
            reseek = False
            for frame in self._container.decode(self._stream):
                self.frames_decoded += 1
                if frame.pts is None:
                    pos += 1
                else:
                    pos = self._pts_to_index.get(int(frame.pts), pos + 1)
                if pos in frames or pos < target:
                    continue
                if pos == wanted[i] or pos in wanted[i:]:
                    frames[pos] = frame.to_ndarray(format="rgb24")
                while i < len(wanted) and wanted[i] <= pos:
                    i += 1
                if i == len(wanted):
                    return
                target = wanted[i]
                if seek and self._keyframe_before(target) > pos + 1:
                    reseek = True  # the next wanted frame is cheaper to reach by seeking
                    break
            if not reseek:
                return  # end of stream: what is missing is reported by the caller

    def close(self) -> None:
        container = getattr(self, "_container", None)
        if container is not None:
            container.close()
            self._container = None
