"""Clip-level validation during training: one clip per video, top-1 / top-5 and loss over all processes."""
from __future__ import annotations

from typing import Callable, Dict, Optional

import torch
from torch import nn

from video_iared.data.device_normalize import as_normalizer
from video_iared.engine.amp import autocast
from video_iared.engine import distributed as du
from video_iared.engine.meters import topk_correct


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader,
    device: torch.device,
    dtype: Optional[torch.dtype] = None,
    normalizer: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
) -> Dict[str, float]:
    """Top-1 / top-5 (percent) and mean cross-entropy of ``model`` over ``loader``'s clips.

    ``loader`` yields dicts with ``clip`` (B, C, T, H, W) and ``label`` (B,). Counts are summed over all
    processes, so every rank returns the same figures. The model is left in eval mode. ``normalizer``: applied
    to each clip batch on ``device`` (``device_normalize``: uint8 clips; None: float clips only).
    """
    normalize = as_normalizer(normalizer)
    model.eval()
    loss_fn = nn.CrossEntropyLoss(reduction="sum")
    c1 = c5 = n = 0
    loss_sum = 0.0
    failed = 0
    for batch in loader:
        failed += len(batch.get("failed", []))  # undecodable videos: counted, not replaced
        if batch["clip"] is None:
            continue
        x = normalize(batch["clip"].to(device, non_blocking=True))
        y = torch.as_tensor(batch["label"]).to(device)
        with autocast(device, dtype):
            logits = model(x)
        logits = logits.float()
        loss_sum += float(loss_fn(logits, y))
        a, b = topk_correct(logits, y, (1, 5))
        c1, c5, n = c1 + a, c5 + b, n + y.shape[0]
    c1, c5, n, loss_sum, failed = du.all_reduce_sum([c1, c5, n, loss_sum, failed], device)
    if n == 0:
        return {"top1": float("nan"), "top5": float("nan"), "loss": float("nan"), "clips": 0, "failed": int(failed)}
    return {"top1": 100.0 * c1 / n, "top5": 100.0 * c5 / n, "loss": loss_sum / n, "clips": int(n),
            "failed": int(failed)}
