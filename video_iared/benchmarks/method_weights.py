"""The weights of the method benchmark's rows: checkpoint resolution ("auto": what run_net wrote for the config),
the calibrated threshold, the dense and IA-RED² models, and the optional finetune of the comparison rows."""
from __future__ import annotations

import copy
import logging
import os
from typing import Optional, Sequence

import torch
from torch import nn
from tqdm import tqdm

from video_iared.benchmarks.baseline_finetune import finetune_variant_model, recipe_from_cfg
from video_iared.benchmarks.method_options import MethodBenchmarkOptions
from video_iared.benchmarks.method_variants import LABELS
from video_iared.benchmarks.variant import Variant
from video_iared.build import iared_kwargs, timesformer_kwargs
from video_iared.checkpoint import load_checkpoint
from video_iared.checkpoint.io import final_checkpoint_path, latest_checkpoint, read_calibration, stage_checkpoint_name
from video_iared.data.loader import build_loader
from video_iared.models.timesformer import TimeSformer
from video_iared.pruning.decisions import PolicyBound, Threshold, as_threshold, format_threshold
from video_iared.pruning.iared import IAREDTimeSformer

logger = logging.getLogger(__name__)


def resolve_checkpoints(cfg, dense: str, iared: str) -> "tuple[str, str]":
    """Replace "auto" by what ``tools/run_net.py --cfg`` wrote for this config: the dense model's latest epoch
    checkpoint (OUTPUT_DIR/dense/checkpoints for an IA-RED² config, else OUTPUT_DIR/checkpoints) and the IA-RED²
    model's ``checkpoint_iared.pyth``; "" (random weights) where there is none."""
    if dense == "auto":
        dense = latest_checkpoint(os.path.join(cfg.OUTPUT_DIR, "dense") if cfg.IARED.ENABLE else cfg.OUTPUT_DIR) or ""
    if iared == "auto":
        path = final_checkpoint_path(cfg.OUTPUT_DIR)
        iared = path if os.path.isfile(path) else ""
    return dense, iared


def calibrated_threshold(checkpoint: str) -> Optional[Threshold]:
    """The threshold an IA-RED² checkpoint was calibrated to (IARED.TARGET_COST; a tuple for per-group
    thresholds, IARED.CALIBRATION_PER_GROUP), or None."""
    rec = read_calibration(checkpoint) if checkpoint else None
    if rec is None or "threshold" not in rec:  # none, or a keep_ratio model's (IARED.MODE keep_ratio)
        return None
    threshold = as_threshold(rec["threshold"])
    logger.info("%s: calibrated threshold %s (cost <= %.3f of dense on val): added to the thresholds", checkpoint,
                format_threshold(threshold), rec["target_cost"])
    return threshold


def load_models(cfg, opts: MethodBenchmarkOptions, device: torch.device):
    """(dense TimeSformer, IA-RED² model or None, groups, timesformer kwargs, weights note)."""
    torch.manual_seed(cfg.RNG_SEED)
    tkw = timesformer_kwargs(cfg)
    tkw["drop_path_rate"] = 0.0  # eval only
    dense = TimeSformer(**tkw)
    if opts.dense_checkpoint:
        load_checkpoint(opts.dense_checkpoint, dense)
    ikw = iared_kwargs(cfg)
    groups = list(ikw["groups"])
    ikw.update(execution="packed", keep_ratio=[1.0] * len(groups))  # the budget views set mode and ratios
    iared = None
    if "iared_ratio" in opts.methods or "iared_threshold" in opts.methods:
        iared = IAREDTimeSformer(**ikw, **tkw)
        if opts.iared_checkpoint:
            load_checkpoint(opts.iared_checkpoint, iared)
        else:  # random interpreters on the dense weights: only keep_ratio budgets mean anything for speed
            iared.load_state_dict(dense.state_dict(), strict=False)
        iared = iared.to(device).eval()
    note = (f"dense weights: {opts.dense_checkpoint or 'RANDOM'}; IA-RED² weights: "
            f"{opts.iared_checkpoint or ('RANDOM interpreters on the dense weights' if iared is not None else 'n/a')}")
    return dense.to(device).eval(), iared, groups, tkw, note



FINETUNED_METHODS = ("dense", "random", "evit", "tome")


def last_stage_checkpoint(iared_checkpoint: str, num_groups: int) -> str:
    """The checkpoint of the curriculum's last stage (``iared_stage_{G-1}.pyth``, ``engine.train_iared``) in the
    folder of an IA-RED² checkpoint, or "" when there is none."""
    if not iared_checkpoint:
        return ""
    path = os.path.join(os.path.dirname(os.path.abspath(iared_checkpoint)), stage_checkpoint_name(num_groups - 1))
    return path if os.path.isfile(path) else ""


def finetune_rows(variants: Sequence[Variant], cfg, epochs: int, device: torch.device,
                  iared: Optional[nn.Module] = None, iared_curriculum_checkpoint: str = "") -> str:
    """Give the comparison rows IA-RED²'s backbone finetune (``benchmarks.baseline_finetune``): the dense / random /
    EViT / ToMe rows from the dense weights; the IA-RED² keep_ratio rows, when ``iared_curriculum_checkpoint`` is
    given, from that checkpoint with the interpreters frozen (the IA-RED² threshold rows are the checkpoint as
    trained, its finetune included). Each row's model becomes its own finetuned copy (``results["finetune_epochs"]``).
    Returns the table note."""
    recipe = recipe_from_cfg(cfg, epochs)
    loader = build_loader(cfg, "train")
    distill = (f"; IA-RED²'s own finetune distilled from the dense model (IARED.FINETUNE_DISTILL "
               f"{cfg.IARED.FINETUNE_DISTILL:g}), these rows did not" if cfg.IARED.FINETUNE_DISTILL > 0 else "")
    methods = list(FINETUNED_METHODS)
    curriculum_model = None
    if iared is not None and iared_curriculum_checkpoint and any(v.method == "iared_ratio" for v in variants):
        curriculum_model = copy.deepcopy(iared)
        load_checkpoint(iared_curriculum_checkpoint, curriculum_model)
        methods.append("iared_ratio")
    rows = [v for v in variants if v.method in methods]
    for var in tqdm(rows, desc="finetune", dynamic_ncols=True):
        if var.method == "iared_ratio":
            var.model = finetune_variant_model(PolicyBound(curriculum_model, var.model.policy), loader, recipe,
                                               device, var.name, frozen=("interpreters.",))
        else:
            var.model = finetune_variant_model(var.model, loader, recipe, device, var.name)
        var.results["finetune_epochs"] = epochs
    names = ", ".join(LABELS[m] for m in methods)
    iared_note = "IA-RED² rows: the checkpoint as trained"
    if curriculum_model is not None:
        iared_note = (f"IA-RED² keep_ratio rows: from {iared_curriculum_checkpoint} (the curriculum's interpreters, "
                      f"frozen, on the dense backbone); IA-RED² threshold rows: the checkpoint as trained (its own "
                      f"finetune)")
    return (f"finetune: the {names} rows trained {epochs} epoch{'s' * (epochs != 1)} with the method active at the "
            f"row's budget, as IA-RED²'s backbone was (lr {recipe.lr:g} cosine, {recipe.optimizer}, weight decay "
            f"{recipe.weight_decay:g}, cross-entropy, the same augmentation draws), from the dense weights; "
            f"{iared_note}{distill}")
