"""torchcodec reader (``DATA.DECODING_BACKEND torchcodec``): PyTorch's maintained FFmpeg decoder, with CUDA
(NVDEC) decoding when opened with ``device="cuda"``.

torchcodec's wheel carries no FFmpeg: it loads the system's shared libraries (FFmpeg 4-9, libavutil.so.56-61; Debian 12's
``libavutil57`` / ``libavcodec59`` / ``libavformat59`` / ``libavdevice59`` / ``libavfilter8`` /
``libswscale6`` / ``libswresample4``; ``make install`` adds them where they are missing). Without them, or
without the ``torchcodec`` extra, ``check_torchcodec()`` raises ``BackendUnavailableError`` saying so — a
set-up problem, raised once before any video is read, never counted as a bad video.

``seek_mode="exact"`` scans the file on open, so ``num_frames`` is the count of frames in the stream (as the
PyAV reader counts packets), not the header's guess, and frame i is the i-th in presentation order: the same
frames as PyAV (tests/test_data_torchcodec.py, bit for bit on the H.264 / VP9 / MPEG-4 test videos).
"""
from __future__ import annotations

import functools

import numpy as np

from .base import VideoDecodeError, VideoReader, sanitize_fps

FFMPEG_PACKAGES = "libavutil57 libavcodec59 libavformat59 libavdevice59 libavfilter8 libswscale6 libswresample4"


class BackendUnavailableError(ImportError):
    """A decoding backend that cannot run on this machine (a missing package or shared library). An
    ImportError, so ``video_dataset.load_frames`` lets it through instead of counting a bad video."""


@functools.lru_cache(maxsize=1)
def _decoder_class():
    """torchcodec's VideoDecoder class, loaded once (the import loads FFmpeg's libraries)."""
    try:
        from torchcodec.decoders import VideoDecoder
    except ImportError as e:
        raise BackendUnavailableError(
            f"DATA.DECODING_BACKEND torchcodec: the torchcodec package is not installed ({e}); "
            "pip install -e .[torchcodec], or choose pyav / decord") from e
    except (OSError, RuntimeError) as e:  # "Could not load libtorchcodec": FFmpeg's shared libraries are missing
        raise BackendUnavailableError(
            f"DATA.DECODING_BACKEND torchcodec: cannot load FFmpeg's shared libraries "
            f"({str(e).splitlines()[0]}); install them (Debian 12: apt-get install {FFMPEG_PACKAGES}) "
            "or choose pyav / decord") from e
    return VideoDecoder


def check_torchcodec(device: str = "cpu") -> None:
    """Raise ``BackendUnavailableError`` unless torchcodec and FFmpeg load (and CUDA exists for "cuda")."""
    _decoder_class()
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise BackendUnavailableError("torchcodec CUDA decoding asked for, but torch sees no CUDA device")


class TorchCodecReader(VideoReader):
    """Random access to the frames of one video file through torchcodec (RGB, native resolution).

    Args:
        path: the video file.
        threads: FFmpeg decoder threads (1 in loader workers).
        device: "cpu", or "cuda[:N]" for NVDEC decoding (the frames still come back as host uint8 arrays,
            the reader protocol; on a GPU the decode itself is what moves off the CPU).
    """

    def __init__(self, path: str, threads: int = 1, device: str = "cpu"):
        self.path = path
        decoder_cls = _decoder_class()
        try:
            self._dec = decoder_cls(path, seek_mode="exact", num_ffmpeg_threads=threads, device=device,
                                    dimension_order="NHWC")
            meta = self._dec.metadata
            self.num_frames = int(meta.num_frames or 0)
        except Exception as e:  # RuntimeError "Could not open input file ...", "No valid stream found", ...
            raise VideoDecodeError(path, f"cannot open: {type(e).__name__}: {_first_line(e)}") from e
        if self.num_frames <= 0:
            raise VideoDecodeError(path, "the video stream holds no frames")
        self.fps = sanitize_fps(meta.average_fps, path)

    def _read(self, idx: np.ndarray) -> np.ndarray:
        # each distinct frame decoded once, in order (torchcodec seeks between distant ones itself)
        uniq, inverse = np.unique(idx, return_inverse=True)
        try:
            batch = self._dec.get_frames_at(uniq.tolist()).data
        except Exception as e:
            raise VideoDecodeError(self.path, f"decoding failed: {type(e).__name__}: {_first_line(e)}") from e
        if batch.shape[0] != uniq.size:
            raise VideoDecodeError(self.path, f"torchcodec returned {batch.shape[0]} frames for {uniq.size} indices")
        return np.ascontiguousarray(batch.cpu().numpy()[inverse])

    def close(self) -> None:
        self._dec = None


def _first_line(e: BaseException) -> str:
    """The first line of an exception's message, without torchcodec's C++ source location prefix."""
    text = str(e).splitlines()[0] if str(e) else ""
    return text.split(".cpp:", 1)[1].split(", ", 1)[-1] if ".cpp:" in text else text
