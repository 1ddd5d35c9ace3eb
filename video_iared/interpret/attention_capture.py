"""Attention weights of a dense forward, captured by forward hooks on the blocks' ``Attention`` modules.

The modules run SDPA and never materialise their weights: the hooks recompute ``softmax(q k^T * scale)``; when
gradients are needed a hook returns ``proj(A @ v)`` computed from those weights, so the gradient w.r.t. ``A``
exists (the value is the module's own output up to float rounding).
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator, List, Optional

import torch
from torch import nn

from video_iared.interpret.token_layout import check_attention_type
from video_iared.models.timesformer import TimeSformer


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
    check_attention_type(model)
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
