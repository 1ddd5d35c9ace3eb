"""Video readers behind one protocol; ``build_reader(path, backend)`` picks one by name."""
from __future__ import annotations

from .base import MAX_VALID_FPS, VideoDecodeError, VideoReader, sanitize_fps

BACKENDS = ("pyav", "decord")


def build_reader(path: str, backend: str = "pyav", threads: int = 1) -> VideoReader:
    """Open ``path`` with the reader named ``backend`` ("pyav" | "decord"); raises ``VideoDecodeError``."""
    if backend == "pyav":
        from .pyav_reader import PyAVReader

        return PyAVReader(path, threads=threads)
    if backend == "decord":
        from .decord_reader import DecordReader

        return DecordReader(path, threads=threads)
    raise ValueError(f"unknown decoding backend {backend!r}; expected one of {list(BACKENDS)}")


__all__ = ["BACKENDS", "MAX_VALID_FPS", "VideoDecodeError", "VideoReader", "build_reader", "sanitize_fps"]
