"""Config -> DataLoaders: the training / clip loader and the list-collated multi-view loader."""
from __future__ import annotations

import logging
from typing import Dict, Iterator, List

import torch
from fvcore.common.config import CfgNode
from torch.utils.data import DataLoader, DistributedSampler, Sampler, Subset

from ..utils.device import resolve_device
from .build import build_dataset, build_multiview_dataset

logger = logging.getLogger(__name__)


class ShardSampler(Sampler):
    """Indices ``rank, rank + world_size, ...`` in order: every index exactly once over all ranks, no
    padding duplicates (DistributedSampler pads, which double-counts videos in evaluation)."""

    def __init__(self, num_items: int, rank: int = 0, world_size: int = 1):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside [0, {world_size})")
        self.num_items, self.rank, self.world_size = num_items, rank, world_size

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.num_items, self.world_size))

    def __len__(self) -> int:
        return len(range(self.rank, self.num_items, self.world_size))


def collate_clips(items: List[Dict]) -> Dict[str, object]:
    """Stack clip items into ``{"clip": (B, C, T, H, W), "label": (B,), "index": (B,), "bad": (B,),
    "failed": [{"index", "path", "label", "error"}, ...]}``. Failure records (evaluation) are moved to
    ``failed``; ``clip`` is None when every item of the batch failed."""
    ok = [it for it in items if it["clip"] is not None]
    failed = [{k: it[k] for k in ("index", "path", "label", "error")} for it in items if it["clip"] is None]
    return {
        "clip": torch.stack([it["clip"] for it in ok]) if ok else None,
        "label": torch.tensor([it["label"] for it in ok], dtype=torch.long),
        "index": torch.tensor([it["index"] for it in ok], dtype=torch.long),
        "bad": torch.tensor([it["bad"] for it in ok], dtype=torch.long),
        "failed": failed,
    }


def collate_list(items: List[Dict]) -> List[Dict]:
    """Multi-view batches stay lists: videos may fail (views None) and are run view-chunk by chunk."""
    return list(items)


def _worker_init(_: int) -> None:
    # Workers decode and resize in parallel with each other; intra-op threads would oversubscribe the cores.
    torch.set_num_threads(1)


def _loader_kwargs(cfg: CfgNode) -> Dict[str, object]:
    workers = cfg.DATA_LOADER.NUM_WORKERS
    return {
        "num_workers": workers,
        "pin_memory": bool(cfg.DATA_LOADER.PIN_MEMORY and resolve_device(cfg.DEVICE, cfg.NUM_GPUS).type == "cuda"),
        "worker_init_fn": _worker_init if workers > 0 else None,
        "persistent_workers": workers > 0,
        # the loader's seed draw (worker seeds) from a generator of its own, never from torch's global RNG: with
        # persistent workers it happens when a process's first epoch starts, which would shift a resumed run
        "generator": torch.Generator().manual_seed(cfg.RNG_SEED),
    }


def per_process_batch(cfg: CfgNode, split: str, world_size: int) -> int:
    """Clips per loader batch: TRAIN.BATCH_SIZE / (world_size x GRAD_ACCUM_STEPS) for train and val
    (the global batch is summed over processes and micro-batches), TEST.BATCH_SIZE / world_size for test."""
    if split == "test":
        return max(1, cfg.TEST.BATCH_SIZE // world_size)
    div = world_size * cfg.TRAIN.GRAD_ACCUM_STEPS
    if cfg.TRAIN.BATCH_SIZE % div:
        raise ValueError(
            f"TRAIN.BATCH_SIZE {cfg.TRAIN.BATCH_SIZE} is not divisible by world size {world_size} x "
            f"TRAIN.GRAD_ACCUM_STEPS {cfg.TRAIN.GRAD_ACCUM_STEPS}"
        )
    return cfg.TRAIN.BATCH_SIZE // div


def build_loader(cfg: CfgNode, split: str, rank: int = 0, world_size: int = 1, max_videos: int = 0) -> DataLoader:
    """The clip loader of ``split``; batches as ``collate_clips``. Training shuffles (a DistributedSampler, also
    for one process: call ``set_loader_epoch(loader, epoch)``) and drops the last partial batch;
    val/test keep order and are sharded by ``ShardSampler``. ``max_videos`` > 0 (val/test): at most that many
    videos, evenly spaced over the list (lists are often sorted by class, so not the first ones)."""
    dataset = build_dataset(cfg, split)
    if max_videos > 0 and split != "train" and len(dataset) > max_videos:
        picked = torch.linspace(0, len(dataset) - 1, max_videos).round().long().unique().tolist()
        logger.info("%s loader: %d of %d videos, evenly spaced", split, len(picked), len(dataset))
        dataset = Subset(dataset, picked)
    batch = per_process_batch(cfg, split, world_size)
    kwargs = _loader_kwargs(cfg)
    if split == "train":
        # the shuffle is a function of (RNG_SEED, epoch) (``set_loader_epoch``), with one process too
        sampler = DistributedSampler(dataset, world_size, rank, shuffle=True, seed=cfg.RNG_SEED)
        drop_last = len(dataset) // world_size >= batch
    else:
        sampler, drop_last = ShardSampler(len(dataset), rank, world_size), False
    logger.info("%s loader: %d videos, %d clips per batch per process x %d processes, %d workers",
                split, len(dataset), batch, world_size, cfg.DATA_LOADER.NUM_WORKERS)
    return DataLoader(dataset, batch_size=batch, sampler=sampler, drop_last=drop_last,
                      collate_fn=collate_clips, **kwargs)


def set_loader_epoch(loader: DataLoader, epoch: int) -> None:
    """Before an epoch: the sampler's shuffle (``DistributedSampler.set_epoch``) and the dataset's per-item
    random draws (``VideoClipDataset.set_epoch``) for ``epoch``, so that a resumed run draws what an unbroken
    one would, with any number of workers."""
    for part in (getattr(loader, "sampler", None), getattr(loader, "dataset", None)):
        if hasattr(part, "set_epoch"):
            part.set_epoch(epoch)


def build_multiview_loader(cfg: CfgNode, split: str, rank: int = 0, world_size: int = 1) -> DataLoader:
    """The multi-view loader: TEST.BATCH_SIZE videos per batch as a list of multi-view items (each video
    decoded once), sharded by rank without padding duplicates."""
    dataset = build_multiview_dataset(cfg, split)
    batch = max(1, cfg.TEST.BATCH_SIZE // world_size)
    logger.info("%s multi-view loader: %d videos x %d views (%d clips x %d crops), %d videos per batch",
                split, len(dataset), dataset.num_views, dataset.num_clips, dataset.num_crops, batch)
    kwargs = _loader_kwargs(cfg)
    kwargs["persistent_workers"] = False  # one pass per test run
    return DataLoader(dataset, batch_size=batch, sampler=ShardSampler(len(dataset), rank, world_size),
                      collate_fn=collate_list, **kwargs)
