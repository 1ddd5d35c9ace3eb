"""Shared helpers of the data tests (a plain module, not collected by pytest): small real encoded videos whose
frames identify themselves, and the bad files the readers must reject.

Frame t of a ``make_frames`` video has a top band of gray level ``level(t)`` (so a decoded frame's index
can be read back despite compression) and a white square moving right by 2 px per frame (temporal order).
The left half of the bottom band is red, the right half blue (a horizontal flip is visible).
"""
from __future__ import annotations

import os
from typing import Sequence

import av
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



def write_bframes_video(path: str, num_frames: int = 40) -> str:
    """An H.264 video with B-frames (decode order != presentation order, as in real Kinetics files), gop 12."""
    with av.open(path, "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        s.codec_context.gop_size = 12
        s.options = {"crf": "18", "bframes": "3", "threads": "1"}
        for f in make_frames(num_frames):
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def _audio_only(path):
    with av.open(path, "w") as c:
        s = c.add_stream("pcm_s16le", rate=8000)
        s.layout = "mono"
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        for p in s.encode(frame):
            c.mux(p)
        for p in s.encode():
            c.mux(p)


def _no_frames(path):
    with av.open(path, "w") as c:
        s = c.add_stream("libx264", rate=16)
        s.width, s.height, s.pix_fmt = 32, 32, "yuv420p"


def bad_file(kind: str, tmp_path, good: str) -> str:
    """A file under ``tmp_path`` no reader may decode: ``kind`` in zero_byte, text, truncated (a third of
    ``good``), audio_only, no_frames, missing (a path that does not exist)."""
    path = str(tmp_path / {"audio_only": "a.wav", "text": "t.mp4"}.get(kind, f"{kind}.mp4"))
    if kind == "zero_byte":
        open(path, "wb").close()
    elif kind == "text":
        with open(path, "w") as f:
            f.write("this is not a video\n" * 50)
    elif kind == "truncated":
        with open(good, "rb") as f:
            data = f.read()
        with open(path, "wb") as f:
            f.write(data[: len(data) // 3])
    elif kind == "audio_only":
        _audio_only(path)
    elif kind == "no_frames":
        _no_frames(path)
    elif kind == "missing":
        path = str(tmp_path / "does_not_exist.mp4")
    return path
