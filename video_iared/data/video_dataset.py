"""The generic clip dataset over (reader, sampler, transform) and its failure policy.

Failure policy (one place for it):
- a video that fails to open or decode (or takes longer than ``decode_timeout`` seconds) raises
  ``VideoDecodeError`` inside ``load_frames``; nothing else in the pipeline catches decode errors.
- training: the failure is logged with path and reason, the video is flagged in a shared table, and another
  video is used instead, the first good one in an order of all videos drawn from (seed, epoch, index) (so
  consecutive bad videos are replaced by different videos; deterministic, and so are its random draws, see
  ``seed``); the item's ``bad`` field is 1 when it was replaced. Known-bad videos are skipped without decoding
  them again. ``bad.count()`` is the number of distinct bad videos met.
- counting across loader workers: the flags live in a shared-memory byte array (one byte per video,
  created before the workers start and inherited by them), so every worker sees the same set of distinct
  bad videos. When more than ``max_bad_fraction`` of the videos are flagged, the item raises
  ``TooManyBadVideosError`` listing them; the DataLoader re-raises it in the main process and the run stops.
- evaluation: a failed video is never replaced; the item is a failure record with ``clip`` None and
  ``error`` set (the loader's collate moves it to the batch's ``failed`` list).
"""
from __future__ import annotations

import logging
import multiprocessing
import threading
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset

from .annotations import VideoRecord
from .readers import VideoDecodeError, VideoReader
from .sampling import ClipSampler

logger = logging.getLogger(__name__)

ReaderFn = Callable[[str], VideoReader]


class TooManyBadVideosError(RuntimeError):
    """More undecodable training videos than DATA.MAX_BAD_FRACTION allows."""


def run_with_timeout(fn: Callable[[], object], timeout: float, path: str):
    """Run ``fn`` in a watchdog thread; raise ``VideoDecodeError`` if it takes longer than ``timeout`` s.

    A decoder stuck in C code cannot be killed from Python: the daemon thread is abandoned (it holds one
    open file) and the video counts as failed, so the epoch goes on. ``timeout <= 0`` runs ``fn`` inline.
    """
    if not timeout or timeout <= 0:
        return fn()
    box: Dict[str, object] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as e:  # re-raised in the caller's thread
            box["error"] = e

    t = threading.Thread(target=target, daemon=True, name="video-decode")
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise VideoDecodeError(path, f"decoding took longer than DATA.DECODE_TIMEOUT = {timeout:g} s (abandoned)")
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]


def load_frames(
    reader_fn: ReaderFn,
    path: str,
    indices_fn: Callable[[int, Optional[float]], Sequence[np.ndarray]],
    timeout: float = 0.0,
) -> List[np.ndarray]:
    """Open ``path`` once, pick clips with ``indices_fn(num_frames, fps) -> [indices (T,), ...]``, decode
    the union of their frames in one ``get_frames`` call and return each clip's uint8 (T, H, W, C) frames.

    Decoding failures become ``VideoDecodeError``: the readers' own, plus the OS / runtime / value errors a
    broken file can raise from deeper down. Programming errors (ImportError, NameError, TypeError, ...)
    propagate, so that a bug crashes the run instead of being counted as a bad video.
    """

    def work() -> List[np.ndarray]:
        reader = reader_fn(path)
        try:
            clips = [np.asarray(c, dtype=np.int64) for c in indices_fn(reader.num_frames, reader.fps)]
            union, inverse = np.unique(np.concatenate(clips), return_inverse=True)
            frames = reader.get_frames(union)
        finally:
            reader.close()
        out, start = [], 0
        for c in clips:
            out.append(frames[inverse[start:start + len(c)]])
            start += len(c)
        return out

    try:
        return run_with_timeout(work, timeout, path)
    except VideoDecodeError:
        raise
    except (OSError, RuntimeError, ValueError, EOFError, MemoryError, IndexError) as e:
        raise VideoDecodeError(path, f"{type(e).__name__}: {e}") from e


def item_rng() -> np.random.Generator:
    """A numpy generator seeded from torch's RNG, for datasets built without a seed: reproducible under
    ``torch.manual_seed`` in-process; with persistent workers only within the first epoch a process runs."""
    return np.random.default_rng(int(torch.randint(0, 2**62, (1,)).item()))


class SharedEpoch:
    """The current epoch, in shared memory: persistent loader workers hold a copy of the dataset made when they
    started, so an epoch set on the main process's dataset must reach them through memory they share."""

    def __init__(self) -> None:
        self._value = multiprocessing.RawValue("q", 0)

    def set(self, epoch: int) -> None:
        self._value.value = int(epoch)

    def get(self) -> int:
        return int(self._value.value)


class BadVideoTable:
    """Distinct undecodable videos, shared between the loader workers (a shared-memory byte per video)."""

    def __init__(self, num_videos: int):
        self._flags = multiprocessing.RawArray("B", max(num_videos, 1))

    def mark(self, index: int) -> None:
        self._flags[index] = 1

    def is_bad(self, index: int) -> bool:
        return bool(self._flags[index])

    def indices(self) -> List[int]:
        return np.flatnonzero(np.frombuffer(self._flags, dtype=np.uint8)).tolist()

    def count(self) -> int:
        return int(np.frombuffer(self._flags, dtype=np.uint8).sum())


class VideoListDataset(Dataset):
    """What the clip and multi-view datasets share: the records (``.videos`` as (path, label) pairs, the
    contract's view of them), class names, and the reader / sampler / transform they decode with."""

    def __init__(self, records: Sequence[VideoRecord], reader_fn: ReaderFn, sampler: ClipSampler,
                 transform: Callable, decode_timeout: float = 0.0, class_names: Optional[List[str]] = None):
        self.records = list(records)
        self.videos: List[Tuple[str, int]] = [(r.path, r.label) for r in self.records]
        self.class_names = class_names
        self.reader_fn, self.sampler, self.transform = reader_fn, sampler, transform
        self.decode_timeout = decode_timeout

    def __len__(self) -> int:
        return len(self.records)


class VideoClipDataset(VideoListDataset):
    """One clip per item from a list of videos.

    Item: ``{"clip": float (C, T, H, W) (uint8 from a transform built with ``normalize=False``), "label": int,
    "index": int, "bad": int}``; in evaluation a
    failed video gives ``{"clip": None, "label", "index", "bad": 0, "path", "error": reason}``.

    Args:
        records: the videos (path, label, source).
        reader_fn: opens a path, e.g. ``functools.partial(build_reader, backend="pyav")`` (picklable).
        sampler: picks the clip's frame indices.
        transform: ``(frames uint8 (T, H, W, C), rng) -> (C, T, H, W)`` (float, or uint8) in training, or a
            ``TestTransform`` with one crop in evaluation.
        train: random clips and the replacement policy (else the centre clip and failure records).
        max_bad_fraction: training stops when more than this fraction of the videos failed.
        decode_timeout: seconds per video before it counts as failed (0: no watchdog).
        class_names: optional names indexed by label.
        seed: with a seed, item ``i``'s random draws (clip start, scale, crop, flip) come from a generator seeded
            with (seed, epoch, i) (plus the replacement video's index when a bad video is replaced) — the same
            whatever the number of loader workers, the order of the items, the bad videos already known or a
            resumption (call ``set_epoch`` before each epoch); None: from torch's RNG (``item_rng``).
    """

    def __init__(
        self,
        records: Sequence[VideoRecord],
        reader_fn: ReaderFn,
        sampler: ClipSampler,
        transform: Callable,
        train: bool,
        max_bad_fraction: float = 1.0,
        decode_timeout: float = 0.0,
        class_names: Optional[List[str]] = None,
        seed: Optional[int] = None,
    ):
        super().__init__(records, reader_fn, sampler, transform, decode_timeout, class_names)
        self.train, self.max_bad_fraction = train, max_bad_fraction
        self.seed = seed
        self.epoch = SharedEpoch()
        self.bad = BadVideoTable(len(self.records))
        self._logged: set = set()  # per process: log each bad video once

    def _clip(self, index: int, rng: np.random.Generator) -> torch.Tensor:
        path = self.records[index].path
        clip_idx = -1 if self.train else 0
        (frames,) = load_frames(
            self.reader_fn, path, lambda n, fps: [self.sampler(n, clip_idx, 1, rng, fps)], self.decode_timeout
        )
        out = self.transform(frames, rng)
        return out if self.train else out[0]  # TestTransform returns (crops=1, C, T, H, W)

    def _record_failure(self, index: int, err: VideoDecodeError) -> None:
        self.bad.mark(index)
        if index not in self._logged:
            self._logged.add(index)
            logger.warning("undecodable video %s (%s): %s", self.records[index].path, self.records[index].source, err.reason)
        count, n = self.bad.count(), len(self.records)
        if count > self.max_bad_fraction * n:
            listed = "\n".join(f"  {self.records[i].source}: {self.records[i].path}" for i in self.bad.indices()[:50])
            raise TooManyBadVideosError(
                f"{count} of {n} training videos failed to decode, more than DATA.MAX_BAD_FRACTION = "
                f"{self.max_bad_fraction:g} allows (run tools/check_videos.py for the reasons):\n{listed}"
            )

    def set_epoch(self, epoch: int) -> None:
        """The epoch the next items are drawn for (with a ``seed``; shared with the loader's workers)."""
        self.epoch.set(epoch)

    def _item_rng(self, index: int, video: int) -> np.random.Generator:
        """The draws of item ``index`` read from ``video`` (itself, or its replacement after a bad video): a
        generator of its own per attempt, so a failed attempt's draws never shift the next one's (whether a video
        is already known to be bad differs between an unbroken run, a resumed one and the workers)."""
        if self.seed is None:
            return item_rng()
        key = [self.seed % 2**63, self.epoch.get(), index] + ([] if video == index else [video])
        return np.random.default_rng(key)

    def __getitem__(self, index: int) -> Dict[str, object]:
        if not self.train:
            rec = self.records[index]
            try:
                return {"clip": self._clip(index, self._item_rng(index, index)), "label": rec.label, "index": index,
                        "bad": 0}
            except VideoDecodeError as e:
                logger.warning("evaluation: undecodable video %s: %s", rec.path, e.reason)
                return {"clip": None, "label": rec.label, "index": index, "bad": 0, "path": rec.path, "error": e.reason}
        n = len(self.records)
        for j in self._candidates(index):
            if self.bad.is_bad(j):
                continue  # known bad (here or in another worker): do not decode it again
            try:
                clip = self._clip(j, self._item_rng(index, j))
            except VideoDecodeError as e:
                self._record_failure(j, e)
                continue
            return {"clip": clip, "label": self.records[j].label, "index": j, "bad": int(j != index)}
        raise TooManyBadVideosError(f"none of the {n} training videos could be decoded")

    def _candidates(self, index: int) -> Iterator[int]:
        """``index``, then every other video in an order drawn from (seed, epoch, index): a run of consecutive
        bad videos is replaced by videos spread over the list, not all by the first good one after the run. The
        order does not depend on which videos are known bad, so neither does the replacement."""
        yield index
        n = len(self.records)
        if n > 1:
            key = [(self.seed or 0) % 2**63, self.epoch.get(), index, 1]
            for j in np.random.default_rng(key).permutation(n).tolist():
                if j != index:
                    yield j
