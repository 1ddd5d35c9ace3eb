"""The IA-RED² curriculum with plain arguments: stages, freezing, the REINFORCE step, per-epoch loops.

Stage s (0 .. G-1): the backbone and every other interpreter are frozen; interpreter s is trained with
REINFORCE. Groups before s act with the inference policy (threshold or keep_ratio: they are already
trained), group s samples, groups after s keep every alive token. Stage "finetune": the backbone trains
with the cross-entropy loss on the tokens the (frozen) interpreters keep at inference.
"""
from __future__ import annotations

import math
from typing import Callable, Dict, List, Optional, Sequence, Union

import torch
import torch.distributed as dist
from torch import nn

from video_iared.data.device_normalize import as_normalizer
from video_iared.pruning.calibrate import ReduceFn  # element-wise sum over processes
from video_iared.pruning.decisions import PruningPolicy
from video_iared.pruning.rewards import compute_baseline, compute_reward, kept_fraction, policy_loss

Stage = Union[int, str]
FINETUNE = "finetune"
Normalizer = Callable[[torch.Tensor], torch.Tensor]  # data.device_normalize: uint8 clips -> the model's input


def _normalizer(normalizer: Optional[Normalizer]) -> Normalizer:
    return as_normalizer(normalizer)


def stage_policies(stage: Stage, num_groups: int, mode: str, sample: bool) -> List[str]:
    """The per-group policies at ``stage``; ``sample`` False gives the greedy (thresholded) counterpart."""
    if stage == FINETUNE:
        return [mode] * num_groups
    s = int(stage)
    if not 0 <= s < num_groups:
        raise ValueError(f"curriculum stage {stage} is not in 0..{num_groups - 1} or {FINETUNE!r}")
    return [mode] * s + ["sample" if sample else mode] + ["all"] * (num_groups - s - 1)


def stage_policy(model: nn.Module, stage: Stage, mode: str, sample: bool) -> PruningPolicy:
    """The ``PruningPolicy`` of ``model`` at ``stage`` (``stage_policies`` with the model's threshold and ratios)."""
    return model.policy_for(stage_policies(stage, model.num_groups, mode, sample))


def set_stage(model: nn.Module, stage: Stage) -> List[str]:
    """Freeze / unfreeze for ``stage`` (requires_grad); returns the trainable parameters' names. The stage's
    policies are passed to each forward (``stage_policy``)."""
    G = model.num_groups
    if stage == FINETUNE:
        for name, p in model.named_parameters():
            p.requires_grad_(not name.startswith("interpreters."))
    else:
        s = int(stage)
        if not 0 <= s < G:
            raise ValueError(f"curriculum stage {stage} is not in 0..{G - 1} or {FINETUNE!r}")
        for name, p in model.named_parameters():
            p.requires_grad_(name.startswith(f"interpreters.{s}."))
    return [n for n, p in model.named_parameters() if p.requires_grad]


def _all_reduce_grads(params: Sequence[torch.Tensor]) -> None:
    """Average gradients over processes (the curriculum does not use DDP: its graph is one small head)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad /= dist.get_world_size()


def _autocast(device: torch.device, dtype: Optional[torch.dtype]):
    """Autocast to ``dtype`` on ``device``'s type; disabled (float32) for None."""
    return torch.autocast(device_type=device.type, dtype=dtype, enabled=dtype is not None)


def reinforce_step(
    model: nn.Module,
    clips: torch.Tensor,
    labels: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    stage: int,
    mode: str,
    tau: float,
    baseline: str,
    dtype: Optional[torch.dtype] = None,
) -> Dict[str, object]:
    """One policy-gradient step on clips (B, C, T, H, W): returns the batch's statistics.

    The backbone stays in eval mode (it is frozen: no dropout / drop-path noise in the reward); only the
    sampling of group ``stage`` is stochastic. The greedy baseline runs a second, thresholded forward.
    ``dtype``: the forwards' autocast dtype (None: float32); the policy loss is computed in float32.
    """
    model.eval()
    with _autocast(clips.device, dtype):
        logits, decisions = model(clips, policy=stage_policy(model, stage, mode, True), return_decisions=True)
    correct = logits.detach().argmax(1) == labels
    rates = decisions.keep_rates.float()
    logp = decisions.log_prob.float()
    reward = compute_reward(correct, kept_fraction(rates, model.groups), tau)
    greedy = None
    if baseline == "greedy":
        with torch.no_grad(), _autocast(clips.device, dtype):
            g_logits, g_dec = model(clips, policy=stage_policy(model, stage, mode, False), return_decisions=True)
        greedy = compute_reward(g_logits.argmax(1) == labels, kept_fraction(g_dec.keep_rates.float(), model.groups),
                                tau)
    b = compute_baseline(reward, baseline, greedy)
    loss = policy_loss(reward, b, logp)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    params = [p for g in optimizer.param_groups for p in g["params"]]
    _all_reduce_grads(params)
    optimizer.step()
    return {
        "loss": float(loss.detach()),
        "reward": float(reward.mean()),
        "correct": int(correct.sum()),
        "clips": int(labels.shape[0]),
        "keep_rates": rates.mean(0).tolist(),
    }


def curriculum_epoch(
    model: nn.Module,
    loader,
    optimizer: torch.optim.Optimizer,
    stage: int,
    mode: str,
    tau: float,
    baseline: str,
    device: torch.device,
    lr: Optional[float] = None,
    reduce_fn: Optional[ReduceFn] = None,
    dtype: Optional[torch.dtype] = None,
    normalizer: Optional[Normalizer] = None,
) -> Dict[str, object]:
    """One pass of REINFORCE over ``loader`` (dicts with "clip", "label"); mean statistics of the epoch.

    ``reduce_fn`` (several processes): sums the epoch's counts over processes, so the statistics cover every
    process's clips, not only this one's shard. ``dtype``: the forwards' autocast dtype (None: float32).
    ``normalizer``: applied to the clips on ``device`` (uint8 clips, DATA.NORMALIZE_ON_DEVICE; None: floats).
    """
    normalize = _normalizer(normalizer)
    if lr is not None:
        for g in optimizer.param_groups:
            g["lr"] = lr
    G = model.num_groups
    n = correct = 0
    reward_sum = loss_sum = 0.0
    keep_sum = torch.zeros(G, dtype=torch.float64)
    for batch in loader:
        if batch.get("clip") is None:
            continue
        x = normalize(batch["clip"].to(device, non_blocking=True))
        y = torch.as_tensor(batch["label"]).to(device)
        out = reinforce_step(model, x, y, optimizer, stage, mode, tau, baseline, dtype)
        b = out["clips"]
        n += b
        correct += out["correct"]
        reward_sum += out["reward"] * b
        loss_sum += out["loss"] * b
        keep_sum += torch.tensor(out["keep_rates"], dtype=torch.float64) * b
    if reduce_fn is not None:
        n, correct, reward_sum, loss_sum, *keep = reduce_fn([n, correct, reward_sum, loss_sum, *keep_sum.tolist()])
        n, correct, keep_sum = int(n), int(correct), torch.tensor(keep, dtype=torch.float64)
    if n == 0:
        return {"clips": 0, "reward": math.nan, "loss": math.nan, "top1_sampled": math.nan, "keep_rates": []}
    return {
        "clips": n,
        "reward": reward_sum / n,
        "loss": loss_sum / n,
        "top1_sampled": 100.0 * correct / n,
        "keep_rates": (keep_sum / n).tolist(),
    }


@torch.no_grad()
def evaluate_policies(model: nn.Module, loader, device: torch.device, stage: Stage, mode: str,
                      tau: float, reduce_fn: Optional[ReduceFn] = None,
                      dtype: Optional[torch.dtype] = None,
                      normalizer: Optional[Normalizer] = None) -> Dict[str, object]:
    """Clip-level accuracy, keep rates and reward of the sampled and of the thresholded policy at ``stage``;
    ``reduce_fn`` (several processes, each with its shard of ``loader``'s split): over every process's clips;
    ``dtype``: the forwards' autocast dtype (None: float32); ``normalizer``: as in ``curriculum_epoch``."""
    normalize = _normalizer(normalizer)
    model.eval()
    G = model.num_groups
    res: Dict[str, object] = {}
    for name, sample in (("sampled", True), ("threshold", False)):
        if stage == FINETUNE and sample:
            continue
        n = correct = 0
        reward_sum = 0.0
        keep_sum = torch.zeros(G, dtype=torch.float64)
        policy = stage_policy(model, stage, mode, sample)
        for batch in loader:
            if batch.get("clip") is None:
                continue
            x = normalize(batch["clip"].to(device, non_blocking=True))
            y = torch.as_tensor(batch["label"]).to(device)
            with _autocast(device, dtype):
                logits, decisions = model(x, policy=policy, return_decisions=True)
            ok = logits.argmax(1) == y
            rates = decisions.keep_rates.float()
            reward_sum += float(compute_reward(ok, kept_fraction(rates, model.groups), tau).sum())
            keep_sum += rates.sum(0).cpu().double()
            correct += int(ok.sum())
            n += y.shape[0]
        if reduce_fn is not None:
            n, correct, reward_sum, *keep = reduce_fn([n, correct, reward_sum, *keep_sum.tolist()])
            n, correct, keep_sum = int(n), int(correct), torch.tensor(keep, dtype=torch.float64)
        if n:
            mean_keep = (keep_sum / n).float()
            res[f"top1_{name}"] = 100.0 * correct / n
            res[f"keep_rates_{name}"] = mean_keep.tolist()
            res[f"reward_{name}"] = reward_sum / n
            res[f"cost_fraction_{name}"] = float(kept_fraction(mean_keep.unsqueeze(0), model.groups))
        res["clips"] = n
    return res
