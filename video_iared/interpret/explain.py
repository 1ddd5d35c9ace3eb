"""Token maps that explain a TimeSformer / IA-RED² prediction, all as (B, T, H', W') patch-grid maps.

Methods (``METHODS``):

- ``interpreter``: the IA-RED² hierarchical score. Group g's interpreter scores the tokens still alive; a
  token's score is ``(g_last + p_{g_last}) / G`` where ``g_last`` is the last group that scored it (the one
  that dropped it, or the last group) and ``p`` that group's keep probability. Tokens that survive more
  groups therefore always rank higher (with the threshold policy, p <= threshold where a token was dropped
  and p > threshold where it was kept), and the probability orders tokens within one depth.
- ``interpreter_g0``: the first interpreter's keep probability (every token is alive there).
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
``Attention`` modules (which run SDPA and never materialise them); when gradients are needed the hook
returns ``proj(A @ v)`` computed from those weights, so the gradient w.r.t. ``A`` exists (the value is the
same as the module's own output up to float rounding).
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Sequence

import torch
from einops import rearrange
from torch import nn

from video_iared.models.timesformer import TimeSformer
from video_iared.models.token_grid import TokenGrid

METHODS = ("interpreter", "interpreter_g0", "kept", "attention", "rollout", "gradcam", "chefer", "random")
INTERPRETER_METHODS = ("interpreter", "interpreter_g0", "kept")
BASELINE_METHODS = ("attention", "rollout", "gradcam", "chefer", "random")


# ----------------------------------------------------------------------------- layout helpers
def grid_of(model: TimeSformer, clips: torch.Tensor) -> TokenGrid:
    """The patch grid of clips (B, C, T, H, W) for ``model``."""
    p = model.patch_size
    return TokenGrid(clips.shape[2], clips.shape[3] // p, clips.shape[4] // p)


def tokens_to_map(values: torch.Tensor, grid: TokenGrid) -> torch.Tensor:
    """Per-patch values (B, T*H*W) in the reference (h w t) token order -> (B, T, H, W) maps."""
    return rearrange(values, "b (h w t) -> b t h w", h=grid.H, w=grid.W, t=grid.T)


def map_to_tokens(maps: torch.Tensor) -> torch.Tensor:
    """(B, T, H, W) maps -> (B, T*H*W) in (h w t) token order (the inverse of ``tokens_to_map``)."""
    return rearrange(maps, "b t h w -> b (h w t)")


def _check_attention_type(model: TimeSformer) -> None:
    if model.attention_type not in ("divided_space_time", "joint_space_time"):
        raise ValueError(f"explanations support divided_space_time and joint_space_time attention, not "
                         f"{model.attention_type!r} (space_only has one CLS per frame)")


# ----------------------------------------------------------------------------- the interpreters
@dataclass
class InterpreterOutput:
    """What the IA-RED² interpreters decided on a batch of clips (threshold / keep_ratio inference policy).

    logits (B, K): the pruned model's logits; probs (B, G, T, H, W): each group's keep probability (0 for
    tokens dead before the group, and for groups whose policy is "all", which compute none); kept (B, G, T,
    H, W) bool: alive after group g's decision (hierarchical: kept[:, g] implies kept[:, g - 1]);
    scored (G,) bool: which groups ran their interpreter.
    """

    logits: torch.Tensor
    probs: torch.Tensor
    kept: torch.Tensor
    scored: List[bool]

    @property
    def num_groups(self) -> int:
        return int(self.kept.shape[1])

    def depth(self) -> torch.Tensor:
        """Groups survived (B, T, H, W) long: 0 = dropped by group 0, G = kept to the end."""
        return self.kept.long().sum(1)

    def hierarchical_score(self) -> torch.Tensor:
        """The ``interpreter`` map (B, T, H, W) in [0, 1], float64 (see the module docstring)."""
        G = self.num_groups
        scored = [g for g in range(G) if self.scored[g]]
        if not scored:
            raise ValueError("no interpreter group was active: nothing scored the tokens")
        alive_before = torch.cat([torch.ones_like(self.kept[:, :1]), self.kept[:, :-1]], 1)  # (B, G, ...)
        # float64: in float32, (g + p) / G with p just above the threshold can round onto the next depth
        probs = self.probs.double()
        score = torch.zeros_like(probs[:, 0])
        for g in scored:  # later groups overwrite: the last group that saw a token decides its score
            seen = alive_before[:, g]
            score = torch.where(seen, (g + probs[:, g]) / G, score)
        return score


@torch.no_grad()
def interpreter_maps(model: nn.Module, clips: torch.Tensor) -> InterpreterOutput:
    """Run the IA-RED² model's own (pruned) inference on clips (B, C, T, H, W); its maps per group, from the
    decisions the forward returns (keep probabilities, 0 for dead tokens, and kept sets): nothing of the model
    is modified."""
    if not hasattr(model, "interpreters"):
        raise TypeError(f"{type(model).__name__} has no interpreters: interpreter maps need an IA-RED² model")
    was_training = model.training
    model.eval()
    try:
        policy = model.default_policy()
        if not policy.deterministic:
            raise ValueError(f"interpreter maps need a deterministic policy, got {list(policy.groups)}")
        logits, decisions = model(clips, policy=policy, return_decisions=True)
    finally:
        model.train(was_training)
    grid = grid_of(model, clips)
    B, N = clips.shape[0], grid.num_patches
    probs = [torch.zeros(B, N, device=clips.device) if p is None else p.float() for p in decisions.probs]
    return InterpreterOutput(logits, torch.stack([tokens_to_map(p, grid) for p in probs], 1),
                             torch.stack([tokens_to_map(k, grid) for k in decisions.keep_masks.unbind(1)], 1),
                             [bool(r) for r in decisions.interpreted])


# ----------------------------------------------------------------------------- attention capture
@dataclass
class AttentionCapture:
    """Attention weights (and optionally their gradients) of every block of one dense forward.

    ``temporal[i]``: (B*H*W, heads, T, T) or None (joint attention); ``spatial[i]``: divided:
    (B*T, heads, 1+H*W, 1+H*W), frames' CLS copy first; joint: (B, heads, 1+N, 1+N).
    ``last_input``: the tokens (B, 1+N, D) entering the last block (for Grad-CAM).
    """

    temporal: List[Optional[torch.Tensor]] = field(default_factory=list)
    spatial: List[torch.Tensor] = field(default_factory=list)
    last_input: Optional[torch.Tensor] = None


def attention_weights(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T * scale) of an ``Attention`` module on its input x (N, L, D) -> (N, heads, L, L)."""
    N, L, D = x.shape
    qkv = module.qkv(x).reshape(N, L, 3, module.num_heads, D // module.num_heads).permute(2, 0, 3, 1, 4)
    q, k = qkv[0], qkv[1]
    return ((q * module.scale) @ k.transpose(-2, -1)).softmax(-1)


def attention_output(module: nn.Module, x: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
    """``proj(attn @ v)`` of an ``Attention`` module: its output computed from given weights (N, L, D)."""
    N, L, D = x.shape
    v = module.qkv(x).reshape(N, L, 3, module.num_heads, D // module.num_heads)[:, :, 2].transpose(1, 2)
    return module.proj((attn @ v).transpose(1, 2).reshape(N, L, D))


@contextmanager
def capture_attention(model: TimeSformer, with_grad: bool = False) -> Iterator[AttentionCapture]:
    """Forward hooks on every block's attention modules (and the last block's input) of a dense forward.

    With ``with_grad`` the captured weights keep their gradient (``retain_grad``) and the hook returns the
    output recomputed from them, so a backward pass fills ``.grad`` of every captured tensor.
    """
    _check_attention_type(model)
    cap = AttentionCapture()
    handles = []

    def make_hook(kind: str):
        def hook(module: nn.Module, args, output):
            if len(args) > 1 and args[1] is not None:
                raise RuntimeError("attention capture runs on the dense path only (got an attention mask)")
            x = args[0]
            attn = attention_weights(module, x)
            (cap.temporal if kind == "temporal" else cap.spatial).append(attn)
            if with_grad:
                attn.retain_grad()
                return attention_output(module, x, attn)
            return None
        return hook

    def pre_hook(module: nn.Module, args):
        x = args[0]
        if with_grad and x.requires_grad:
            x.retain_grad()
        cap.last_input = x
        return None

    try:
        for blk in model.blocks:
            if model.attention_type == "divided_space_time":
                handles.append(blk.temporal_attn.register_forward_hook(make_hook("temporal")))
            else:
                # keep one entry per block so temporal[i] lines up with spatial[i]
                handles.append(blk.attn.register_forward_pre_hook(lambda m, a: cap.temporal.append(None)))
            handles.append(blk.attn.register_forward_hook(make_hook("spatial")))
        handles.append(model.blocks[-1].register_forward_pre_hook(pre_hook))
        yield cap
    finally:
        for h in handles:
            h.remove()


def dense_forward(model: TimeSformer, clips: torch.Tensor) -> torch.Tensor:
    """The dense TimeSformer forward of ``model`` (every token, no pruning): (B, C, T, H, W) -> (B, K).

    Works for the IA-RED² model too (it subclasses ``TimeSformer``; its interpreters are not called)."""
    return TimeSformer.forward(model, clips)


# ----------------------------------------------------------------------------- operators (rollout)
def temporal_operator(att: torch.Tensor, grid: TokenGrid) -> torch.Tensor:
    """Per-position temporal matrices (B, H*W, T, T) -> one (B, 1+N, 1+N) operator over the clip's tokens
    ((h w t) order: each position's T tokens are contiguous, so it is block-diagonal); the CLS row is e_0."""
    B = att.shape[0]
    S, T = grid.spatial, grid.T
    op = att.new_zeros(B, 1 + S * T, 1 + S * T)
    op[:, 0, 0] = 1.0
    base = 1 + torch.arange(S, device=att.device) * T
    rows = (base[:, None] + torch.arange(T, device=att.device))  # (S, T)
    op[:, rows[:, :, None], rows[:, None, :]] = att
    return op


def spatial_operator(att: torch.Tensor, grid: TokenGrid) -> torch.Tensor:
    """Per-frame spatial matrices (B, T, 1+H*W, 1+H*W) (CLS copy first) -> one (B, 1+N, 1+N) operator.

    Patch (s, t) reads the CLS token and the patches of frame t; the CLS row is the mean over frames of the
    frames' CLS rows (the divided block averages its T CLS outputs)."""
    B = att.shape[0]
    S, T = grid.spatial, grid.T
    op = att.new_zeros(B, 1 + S * T, 1 + S * T)
    idx = 1 + torch.arange(S, device=att.device)[None, :] * T + torch.arange(T, device=att.device)[:, None]  # (T, S)
    op[:, idx[:, :, None], idx[:, None, :]] = att[:, :, 1:, 1:]
    op[:, idx, 0] = att[:, :, 1:, 0]
    op[:, 0, 0] = att[:, :, 0, 0].mean(1)
    op[:, 0, idx] = att[:, :, 0, 1:] / T
    return op


def block_operators(temporal: Optional[torch.Tensor], spatial: torch.Tensor, grid: TokenGrid, B: int,
                    rule: str) -> torch.Tensor:
    """One block's (B, 1+N, 1+N) token-mixing operator from its head-averaged attentions.

    ``temporal`` (B*H*W, T, T) or None (joint); ``spatial`` divided (B*T, 1+S, 1+S) / joint (B, 1+N, 1+N).
    rule "rollout": each attention becomes ``0.5 A + 0.5 I``; rule "chefer": ``I + A`` (A already the
    gradient-weighted map). Divided: ``Spatial @ Temporal``.
    """
    def with_identity(a: torch.Tensor) -> torch.Tensor:
        eye = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
        return 0.5 * a + 0.5 * eye if rule == "rollout" else a + eye

    if rule not in ("rollout", "chefer"):
        raise ValueError(f"unknown rule {rule!r}")
    if temporal is None:
        return with_identity(spatial)
    t_op = temporal_operator(with_identity(temporal).reshape(B, grid.spatial, grid.T, grid.T), grid)
    s_op = spatial_operator(with_identity(spatial).reshape(B, grid.T, 1 + grid.spatial, 1 + grid.spatial), grid)
    return s_op @ t_op


def compose_cls_row(temporal: Sequence[Optional[torch.Tensor]], spatial: Sequence[torch.Tensor], grid: TokenGrid,
                    B: int, rule: str) -> torch.Tensor:
    """The CLS row of ``M_L ... M_1`` over all blocks, (B, 1+N): computed as a row vector from the left
    (e_0 M_L M_{L-1} ...), which is O(N^2) per block instead of a full matrix product."""
    row = None
    for t_att, s_att in zip(reversed(list(temporal)), reversed(list(spatial))):
        op = block_operators(t_att, s_att, grid, B, rule)
        row = op[:, 0] if row is None else (row.unsqueeze(1) @ op).squeeze(1)
    return row


# ----------------------------------------------------------------------------- the explanation of a batch
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
    _check_attention_type(model)
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
            if "interpreter_g0" in methods:
                if not interp.scored[0]:
                    raise ValueError("interpreter_g0: the first group's interpreter did not run (policy 'all')")
                maps["interpreter_g0"] = interp.probs[:, 0]
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


def raw_attention_map(att: torch.Tensor, grid: TokenGrid, B: int, attention_type: str) -> torch.Tensor:
    """The last block's CLS attention over the patches, heads averaged -> (B, T, H, W).

    Divided: att (B*T, heads, 1+S, 1+S), row 0 of every frame's spatial attention. Joint: att (B, heads,
    1+N, 1+N), row 0 over all patches."""
    a = att.detach().mean(1)[:, 0, 1:]
    if attention_type == "divided_space_time":
        return a.reshape(B, grid.T, grid.H, grid.W)
    return tokens_to_map(a, grid)


def gradcam_map(last_input: torch.Tensor, grid: TokenGrid) -> torch.Tensor:
    """Grad-CAM on the tokens entering the last block (B, 1+N, D) (``.grad`` filled) -> (B, T, H, W)."""
    if last_input is None or last_input.grad is None:
        raise RuntimeError("Grad-CAM needs the gradient of the last block's input (run the backward first)")
    act, grad = last_input.detach()[:, 1:], last_input.grad[:, 1:]
    alpha = grad.mean(1, keepdim=True)  # (B, 1, D): channel weights averaged over the patch tokens
    cam = torch.relu((alpha * act).sum(-1))
    return tokens_to_map(cam, grid)


def chefer_map(cap: AttentionCapture, grid: TokenGrid, B: int) -> torch.Tensor:
    """Gradient-weighted rollout (Chefer et al. 2021, generic attention explainability) -> (B, T, H, W)."""
    def weighted(a: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        if a is None:
            return None
        if a.grad is None:
            raise RuntimeError("chefer: an attention map has no gradient (run the backward first)")
        return (a.grad * a.detach()).clamp(min=0).mean(1)

    t_bar = [weighted(a) for a in cap.temporal]
    s_bar = [weighted(a) for a in cap.spatial]
    row = compose_cls_row(t_bar, s_bar, grid, B, "chefer")
    return tokens_to_map(row[:, 1:], grid)
