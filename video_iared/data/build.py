"""Config -> datasets: the only place in ``video_iared.data`` that reads a CfgNode (besides loader.py)."""
from __future__ import annotations

import functools
import logging
import os
from types import ModuleType
from typing import List, Optional, Tuple

from fvcore.common.config import CfgNode

from . import kinetics, ssv2
from .annotations import AnnotationError, VideoRecord, check_files_exist
from .multiview import MultiViewDataset
from .pytorchvideo_pipeline import encoded_video_reader_fn
from .readers import build_reader, check_backend
from .sampling import ClipSampler
from .transforms import TestTransform, TrainTransform
from .video_dataset import VideoClipDataset
from ..utils.device import resolve_device

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
# UCF101 and HMDB51 lists are Kinetics-style list files (data/prepare_splits.py): same adapter, own names
ADAPTERS = {"kinetics": kinetics, "ucf101": kinetics, "hmdb51": kinetics, "ssv2": ssv2}


def dataset_name(cfg: CfgNode, split: str) -> str:
    """PySlowFast's rule: train and val use TRAIN.DATASET, test uses TEST.DATASET."""
    return cfg.TEST.DATASET if split == "test" else cfg.TRAIN.DATASET


def load_records(
    cfg: CfgNode, split: str, check_files: Optional[bool] = None
) -> Tuple[List[VideoRecord], Optional[List[str]], ModuleType]:
    """The split's videos, class names and dataset adapter; missing files checked when ``check_files``
    (default DATA.CHECK_FILES)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {list(SPLITS)}")
    name = dataset_name(cfg, split)
    adapter = ADAPTERS[name]
    d = cfg.DATA
    if name == "ssv2":
        records, names = ssv2.ssv2_records(d.PATH_TO_DATA_DIR, split, d.PATH_PREFIX, cfg.MODEL.NUM_CLASSES)
    else:
        records, names = kinetics.kinetics_records(
            d.PATH_TO_DATA_DIR, split, d.PATH_PREFIX, d.PATH_LABEL_SEPARATOR, cfg.MODEL.NUM_CLASSES
        )
    if names is not None and len(names) != cfg.MODEL.NUM_CLASSES:
        source = "something-something-v2-labels.json" if name == "ssv2" else "classes.json"
        raise AnnotationError(f"{os.path.join(d.PATH_TO_DATA_DIR, source)} names {len(names)} classes but "
                              f"MODEL.NUM_CLASSES is {cfg.MODEL.NUM_CLASSES}: set MODEL.NUM_CLASSES {len(names)}")
    if d.CHECK_FILES if check_files is None else check_files:
        check_files_exist(records)
    logger.info("%s %s: %d videos (%s)", name, split, len(records), d.PATH_TO_DATA_DIR)
    return records, names, adapter


def splits_of_run(cfg: CfgNode) -> List[str]:
    """The splits a run_net run reads: train (and val when TRAIN.EVAL_PERIOD > 0, or for an IA-RED² curriculum's
    calibration) when training, TEST.SPLIT when testing."""
    splits = []
    if cfg.TRAIN.ENABLE:
        splits.append("train")
        if cfg.TRAIN.EVAL_PERIOD > 0 or cfg.IARED.ENABLE:
            splits.append("val")
    if cfg.TEST.ENABLE and cfg.TEST.SPLIT not in splits:
        splits.append(cfg.TEST.SPLIT)
    return splits


def check_splits(cfg: CfgNode) -> None:
    """Read every split the run will use (list files, class names, DATA.CHECK_FILES) before anything trains, so
    a missing test video stops the run in seconds, not after the training it would have wasted."""
    for split in splits_of_run(cfg):
        load_records(cfg, split)


def decoding_device(cfg: CfgNode) -> str:
    """"cuda" when torchcodec decodes for a CUDA run (``utils.device.resolve_device``: DEVICE cuda, or auto with a
    GPU and NUM_GPUS > 0) with the videos read in the main process (DATA_LOADER.NUM_WORKERS 0: forked loader
    workers cannot initialise CUDA), else "cpu"."""
    if cfg.DATA.DECODING_BACKEND != "torchcodec" or cfg.DATA_LOADER.NUM_WORKERS > 0:
        return "cpu"
    return resolve_device(cfg.DEVICE, cfg.NUM_GPUS).type


def reader_fn(cfg: CfgNode) -> functools.partial:
    """A picklable ``path -> VideoReader`` for the configured backend (one decoder thread per worker); the
    backend is checked here, once (a missing library raises ``BackendUnavailableError`` naming the fix).
    ``DATA.PIPELINE pytorchvideo``: pytorchvideo's ``EncodedVideo`` decodes (data/pytorchvideo_pipeline.py)."""
    if cfg.DATA.PIPELINE == "pytorchvideo":
        return encoded_video_reader_fn(cfg.DATA.DECODING_BACKEND)
    device = decoding_device(cfg)
    check_backend(cfg.DATA.DECODING_BACKEND, device)
    return functools.partial(build_reader, backend=cfg.DATA.DECODING_BACKEND, threads=1, device=device)


def build_sampler(cfg: CfgNode, adapter: ModuleType) -> ClipSampler:
    d = cfg.DATA
    return ClipSampler(adapter.SAMPLING, d.NUM_FRAMES, d.SAMPLING_RATE, d.TARGET_FPS)


def build_train_transform(cfg: CfgNode, adapter: ModuleType) -> TrainTransform:
    """Jitter / crop / flip (where the dataset allows it); uint8 out with DATA.NORMALIZE_ON_DEVICE."""
    d = cfg.DATA
    flip = bool(d.RANDOM_FLIP and adapter.ALLOW_FLIP)
    return TrainTransform(tuple(d.TRAIN_JITTER_SCALES), d.TRAIN_CROP_SIZE, flip, d.MEAN, d.STD,
                          normalize=not d.NORMALIZE_ON_DEVICE)


def build_test_transform(cfg: CfgNode, num_crops: int) -> TestTransform:
    """``num_crops`` crops at TEST_CROP_SIZE; uint8 out with DATA.NORMALIZE_ON_DEVICE (the loops normalise)."""
    d = cfg.DATA
    return TestTransform(d.TEST_CROP_SIZE, num_crops, d.MEAN, d.STD, normalize=not d.NORMALIZE_ON_DEVICE)


def build_dataset(cfg: CfgNode, split: str) -> VideoClipDataset:
    """The clip dataset of ``split``: random clips with jitter / crop / flip for "train"; for "val" and
    "test" the centre clip and centre crop at TEST_CROP_SIZE (deterministic, unlike PySlowFast's val). Clips are
    uint8 with DATA.NORMALIZE_ON_DEVICE (normalise them with ``device_normalize.build_normalizer(cfg)``)."""
    records, names, adapter = load_records(cfg, split)
    d = cfg.DATA
    train = split == "train"
    transform = build_train_transform(cfg, adapter) if train else build_test_transform(cfg, 1)
    return VideoClipDataset(
        records, reader_fn(cfg), build_sampler(cfg, adapter), transform, train,
        max_bad_fraction=d.MAX_BAD_FRACTION, decode_timeout=d.DECODE_TIMEOUT, class_names=names,
        seed=cfg.RNG_SEED if train else None,
    )


def build_multiview_dataset(cfg: CfgNode, split: str) -> MultiViewDataset:
    """One item per video of ``split`` with all TEST.NUM_ENSEMBLE_VIEWS x TEST.NUM_SPATIAL_CROPS views (uint8
    with DATA.NORMALIZE_ON_DEVICE)."""
    records, names, adapter = load_records(cfg, split)
    d, t = cfg.DATA, cfg.TEST
    return MultiViewDataset(
        records, reader_fn(cfg), build_sampler(cfg, adapter), build_test_transform(cfg, t.NUM_SPATIAL_CROPS),
        t.NUM_ENSEMBLE_VIEWS, decode_timeout=d.DECODE_TIMEOUT, class_names=names,
    )
