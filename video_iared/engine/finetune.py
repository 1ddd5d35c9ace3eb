"""The backbone-finetune recipe, in one place: IA-RED²'s finetune (``engine.train_iared``), the "dense + N"
model of run_net (``engine.dense_plus_n``) and the method benchmark's finetuned rows (``benchmarks.baseline_finetune``)
all train with it, so their extra epochs are the same training.

The recipe: IARED.FINETUNE_EPOCHS epochs, the optimizer of SOLVER.* at IARED.FINETUNE_LR with a cosine decay to 0
over those epochs, cross-entropy with TRAIN.LABEL_SMOOTHING, TRAIN.MIXED_PRECISION / AMP_DTYPE, gradient
accumulation and clipping; epoch e seeds torch with RNG_SEED + FINETUNE_EPOCH_OFFSET + e and draws its
augmentations as loader epoch FINETUNE_EPOCH_OFFSET + e (draws of their own, the same on resumption).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Optional

import torch
from fvcore.common.config import CfgNode
from torch import nn

from video_iared.data.device_normalize import build_normalizer
from video_iared.data.loader import set_loader_epoch
from video_iared.engine.amp import make_scaler, train_dtype
from video_iared.engine.optim import build_optimizer, lr_at_epoch
from video_iared.engine.train_epoch import train_one_epoch

# the finetune's epochs seed the RNG and the loader draws as RNG_SEED + this + epoch / this + epoch
FINETUNE_EPOCH_OFFSET = 7919


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
    amp_dtype: str = "auto"  # TRAIN.AMP_DTYPE under mixed precision ("auto" | "bf16" | "fp16")


def recipe_from_cfg(cfg: CfgNode, epochs: Optional[int] = None) -> FinetuneRecipe:
    """IA-RED²'s finetune settings of ``cfg`` (IARED.FINETUNE_LR, SOLVER.*, TRAIN.*, the normaliser of
    DATA.NORMALIZE_ON_DEVICE), for ``epochs`` epochs (None: IARED.FINETUNE_EPOCHS)."""
    s, t = cfg.SOLVER, cfg.TRAIN
    epochs = cfg.IARED.FINETUNE_EPOCHS if epochs is None else epochs
    return FinetuneRecipe(epochs, cfg.IARED.FINETUNE_LR, s.OPTIMIZING_METHOD, s.WEIGHT_DECAY, s.MOMENTUM, s.NESTEROV,
                          t.LABEL_SMOOTHING, t.MIXED_PRECISION, t.CLIP_GRAD_NORM, t.GRAD_ACCUM_STEPS,
                          cfg.MODEL.DROPPATH_RATE, cfg.RNG_SEED, build_normalizer(cfg), t.AMP_DTYPE)


class Finetune:
    """One finetune by ``recipe``: the optimizer over ``model``'s trainable parameters, the autocast dtype and
    scaler, the loss and the learning-rate schedule; ``epoch(...)`` trains one epoch with the recipe's draws."""

    def __init__(self, model: nn.Module, recipe: FinetuneRecipe, device: torch.device) -> None:
        self.recipe, self.device = recipe, device
        self.optimizer = build_optimizer(model, recipe.optimizer, recipe.lr, recipe.weight_decay, recipe.momentum,
                                         recipe.nesterov)
        self.dtype = train_dtype(device, recipe.mixed_precision, recipe.amp_dtype)
        self.scaler = make_scaler(device, self.dtype)
        self.loss_fn: nn.Module = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)

    def lr(self, epoch: float) -> float:
        """The learning rate at (fractional, 0-based) ``epoch``: cosine from the recipe's lr to 0."""
        return lr_at_epoch(epoch, "cosine", self.recipe.lr, self.recipe.epochs)

    def epoch(self, net: nn.Module, loader, epoch: int, loss_fn: Optional[nn.Module] = None, log_period: int = 10,
              show_progress: bool = True) -> Dict[str, float]:
        """Train ``net`` (the model, possibly wrapped: PolicyBound, DDP) one pass over ``loader`` as epoch ``epoch``
        (0-based) of the finetune; returns ``train_one_epoch``'s summary. ``loss_fn``: instead of the recipe's
        cross-entropy (IA-RED²'s distillation wraps it)."""
        r = self.recipe
        torch.manual_seed(r.seed + FINETUNE_EPOCH_OFFSET + epoch)
        set_loader_epoch(loader, FINETUNE_EPOCH_OFFSET + epoch)
        return train_one_epoch(net, loader, self.optimizer, loss_fn or self.loss_fn, epoch, self.lr, self.device,
                               self.scaler, self.dtype, r.grad_accum_steps, r.clip_grad_norm, None, log_period,
                               show_progress, normalizer=r.normalizer)
