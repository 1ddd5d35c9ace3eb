"""Shared by the pruning tests: one model's logits through the packed and the masked execution paths."""
from __future__ import annotations

from typing import Dict, Sequence

import torch


def run_execution(model, x: torch.Tensor, keeps: Sequence[torch.Tensor], execution: str):
    """(logits, decisions) of the IA-RED² ``model`` on clips ``x`` with the given keep masks, on ``execution``."""
    with torch.no_grad():
        return model(x, policy=model.default_policy().replace(execution=execution), keep_masks=keeps,
                     return_decisions=True)


def packed_and_masked(model, x: torch.Tensor, keeps: Sequence[torch.Tensor]) -> Dict[str, torch.Tensor]:
    """{"packed": logits, "masked": logits} of the IA-RED² ``model`` on clips ``x`` with the given keep masks."""
    return {execution: run_execution(model, x, keeps, execution)[0] for execution in ("packed", "masked")}
