"""Token maps that explain a TimeSformer / IA-RED² prediction, all as (B, T, H', W') patch-grid maps.

Methods (``METHODS``):

- ``interpreter``: the IA-RED² hierarchical score. Group g's interpreter scores the tokens still alive; a
  token's score is ``(g_last + p_{g_last}) / G`` where ``g_last`` is the last group that scored it (the one
  that dropped it, or the last group) and ``p`` that group's keep probability. Tokens that survive more
  groups therefore always rank higher (with the threshold policy, p <= threshold where a token was dropped
  and p > threshold where it was kept), and the probability orders tokens within one depth.
- ``interpreter_g0``: the first interpreter's keep probability (every token is alive there); ``interpreter_g1``,
  ``interpreter_g2``: group 1's / 2's keep probability over the tokens still alive there (0 for the tokens an
  earlier group dropped), for models with that many groups.
- ``kept``: the number of groups a token survived, / G (the hierarchical kept mask as one map).
- ``attention``: raw attention of the last block: the CLS query's attention over the patches, averaged
  over heads. Divided space-time: the spatial attention of each frame's CLS copy over that frame's patches
  (the CLS column itself left out), so each frame's row sums to 1 minus its CLS self-attention.
- ``rollout``: attention rollout (Abnar & Zuidema 2020) adapted to divided space-time attention: per
  block, the temporal attention (per position, T x T) and the spatial attention (per frame, (1+HW) x (1+HW),
  the frame's CLS copy included) are each averaged over heads, mixed with the identity for the residual
  (``0.5 A + 0.5 I``, rows still summing to 1) and written into one (1+THW) x (1+THW) operator each; the
  CLS row of the spatial operator is the mean over frames of the per-frame CLS rows (the block averages the
  T CLS outputs). The block's operator is ``S @ Tm`` (temporal first, as in the block), and the rollout is
  the product over blocks; the map is the CLS row restricted to the patches. As in the original rollout,
  the linear layers (``temporal_fc``, ``proj``, the MLP) and the norms are left out of the operator.
- ``gradcam``: Grad-CAM on the tokens entering the last block: ``relu(sum_d alpha_d a_{n,d})`` with
  ``alpha_d`` the mean over patch tokens of the gradient of the explained class logit w.r.t. ``a_{n,d}``.
  (The last block's OUTPUT patch tokens get no gradient: the head reads only the CLS token.)
- ``chefer``: Chefer et al. 2021 ("Generic attention-model explainability", the gradient-weighted
  rollout, not their LRP relevance): ``A_bar = mean_h relu(grad_A * A)``, ``R <- R + A_bar R`` per attention,
  with the divided block's temporal and spatial attentions composed as for the rollout.
- ``random``: uniform random scores (the floor).

The baselines run the model's dense forward (every token, the dense ``TimeSformer`` path of the same
weights) so they explain the backbone; the interpreter maps come from the pruned forward the IA-RED² model
really runs. Attention weights are recomputed, ``softmax(q k^T * scale)``, in forward hooks on the blocks'
``Attention`` modules (``attention_capture``), with a gradient w.r.t. them when a method needs one.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Sequence

import torch

# the maps' building blocks live in their own modules; their names stay importable from here
from video_iared.interpret.attention_capture import (AttentionCapture, attention_output, attention_weights,
                                                     capture_attention, dense_forward)
from video_iared.interpret.attention_maps import (block_operators, chefer_map, compose_cls_row, gradcam_map,
                                                  raw_attention_map, spatial_operator, temporal_operator)
from video_iared.interpret.interpreter_maps import InterpreterOutput, interpreter_maps
from video_iared.interpret.token_layout import check_attention_type, grid_of, map_to_tokens, tokens_to_map
from video_iared.models.timesformer import TimeSformer
from video_iared.models.token_grid import TokenGrid

__all__ = ["METHODS", "INTERPRETER_METHODS", "BASELINE_METHODS", "Explanation", "explain",
           "AttentionCapture", "attention_output", "attention_weights", "capture_attention", "dense_forward",
           "block_operators", "chefer_map", "compose_cls_row", "gradcam_map", "raw_attention_map",
           "spatial_operator", "temporal_operator", "InterpreterOutput", "interpreter_maps", "grid_of",
           "map_to_tokens", "tokens_to_map"]

GROUP_METHODS = ("interpreter_g0", "interpreter_g1", "interpreter_g2")  # one group's keep probability each
METHODS = ("interpreter", *GROUP_METHODS, "kept", "attention", "rollout", "gradcam", "chefer", "random")
INTERPRETER_METHODS = ("interpreter", *GROUP_METHODS, "kept")
BASELINE_METHODS = ("attention", "rollout", "gradcam", "chefer", "random")


@dataclass
class Explanation:
    """All maps (B, T, H', W') of a batch of clips, the classes they explain and both models' logits.

    ``maps[name]`` for every requested method; ``interp`` the interpreters' output (IA-RED² models);
    ``target`` (B,) the explained class (the dense prediction unless given); ``dense_logits`` (B, K).
    """

    maps: Dict[str, torch.Tensor]
    target: torch.Tensor
    dense_logits: torch.Tensor
    grid: TokenGrid
    interp: Optional[InterpreterOutput] = None


def explain(model: TimeSformer, clips: torch.Tensor, methods: Sequence[str] = METHODS,
            target: Optional[torch.Tensor] = None, seed: int = 0) -> Explanation:
    """Every requested map for clips (B, C, T, H, W); ``target`` (B,) classes to explain (default: the
    dense forward's prediction). Interpreter methods need an IA-RED² model. The model is put in eval mode
    for the call (and restored)."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown explanation methods {unknown}; known: {list(METHODS)}")
    check_attention_type(model)
    grid = grid_of(model, clips)
    B = clips.shape[0]
    maps: Dict[str, torch.Tensor] = {}
    was_training = model.training
    model.eval()
    try:
        interp = None
        if any(m in INTERPRETER_METHODS for m in methods):
            interp = interpreter_maps(model, clips)
            if "interpreter" in methods:
                maps["interpreter"] = interp.hierarchical_score()
            for g, name in enumerate(GROUP_METHODS):
                if name not in methods:
                    continue
                if g >= interp.num_groups or not interp.scored[g]:
                    raise ValueError(f"{name}: group {g}'s interpreter did not run (the model has "
                                     f"{interp.num_groups} groups; scored: {interp.scored})")
                maps[name] = interp.probs[:, g]
            if "kept" in methods:
                maps["kept"] = interp.depth().float() / interp.num_groups
        need_grad = any(m in ("gradcam", "chefer") for m in methods)
        # the input requires grad so activations do even when every parameter is frozen
        x = clips.detach().clone().requires_grad_(need_grad)
        with torch.set_grad_enabled(need_grad), capture_attention(model, with_grad=need_grad) as cap:
            logits = dense_forward(model, x)
            tgt = logits.argmax(1) if target is None else torch.as_tensor(target, device=logits.device).reshape(B)
            if need_grad:
                model.zero_grad(set_to_none=True)
                logits.gather(1, tgt[:, None]).sum().backward()
        if "attention" in methods:
            maps["attention"] = raw_attention_map(cap.spatial[-1], grid, B, model.attention_type)
        if "rollout" in methods:
            t_avg = [None if a is None else a.detach().mean(1) for a in cap.temporal]
            s_avg = [a.detach().mean(1) for a in cap.spatial]
            maps["rollout"] = tokens_to_map(compose_cls_row(t_avg, s_avg, grid, B, "rollout")[:, 1:], grid)
        if "gradcam" in methods:
            maps["gradcam"] = gradcam_map(cap.last_input, grid)
        if "chefer" in methods:
            maps["chefer"] = chefer_map(cap, grid, B)
        if "random" in methods:
            gen = torch.Generator().manual_seed(seed)
            maps["random"] = torch.rand(B, grid.T, grid.H, grid.W, generator=gen).to(clips.device)
        model.zero_grad(set_to_none=True)
    finally:
        model.train(was_training)
    # float32 maps, except the interpreter score which needs float64 to keep its depth ordering
    maps = {m: maps[m].detach() if maps[m].dtype == torch.float64 else maps[m].detach().float() for m in methods}
    return Explanation(maps, tgt.detach(), logits.detach(), grid, interp)
