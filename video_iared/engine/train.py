"""Training: ``train(cfg)``, the TRAIN stage of run_net, over ``engine.train_epoch.train_one_epoch`` (the
per-epoch loop with plain arguments, re-exported here).

The loader yields micro-batches of TRAIN.BATCH_SIZE / (world size x TRAIN.GRAD_ACCUM_STEPS) clips; one
optimizer step accumulates TRAIN.GRAD_ACCUM_STEPS of them on every process, so the effective batch stays
TRAIN.BATCH_SIZE while the activation memory shrinks.
"""
from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple

import torch
from fvcore.common.config import CfgNode
from torch import nn

from video_iared.build import build_model
from video_iared.checkpoint import io as ckpt_io
from video_iared.checkpoint import load_checkpoint
from video_iared.data.device_normalize import build_normalizer
from video_iared.data import loader as data_loader
from video_iared.data.loader import build_loader
from video_iared.engine.amp import make_scaler, train_dtype
from video_iared.engine.device import init_from_cfg
from video_iared.engine.evaluate import evaluate
from video_iared.engine.finetune import FINETUNE_EPOCH_OFFSET, Finetune, FinetuneRecipe
from video_iared.engine import distributed as du
from video_iared.engine.optim import build_optimizer, lr_at_epoch
from video_iared.engine.stats import StatsWriter, epoch_rows_after
from video_iared.engine.train_epoch import TrainingDivergedError, train_one_epoch  # re-exported: callers import them here
from video_iared.profiling.flops import log_model_info

logger = logging.getLogger(__name__)


TRAIN_STAGES = ("train_iter", "train_epoch", "val")  # the stats.jsonl stages one training epoch writes


def arch_from_cfg(cfg: CfgNode) -> Dict:
    """The architecture fields stored in our checkpoints and compared when one is loaded."""
    ts = cfg.TIMESFORMER
    arch = dict(embed_dim=ts.EMBED_DIM, depth=ts.DEPTH, num_heads=ts.NUM_HEADS, patch_size=ts.PATCH_SIZE,
                attention_type=ts.ATTENTION_TYPE, num_classes=cfg.MODEL.NUM_CLASSES, stem=ts.STEM)
    if ts.STEM == "conv3d":  # as TimeSformer.arch()
        arch["stem_channels"] = ts.STEM_CHANNELS
    return arch


def lr_fn_from_cfg(cfg: CfgNode) -> Callable[[float], float]:
    s = cfg.SOLVER
    return lambda e: lr_at_epoch(e, s.LR_POLICY, s.BASE_LR, s.MAX_EPOCH, s.STEPS, s.LRS, s.COSINE_END_LR,
                                 s.WARMUP_EPOCHS, s.WARMUP_START_LR)


def reduce_epoch_summary(summary: Dict, device: torch.device) -> None:
    """``train_one_epoch``'s summary over every process (in place): loss and top-1 weighted by clip counts."""
    loss, top1, clips, bad, replaced = du.all_reduce_sum(
        [summary["loss"] * summary["clips"], summary["top1"] * summary["clips"], summary["clips"],
         summary["bad_videos"], summary["replaced"]], device)
    # bad_videos: each process's distinct count, summed (a video met by two processes counts twice)
    summary.update(loss=loss / max(clips, 1), top1=top1 / max(clips, 1), clips=int(clips), bad_videos=int(bad),
                   replaced=int(replaced))


def wrap_ddp(model: nn.Module, info: du.DistInfo, find_unused: bool) -> nn.Module:
    """DistributedDataParallel under torchrun, the bare model otherwise."""
    if not info.distributed:
        return model
    ids = [info.device.index] if info.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=find_unused)


@dataclass
class _Schedule:
    """How ``train`` trains: optimizer, autocast dtype, scaler, loss, learning rate at a (fractional, 0-based)
    epoch, the number of epochs, and the offset of the epochs' random draws (seed RNG_SEED + offset + epoch,
    loader epoch offset + epoch)."""

    optimizer: torch.optim.Optimizer
    dtype: Optional[torch.dtype]
    scaler: torch.amp.GradScaler
    loss_fn: nn.Module
    lr_fn: Callable[[float], float]
    epochs: int
    draw_offset: int


def _schedule(cfg: CfgNode, model: nn.Module, device: torch.device, recipe: Optional[FinetuneRecipe]) -> _Schedule:
    """SOLVER.* (SOLVER.MAX_EPOCH epochs, draws of epochs 0, 1, ...), or the finetune ``recipe``'s (its optimizer,
    cosine schedule, epochs and FINETUNE_EPOCH_OFFSET draws: ``engine.finetune``)."""
    if recipe is not None:
        f = Finetune(model, recipe, device)
        return _Schedule(f.optimizer, f.dtype, f.scaler, f.loss_fn, f.lr, recipe.epochs, FINETUNE_EPOCH_OFFSET)
    s = cfg.SOLVER
    optimizer = build_optimizer(model, s.OPTIMIZING_METHOD, s.BASE_LR, s.WEIGHT_DECAY, s.MOMENTUM, s.NESTEROV)
    dtype = train_dtype(device, cfg.TRAIN.MIXED_PRECISION, cfg.TRAIN.AMP_DTYPE)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.TRAIN.LABEL_SMOOTHING)
    return _Schedule(optimizer, dtype, make_scaler(device, dtype), loss_fn, lr_fn_from_cfg(cfg), s.MAX_EPOCH, 0)


def train(cfg: CfgNode, info: Optional[du.DistInfo] = None, recipe: Optional[FinetuneRecipe] = None) -> str:
    """Train ``build_model(cfg)`` on the train split; returns the path of the last epoch checkpoint.

    Auto-resumes from OUTPUT_DIR/checkpoints (TRAIN.AUTO_RESUME), else starts from TRAIN.CHECKPOINT_FILE_PATH
    weights when set. Validates every TRAIN.EVAL_PERIOD epochs and keeps ``checkpoint_best.pyth`` (highest
    clip-level val top-1). Only rank 0 writes checkpoints and stats.jsonl. ``recipe``: train by that finetune
    recipe instead of SOLVER.* (``engine.finetune``; run_net's "dense + N": the dense model, from
    TRAIN.CHECKPOINT_FILE_PATH, given IA-RED²'s finetune).
    """
    info = info or init_from_cfg(cfg)
    device = info.device
    # Data first: a missing list file or video fails in a second, before a large model is built.
    train_loader = build_loader(cfg, "train", rank=info.rank, world_size=info.world_size)
    val_loader = build_loader(cfg, "val", rank=info.rank, world_size=info.world_size) if cfg.TRAIN.EVAL_PERIOD > 0 else None
    normalize = build_normalizer(cfg)  # DATA.NORMALIZE_ON_DEVICE: uint8 clips, normalised on the device
    model, arch = _build_model(cfg, info)
    sched = _schedule(cfg, model, device, recipe)
    optimizer, dtype, scaler, epochs = sched.optimizer, sched.dtype, sched.scaler, sched.epochs

    stats = StatsWriter(os.path.join(cfg.OUTPUT_DIR, "stats.jsonl"), enabled=info.is_main)
    start_epoch, latest = _resume_or_initialise(cfg, info, model, optimizer, scaler, arch, stats, epochs)
    if start_epoch >= epochs and latest:
        logger.info("training already complete (%d epochs); nothing to train", start_epoch)
        return latest
    _log_training_plan(cfg, train_loader, info)

    # Pruned / frozen paths may leave parameters unused in a step; DDP must then not wait for their gradients.
    net = wrap_ddp(model, info, find_unused=bool(cfg.IARED.ENABLE))
    best_top1 = _best_so_far(cfg.OUTPUT_DIR)
    last_path = latest or ""
    for epoch in range(start_epoch, epochs):
        # Per-epoch seeding (shuffle, dropout) and per-(epoch, video) augmentation seeds make a resumed run draw
        # what an unbroken one would, whatever DATA_LOADER.NUM_WORKERS.
        torch.manual_seed(cfg.RNG_SEED + sched.draw_offset + epoch)
        data_loader.set_loader_epoch(train_loader, sched.draw_offset + epoch)
        t0 = time.perf_counter()
        summary = train_one_epoch(net, train_loader, optimizer, sched.loss_fn, epoch, sched.lr_fn, device, scaler,
                                  dtype, cfg.TRAIN.GRAD_ACCUM_STEPS, cfg.TRAIN.CLIP_GRAD_NORM, stats, cfg.LOG_PERIOD,
                                  normalizer=normalize)
        if info.distributed:
            reduce_epoch_summary(summary, device)
        _log_epoch(summary, epoch, epochs, t0)
        stats.write({"stage": "train_epoch", "epoch": epoch + 1, **summary})
        done = epoch + 1
        val = None
        if val_loader is not None and (done % cfg.TRAIN.EVAL_PERIOD == 0 or done == epochs):
            val = validate_epoch(net, val_loader, device, dtype, normalize, done, stats)
        if info.is_main:
            last_path, best_top1 = _save_epoch_checkpoints(cfg, model, optimizer, scaler, arch, done, epochs, val,
                                                           last_path, best_top1)
        du.barrier()
    last_path = du.broadcast_object(last_path)
    logger.info("training done: last checkpoint %s", last_path)
    return last_path


def _build_model(cfg: CfgNode, info: du.DistInfo) -> Tuple[nn.Module, Dict]:
    """``build_model(cfg)`` on the device (its initial weights from RNG_SEED) and its arch record."""
    # Seeded here, not only by run(): the same config gives the same initial weights whoever calls train().
    torch.manual_seed(cfg.RNG_SEED)
    model = build_model(cfg).to(info.device)
    arch = model.arch() if hasattr(model, "arch") else arch_from_cfg(cfg)
    if cfg.LOG_MODEL_INFO and info.is_main:
        log_model_info(model, cfg.DATA.NUM_FRAMES, cfg.DATA.TRAIN_CROP_SIZE, cfg.DATA.INPUT_CHANNEL_NUM[0], log=logger)
    return model, arch


def _resume_or_initialise(
    cfg: CfgNode, info: du.DistInfo, model: nn.Module, optimizer: torch.optim.Optimizer,
    scaler: Optional[torch.amp.GradScaler], arch: Dict, stats: StatsWriter, epochs: int,
) -> Tuple[int, Optional[str]]:
    """Resume from the latest checkpoint of OUTPUT_DIR (TRAIN.AUTO_RESUME; the interrupted epochs' stats rows are
    dropped), else load TRAIN.CHECKPOINT_FILE_PATH weights when set. Returns (start epoch, latest checkpoint)."""
    if info.is_main:
        for path in ckpt_io.remove_stale_temporaries(ckpt_io.checkpoint_dir(cfg.OUTPUT_DIR)):
            logger.info("removed %s, left by an interrupted checkpoint write", path)
    start_epoch = 0
    latest = ckpt_io.latest_checkpoint(cfg.OUTPUT_DIR) if cfg.TRAIN.AUTO_RESUME else None
    if latest:
        start_epoch = ckpt_io.resume_training(latest, model, optimizer, scaler, arch)
        logger.info("resumed from %s (epoch %d of %d)", latest, start_epoch, epochs)
        dropped = stats.drop(epoch_rows_after(start_epoch, TRAIN_STAGES))
        if dropped:
            logger.info("stats.jsonl: dropped %d rows of the interrupted epoch(s) after %d", dropped, start_epoch)
    elif cfg.TRAIN.CHECKPOINT_FILE_PATH:
        load_checkpoint(cfg.TRAIN.CHECKPOINT_FILE_PATH, model)  # logs its own load report
        logger.info("initial weights from %s", cfg.TRAIN.CHECKPOINT_FILE_PATH)
    return start_epoch, latest


def _log_training_plan(cfg: CfgNode, train_loader, info: du.DistInfo) -> None:
    """The train split's size, iterations per epoch, effective batch and how it is made up."""
    n_train = len(train_loader.dataset) if hasattr(train_loader, "dataset") else -1
    logger.info("train: %d videos, %d iterations/epoch, effective batch %d clips (%d processes x %d accumulation "
                "steps x %d clips), device %s", n_train, len(train_loader), cfg.TRAIN.BATCH_SIZE, info.world_size,
                cfg.TRAIN.GRAD_ACCUM_STEPS, cfg.TRAIN.BATCH_SIZE // (info.world_size * cfg.TRAIN.GRAD_ACCUM_STEPS),
                info.device)


def _log_epoch(summary: Dict, epoch: int, max_epoch: int, t0: float) -> None:
    """One line per epoch: ``train_one_epoch``'s summary and the epoch's wall time since ``t0``."""
    logger.info("epoch %d/%d: loss %.4f, train top-1 %.2f%%, %.1f clips/s, data %.3f s/it, lr %.2e, "
                "bad videos %d (distinct, so far; %d clips replaced this epoch), %.0f s", epoch + 1, max_epoch,
                summary["loss"], summary["top1"], summary["clips_per_s"], summary["data_time"], summary["lr"],
                summary["bad_videos"], summary["replaced"], time.perf_counter() - t0)


def validate_epoch(net: nn.Module, val_loader, device: torch.device, dtype: Optional[torch.dtype],
              normalize: Callable[[torch.Tensor], torch.Tensor], done: int, stats: StatsWriter) -> Dict:
    """Clip-level validation after epoch ``done`` (1-based), logged and written as a ``val`` row."""
    val = evaluate(net, val_loader, device, dtype, normalize)
    logger.info("epoch %d val (clip level): top-1 %.2f%%, top-5 %.2f%%, loss %.4f on %d clips",
                done, val["top1"], val["top5"], val["loss"], val["clips"])
    stats.write({"stage": "val", "epoch": done, **val})
    return val


def _save_epoch_checkpoints(
    cfg: CfgNode, model: nn.Module, optimizer: torch.optim.Optimizer, scaler: Optional[torch.amp.GradScaler],
    arch: Dict, done: int, epochs: int, val: Optional[Dict], last_path: str, best_top1: float,
) -> Tuple[str, float]:
    """Rank 0 after epoch ``done`` of ``epochs``: the epoch checkpoint every TRAIN.CHECKPOINT_PERIOD epochs and at
    the last, the best one when ``val`` beats ``best_top1``. Returns the (last checkpoint path, best val top-1)
    after it."""
    if done % max(cfg.TRAIN.CHECKPOINT_PERIOD, 1) == 0 or done == epochs:
        last_path = ckpt_io.save_checkpoint(ckpt_io.epoch_checkpoint_path(cfg.OUTPUT_DIR, done), model, done,
                                            optimizer, scaler, cfg.dump(), arch)
    if val is not None and val["top1"] > best_top1:
        best_top1 = val["top1"]
        ckpt_io.save_checkpoint(ckpt_io.best_checkpoint_path(cfg.OUTPUT_DIR), model, done, None, None,
                                cfg.dump(), arch, extra={"val_top1": float(val["top1"])})
    return last_path, best_top1


def _best_so_far(output_dir: str) -> float:
    """The val top-1 of an existing best checkpoint (a resumed run must not overwrite a better one)."""
    path = ckpt_io.best_checkpoint_path(output_dir)
    if os.path.isfile(path):
        try:
            return float(ckpt_io.read_checkpoint(path).get("val_top1", -math.inf))
        except ckpt_io.CheckpointError:
            pass
    return -math.inf
