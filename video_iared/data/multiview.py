"""Multi-view evaluation: each video is decoded ONCE and yields all its views.

The peers decode a video once per view (30 decodes for 10 x 3); here the frames of every temporal clip
are decoded in one ``get_frames`` call over their union, and the spatial crops are cut from those frames.
"""
from __future__ import annotations

import logging
from typing import Dict, List, Optional, Sequence

import torch

from .annotations import VideoRecord
from .readers import VideoDecodeError
from .sampling import ClipSampler
from .transforms import TestTransform
from .video_dataset import ReaderFn, VideoListDataset, load_frames

logger = logging.getLogger(__name__)


class MultiViewDataset(VideoListDataset):
    """One item per video with all ``num_clips x num_crops`` views.

    Item: ``{"index", "path", "label", "views": (V, C, T, H, W) or None, "error": str or None}``, views float or
    uint8 (a transform with ``normalize=False``: the device normalises),
    V = num_clips x num_crops, view ``v`` = clip ``v // num_crops``, crop ``v % num_crops``. A video that
    fails is never replaced: ``views`` is None and ``error`` holds the reason.

    Args:
        records: the videos.
        reader_fn: opens a path (picklable).
        sampler: picks each clip's indices (``sampler(n, clip_idx, num_clips, fps=...)``).
        transform: a ``TestTransform`` (its ``num_crops`` crops per clip).
        num_clips: temporal clips per video (NUM_ENSEMBLE_VIEWS).
        decode_timeout: seconds per video before it counts as failed (0: no watchdog).
        class_names: optional names indexed by label.
    """

    def __init__(
        self,
        records: Sequence[VideoRecord],
        reader_fn: ReaderFn,
        sampler: ClipSampler,
        transform: TestTransform,
        num_clips: int,
        decode_timeout: float = 0.0,
        class_names: Optional[List[str]] = None,
    ):
        super().__init__(records, reader_fn, sampler, transform, decode_timeout, class_names)
        self.num_clips, self.num_crops = num_clips, transform.num_crops

    @property
    def num_views(self) -> int:
        return self.num_clips * self.num_crops

    def __getitem__(self, index: int) -> Dict[str, object]:
        rec = self.records[index]
        item: Dict[str, object] = {"index": index, "path": rec.path, "label": rec.label, "views": None, "error": None}
        try:
            clips = load_frames(
                self.reader_fn,
                rec.path,
                lambda n, fps: [self.sampler(n, c, self.num_clips, fps=fps) for c in range(self.num_clips)],
                self.decode_timeout,
            )
            item["views"] = torch.cat([self.transform(frames) for frames in clips])  # (V, C, T, H, W)
        except VideoDecodeError as e:
            logger.warning("evaluation: undecodable video %s (%s): %s", rec.path, rec.source, e.reason)
            item["error"] = e.reason
        return item
