"""Writing real encoded video files with PyAV (the synthetic benchmark and the tests' fixtures)."""
from __future__ import annotations

import os
from fractions import Fraction

import av
import numpy as np

# container extension -> (codec, pixel format)
_CODECS = {".mp4": ("libx264", "yuv420p"), ".webm": ("libvpx-vp9", "yuv420p"), ".avi": ("mpeg4", "yuv420p")}


def can_encode(codec: str) -> bool:
    """Whether this PyAV build has an encoder named ``codec``."""
    try:
        av.codec.Codec(codec, "w")
        return True
    except Exception:
        return False


def write_video(
    path: str,
    frames: np.ndarray,
    fps: int = 16,
    codec: str = "",
    crf: int = 18,
    gop: int = 8,
) -> None:
    """Encode ``frames`` (uint8, (T, H, W, 3), RGB; H and W even) to ``path``.

    The codec follows the extension (.mp4: H.264, .webm: VP9, .avi: MPEG-4) unless given. ``gop`` sets the
    keyframe interval so that readers can be tested on seeking. The output is deterministic for the same
    frames and settings (single-threaded encoding).
    """
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"{path}: frames must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
    ext = os.path.splitext(path)[1].lower()
    if not codec:
        if ext not in _CODECS:
            raise ValueError(f"{path}: no default codec for extension {ext!r}; pass codec=")
        codec, pix_fmt = _CODECS[ext]
    else:
        pix_fmt = "yuv420p"
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    t, h, w, _ = frames.shape
    # bitexact: no random Matroska/WebM UIDs, so the same frames give the same bytes
    with av.open(path, mode="w", options={"fflags": "+bitexact"}) as container:
        stream = container.add_stream(codec, rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = w, h, pix_fmt
        stream.codec_context.gop_size = gop
        stream.thread_count = 1
        opts = {}
        if codec == "libx264":
            # asm=0: with its assembly kernels this x264 build encodes the same frames differently from one
            # call to the next in a process (measured: 9 of 10 repeat encodes of a 64x64 clip differed)
            opts = {"crf": str(crf), "preset": "veryfast", "threads": "1", "bframes": "0", "x264-params": "asm=0"}
        elif codec == "libvpx-vp9":
            opts = {"crf": str(crf + 12), "b": "0", "deadline": "realtime", "cpu-used": "8", "threads": "1"}
        stream.options = opts
        for i in range(t):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frames[i]), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
