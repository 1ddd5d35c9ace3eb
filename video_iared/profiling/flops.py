"""fvcore GFLOPs and parameter counts, with a handle for ``aten::scaled_dot_product_attention``.

Units: fvcore counts one multiply-add as one flop, i.e. its "GFLOPs" are GMACs — the figure papers
(TimeSformer's 196 / 590 GFLOPs) call GFLOPs. Every figure printed here says so.
"""
from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional, Set

import torch
from fvcore.nn import FlopCountAnalysis
from fvcore.nn.jit_handles import get_shape
from torch import nn

logger = logging.getLogger(__name__)

UNITS = "GFLOPs as counted by fvcore (1 multiply-add = 1 flop, i.e. GMACs)"

# Ops fvcore leaves uncounted that cost O(elements) — negligible next to the matmuls. Anything else in
# unsupported_ops() is a heavy op without a handle, i.e. a wrong count.
CHEAP_OPS: Set[str] = {
    "aten::add", "aten::add_", "aten::sub", "aten::mul", "aten::mul_", "aten::div", "aten::neg",
    "aten::gelu", "aten::softmax", "aten::sigmoid", "aten::exp", "aten::log", "aten::mean", "aten::sum",
    "aten::rsub", "aten::pow", "aten::sqrt", "aten::rsqrt", "aten::tanh", "aten::relu",
    "aten::dropout", "aten::feature_dropout", "aten::bernoulli_", "aten::div_", "aten::floor",
    "aten::log_softmax", "aten::where", "aten::lt", "aten::le", "aten::ne", "aten::any", "aten::all",
    "aten::cumsum", "aten::argsort", "aten::sort", "aten::topk", "aten::scatter", "aten::scatter_",
    "aten::index_select", "aten::masked_select", "aten::nonzero", "aten::nonzero_static", "aten::repeat",
    "aten::new_zeros",
    "aten::zeros", "aten::ones", "aten::zeros_like", "aten::ones_like", "aten::empty_like", "aten::fill_",
    "aten::unbind",
    "aten::linspace", "aten::logical_not", "aten::logical_and", "aten::to", "aten::type_as",
    "aten::select", "aten::slice", "aten::reshape", "aten::view", "aten::permute", "aten::transpose",
    "aten::unsqueeze", "aten::squeeze", "aten::expand", "aten::contiguous", "aten::cat", "aten::stack",
    "aten::split", "aten::split_with_sizes", "aten::clone", "aten::upsample_nearest1d", "aten::masked_fill",
    "aten::gather", "aten::index", "aten::index_put_", "aten::clamp", "aten::clamp_min", "aten::max",
    "aten::min", "aten::amax", "aten::round", "aten::ceil", "aten::abs", "aten::masked_scatter",
}


def sdpa_flop_jit(inputs: List[Any], outputs: List[Any]) -> int:
    """MACs of ``scaled_dot_product_attention(q, k, v)``: q@k^T plus attn@v.

    q (..., Lq, E), k (..., Lk, E), v (..., Lk, Ev) -> prod(...) * Lq * Lk * (E + Ev): exactly what fvcore
    counts for the reference's two explicit matmuls. A mask does not reduce the count (the kernel computes
    every entry); callers that pack tokens pass shorter sequences instead.
    """
    q, k, v = (get_shape(t) for t in inputs[:3])
    batch = 1
    for s in q[:-2]:
        batch *= s
    lq, e = q[-2], q[-1]
    lk, ev = k[-2], v[-1]
    return batch * lq * lk * (e + ev)


def varlen_flop_jit(inputs: List[Any], outputs: List[Any]) -> int:
    """MACs of ``video_iared::varlen_attention(q, k, v, cu_seq, max_len, scale, pairs)`` (``pruning.varlen``): the
    segments' real work, heads * sum over segments of length^2 * (dh + dh) — q@k^T plus attn@v within each
    segment, as the varlen kernel computes it. ``pairs`` (sum of length^2) is the op's trace-time constant."""
    _, heads, dh = get_shape(inputs[0])
    pairs = int(inputs[6].toIValue())
    return heads * pairs * 2 * dh


EXTRA_HANDLES = {"aten::scaled_dot_product_attention": sdpa_flop_jit, "video_iared::varlen_attention": varlen_flop_jit}


class WithDecisions(nn.Module):
    """``model``'s logits followed by the tensors of its decisions, for tracing.

    The jit trace fvcore counts keeps only the ops the returned tensors depend on. Work that only feeds a
    model's decisions would be dead code there and uncounted — e.g. an IA-RED² interpreter whose group drops
    no token: its scores decide nothing that the logits depend on, yet it ran. A model whose class sets
    ``returns_decisions`` is called as ``model(x, return_decisions=True) -> (logits, decisions)`` and
    ``decisions.traced_outputs()`` are returned beside the logits (``pruning.decisions``; read by that name).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor):
        if not getattr(self.model, "returns_decisions", False):
            return self.model(x)
        out, decisions = self.model(x, return_decisions=True)
        return (out, *decisions.traced_outputs())


def flop_analysis(model: nn.Module, clip: torch.Tensor) -> FlopCountAnalysis:
    """An fvcore ``FlopCountAnalysis`` of ``model(clip)`` with our handles and without fvcore's warnings; the
    model is traced through ``WithDecisions``, so work that only feeds its decisions is counted too
    (module names in ``by_module`` carry a ``model.`` prefix)."""
    analysis = FlopCountAnalysis(WithDecisions(model), (clip,))
    for name, handle in EXTRA_HANDLES.items():
        analysis.set_op_handle(name, handle)
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    analysis.tracer_warnings("none")
    return analysis


def heavy_unsupported_ops(analysis: FlopCountAnalysis) -> Dict[str, int]:
    """Ops fvcore skipped that are not in ``CHEAP_OPS`` (should be empty), with their call counts."""
    return {op: n for op, n in analysis.unsupported_ops().items() if op not in CHEAP_OPS}


def model_gflops(model: nn.Module, clip: torch.Tensor) -> float:
    """fvcore GFLOPs (GMACs) of one forward pass of ``model`` on ``clip`` (1, C, T, H, W).

    The model is traced on the given clip in eval mode (restored afterwards), so a model whose cost depends
    on the input (token pruning) is measured on that real clip. Raises if a heavy op went uncounted.
    """
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            analysis = flop_analysis(model, clip)
            total = analysis.total()
            heavy = heavy_unsupported_ops(analysis)
    finally:
        model.train(was_training)
    if heavy:
        raise RuntimeError(f"fvcore has no handle for heavy ops {heavy}: the GFLOPs count would be wrong")
    return total / 1e9


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (all, or only those with requires_grad)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def log_model_info(
    model: nn.Module,
    num_frames: int,
    crop_size: int,
    in_chans: int = 3,
    views: int = 1,
    clip: Optional[torch.Tensor] = None,
    log: Optional[logging.Logger] = None,
) -> Dict[str, float]:
    """Log parameters and GFLOPs per view and for ``views`` views; return them as a dict.

    The count is taken on ``clip`` (1, C, T, H, W) when given, else on a random clip of
    (1, in_chans, num_frames, crop_size, crop_size) on the model's device.
    Returns {"params_m", "gflops_per_view", "views", "gflops_total"}.
    """
    log = log or logger
    if clip is None:
        device = next(model.parameters()).device
        clip = torch.randn(1, in_chans, num_frames, crop_size, crop_size, device=device)
    params_m = count_params(model) / 1e6
    per_view = model_gflops(model, clip)
    info = {"params_m": params_m, "gflops_per_view": per_view, "views": views, "gflops_total": per_view * views}
    log.info("Params: %.2f M (trainable %.2f M)", params_m, count_params(model, trainable_only=True) / 1e6)
    log.info(
        "GFLOPs per view (%dx%d, %d frames): %.2f; x %d views: %.2f  [%s]",
        clip.shape[-2], clip.shape[-1], clip.shape[2], per_view, views, per_view * views, UNITS,
    )
    return info


def format_flops_line(info: Dict[str, float]) -> str:
    """The machine-readable summary line of tools/flops.py."""
    return (
        f"params_m={info['params_m']:.4f} gflops_per_view={info['gflops_per_view']:.4f} "
        f"views={int(info['views'])} gflops_total={info['gflops_total']:.4f}"
    )
