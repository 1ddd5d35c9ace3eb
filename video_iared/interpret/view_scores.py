"""Scores of one view's maps: against its foreground (mask metrics) and by deleting / inserting its tokens in
the IA-RED² forward (faithfulness curves)."""
from __future__ import annotations

from typing import Dict, Sequence

import numpy as np
import torch
from torch import nn

from video_iared.interpret import interp_metrics as im
from video_iared.interpret.token_layout import map_to_tokens
from video_iared.interpret.views import patch_foreground, upsample_map

MASK_METRICS = ("auc_patch", "auc_pixel", "ap_patch", "iou_topk", "pointing")
CURVE_METRICS = ("deletion_acc", "insertion_acc", "deletion_prob", "insertion_prob")
# higher is better for every metric but the deletion scores (a faithful map removes the evidence first)
LOWER_IS_BETTER = ("deletion_acc", "deletion_prob")


def mask_scores(maps: Dict[str, np.ndarray], coverage: np.ndarray, patch: int, fg_fraction: float, topk: float,
                seed: int = 0) -> Dict[str, Dict[str, float]]:
    """Scores of every map (T, h, w) against one view's foreground (coverage (T, S, S)): method -> metric."""
    fg_patch = patch_foreground(coverage, patch, fg_fraction)
    fg_pixel = coverage >= 0.5
    out = {}
    for name, m in maps.items():
        rng = np.random.default_rng(seed)
        out[name] = {
            "auc_patch": im.roc_auc(m, fg_patch),
            "auc_pixel": im.roc_auc(upsample_map(m, patch), fg_pixel),
            "ap_patch": im.average_precision(m, fg_patch),
            "iou_topk": im.topk_iou(m, fg_patch, topk, rng),
            "pointing": im.pointing_game(m, fg_patch),
        }
    return out


def curve_masks(scores: np.ndarray, fractions: Sequence[float], rng: np.random.Generator) -> np.ndarray:
    """Deletion and insertion keep masks for one map's token scores (N,) in (h w t) order.

    Returns bool (2, F, N): [0, i] keeps all but the ``round(f_i N)`` top tokens (deletion), [1, i] keeps
    only them (insertion); ties in random order."""
    order = im.rank_order(scores, rng)
    N = scores.size
    out = np.zeros((2, len(fractions), N), dtype=bool)
    for i, f in enumerate(fractions):
        k = int(round(f * N))
        top = np.zeros(N, dtype=bool)
        top[order[:k]] = True
        out[0, i], out[1, i] = ~top, top
    return out


@torch.no_grad()
def curve_scores(model: nn.Module, clip: torch.Tensor, label: int, maps: Dict[str, np.ndarray],
                 fractions: Sequence[float], chunk: int = 32, seed: int = 0) -> Dict[str, Dict[str, np.ndarray]]:
    """Deletion / insertion curves of one view (C, T, S, S) for every map: method -> {"deletion_acc":
    (F,), "insertion_acc", "deletion_prob", "insertion_prob"}, the accuracy (0/1) and the probability of
    ``label`` with the tokens kept (the same set for every group, through the IA-RED² ``keep_masks``)."""
    if not hasattr(model, "interpreters"):
        raise TypeError("deletion / insertion curves need the IA-RED² model (its keep_masks argument)")
    names = list(maps)
    masks = np.stack([curve_masks(map_to_tokens(torch.as_tensor(maps[n])[None]).numpy()[0], fractions,
                                  np.random.default_rng(seed)) for n in names])  # (M, 2, F, N)
    flat = torch.from_numpy(masks.reshape(-1, masks.shape[-1])).to(clip.device)
    # deletion at 0 and insertion at 1 are the full clip for every method, deletion at 1 and insertion
    # at 0 the empty one: run every distinct keep set once
    uniq, inverse = torch.unique(flat, dim=0, return_inverse=True)
    rows = []  # per distinct keep set: (probability of the label, correct)
    for s in range(0, uniq.shape[0], chunk):
        km = uniq[s:s + chunk]
        logits = model(clip.unsqueeze(0).expand(km.shape[0], -1, -1, -1, -1), keep_masks=[km] * model.num_groups)
        rows.append(torch.stack([logits.float().softmax(-1)[:, label], (logits.argmax(-1) == label).float()], 1))
    table = torch.cat(rows)[inverse].reshape(len(names), 2, len(fractions), 2).cpu().numpy()
    out = {}
    for i, n in enumerate(names):
        out[n] = {"deletion_prob": table[i, 0, :, 0], "insertion_prob": table[i, 1, :, 0],
                  "deletion_acc": table[i, 0, :, 1], "insertion_acc": table[i, 1, :, 1]}
    return out
