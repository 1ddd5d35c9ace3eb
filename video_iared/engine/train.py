"""Training: the per-epoch loop (plain arguments) and ``train(cfg)``, the TRAIN stage of run_net.

The loader yields micro-batches of TRAIN.BATCH_SIZE / (world size x TRAIN.GRAD_ACCUM_STEPS) clips; one
optimizer step accumulates TRAIN.GRAD_ACCUM_STEPS of them on every process, so the effective batch stays
TRAIN.BATCH_SIZE while the activation memory shrinks.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import time
from typing import Callable, Dict, Optional

import torch
from fvcore.common.config import CfgNode
from torch import nn
from tqdm import tqdm

from video_iared.build import build_model
from video_iared.checkpoint import io as ckpt_io
from video_iared.checkpoint import load_checkpoint
from video_iared.data.device_normalize import as_normalizer, build_normalizer
from video_iared.data import loader as data_loader
from video_iared.data.loader import build_loader
from video_iared.engine.amp import autocast, make_scaler, train_dtype
from video_iared.engine.device import init_from_cfg
from video_iared.engine.evaluate import evaluate
from video_iared.engine import distributed as du
from video_iared.engine.meters import TrainMeter, topk_correct
from video_iared.engine.optim import build_optimizer, lr_at_epoch, set_lr
from video_iared.engine.stats import StatsWriter, epoch_rows_after
from video_iared.profiling.flops import log_model_info

logger = logging.getLogger(__name__)


TRAIN_STAGES = ("train_iter", "train_epoch", "val")  # the stats.jsonl stages one training epoch writes


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite."""


def _progress(iterable, total: int, desc: str, enabled: bool):
    """A tqdm bar on an interactive terminal only (logs and CI output stay clean)."""
    return tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True,
                disable=not (enabled and sys.stderr.isatty()))


def train_one_epoch(
    model: nn.Module,
    loader,
    optimizer: torch.optim.Optimizer,
    loss_fn: nn.Module,
    epoch: int,
    lr_fn: Callable[[float], float],
    device: torch.device,
    scaler: Optional[torch.amp.GradScaler] = None,
    dtype: Optional[torch.dtype] = None,
    grad_accum_steps: int = 1,
    clip_grad_norm: float = 0.0,
    stats: Optional[StatsWriter] = None,
    log_period: int = 10,
    show_progress: bool = True,
    normalizer: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
) -> Dict[str, float]:
    """Train for one pass over ``loader``; returns the epoch's mean loss, top-1 (%), clips/s, data time, bad count.

    ``loader`` yields micro-batches: dicts with ``clip`` (B, C, T, H, W), ``label`` (B,) and optionally
    ``bad`` (B,) — the number of undecodable videos replaced to produce each item. Every ``grad_accum_steps``
    micro-batches make one optimizer step (a shorter group at the end of the epoch still steps, its losses
    weighted by its own size). ``epoch`` is 0-based; the learning rate is ``lr_fn(epoch + i / len(loader))``
    at micro-batch i. Parameters without a gradient (frozen, or on a pruned path) are skipped by clipping
    and by the optimizer. ``normalizer``: applied to each clip batch on ``device`` (a ``ClipNormalizer`` for
    uint8 clips, DATA.NORMALIZE_ON_DEVICE; None: float clips, normalised by the loader workers).
    """
    normalize = as_normalizer(normalizer)
    model.train()
    meter = TrainMeter()
    n_iters = len(loader)
    accum = max(int(grad_accum_steps), 1)
    is_ddp = isinstance(model, nn.parallel.DistributedDataParallel)
    use_scaler = scaler is not None and scaler.is_enabled()
    lr = lr_fn(float(epoch))
    end = time.perf_counter()
    bar = _progress(loader, n_iters, f"epoch {epoch + 1}", show_progress and du.is_main_process())
    for it, batch in enumerate(bar):
        data_time = time.perf_counter() - end
        pos = it % accum  # position inside the accumulation group
        group = min(accum, n_iters - (it - pos))  # micro-batches in this group
        last_in_group = pos == group - 1
        if pos == 0:
            lr = lr_fn(epoch + it / max(n_iters, 1))
            set_lr(optimizer, lr)
            optimizer.zero_grad(set_to_none=True)
        x = normalize(batch["clip"].to(device, non_blocking=True))
        y = torch.as_tensor(batch["label"]).to(device, non_blocking=True)
        bad = int(torch.as_tensor(batch.get("bad", 0)).sum())
        # Only the last micro-batch of a group synchronises gradients across processes.
        sync = contextlib.nullcontext() if (not is_ddp or last_in_group) else model.no_sync()
        with sync:
            with autocast(device, dtype):
                logits = model(x)
                loss = loss_fn(logits.float(), y)
            if not torch.isfinite(loss):
                raise TrainingDivergedError(f"loss is {loss.item()} at epoch {epoch + 1}, iteration {it + 1}")
            scaled = loss / group
            if use_scaler:
                scaler.scale(scaled).backward()
            else:
                scaled.backward()
        if last_in_group:
            if use_scaler:
                if clip_grad_norm > 0:
                    scaler.unscale_(optimizer)
                    _clip(model, clip_grad_norm)
                scaler.step(optimizer)
                scaler.update()
            else:
                if clip_grad_norm > 0:
                    _clip(model, clip_grad_norm)
                optimizer.step()
        n = x.shape[0]
        loss_v = float(loss.detach())
        correct = topk_correct(logits.detach().float(), y, (1,))[0]
        meter.update(loss_v, correct, n, data_time, bad)
        if not getattr(bar, "disable", True):
            bar.set_postfix(loss=f"{loss_v:.3f}", lr=f"{lr:.2e}")
        if stats is not None and ((it + 1) % max(log_period, 1) == 0 or it + 1 == n_iters):
            stats.write({
                "stage": "train_iter", "epoch": epoch + 1, "iteration": it + 1, "iterations": n_iters,
                "loss": loss_v, "lr": lr, "top1": 100.0 * correct / n,
                "clips_per_s": meter.clips_per_second(), "data_time": data_time,
                "bad_videos": _distinct_bad(loader, meter.bad), "replaced": bad,
            })
        end = time.perf_counter()
    out = meter.summary()
    out["lr"] = lr
    out["bad_videos"] = _distinct_bad(loader, out["replaced"])
    return out


def _distinct_bad(loader, fallback: int) -> int:
    """The distinct undecodable videos met so far (the dataset's table shared with its workers), else ``fallback``."""
    table = getattr(getattr(loader, "dataset", None), "bad", None)
    return table.count() if hasattr(table, "count") else int(fallback)


def _clip(model: nn.Module, max_norm: float) -> float:
    """Clip the global norm over the parameters that have a gradient; returns the norm before clipping."""
    params = [p for p in model.parameters() if p.grad is not None]
    if not params:
        return 0.0
    return float(torch.nn.utils.clip_grad_norm_(params, max_norm))


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


def train(cfg: CfgNode, info: Optional[du.DistInfo] = None) -> str:
    """Train ``build_model(cfg)`` on the train split; returns the path of the last epoch checkpoint.

    Auto-resumes from OUTPUT_DIR/checkpoints (TRAIN.AUTO_RESUME), else starts from TRAIN.CHECKPOINT_FILE_PATH
    weights when set. Validates every TRAIN.EVAL_PERIOD epochs and keeps ``checkpoint_best.pyth`` (highest
    clip-level val top-1). Only rank 0 writes checkpoints and stats.jsonl.
    """
    info = info or init_from_cfg(cfg)
    device = info.device
    # Data first: a missing list file or video fails in a second, before a large model is built.
    train_loader = build_loader(cfg, "train", rank=info.rank, world_size=info.world_size)
    val_loader = build_loader(cfg, "val", rank=info.rank, world_size=info.world_size) if cfg.TRAIN.EVAL_PERIOD > 0 else None
    normalize = build_normalizer(cfg)  # DATA.NORMALIZE_ON_DEVICE: uint8 clips, normalised on the device
    # Seeded here, not only by run(): the same config gives the same initial weights whoever calls train().
    torch.manual_seed(cfg.RNG_SEED)
    model = build_model(cfg).to(device)
    arch = model.arch() if hasattr(model, "arch") else arch_from_cfg(cfg)
    if cfg.LOG_MODEL_INFO and info.is_main:
        log_model_info(model, cfg.DATA.NUM_FRAMES, cfg.DATA.TRAIN_CROP_SIZE, cfg.DATA.INPUT_CHANNEL_NUM[0], log=logger)
    s = cfg.SOLVER
    optimizer = build_optimizer(model, s.OPTIMIZING_METHOD, s.BASE_LR, s.WEIGHT_DECAY, s.MOMENTUM, s.NESTEROV)
    dtype = train_dtype(device, cfg.TRAIN.MIXED_PRECISION, cfg.TRAIN.AMP_DTYPE)
    scaler = make_scaler(device, dtype)

    stats = StatsWriter(os.path.join(cfg.OUTPUT_DIR, "stats.jsonl"), enabled=info.is_main)
    if info.is_main:
        for path in ckpt_io.remove_stale_temporaries(ckpt_io.checkpoint_dir(cfg.OUTPUT_DIR)):
            logger.info("removed %s, left by an interrupted checkpoint write", path)
    start_epoch = 0
    latest = ckpt_io.latest_checkpoint(cfg.OUTPUT_DIR) if cfg.TRAIN.AUTO_RESUME else None
    if latest:
        start_epoch = ckpt_io.resume_training(latest, model, optimizer, scaler, arch)
        logger.info("resumed from %s (epoch %d of %d)", latest, start_epoch, s.MAX_EPOCH)
        dropped = stats.drop(epoch_rows_after(start_epoch, TRAIN_STAGES))
        if dropped:
            logger.info("stats.jsonl: dropped %d rows of the interrupted epoch(s) after %d", dropped, start_epoch)
    elif cfg.TRAIN.CHECKPOINT_FILE_PATH:
        load_checkpoint(cfg.TRAIN.CHECKPOINT_FILE_PATH, model)  # logs its own load report
        logger.info("initial weights from %s", cfg.TRAIN.CHECKPOINT_FILE_PATH)

    if start_epoch >= s.MAX_EPOCH and latest:
        logger.info("training already complete (%d epochs); nothing to train", start_epoch)
        return latest

    n_train = len(train_loader.dataset) if hasattr(train_loader, "dataset") else -1
    logger.info("train: %d videos, %d iterations/epoch, effective batch %d clips (%d processes x %d accumulation "
                "steps x %d clips), device %s", n_train, len(train_loader), cfg.TRAIN.BATCH_SIZE, info.world_size,
                cfg.TRAIN.GRAD_ACCUM_STEPS, cfg.TRAIN.BATCH_SIZE // (info.world_size * cfg.TRAIN.GRAD_ACCUM_STEPS),
                device)

    # Pruned / frozen paths may leave parameters unused in a step; DDP must then not wait for their gradients.
    net = wrap_ddp(model, info, find_unused=bool(cfg.IARED.ENABLE))
    loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.TRAIN.LABEL_SMOOTHING)
    lr_fn = lr_fn_from_cfg(cfg)
    best_top1 = _best_so_far(cfg.OUTPUT_DIR)
    last_path = latest or ""
    for epoch in range(start_epoch, s.MAX_EPOCH):
        # Per-epoch seeding (shuffle, dropout) and per-(epoch, video) augmentation seeds make a resumed run draw
        # what an unbroken one would, whatever DATA_LOADER.NUM_WORKERS.
        torch.manual_seed(cfg.RNG_SEED + epoch)
        data_loader.set_loader_epoch(train_loader, epoch)
        t0 = time.perf_counter()
        summary = train_one_epoch(net, train_loader, optimizer, loss_fn, epoch, lr_fn, device, scaler, dtype,
                                  cfg.TRAIN.GRAD_ACCUM_STEPS, cfg.TRAIN.CLIP_GRAD_NORM, stats, cfg.LOG_PERIOD,
                                  normalizer=normalize)
        if info.distributed:
            reduce_epoch_summary(summary, device)
        logger.info("epoch %d/%d: loss %.4f, train top-1 %.2f%%, %.1f clips/s, data %.3f s/it, lr %.2e, "
                    "bad videos %d (distinct, so far; %d clips replaced this epoch), %.0f s", epoch + 1, s.MAX_EPOCH,
                    summary["loss"], summary["top1"], summary["clips_per_s"], summary["data_time"], summary["lr"],
                    summary["bad_videos"], summary["replaced"], time.perf_counter() - t0)
        stats.write({"stage": "train_epoch", "epoch": epoch + 1, **summary})
        done = epoch + 1
        val = None
        if val_loader is not None and (done % cfg.TRAIN.EVAL_PERIOD == 0 or done == s.MAX_EPOCH):
            val = evaluate(net, val_loader, device, dtype, normalize)
            logger.info("epoch %d val (clip level): top-1 %.2f%%, top-5 %.2f%%, loss %.4f on %d clips",
                        done, val["top1"], val["top5"], val["loss"], val["clips"])
            stats.write({"stage": "val", "epoch": done, **val})
        if info.is_main:
            if done % max(cfg.TRAIN.CHECKPOINT_PERIOD, 1) == 0 or done == s.MAX_EPOCH:
                last_path = ckpt_io.save_checkpoint(ckpt_io.epoch_checkpoint_path(cfg.OUTPUT_DIR, done), model, done,
                                                    optimizer, scaler, cfg.dump(), arch)
            if val is not None and val["top1"] > best_top1:
                best_top1 = val["top1"]
                ckpt_io.save_checkpoint(ckpt_io.best_checkpoint_path(cfg.OUTPUT_DIR), model, done, None, None,
                                        cfg.dump(), arch, extra={"val_top1": float(val["top1"])})
        du.barrier()
    last_path = du.broadcast_object(last_path)
    logger.info("training done: last checkpoint %s", last_path)
    return last_path


def _best_so_far(output_dir: str) -> float:
    """The val top-1 of an existing best checkpoint (a resumed run must not overwrite a better one)."""
    path = ckpt_io.best_checkpoint_path(output_dir)
    if os.path.isfile(path):
        try:
            return float(ckpt_io.read_checkpoint(path).get("val_top1", -math.inf))
        except ckpt_io.CheckpointError:
            pass
    return -math.inf
