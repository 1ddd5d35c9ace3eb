"""Shared by the pruning tests: one model's logits through the packed and the masked execution paths."""
from __future__ import annotations

from typing import Dict, Sequence

import torch


def packed_and_masked(model, x: torch.Tensor, keeps: Sequence[torch.Tensor]) -> Dict[str, torch.Tensor]:
    """{"packed": logits, "masked": logits} of the IA-RED² ``model`` on clips ``x`` with the given keep masks."""
    out = {}
    for execution in ("packed", "masked"):
        model.execution = execution
        with torch.no_grad():
            out[execution] = model(x, keep_masks=keeps)
    return out
