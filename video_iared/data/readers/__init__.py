"""Video readers behind one protocol; ``build_reader(path, backend)`` picks one by name."""
from __future__ import annotations

from .base import MAX_VALID_FPS, VideoDecodeError, VideoReader, sanitize_fps
from .torchcodec_reader import BackendUnavailableError, check_torchcodec

BACKENDS = ("pyav", "decord", "torchcodec")


def check_backend(backend: str, device: str = "cpu") -> None:
    """Raise ``BackendUnavailableError`` (the fix in its message) when ``backend`` cannot run here; call it
    once before reading videos, so a missing library is one clear error, not every video failing."""
    if backend == "torchcodec":
        check_torchcodec(device)
    elif backend not in BACKENDS:
        raise ValueError(f"unknown decoding backend {backend!r}; expected one of {list(BACKENDS)}")


def build_reader(path: str, backend: str = "pyav", threads: int = 1, device: str = "cpu") -> VideoReader:
    """Open ``path`` with the reader named ``backend`` ("pyav" | "decord" | "torchcodec"; ``device`` "cuda"
    decodes on the GPU, torchcodec only); raises ``VideoDecodeError``."""
    if device != "cpu" and backend != "torchcodec":
        raise ValueError(f"decoding on {device!r} needs the torchcodec backend, not {backend!r}")
    if backend == "pyav":
        from .pyav_reader import PyAVReader

        return PyAVReader(path, threads=threads)
    if backend == "decord":
        from .decord_reader import DecordReader

        return DecordReader(path, threads=threads)
    if backend == "torchcodec":
        from .torchcodec_reader import TorchCodecReader

        return TorchCodecReader(path, threads=threads, device=device)
    raise ValueError(f"unknown decoding backend {backend!r}; expected one of {list(BACKENDS)}")


__all__ = ["BACKENDS", "MAX_VALID_FPS", "BackendUnavailableError", "VideoDecodeError", "VideoReader", "build_reader",
           "check_backend", "sanitize_fps"]
