"""Accuracy counting and running averages for training, validation and multi-view testing."""
from __future__ import annotations

import time
from typing import Dict, List, Sequence

import torch


def topk_correct(scores: torch.Tensor, labels: torch.Tensor, ks: Sequence[int] = (1, 5)) -> List[int]:
    """How many rows of ``scores`` (N, K) have their label among the top-k, for each k (k is capped at K)."""
    if scores.ndim != 2 or labels.ndim != 1 or scores.shape[0] != labels.shape[0]:
        raise ValueError(f"scores must be (N, K) and labels (N,), got {tuple(scores.shape)} and {tuple(labels.shape)}")
    kmax = min(max(ks), scores.shape[1])
    top = scores.topk(kmax, dim=1).indices  # (N, kmax)
    hit = top == labels.to(top.device).unsqueeze(1)
    return [int(hit[:, : min(k, kmax)].any(dim=1).sum()) for k in ks]


def mean_class_accuracy(predictions: torch.Tensor, labels: torch.Tensor, num_classes: int) -> float:
    """Top-1 accuracy averaged over the classes present in ``labels`` (percent); (N,) int tensors."""
    accs = []
    for c in range(num_classes):
        sel = labels == c
        if sel.any():
            accs.append(float((predictions[sel] == c).float().mean()))
    return 100.0 * sum(accs) / len(accs) if accs else float("nan")


class AverageMeter:
    """A weighted running mean (``update(value, n)``)."""

    def __init__(self) -> None:
        self.total = 0.0
        self.count = 0

    def update(self, value: float, n: int = 1) -> None:
        self.total += float(value) * n
        self.count += n

    @property
    def avg(self) -> float:
        return self.total / self.count if self.count else float("nan")


class TrainMeter:
    """Per-epoch training statistics: loss, top-1, clips/s, data-loading time, bad-video count."""

    def __init__(self) -> None:
        self.loss = AverageMeter()
        self.top1 = AverageMeter()
        self.data_time = AverageMeter()
        self.bad = 0
        self.clips = 0
        self._start = time.perf_counter()

    def update(self, loss: float, correct1: int, n: int, data_time: float, bad: int) -> None:
        self.loss.update(loss, n)
        self.top1.update(100.0 * correct1 / max(n, 1), n)
        self.data_time.update(data_time)
        self.bad += int(bad)
        self.clips += n

    def clips_per_second(self) -> float:
        return self.clips / max(time.perf_counter() - self._start, 1e-9)

    def summary(self) -> Dict[str, float]:
        return {
            "loss": self.loss.avg,
            "top1": self.top1.avg,
            "clips_per_s": self.clips_per_second(),
            "data_time": self.data_time.avg,
            "replaced": self.bad,  # items whose video was undecodable and replaced by another
            "clips": self.clips,
        }
