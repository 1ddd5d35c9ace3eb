"""Video data: readers, sampling, transforms, datasets and loaders (see docs/design.md, "data")."""
from .annotations import AnnotationError, VideoRecord
from .build import build_dataset, build_multiview_dataset
from .device_normalize import ClipNormalizer, build_normalizer
from .loader import build_loader, build_multiview_loader
from .multiview import MultiViewDataset
from .readers import VideoDecodeError, VideoReader, build_reader
from .video_dataset import TooManyBadVideosError, VideoClipDataset

__all__ = [
    "AnnotationError", "ClipNormalizer", "MultiViewDataset", "TooManyBadVideosError", "VideoClipDataset", "VideoDecodeError",
    "VideoReader", "VideoRecord", "build_dataset", "build_loader", "build_multiview_dataset",
    "build_multiview_loader", "build_normalizer", "build_reader",
]
