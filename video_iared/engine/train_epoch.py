"""One training epoch over micro-batches (plain arguments): ``train_one_epoch``, used by ``engine.train``, the
IA-RED² finetune and the baseline finetune.

The loader yields micro-batches of TRAIN.BATCH_SIZE / (world size x TRAIN.GRAD_ACCUM_STEPS) clips; one
optimizer step accumulates TRAIN.GRAD_ACCUM_STEPS of them on every process, so the effective batch stays
TRAIN.BATCH_SIZE while the activation memory shrinks.
"""
from __future__ import annotations

import contextlib
import sys
import time
from typing import Callable, Dict, Optional, Tuple

import torch
from torch import nn
from tqdm import tqdm

from video_iared.data.device_normalize import as_normalizer
from video_iared.engine.amp import autocast
from video_iared.engine import distributed as du
from video_iared.engine.meters import TrainMeter, topk_correct
from video_iared.engine.optim import set_lr
from video_iared.engine.stats import StatsWriter


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
    active_scaler = scaler if scaler is not None and scaler.is_enabled() else None
    lr = lr_fn(float(epoch))
    end = time.perf_counter()
    bar = _progress(loader, n_iters, f"epoch {epoch + 1}", show_progress and du.is_main_process())
    report = _IterationReport(meter, bar, stats, loader, epoch, n_iters, log_period)
    for it, batch in enumerate(bar):
        data_time = time.perf_counter() - end
        pos = it % accum  # position inside the accumulation group
        group = min(accum, n_iters - (it - pos))  # micro-batches in this group
        last_in_group = pos == group - 1
        if pos == 0:
            lr = lr_fn(epoch + it / max(n_iters, 1))
            set_lr(optimizer, lr)
            optimizer.zero_grad(set_to_none=True)
        x, y, bad = _batch_on_device(batch, device, normalize)
        # Only the last micro-batch of a group synchronises gradients across processes.
        logits, loss = _accumulate_gradients(model, loss_fn, x, y, device, dtype, active_scaler, group,
                                             not is_ddp or last_in_group, f"epoch {epoch + 1}, iteration {it + 1}")
        if last_in_group:
            _optimizer_step(model, optimizer, active_scaler, clip_grad_norm)
        report.record(it, logits, loss, y, x.shape[0], lr, data_time, bad)
        end = time.perf_counter()
    out = meter.summary()
    out["lr"] = lr
    out["bad_videos"] = _distinct_bad(loader, out["replaced"])
    return out


def _batch_on_device(batch: Dict, device: torch.device,
                     normalize: Callable[[torch.Tensor], torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor, int]:
    """A loader batch as (clips (B, C, T, H, W) normalised on ``device``, labels (B,) there, replaced-video count)."""
    x = normalize(batch["clip"].to(device, non_blocking=True))
    y = torch.as_tensor(batch["label"]).to(device, non_blocking=True)
    bad = int(torch.as_tensor(batch.get("bad", 0)).sum())
    return x, y, bad


class _IterationReport:
    """What one epoch reports per micro-batch: the meter, the progress bar's postfix and, every ``log_period``
    iterations and at the last, a ``train_iter`` row of stats.jsonl."""

    def __init__(self, meter: TrainMeter, bar, stats: Optional[StatsWriter], loader, epoch: int, n_iters: int,
                 log_period: int) -> None:
        self.meter, self.bar, self.stats, self.loader = meter, bar, stats, loader
        self.epoch, self.n_iters, self.log_period = epoch, n_iters, log_period

    def record(self, it: int, logits: torch.Tensor, loss: torch.Tensor, y: torch.Tensor, n: int, lr: float,
               data_time: float, bad: int) -> None:
        """Micro-batch ``it``: ``n`` clips, their logits (B, K), labels (B,) and loss."""
        loss_v = float(loss.detach())
        correct = topk_correct(logits.detach().float(), y, (1,))[0]
        self.meter.update(loss_v, correct, n, data_time, bad)
        if not getattr(self.bar, "disable", True):
            self.bar.set_postfix(loss=f"{loss_v:.3f}", lr=f"{lr:.2e}")
        if self.stats is not None and ((it + 1) % max(self.log_period, 1) == 0 or it + 1 == self.n_iters):
            self.stats.write({
                "stage": "train_iter", "epoch": self.epoch + 1, "iteration": it + 1, "iterations": self.n_iters,
                "loss": loss_v, "lr": lr, "top1": 100.0 * correct / n,
                "clips_per_s": self.meter.clips_per_second(), "data_time": data_time,
                "bad_videos": _distinct_bad(self.loader, self.meter.bad), "replaced": bad,
            })


def _accumulate_gradients(
    model: nn.Module, loss_fn: nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device,
    dtype: Optional[torch.dtype], scaler: Optional[torch.amp.GradScaler], group: int, sync: bool, where: str,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Forward ``x`` (B, C, T, H, W) and add the gradient of loss / ``group`` (the micro-batches of this optimizer
    step); ``sync``: let DDP all-reduce the gradients (the group's last micro-batch), else under ``no_sync``.
    ``scaler``: an enabled GradScaler, or None. Returns the logits (B, K) and the unscaled loss; raises
    ``TrainingDivergedError`` naming ``where`` on a non-finite loss."""
    with contextlib.nullcontext() if sync else model.no_sync():
        with autocast(device, dtype):
            logits = model(x)
            loss = loss_fn(logits.float(), y)
        if not torch.isfinite(loss):
            raise TrainingDivergedError(f"loss is {loss.item()} at {where}")
        scaled = loss / group
        if scaler is not None:
            scaler.scale(scaled).backward()
        else:
            scaled.backward()
    return logits, loss


def _optimizer_step(model: nn.Module, optimizer: torch.optim.Optimizer, scaler: Optional[torch.amp.GradScaler],
                    clip_grad_norm: float) -> None:
    """One optimizer step on the accumulated gradients, clipped first when ``clip_grad_norm`` > 0 (unscaled
    first under ``scaler``, an enabled GradScaler, or None)."""
    if scaler is not None:
        if clip_grad_norm > 0:
            scaler.unscale_(optimizer)
            _clip(model, clip_grad_norm)
        scaler.step(optimizer)
        scaler.update()
    else:
        if clip_grad_norm > 0:
            _clip(model, clip_grad_norm)
        optimizer.step()


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
