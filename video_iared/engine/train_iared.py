"""The IA-RED² training run: the interpreter curriculum from a trained dense model, then optional finetuning.

``train_iared(cfg, dense_checkpoint) -> path of the final checkpoint``; ``run.py`` calls it after the dense
model is trained (or with IARED.DENSE_CHECKPOINT). Reuses the engine's loader, optimizer builder, checkpoint
writer and stats writer; the curriculum itself (stages, REINFORCE step) is ``video_iared.pruning.curriculum``.

Outputs in OUTPUT_DIR: ``checkpoints/iared_stage_XX.pyth`` after each curriculum stage (a rerun with
TRAIN.AUTO_RESUME skips the stages already saved), ``checkpoints/iared_finetune_epoch_XXXXX.pyth``, and the
final ``checkpoints/checkpoint_iared.pyth``; stats.jsonl lines with ``"stage": "iared_curriculum"`` /
``"iared_val"`` / ``"iared_finetune"`` holding per-group keep rates, rewards, and sampled / thresholded accuracy.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from functools import partial
from typing import Callable, List, Optional

import torch
from fvcore.common.config import CfgNode
from torch import nn

from video_iared.build import build_iared_model
from video_iared.checkpoint import io as ckpt_io
from video_iared.checkpoint import load_checkpoint
from video_iared.data.device_normalize import build_normalizer
from video_iared.data.loader import build_loader, set_loader_epoch
from video_iared.engine.amp import amp_dtype, policy_dtype, train_dtype
from video_iared.engine.device import init_from_cfg
from video_iared.engine.finetune import Finetune, recipe_from_cfg
from video_iared.engine import distributed as du
from video_iared.engine.optim import build_optimizer, lr_at_epoch
from video_iared.engine.stats import StatsWriter
from video_iared.engine.train import arch_from_cfg, reduce_epoch_summary, wrap_ddp
from video_iared.pruning.calibrate import (CalibrationError, calibrate_group_thresholds, calibrate_keep_ratio,
                                           calibrate_threshold)
from video_iared.pruning.cost import dense_gflops
from video_iared.pruning.curriculum import FINETUNE, curriculum_epoch, evaluate_policies, set_stage, stage_policy
from video_iared.pruning.decisions import PolicyBound, describe_operating_point
from video_iared.pruning.distill import DistillationLoss, StudentWithTeacher, dense_teacher

logger = logging.getLogger(__name__)


def _arch(cfg: CfgNode) -> dict:
    return arch_from_cfg(cfg)


def _fmt(v) -> str:
    return "[" + ", ".join(f"{x:.3f}" for x in v) + "]" if isinstance(v, (list, tuple)) else f"{v:.3f}"


@dataclass
class _IAREDRun:
    """What every step of an IA-RED² training run shares."""

    cfg: CfgNode
    info: du.DistInfo
    model: nn.Module
    stats: StatsWriter
    arch: dict
    train_loader: object
    val_loader: object
    normalize: Callable
    reduce_fn: Callable  # statistics over every process's shard
    calibration_clips: Optional[List[dict]] = None  # the calibration's val batches, decoded once per run

    @property
    def device(self) -> torch.device:
        return self.info.device


def train_iared(cfg: CfgNode, dense_checkpoint: str) -> str:
    """Curriculum (one stage per group, IARED.CURRICULUM_EPOCHS each) + IARED.FINETUNE_EPOCHS of finetuning."""
    run = _set_up(cfg, dense_checkpoint)
    ia, model = cfg.IARED, run.model
    G = model.num_groups
    logger.info("IA-RED² curriculum: %d stages x %d epochs, groups %s, policy %s (threshold %.2f), tau %.2f, "
                "baseline %s, interpreter lr %.2e, execution %s", G, ia.CURRICULUM_EPOCHS, list(ia.GROUPS), ia.MODE,
                ia.THRESHOLD, ia.TAU, ia.BASELINE, ia.BASE_LR, ia.EXECUTION)
    for stage in range(G):
        _curriculum_stage(run, stage)

    set_stage(model, FINETUNE)  # every group active from here on
    run.stats.drop(_rows_from_stage(G))  # an interrupted run's calibration / finetune rows: written again below
    calibration = _calibrate(run, "curriculum") if ia.TARGET_COST > 0 else None
    if ia.FINETUNE_EPOCHS > 0:
        _finetune(cfg, model, run.train_loader, run.val_loader, run.device, run.stats, run.arch, run.info,
                  run.reduce_fn)
        set_stage(model, FINETUNE)
        if ia.TARGET_COST > 0:  # the finetuned backbone feeds the later interpreters other features
            calibration = _calibrate(run, "finetune")
    return _save_final(run, calibration)


def _set_up(cfg: CfgNode, dense_checkpoint: str) -> _IAREDRun:
    """The IA-RED² model on the dense backbone, its loaders, stats writer and process group."""
    info = init_from_cfg(cfg)
    # the interpreters' initialisation from RNG_SEED alone: the same whether the dense model was trained, tested
    # or loaded in this process before (make demo == the same run with IARED.DENSE_CHECKPOINT)
    torch.manual_seed(cfg.RNG_SEED)
    model = build_iared_model(cfg)
    report = load_checkpoint(dense_checkpoint, model)  # strict: only the interpreters may be missing
    logger.info("IA-RED²: backbone from %s (%d tensors loaded)", dense_checkpoint, len(report.loaded))
    model.to(info.device)
    stats = StatsWriter(os.path.join(cfg.OUTPUT_DIR, "stats.jsonl"), enabled=info.is_main)
    if info.is_main:
        for path in ckpt_io.remove_stale_temporaries(ckpt_io.checkpoint_dir(cfg.OUTPUT_DIR)):
            logger.info("removed %s, left by an interrupted checkpoint write", path)
    train_loader = build_loader(cfg, "train", rank=info.rank, world_size=info.world_size)
    val_loader = build_loader(cfg, "val", rank=info.rank, world_size=info.world_size)
    normalize = build_normalizer(cfg)  # DATA.NORMALIZE_ON_DEVICE: uint8 clips, normalised on the device
    return _IAREDRun(cfg, info, model, stats, _arch(cfg), train_loader, val_loader, normalize,
                     partial(du.all_reduce_sum, device=info.device))


def _curriculum_stage(run: _IAREDRun, stage: int) -> None:
    """Train interpreter ``stage`` for IARED.CURRICULUM_EPOCHS (or resume it from its stage checkpoint)."""
    cfg, model, ia = run.cfg, run.model, run.cfg.IARED
    path = ckpt_io.stage_checkpoint_path(cfg.OUTPUT_DIR, stage)
    if cfg.TRAIN.AUTO_RESUME and os.path.isfile(path):
        load_checkpoint(path, model)
        logger.info("IA-RED² stage %d: resumed from %s", stage, path)
        return
    dropped = run.stats.drop(_rows_from_stage(stage))
    if dropped:
        logger.info("stats.jsonl: dropped %d rows of an interrupted run from curriculum stage %d on", dropped, stage)
    trainable = set_stage(model, stage)
    optimizer = build_optimizer(model, "adamw", ia.BASE_LR, 0.0)
    logger.info("IA-RED² stage %d: training %d tensors (%s ...)", stage, len(trainable), trainable[0])
    for epoch in range(ia.CURRICULUM_EPOCHS):
        _curriculum_epoch(run, stage, epoch, optimizer)
    # the interpreter's gradients are averaged by hand (curriculum._all_reduce_grads), not by DDP
    du.check_replicas_equal([p for p in model.parameters() if p.requires_grad],
                            f"IA-RED² stage {stage}: the trained interpreter")
    if run.info.is_main:
        ckpt_io.save_checkpoint(path, model, stage + 1, None, None, cfg.dump(), run.arch)
    du.barrier()


def _curriculum_epoch(run: _IAREDRun, stage: int, epoch: int, optimizer: torch.optim.Optimizer) -> None:
    """One REINFORCE epoch of interpreter ``stage``, its val figures, logged and written to stats.jsonl."""
    cfg, ia = run.cfg, run.cfg.IARED
    epochs = ia.CURRICULUM_EPOCHS
    # TRAIN.MIXED_PRECISION: the curriculum's forwards under bf16 autocast (float32 otherwise)
    pdtype = policy_dtype(train_dtype(run.device, cfg.TRAIN.MIXED_PRECISION, cfg.TRAIN.AMP_DTYPE))
    torch.manual_seed(cfg.RNG_SEED + 1000 * (stage + 1) + epoch)
    # draws of their own, the same on resumption (distinct from the dense epochs' while MAX_EPOCH < 1000)
    set_loader_epoch(run.train_loader, 1000 * (stage + 1) + epoch)
    t0 = time.perf_counter()
    # cosine decay of the interpreter's learning rate within the stage
    lr = lr_at_epoch(epoch, "cosine", ia.BASE_LR, epochs, cosine_end_lr=0.1 * ia.BASE_LR)
    tr = curriculum_epoch(run.model, run.train_loader, optimizer, stage, ia.MODE, ia.TAU, ia.BASELINE, run.device,
                          lr, run.reduce_fn, pdtype, run.normalize)
    val = evaluate_policies(run.model, run.val_loader, run.device, stage, ia.MODE, ia.TAU, run.reduce_fn, pdtype,
                            run.normalize)
    logger.info(
        "IA-RED² stage %d epoch %d/%d: train reward %.3f, top-1 (sampled) %.2f%%, keep %s | val top-1 "
        "sampled %.2f%% / threshold %.2f%%, keep (threshold) %s, block cost (analytic) %.3f, %.0f s",
        stage, epoch + 1, epochs, tr["reward"], tr["top1_sampled"], _fmt(tr["keep_rates"]),
        val.get("top1_sampled", -1), val.get("top1_threshold", -1), _fmt(val.get("keep_rates_threshold", [])),
        val.get("cost_fraction_threshold", -1), time.perf_counter() - t0)
    run.stats.write({"stage": "iared_curriculum", "curriculum_stage": stage, "epoch": epoch + 1, "lr": lr,
                     **{f"train_{k}": v for k, v in tr.items()},
                     **{f"keep_rate_g{g}": v for g, v in enumerate(tr["keep_rates"])}})
    run.stats.write({"stage": "iared_val", "curriculum_stage": stage, "epoch": epoch + 1, **val})


def _save_final(run: _IAREDRun, calibration) -> str:
    """checkpoints/checkpoint_iared.pyth with the calibration record (every process holds the same model)."""
    model = run.model
    du.check_replicas_equal(list(model.parameters()) + [torch.tensor(model.threshold, dtype=torch.float64)],
                            "IA-RED² final model (parameters and threshold)")
    final = ckpt_io.final_checkpoint_path(run.cfg.OUTPUT_DIR)
    if run.info.is_main:
        extra = {ckpt_io.CALIBRATION_KEY: calibration.record()} if calibration is not None else None
        ckpt_io.save_checkpoint(final, model, model.num_groups, None, None, run.cfg.dump(), run.arch, extra=extra)
    du.barrier()
    for p in model.parameters():
        p.requires_grad_(True)
    logger.info("IA-RED² training done: %s", final)
    return final


def _calibrate(run: _IAREDRun, after: str):
    """Raise the model's threshold until the mean fvcore cost per val clip is at most IARED.TARGET_COST of dense
    (with IARED.CALIBRATION_FILL, lower it to the lowest threshold within that budget when the model is under it;
    with IARED.CALIBRATION_PER_GROUP, one threshold per group: ``calibrate_group_thresholds``; in keep_ratio mode
    the keep ratio instead: ``calibrate_keep_ratio``)
    (on IARED.CALIBRATION_VIDEOS val videos, decoded at the first calibration of the run and held for the next;
    sums over processes: every process the same answer)."""
    cfg, model, device, stats, ia = run.cfg, run.model, run.device, run.stats, run.cfg.IARED
    size = cfg.DATA.TEST_CROP_SIZE  # the dense cost depends on the clip's shape only
    probe = torch.zeros(1, cfg.DATA.INPUT_CHANNEL_NUM[0], cfg.DATA.NUM_FRAMES, size, size, device=device)
    dense = dense_gflops(model, probe)
    t0 = time.perf_counter()
    if run.calibration_clips is None:  # uint8 clips on the host (DATA.NORMALIZE_ON_DEVICE): 308 MB for 256 K400 ones
        loader = build_loader(cfg, "val", rank=run.info.rank, world_size=run.info.world_size,
                              max_videos=ia.CALIBRATION_VIDEOS)
        run.calibration_clips = [b for b in loader if b.get("clip") is not None]
    try:
        # in the test stage's precision: the threshold is calibrated on the decisions the test will make
        common = dict(reduce_fn=run.reduce_fn, fvcore_sample=ia.CALIBRATION_FVCORE_CLIPS,
                      dtype=amp_dtype(device, cfg.TEST.PRECISION), normalizer=build_normalizer(cfg))
        if model.mode == "keep_ratio":
            cal = calibrate_keep_ratio(model, run.calibration_clips, device, ia.TARGET_COST, dense, **common)
        elif ia.CALIBRATION_PER_GROUP:
            cal = calibrate_group_thresholds(model, run.calibration_clips, device, ia.TARGET_COST, dense, **common)
        else:
            cal = calibrate_threshold(model, run.calibration_clips, device, ia.TARGET_COST, dense, model.threshold,
                                      fill=ia.CALIBRATION_FILL, **common)
    except CalibrationError as e:
        raise CalibrationError(f"IARED.TARGET_COST {ia.TARGET_COST} on the val split of {cfg.DATA.PATH_TO_DATA_DIR}: "
                               f"{e}") from e
    point = cal.record()
    model.set_operating_point(threshold=point.get("threshold"), keep_ratio=point.get("keep_ratio"))
    logger.info("IA-RED² %s calibrated after the %s for val cost %.3f <= %.3f of dense (%.4f GFLOPs), "
                "val top-1 %.2f%% on %d clips, %d points, %.1f s", _operating_point(point), after,
                cal.chosen.cost_fraction, ia.TARGET_COST, dense, cal.chosen.top1, cal.chosen.clips, len(cal.tried),
                time.perf_counter() - t0)
    stats.write({"stage": "iared_calibration", "after": after, **point,
                 "tried": [[p.keep_ratio if p.keep_ratio is not None else _plain(p.threshold), p.cost_fraction,
                            p.top1] for p in cal.tried]})
    return cal


def _operating_point(rec: dict) -> str:
    """A calibration record's operating point for the log ("threshold 0.4524", "keep ratio [0.7461, 0.7461]")."""
    return describe_operating_point(rec.get("threshold"), rec.get("keep_ratio"))


def _plain(threshold):
    """A threshold as JSON writes it: a float, or a list of one per group."""
    return list(threshold) if isinstance(threshold, tuple) else threshold


def _rows_from_stage(stage: int):
    """A ``StatsWriter.drop`` predicate: the curriculum rows of ``stage`` and later, and everything after the
    curriculum (calibration, finetune): what an interrupted run wrote that this one writes again."""
    def which(row: dict) -> bool:
        kind = row.get("stage")
        if kind in ("iared_curriculum", "iared_val"):
            return int(row.get("curriculum_stage", -1)) >= stage
        return kind in ("iared_calibration", "iared_finetune")
    return which


def calibrated_threshold(checkpoint: str, target: float, mode: str = "threshold") -> dict:
    """The calibration record of an IA-RED² checkpoint trained with IARED.TARGET_COST ``target`` in IARED.MODE
    ``mode`` (a threshold, or the keep ratios of keep_ratio mode).

    Raises ``CheckpointError`` when the checkpoint carries none (a dense checkpoint, say) or was calibrated for
    another budget or in the other mode."""
    rec = ckpt_io.read_calibration(checkpoint)
    if rec is None:
        raise ckpt_io.CheckpointError(
            f"IARED.TARGET_COST {target}: {checkpoint} carries no calibrated threshold (only the final "
            "checkpoint_iared.pyth of a run with IARED.TARGET_COST does); set IARED.TARGET_COST 0 to use IARED.THRESHOLD")
    if abs(float(rec["target_cost"]) - target) > 1e-9:
        raise ckpt_io.CheckpointError(
            f"IARED.TARGET_COST {target}: {checkpoint} was calibrated for {rec['target_cost']}")
    calibrated_mode = "keep_ratio" if "keep_ratio" in rec else "threshold"
    if calibrated_mode != mode:
        raise ckpt_io.CheckpointError(f"IARED.MODE {mode}: {checkpoint} was calibrated in {calibrated_mode} mode")
    return rec


def apply_calibration(cfg: CfgNode, model: nn.Module, checkpoint: str, tag: str = "") -> None:
    """With IARED.TARGET_COST > 0, set ``model``'s threshold to the one ``checkpoint`` was calibrated to (the
    test, predict and explanation tools all evaluate the model at its calibrated operating point)."""
    if not (cfg.IARED.ENABLE and cfg.IARED.TARGET_COST > 0):
        return
    rec = calibrated_threshold(checkpoint, cfg.IARED.TARGET_COST, cfg.IARED.MODE)
    # a threshold (one, or a list of one per group), or the keep ratios of keep_ratio mode
    model.set_operating_point(threshold=rec.get("threshold"), keep_ratio=rec.get("keep_ratio"))
    logger.info("%sIA-RED² %s from the checkpoint (calibrated for cost <= %.3f of dense: val cost %.3f, "
                "top-1 %.2f%%)", tag, _operating_point(rec), rec["target_cost"], rec["cost_fraction"],
                rec["top1"])


def _finetune(cfg, model: nn.Module, train_loader, val_loader, device, stats: StatsWriter, arch, info,
              reduce_fn) -> None:
    """Backbone finetuning with the interpreters fixed: cross-entropy on the inference policy's tokens
    (``reduce_fn``: the val statistics over every process's shard)."""
    ia = cfg.IARED
    recipe = recipe_from_cfg(cfg)
    normalize = recipe.normalizer
    set_stage(model, FINETUNE)
    # the inference policy in train mode too (the groups would sample otherwise)
    pruned: nn.Module = PolicyBound(model, stage_policy(model, FINETUNE, ia.MODE, sample=False))
    finetune = Finetune(model, recipe, device)  # the recipe "dense + N" and the benchmark's rows train with too
    dtype, loss_fn = finetune.dtype, finetune.loss_fn
    student: nn.Module = pruned
    if ia.FINETUNE_DISTILL > 0:
        student = StudentWithTeacher(pruned, dense_teacher(model))
        loss_fn = DistillationLoss(student, loss_fn, ia.FINETUNE_DISTILL, ia.DISTILL_TEMPERATURE)
        logger.info("IA-RED² finetune: distillation from the dense model, weight %.2f, temperature %.1f",
                    ia.FINETUNE_DISTILL, ia.DISTILL_TEMPERATURE)
    net = wrap_ddp(student, info, find_unused=True)
    epochs = ia.FINETUNE_EPOCHS
    for epoch in range(epochs):
        summary = finetune.epoch(net, train_loader, epoch, loss_fn, cfg.LOG_PERIOD)
        if info.distributed:
            reduce_epoch_summary(summary, device)
        val = evaluate_policies(model, val_loader, device, FINETUNE, ia.MODE, ia.TAU, reduce_fn, dtype,
                                normalize)
        logger.info("IA-RED² finetune epoch %d/%d: loss %.4f, train top-1 %.2f%% | val top-1 %.2f%%, keep %s",
                    epoch + 1, epochs, summary["loss"], summary["top1"], val.get("top1_threshold", -1),
                    _fmt(val.get("keep_rates_threshold", [])))
        # train figures as train_one_epoch names them; the val split's with a val_ prefix (both have "clips")
        stats.write({"stage": "iared_finetune", "epoch": epoch + 1, **summary,
                     **{f"val_{k}": v for k, v in val.items()}})
        if info.is_main:
            path = os.path.join(ckpt_io.checkpoint_dir(cfg.OUTPUT_DIR), f"iared_finetune_epoch_{epoch + 1:05d}.pyth")
            ckpt_io.save_checkpoint(path, model, epoch + 1, finetune.optimizer, finetune.scaler, cfg.dump(), arch)

