"""Finetune the comparison rows as IA-RED²'s backbone was finetuned, so the method table compares like with like.

IA-RED²'s recipe ends with IARED.FINETUNE_EPOCHS of backbone training on the tokens its interpreters keep. Applied
off the shelf, the token-reduction baselines (random drop, EViT, ToMe) miss that step, and the dense model misses
those extra epochs. ``finetune_variant_model`` gives a row the same step: a copy of its model trained with the
method active at the row's budget, for the same epochs, learning rate and schedule (cosine from
IARED.FINETUNE_LR), optimizer (SOLVER), gradient accumulation and augmentation draws: ``engine.finetune``'s
recipe, the one IA-RED²'s finetune and run_net's "dense + N" train with, with the cross-entropy loss (IA-RED²'s
optional distillation is not mirrored).
IA-RED²'s keep-ratio rows get the same from the curriculum's last stage checkpoint (trained interpreters on the
dense backbone, before IA-RED²'s own finetune): the backbone trains at the row's budget, the interpreters stay
frozen, as in IA-RED²'s finetune.
"""
from __future__ import annotations

import copy
import logging
import time
from typing import Dict, Sequence

import torch
from torch import nn

from video_iared.engine.finetune import FinetuneRecipe, Finetune
from video_iared.engine.finetune import recipe_from_cfg as engine_recipe_from_cfg
from video_iared.pruning.decisions import unwrap

logger = logging.getLogger(__name__)


def recipe_from_cfg(cfg, epochs: int) -> FinetuneRecipe:
    """IA-RED²'s finetune settings of ``cfg`` (``engine.finetune.recipe_from_cfg``) for ``epochs`` epochs, with a
    warning where the rows' finetune differs from IA-RED²'s own (other epochs, no distillation)."""
    if epochs != cfg.IARED.FINETUNE_EPOCHS:
        logger.warning("finetuning the rows %d epochs; IA-RED²'s own finetune had IARED.FINETUNE_EPOCHS %d", epochs,
                       cfg.IARED.FINETUNE_EPOCHS)
    if cfg.IARED.FINETUNE_DISTILL > 0:
        logger.warning("IARED.FINETUNE_DISTILL %.2f: the IA-RED² finetune distils from the dense model; the rows "
                       "finetuned here use the cross-entropy alone", cfg.IARED.FINETUNE_DISTILL)
    return engine_recipe_from_cfg(cfg, epochs)


def finetune_variant_model(model: nn.Module, loader, recipe: FinetuneRecipe, device: torch.device, name: str = "",
                           frozen: Sequence[str] = ()) -> nn.Module:
    """A copy of a row's ``model`` (a ``PolicyBound``: the method at the row's budget, or a plain dense model),
    its parameters trained for ``recipe.epochs`` on ``loader`` (the train split) with that budget active;
    ``model`` itself is left untouched. Returns the copy in eval mode. ``frozen``: name prefixes of the bare
    model's parameters that stay fixed (IA-RED²'s "interpreters.")."""
    net = copy.deepcopy(model).to(device)
    bare = unwrap(net)
    bare.set_drop_path(recipe.drop_path_rate)
    for pname, p in bare.named_parameters():
        p.requires_grad_(not any(pname.startswith(f) for f in frozen))
    if hasattr(bare, "reseed"):  # the random baseline: its training draws start from its seed
        bare.reseed()
    finetune = Finetune(net, recipe, device)
    t0 = time.perf_counter()
    summary: Dict[str, float] = {}
    for epoch in range(recipe.epochs):
        summary = finetune.epoch(net, loader, epoch, show_progress=False)
    for p in net.parameters():
        p.requires_grad_(True)
    logger.info("finetuned %s: %d epochs at lr %.2e, last epoch loss %.4f, train top-1 %.2f%%, %.0f s", name or "row",
                recipe.epochs, recipe.lr, summary.get("loss", float("nan")), summary.get("top1", float("nan")),
                time.perf_counter() - t0)
    return net.eval()
