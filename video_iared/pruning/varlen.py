"""Variable-length attention: every attention branch of a block as ONE call over all clips of a batch.

The attention backend "varlen" (``resolve_backend``) runs every attention branch of a block as ONE
variable-length call over all clips of the batch (:class:`Segments`, built by ``token_ops.PackedLayout``;
:func:`segment_attention`): the segments (positions, frames, clips) are described by cumulative offsets ``cu_seq`` and a static maximum length (T,
1 + H*W, 1 + T*H*W), so building them reads nothing back to the host, and with a kept count known in advance
(``PackedLayout(num_patches=...)``: ``torch.nonzero_static``) the whole layout is built on the device. On CUDA
in float16 / bfloat16 the call is ``torch.nn.attention.varlen.varlen_attn`` (flash attention); elsewhere
(the CPU, CUDA float32) it is :func:`padded_varlen_attention`, the reference: the segments scattered into one
(num_segments, max_len) padded tensor, a key-padding mask, one ``scaled_dot_product_attention``. The bucketed
backend (the default on the CPU, see ``AUTO_CPU_BACKEND``) is ``token_ops``' grouping, with host reads for its
Python-int shapes and one call per bucket.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F

try:  # torch >= 2.9: flash-attention variable-length attention (CUDA only)
    from torch.nn.attention.varlen import varlen_attn as _cuda_varlen_attn
except ImportError:  # pragma: no cover - older torch: the padded reference everywhere
    _cuda_varlen_attn = None

ATTENTION_BACKENDS = ("auto", "varlen", "bucketed")
# "auto" on the CPU. Measured (tools/benchmark.py --speed --cfg configs/k400.yaml, TimeSformer-B 8x224 keep-ratio
# table, 2 threads): see README "Attention backends"; the padded reference computes the attention of the full
# grid (every segment padded to its static maximum), the bucketed path only the kept tokens' groups.
AUTO_CPU_BACKEND = "bucketed"


def resolve_backend(backend: str, device: torch.device) -> str:
    """The attention backend a forward on ``device`` runs: "varlen" or "bucketed" (``ATTENTION_BACKENDS``;
    "auto": varlen on CUDA, ``AUTO_CPU_BACKEND`` elsewhere)."""
    if backend not in ATTENTION_BACKENDS:
        raise ValueError(f"attention backend {backend!r} is not one of {ATTENTION_BACKENDS}")
    if backend != "auto":
        return backend
    return "varlen" if torch.device(device).type == "cuda" else AUTO_CPU_BACKEND


@dataclass
class Segments:
    """Variable-length attention segments over the rows of a qkv input (R, 3D), for :func:`segment_attention`.

    The E elements (the attention's queries, in the order the caller wants the outputs) lie segment after
    segment in "segment order": ``cu_seq`` (G+1,) int32 the cumulative offsets (segment g holds positions
    ``cu_seq[g] .. cu_seq[g+1]-1``; empty segments allowed), ``max_len`` a static bound on every segment's length.
    ``pos`` (E,) long: the segment-order position of every element; ``seq_rows`` (E,) long: the qkv row read at
    every segment-order position. Both None when the qkv rows are the elements, already in segment order.
    """

    cu_seq: torch.Tensor
    max_len: int
    pos: Optional[torch.Tensor]
    seq_rows: Optional[torch.Tensor]


def offsets(lengths: torch.Tensor) -> torch.Tensor:
    """Segment lengths (G,) -> cumulative offsets (G+1,) int32, starting at 0."""
    return torch.cat([lengths.new_zeros(1), torch.cumsum(lengths, 0)]).to(torch.int32)


def seq_rows(src: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """The row each segment-order position reads: element e (reading row src[e]) sits at position pos[e]."""
    return torch.empty_like(src).index_put_((pos,), src)


def padded_varlen_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seq: torch.Tensor, max_len: int,
                            scale: float) -> torch.Tensor:
    """The variable-length attention call as ONE padded, masked ``scaled_dot_product_attention``.

    q, k, v (E, heads, dh) in segment order, ``cu_seq`` (G+1,) int32 offsets, ``max_len`` a static bound on the
    segment lengths -> (E, heads, dh): every segment's attention over its own keys. The segments are scattered
    into a (G, max_len) padded tensor with a key-padding mask; slot 0 of every segment counts as a key, so an
    empty segment's (unread) padding row stays finite. Same result as ``varlen_attn`` on every device and dtype
    (no host read: all shapes are static); the work is that of the padded grid.
    """
    E, heads, dh = q.shape
    G = int(cu_seq.shape[0]) - 1
    cu = cu_seq.long()
    index = torch.arange(E, device=q.device)
    seg = torch.searchsorted(cu[1:], index, right=True)
    flat = seg * max_len + index - cu.index_select(0, seg)
    valid = torch.zeros(G * max_len, dtype=torch.bool, device=q.device).index_fill_(0, flat, True)
    valid = valid.view(G, max_len)
    valid[:, 0] = True
    padded = [t.new_zeros(G * max_len, heads, dh).index_copy(0, flat, t).view(G, max_len, heads, dh).transpose(1, 2)
              for t in (q, k, v)]
    out = F.scaled_dot_product_attention(*padded, attn_mask=valid[:, None, None, :], scale=scale)
    return out.transpose(1, 2).reshape(G * max_len, heads, dh).index_select(0, flat)


def varlen_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seq: torch.Tensor, max_len: int,
                     scale: float) -> torch.Tensor:
    """Attention within variable-length segments: q, k, v (E, heads, dh) in segment order -> (E, heads, dh).

    On CUDA in float16 / bfloat16: ``torch.nn.attention.varlen.varlen_attn`` (flash attention, backward
    supported; no bias, no dropout); elsewhere :func:`padded_varlen_attention` (same results).
    """
    if _cuda_varlen_attn is not None and q.is_cuda and q.dtype in (torch.float16, torch.bfloat16):
        return _cuda_varlen_attn(q, k, v, cu_seq, cu_seq, max_len, max_len, scale=scale)
    return padded_varlen_attention(q, k, v, cu_seq, max_len, scale)


@torch.library.custom_op("video_iared::varlen_attention", mutates_args=())
def _traced_varlen_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seq: torch.Tensor, max_len: int,
                             scale: float, pairs: int) -> torch.Tensor:
    """:func:`varlen_attention` as one op of a jit trace (what fvcore traces): ``pairs`` = sum over segments of
    length^2, a trace-time constant that ``profiling.flops``'s handle reads to count the segments' real work."""
    return varlen_attention(q, k, v, cu_seq, max_len, scale)


@_traced_varlen_attention.register_fake
def _(q, k, v, cu_seq, max_len, scale, pairs):
    return torch.empty_like(q)


def segment_attention(qkv: torch.Tensor, segments: Segments, num_heads: int, scale: float) -> torch.Tensor:
    """Multi-head attention within variable-length segments, ONE attention call: qkv (R, 3D) -> (E, D) in
    element order (see :class:`Segments`).

    Under a jit trace (fvcore) the call is the ``video_iared::varlen_attention`` op, counted as the segments'
    real work (q.k^T and attn.v: heads * sum length^2 * 2 dh, the work of a varlen kernel, whichever kernel
    runs); its length sum is read back at trace time only, never in a real forward.
    """
    three_d = qkv.shape[1]
    D = three_d // 3
    rows = qkv if segments.seq_rows is None else qkv.index_select(0, segments.seq_rows)
    q, k, v = rows.view(rows.shape[0], 3, num_heads, D // num_heads).unbind(1)
    if torch.jit.is_tracing():
        lengths = (segments.cu_seq[1:] - segments.cu_seq[:-1]).long()
        pairs = int((lengths * lengths).sum())
        out = torch.ops.video_iared.varlen_attention(q, k, v, segments.cu_seq, segments.max_len, scale, pairs)
    else:
        out = varlen_attention(q, k, v, segments.cu_seq, segments.max_len, scale)
    out = out.reshape(rows.shape[0], D)
    return out if segments.pos is None else out.index_select(0, segments.pos)
