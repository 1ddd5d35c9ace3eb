"""pytorchvideo where it is the better part (``DATA.PIPELINE pytorchvideo``; default ``ours``).

pytorchvideo 0.1.5's ``pytorchvideo.data`` imports with current torchvision (its ``transforms`` do not). What
it does better, and what is used from it here:
- decoders that find frames by *time* (``EncodedVideo``: pyav or decord, ``get_clip(start_sec, end_sec)``), the
  natural unit for clip samplers in seconds, and audio if wanted;
- a family of dataset classes (``Kinetics``, ``Ucf101``, ``Hmdb51``, ``SSv2``, ``Charades``, ...) over
  ``LabeledVideoDataset``, an iterable dataset with time-based clip samplers (``make_clip_sampler``: random,
  uniform, constant clips per video) that streams videos with a ``video_sampler``.
What ours does better, and keeps:
- map-style datasets (a ``DistributedSampler``, per-(seed, epoch, item) random draws, exact resumption) where
  ``LabeledVideoDataset`` is iterable (its order depends on the workers, a resumed epoch is not the same one);
- frames found by packet pts and only the wanted ones converted to RGB (``PyAVReader``), where pytorchvideo's
  pyav decoder converts every frame of the clip's time span (8 frames at stride 32: 225 frames converted);
- a failure policy (bad videos replaced and counted in training, reported in testing, never silent: pytorchvideo
  moves on to the next video with a debug-level log), one decode for all the test views, and transforms that import.

So ``DATA.PIPELINE pytorchvideo`` decodes through pytorchvideo's ``EncodedVideo`` (decoder = DATA.DECODING_BACKEND,
pyav or decord) inside our datasets, samplers and transforms: the same items, the frames equal to ours for
the same indices (tests/test_data_pytorchvideo.py). ``LabeledVideoItems`` turns our clip dataset's items into
pytorchvideo's item dicts, and ``labeled_video_dataset`` builds pytorchvideo's own ``LabeledVideoDataset``
from our list files with our transforms, for code written against pytorchvideo.
"""
from __future__ import annotations

import contextlib
import functools
import os
from fractions import Fraction
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np
import torch
from pytorchvideo.data import LabeledVideoDataset, make_clip_sampler
from pytorchvideo.data.encoded_video import EncodedVideo
from torch.utils.data import Dataset

from .annotations import VideoRecord
from .readers.base import VideoDecodeError, VideoReader, sanitize_fps

PIPELINES = ("ours", "pytorchvideo")
DECODERS = ("pyav", "decord")  # pytorchvideo's EncodedVideo decoders


# The decoders' attributes read below (``_container``, ``_video``, ``_av_reader``, ``_fps``) are those of
# pytorchvideo 0.1.5, its last release.
def _stream_fps(video: Any, decoder: str) -> Optional[Fraction]:
    """The frame rate pytorchvideo's decoder works with, as an exact fraction when the container gives one."""
    if decoder == "pyav":
        rate = video._container.streams.video[0].average_rate  # pytorchvideo keeps the PyAV container
        return Fraction(rate) if rate else None
    fps = video._fps  # EncodedVideoDecord: decord's average fps
    return Fraction(fps).limit_denominator(1001) if fps else None


def _decoder_scope(decoder: str):
    """pytorchvideo's decord decoder sets decord's process-wide bridge to torch (``set_bridge("torch")``), which
    would turn every later decord call in the process (our DecordReader, user code) into torch tensors: run it
    inside decord's bridge scope, which puts the previous bridge back on exit."""
    if decoder == "decord":
        import decord

        return decord.bridge.use_torch()
    return contextlib.nullcontext()


def _frame_count(video: Any, decoder: str, duration: float, fps: float) -> int:
    """Frames in the stream: decord's count; PyAV's header count, else the frames pytorchvideo decoded to find
    the duration (a WebM header has neither: its duration is then the last frame's start), else duration x fps."""
    if decoder == "decord":
        return len(video._av_reader)
    frames = video._container.streams.video[0].frames
    if frames > 0:
        return int(frames)
    if getattr(video, "_video", None):
        return len(video._video)
    return int(round(duration * fps))


class EncodedVideoReader(VideoReader):
    """Our reader protocol over pytorchvideo's ``EncodedVideo`` (``decoder`` "pyav" | "decord").

    Frame i is the frame shown at ``i / fps`` seconds: ``get_frames`` asks pytorchvideo for the time span of
    the wanted indices, ``[min / fps, (max + 1) / fps)`` in exact fractions, and picks the frames from it.
    That holds for constant-frame-rate files (Kinetics, SSv2, UCF101, HMDB51 as distributed); the pts-exact
    ``PyAVReader`` is the one for variable frame rates. ``num_frames``: see ``_frame_count``.
    """

    def __init__(self, path: str, decoder: str = "pyav", threads: int = 1):
        if decoder not in DECODERS:
            raise ValueError(f"pytorchvideo pipeline: decoder {decoder!r} is not one of {list(DECODERS)}")
        self.path, self.decoder = path, decoder
        if not os.path.isfile(path):
            raise VideoDecodeError(path, "cannot open: file not found")
        try:
            with _decoder_scope(decoder):
                self._video = EncodedVideo.from_path(path, decode_audio=False, decoder=decoder)
            self._fps = _stream_fps(self._video, decoder)
            duration = self._video.duration
        except Exception as e:  # av.error.*, decord.DECORDError, RuntimeError, ...
            raise VideoDecodeError(path, f"cannot open with pytorchvideo ({decoder}): {type(e).__name__}: {e}") from e
        self.fps = sanitize_fps(float(self._fps) if self._fps else None, path)
        if self.fps is None or duration is None:
            raise VideoDecodeError(path, "pytorchvideo decodes by time and needs a valid fps and duration")
        self.num_frames = _frame_count(self._video, decoder, float(duration), self.fps)
        if self.num_frames <= 0:
            raise VideoDecodeError(path, "the video stream holds no frames")

    def _read(self, idx: np.ndarray) -> np.ndarray:
        lo, hi = int(idx.min()), int(idx.max())
        try:
            with _decoder_scope(self.decoder):
                clip = self._video.get_clip(Fraction(lo) / self._fps, Fraction(hi + 1) / self._fps)["video"]
        except Exception as e:
            raise VideoDecodeError(self.path, f"decoding failed: {type(e).__name__}: {e}") from e
        if clip is None or clip.shape[1] != hi - lo + 1:
            got = 0 if clip is None else clip.shape[1]
            raise VideoDecodeError(self.path, f"pytorchvideo returned {got} frames for frames {lo}..{hi}")
        frames = clip.permute(1, 2, 3, 0)  # (C, T, H, W) float in [0, 255] -> (T, H, W, C)
        return np.ascontiguousarray(frames[torch.from_numpy(idx - lo)].to(torch.uint8).numpy())

    def close(self) -> None:
        video = getattr(self, "_video", None)
        if video is not None:
            video.close()
            self._video = None


def encoded_video_reader_fn(decoder: str) -> Callable[[str], VideoReader]:
    """A picklable ``path -> EncodedVideoReader`` (the ``reader_fn`` of ``DATA.PIPELINE pytorchvideo``)."""
    if decoder not in DECODERS:
        raise ValueError(f"DATA.PIPELINE pytorchvideo decodes with pyav or decord, not DATA.DECODING_BACKEND {decoder!r}")
    return functools.partial(EncodedVideoReader, decoder=decoder)


class LabeledVideoItems(Dataset):
    """Our clip dataset with pytorchvideo's item dict (``LabeledVideoDataset``'s keys), for code written
    against pytorchvideo: ``{"video": (C, T, H, W), "label": int, "video_name": str, "video_index": int,
    "clip_index": 0, "aug_index": 0}`` (plus ``"bad"``: 1 when a bad training video was replaced); ``video`` is
    float, or uint8 from a dataset built with DATA.NORMALIZE_ON_DEVICE (``device_normalize`` normalises it)."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Dict[str, Any]:
        item = self.dataset[index]
        if item.get("clip") is None:
            raise VideoDecodeError(item.get("path", str(index)), item.get("error", "undecodable video"))
        video = item["clip"]
        if video.dim() == 5:  # a TestTransform with one crop: (1, C, T, H, W)
            video = video[0]
        return {"video": video, "label": int(item["label"]), "video_index": int(item["index"]),
                "video_name": os.path.basename(self.dataset.records[item["index"]].path),
                "clip_index": 0, "aug_index": 0, "bad": int(item.get("bad", 0))}


class _OurTransform:
    """pytorchvideo item dict -> the same dict with ``"video"`` passed through one of our transforms
    (float [0, 255] (C, T, H, W) -> uint8 (T, H, W, C) -> the transform's output)."""

    def __init__(self, transform: Callable, seed: int = 0) -> None:
        self.transform, self.rng = transform, np.random.default_rng(seed)

    def __call__(self, item: Dict[str, Any]) -> Dict[str, Any]:
        frames = item["video"].permute(1, 2, 3, 0).round().clamp(0, 255).to(torch.uint8).numpy()
        return {**item, "video": self.transform(frames, self.rng)}


def labeled_video_dataset(records: Sequence[VideoRecord], transform: Callable, clip_seconds: float,
                          sampler: str = "random", decoder: str = "pyav", seed: int = 0) -> LabeledVideoDataset:
    """pytorchvideo's own ``LabeledVideoDataset`` over our records (an iterable dataset: pytorchvideo's video
    order and clip sampler ``make_clip_sampler(sampler, clip_seconds)``), its clips through our ``transform``
    (``(frames uint8 (T, H, W, C), rng) -> tensor``). Items: pytorchvideo's dict with ``"video"`` transformed."""
    paths: List = [(r.path, {"label": r.label}) for r in records]
    return LabeledVideoDataset(paths, make_clip_sampler(sampler, clip_seconds), torch.utils.data.SequentialSampler,
                               transform=_OurTransform(transform, seed), decode_audio=False, decoder=decoder)
