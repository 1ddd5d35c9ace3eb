"""What steers one forward of a token-pruning model, and what it decided: ``PruningPolicy``, ``PruningDecisions``.

A forward of the IA-RED² model takes its policy as an argument (``model(x, policy=...)``; without one, the
model's own operating point: ``IAREDTimeSformer.default_policy``) and returns its decisions when asked
(``model(x, return_decisions=True) -> (logits, PruningDecisions)``). Nothing outside the model sets its
attributes or reads per-forward state off it. ``PolicyBound`` fixes a policy on a model for the code that
only calls ``model(x)`` (the training loop, fvcore's trace, ONNX export, a benchmark row).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from video_iared.pruning.policy import POLICIES

EXECUTIONS = ("packed", "masked")
Threshold = Union[float, Tuple[float, ...]]  # one threshold for every group, or one per group


def as_threshold(value) -> Threshold:
    """``value`` as a policy threshold: a float, or a tuple of floats (one per group) for a sequence."""
    if isinstance(value, (list, tuple)):
        return tuple(float(v) for v in value)
    return float(value)


def format_threshold(value: Threshold) -> str:
    """"0.4524", or "[0.4524, 0.8812]" for per-group thresholds (logs, reports)."""
    if isinstance(value, tuple):
        return "[" + ", ".join(f"{v:.4f}" for v in value) + "]"
    return f"{value:.4f}"


def describe_operating_point(threshold: Threshold, keep_ratio: Optional[Sequence[float]] = None) -> str:
    """"threshold 0.4524", "threshold [0.45, 0.87]", or "keep ratio [0.5439, 0.5439]" when ``keep_ratio`` is given
    (logs: a calibration, a checkpoint's operating point)."""
    if keep_ratio is not None:
        return "keep ratio " + format_threshold(as_threshold(keep_ratio))
    return "threshold " + format_threshold(as_threshold(threshold))


@dataclass(frozen=True)
class PruningPolicy:
    """How one forward decides and runs.

    ``groups``: one of ``policy.POLICIES`` per block group ("sample": Bernoulli (training), "threshold":
    p > ``threshold``, "keep_ratio": the round(ratio * alive) most probable tokens, with ``keep_ratio[g]``;
    "all": every alive token, the interpreter does not run); ``threshold`` one float for every group or a tuple
    of one per group (``threshold_at``; per-group thresholds: IARED.CALIBRATION_PER_GROUP). ``execution``: "packed" (the kept tokens only)
    or "masked" (the full grid, dropped tokens masked out: the reference path); None: the model's own.
    """

    groups: Tuple[str, ...]
    threshold: Threshold = 0.5
    keep_ratio: Optional[Tuple[float, ...]] = None
    execution: Optional[str] = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "groups", tuple(self.groups))
        object.__setattr__(self, "threshold", as_threshold(self.threshold))
        ratios = tuple(float(r) for r in self.keep_ratio) if self.keep_ratio is not None else (1.0,) * len(self.groups)
        object.__setattr__(self, "keep_ratio", ratios)
        if not self.groups or any(p not in POLICIES for p in self.groups):
            raise ValueError(f"policy groups {list(self.groups)} must be entries of {POLICIES}")
        if len(ratios) != len(self.groups):
            raise ValueError(f"keep_ratio needs one ratio per group ({len(self.groups)}), got {list(ratios)}")
        if isinstance(self.threshold, tuple) and len(self.threshold) != len(self.groups):
            raise ValueError(f"threshold needs one value per group ({len(self.groups)}), got {list(self.threshold)}")
        if self.execution is not None and self.execution not in EXECUTIONS:
            raise ValueError(f"execution {self.execution!r} is not one of {EXECUTIONS}")

    def threshold_at(self, group: int) -> float:
        """The keep threshold of ``group``."""
        return self.threshold[group] if isinstance(self.threshold, tuple) else self.threshold

    @classmethod
    def uniform(cls, policy: str, num_groups: int, threshold: Threshold = 0.5,
                keep_ratio: Optional[Sequence[float]] = None, execution: Optional[str] = None) -> "PruningPolicy":
        """The same policy in every group."""
        return cls((policy,) * num_groups, threshold, None if keep_ratio is None else tuple(keep_ratio), execution)

    @classmethod
    def dense(cls, num_groups: int) -> "PruningPolicy":
        """Every token kept, no interpreter run, on the masked path: the dense backbone's ops."""
        return cls.uniform("all", num_groups, execution="masked")

    def replace(self, **changes) -> "PruningPolicy":
        return dataclasses.replace(self, **changes)

    @property
    def deterministic(self) -> bool:
        return "sample" not in self.groups


@dataclass
class PruningDecisions:
    """What one forward decided, per clip of its batch (patch tokens in (h w t) order, N = T*H*W).

    ``keep_masks`` (B, G, N) bool: the tokens alive after each group's decision; ``keep_rates`` (B, G):
    their fraction of the N patches (detached); ``probs``: per group the keep probabilities (B, N) (detached;
    0 for dead tokens), None where the interpreter did not run; ``interpreted`` (G,) bool: which ran;
    ``log_prob`` (B,): sum of log pi over the sampled decisions (0 where no group sampled; carries the graph);
    ``policy``: the policy the forward used.
    """

    keep_masks: torch.Tensor
    keep_rates: torch.Tensor
    probs: List[Optional[torch.Tensor]]
    interpreted: torch.Tensor
    log_prob: torch.Tensor
    policy: PruningPolicy

    @property
    def kept_counts(self) -> torch.Tensor:
        """(B, G) int64: patches alive after each group's decision."""
        return self.keep_masks.sum(-1)

    def traced_outputs(self) -> Tuple[torch.Tensor, ...]:
        """The tensors a trace must see as outputs, so that fvcore counts the work that only feeds them."""
        return (*[p for p in self.probs if p is not None], self.keep_rates, self.log_prob)


@dataclass
class ReductionDecisions:
    """What one forward of a token-reduction baseline kept: ``keeps`` the alive (B, N) bool mask after every
    decision point (a group for random / EViT, a block for ToMe), ``keep_rates`` (B, points) their fractions."""

    keeps: List[torch.Tensor]
    keep_rates: torch.Tensor

    def traced_outputs(self) -> Tuple[torch.Tensor, ...]:
        return (*self.keeps, self.keep_rates)


class PolicyBound(nn.Module):
    """``model`` with ``policy`` fixed: ``forward(x, return_decisions=False)`` runs ``model(x, policy=policy, ...)``.

    Shares ``model``'s parameters (it keeps it as ``.model``; ``state_dict`` keys gain a ``model.`` prefix, so
    checkpoints are written from ``.model``). ``policy`` is whatever the model's forward takes (a
    ``PruningPolicy`` for IA-RED², a ``baselines.Budget`` for the token-reduction baselines).
    """

    returns_decisions = True

    def __init__(self, model: nn.Module, policy) -> None:
        super().__init__()
        self.model = model
        self.policy = policy
        self.training = model.training  # the wrapped model's mode (a wrapper restoring it must not flip it)

    def forward(self, x: torch.Tensor, return_decisions: bool = False):
        return self.model(x, policy=self.policy, return_decisions=return_decisions)


def unwrap(model: nn.Module) -> nn.Module:
    """The module under ``torch.compile`` (``_orig_mod``) and ``PolicyBound`` wrappers."""
    while True:
        inner = getattr(model, "_orig_mod", None)
        if inner is None and isinstance(model, PolicyBound):
            inner = model.model
        if inner is None:
            return model
        model = inner
