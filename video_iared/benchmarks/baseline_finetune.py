"""Finetune the comparison rows as IA-RED²'s backbone was finetuned, so the method table compares like with like.

IA-RED²'s recipe ends with IARED.FINETUNE_EPOCHS of backbone training on the tokens its interpreters keep. Applied
off the shelf, the token-reduction baselines (random drop, EViT, ToMe) miss that step, and the dense model misses
those extra epochs. ``finetune_variant_model`` gives a row the same step: a copy of its model trained with the
method active at the row's budget, for the same epochs, learning rate and schedule (cosine from
IARED.FINETUNE_LR), optimizer (SOLVER), gradient accumulation and augmentation draws (``FINETUNE_EPOCH_OFFSET``, as
in ``engine.train_iared``), with the cross-entropy loss (IA-RED²'s optional distillation is not mirrored).
IA-RED²'s keep-ratio rows get the same from the curriculum's last stage checkpoint (trained interpreters on the
dense backbone, before IA-RED²'s own finetune): the backbone trains at the row's budget, the interpreters stay
frozen, as in IA-RED²'s finetune.
"""
from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Sequence

import torch
from torch import nn

from video_iared.data.device_normalize import build_normalizer
from video_iared.data.loader import set_loader_epoch
from video_iared.engine.amp import amp_dtype, make_scaler
from video_iared.engine.optim import build_optimizer, lr_at_epoch
from video_iared.engine.train import train_one_epoch
from video_iared.engine.train_iared import FINETUNE_EPOCH_OFFSET
from video_iared.pruning.decisions import unwrap

logger = logging.getLogger(__name__)


@dataclass
class FinetuneRecipe:
    """The backbone-finetune settings (plain values; ``recipe_from_cfg`` reads them from a config)."""

    epochs: int
    lr: float
    optimizer: str = "adamw"
    weight_decay: float = 0.05
    momentum: float = 0.9
    nesterov: bool = False
    label_smoothing: float = 0.0
    mixed_precision: bool = False
    clip_grad_norm: float = 0.0
    grad_accum_steps: int = 1
    drop_path_rate: float = 0.0  # stochastic depth, linearly increasing over the blocks (MODEL.DROPPATH_RATE)
    seed: int = 0
    # the training clips onto the model's input on the device (a ClipNormalizer for uint8 clips; None: floats)
    normalizer: Optional[Callable[[torch.Tensor], torch.Tensor]] = None


def recipe_from_cfg(cfg, epochs: int) -> FinetuneRecipe:
    """IA-RED²'s finetune settings of ``cfg`` (IARED.FINETUNE_LR, SOLVER.*, TRAIN.*, the normaliser of
    DATA.NORMALIZE_ON_DEVICE), for ``epochs`` epochs."""
    s = cfg.SOLVER
    if epochs != cfg.IARED.FINETUNE_EPOCHS:
        logger.warning("finetuning the rows %d epochs; IA-RED²'s own finetune had IARED.FINETUNE_EPOCHS %d", epochs,
                       cfg.IARED.FINETUNE_EPOCHS)
    if cfg.IARED.FINETUNE_DISTILL > 0:
        logger.warning("IARED.FINETUNE_DISTILL %.2f: the IA-RED² finetune distils from the dense model; the rows "
                       "finetuned here use the cross-entropy alone", cfg.IARED.FINETUNE_DISTILL)
    return FinetuneRecipe(epochs, cfg.IARED.FINETUNE_LR, s.OPTIMIZING_METHOD, s.WEIGHT_DECAY, s.MOMENTUM, s.NESTEROV,
                          cfg.TRAIN.LABEL_SMOOTHING, cfg.TRAIN.MIXED_PRECISION, cfg.TRAIN.CLIP_GRAD_NORM,
                          cfg.TRAIN.GRAD_ACCUM_STEPS, cfg.MODEL.DROPPATH_RATE, cfg.RNG_SEED, build_normalizer(cfg))


def set_drop_path(model: nn.Module, rate: float) -> None:
    """Stochastic depth on ``model.blocks`` as the model builder sets it: 0 at the first block, ``rate`` at the
    last (the method benchmark builds its models for evaluation, without it)."""
    from timm.layers import DropPath

    blocks = list(model.blocks)
    for block, p in zip(blocks, torch.linspace(0, rate, len(blocks)).tolist()):
        block.drop_path = DropPath(p) if p > 0.0 else nn.Identity()


def finetune_variant_model(model: nn.Module, loader, recipe: FinetuneRecipe, device: torch.device, name: str = "",
                           frozen: Sequence[str] = ()) -> nn.Module:
    """A copy of a row's ``model`` (a ``PolicyBound``: the method at the row's budget, or a plain dense model),
    its parameters trained for ``recipe.epochs`` on ``loader`` (the train split) with that budget active;
    ``model`` itself is left untouched. Returns the copy in eval mode. ``frozen``: name prefixes of the bare
    model's parameters that stay fixed (IA-RED²'s "interpreters.")."""
    net = copy.deepcopy(model).to(device)
    bare = unwrap(net)
    set_drop_path(bare, recipe.drop_path_rate)
    for pname, p in bare.named_parameters():
        p.requires_grad_(not any(pname.startswith(f) for f in frozen))
    if hasattr(bare, "reseed"):  # the random baseline: its training draws start from its seed
        bare.reseed()
    optimizer = build_optimizer(net, recipe.optimizer, recipe.lr, recipe.weight_decay, recipe.momentum,
                                recipe.nesterov)
    dtype = amp_dtype(device, "mixed" if recipe.mixed_precision else "fp32")
    scaler = make_scaler(device, dtype)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
    lr_fn = lambda e: lr_at_epoch(e, "cosine", recipe.lr, recipe.epochs)  # noqa: E731
    t0 = time.perf_counter()
    summary: Dict[str, float] = {}
    for epoch in range(recipe.epochs):
        torch.manual_seed(recipe.seed + FINETUNE_EPOCH_OFFSET + epoch)
        set_loader_epoch(loader, FINETUNE_EPOCH_OFFSET + epoch)
        summary = train_one_epoch(net, loader, optimizer, loss_fn, epoch, lr_fn, device, scaler, dtype,
                                  grad_accum_steps=recipe.grad_accum_steps, clip_grad_norm=recipe.clip_grad_norm,
                                  show_progress=False, normalizer=recipe.normalizer)
    for p in net.parameters():
        p.requires_grad_(True)
    logger.info("finetuned %s: %d epochs at lr %.2e, last epoch loss %.4f, train top-1 %.2f%%, %.0f s", name or "row",
                recipe.epochs, recipe.lr, summary.get("loss", float("nan")), summary.get("top1", float("nan")),
                time.perf_counter() - t0)
    return net.eval()
