"""Optimizers and learning-rate schedules (PySlowFast's SOLVER surface, plain arguments).

Weight decay is never applied to norms, biases, or the position/time embeddings and the class token: decaying
those pulls them towards zero for no regularisation benefit (the timm / DeiT recipe). They are found as the
names the model lists in ``no_weight_decay()`` plus every parameter with at most one dimension.
"""
from __future__ import annotations

import math
from typing import Dict, Iterable, List, Sequence, Set

import torch
from torch import nn

# Always excluded from decay, whether or not the model lists them in no_weight_decay().
_NO_DECAY_SUBSTRINGS = ("pos_embed", "time_embed", "cls_token")


def _no_decay_names(model: nn.Module) -> Set[str]:
    fn = getattr(model, "no_weight_decay", None)
    names = set(fn()) if callable(fn) else set()
    return names


def param_groups(model: nn.Module, weight_decay: float) -> List[Dict]:
    """Split the trainable parameters into a decayed and a non-decayed group.

    Frozen parameters (``requires_grad=False``) are left out of the optimizer altogether. Returns at most two
    groups, each ``{"params": [...], "weight_decay": wd, "names": [...]}`` (``names`` is for logging and tests).
    """
    skip = _no_decay_names(model)
    decay, no_decay, decay_names, no_decay_names = [], [], [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        bare = name[len("module."):] if name.startswith("module.") else name
        if p.ndim <= 1 or bare in skip or bare.endswith(".bias") or any(s in bare for s in _NO_DECAY_SUBSTRINGS):
            no_decay.append(p)
            no_decay_names.append(bare)
        else:
            decay.append(p)
            decay_names.append(bare)
    groups = []
    if decay:
        groups.append({"params": decay, "weight_decay": weight_decay, "names": decay_names})
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0, "names": no_decay_names})
    if not groups:
        raise ValueError("the model has no trainable parameters (all have requires_grad=False)")
    return groups


def build_optimizer(
    model: nn.Module,
    method: str,
    lr: float,
    weight_decay: float,
    momentum: float = 0.9,
    nesterov: bool = False,
    betas: Sequence[float] = (0.9, 0.999),
) -> torch.optim.Optimizer:
    """SGD (momentum, optional Nesterov) or AdamW over ``param_groups(model, weight_decay)``."""
    groups = param_groups(model, weight_decay)
    # torch optimizers accept extra keys in a group; "names" travels along but is not in the state_dict.
    if method == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov and momentum > 0)
    if method == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=tuple(betas))
    raise ValueError(f"SOLVER.OPTIMIZING_METHOD: unknown optimizer {method!r} (sgd | adamw)")


def lr_at_epoch(
    epoch: float,
    policy: str,
    base_lr: float,
    max_epoch: float,
    steps: Sequence[float] = (0,),
    lrs: Sequence[float] = (1.0,),
    cosine_end_lr: float = 0.0,
    warmup_epochs: float = 0.0,
    warmup_start_lr: float = 0.0,
) -> float:
    """The learning rate at a fractional ``epoch`` (epoch + iteration / iterations per epoch).

    Warm-up goes linearly from ``warmup_start_lr`` to the schedule's own value at ``warmup_epochs``
    (PySlowFast's rule), so the schedule is continuous where warm-up ends.
    """
    def schedule(e: float) -> float:
        if policy == "cosine":
            if max_epoch <= 0:
                return base_lr
            e = min(e, max_epoch)
            return cosine_end_lr + (base_lr - cosine_end_lr) * (math.cos(math.pi * e / max_epoch) + 1.0) * 0.5
        if policy == "steps_with_relative_lrs":
            idx = 0
            for i, s in enumerate(steps):
                if e >= s:
                    idx = i
            return base_lr * lrs[idx]
        raise ValueError(f"SOLVER.LR_POLICY: unknown policy {policy!r} (cosine | steps_with_relative_lrs)")

    if warmup_epochs > 0 and epoch < warmup_epochs:
        end = schedule(warmup_epochs)
        return warmup_start_lr + (end - warmup_start_lr) * epoch / warmup_epochs
    return schedule(epoch)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set the same learning rate on every parameter group."""
    for g in optimizer.param_groups:
        g["lr"] = lr


def grad_params(params: Iterable[torch.Tensor]) -> List[torch.Tensor]:
    """The parameters that received a gradient (frozen or pruned paths have ``grad is None``)."""
    return [p for p in params if p.grad is not None]
