"""Count, in one forward, the device-to-host reads and the attention calls, at the dispatcher.

On CUDA every host read (a ``nonzero`` whose output size the host must know, an ``item`` / ``int()`` /
``bool()`` of a tensor, ``torch.equal``) waits for the launch queue to drain, and every attention call is at
least one kernel launch: the two numbers that decide whether a pruned forward keeps its FLOP savings on a GPU.
:class:`DispatchCounter` is a ``TorchDispatchMode`` that sees every ATen op of the forward (on any device, so
the CPU proves the logic) and classifies them:

- host reads: the ops in :data:`HOST_READ_OPS` (data-dependent output shapes, scalar reads). ``Tensor.tolist``
  and ``.cpu()`` of a CPU tensor are invisible at the dispatcher; on CUDA ``torch.cuda.set_sync_debug_mode``
  (``tools/benchmark.py --gpu-check``) catches every synchronisation instead;
- attention calls: the ops in :data:`ATTENTION_OPS` (what ``F.scaled_dot_product_attention`` dispatches to on
  each backend, the flash varlen kernel, the project's traced varlen op). Ops run inside an op already
  counted (a custom op's implementation) are not seen again: a mode is off while its op runs.
"""
from __future__ import annotations

from collections import Counter
from typing import Callable, Dict

import torch
from torch.utils._python_dispatch import TorchDispatchMode

# ATen overload packets whose result the host must read (output size or value).
HOST_READ_OPS = frozenset({
    "aten.nonzero", "aten.equal", "aten._local_scalar_dense", "aten.is_nonzero", "aten.masked_select",
    "aten._unique2", "aten.unique_consecutive", "aten.unique_dim", "aten.bincount",
})
# ... and those that are one attention call (one kernel or one fused CPU routine).
ATTENTION_OPS = frozenset({
    "aten._scaled_dot_product_flash_attention", "aten._scaled_dot_product_flash_attention_for_cpu",
    "aten._scaled_dot_product_efficient_attention", "aten._scaled_dot_product_cudnn_attention",
    "aten._scaled_dot_product_fused_attention_overrideable", "aten._flash_attention_forward",
    "aten._efficient_attention_forward", "video_iared.varlen_attention",
})
# The math fallback of SDPA is composite (it decomposes into bmm / softmax before reaching a mode): a model
# that lands there shows no attention op, so a count of 0 with these ops present is reported as unknown.
_MATH_HINTS = frozenset({"aten.bmm", "aten._softmax"})


def _packet(func) -> str:
    """An op overload (``aten.nonzero.default``) -> its packet's name (``aten.nonzero``)."""
    return func._qualified_op_name.replace("::", ".") if hasattr(func, "_qualified_op_name") else str(func)


class DispatchCounter(TorchDispatchMode):
    """``with DispatchCounter() as c: model(x)`` -> ``c.host_reads``, ``c.attention_calls``, ``c.ops``."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: Counter = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops[_packet(func._overloadpacket)] += 1
        return func(*args, **(kwargs or {}))

    @property
    def host_reads(self) -> int:
        return sum(n for op, n in self.ops.items() if op in HOST_READ_OPS)

    @property
    def attention_calls(self) -> int:
        return sum(n for op, n in self.ops.items() if op in ATTENTION_OPS)

    def summary(self) -> Dict[str, object]:
        """The two counts, the host-read ops by name, and whether attention may have run uncounted (math SDPA)."""
        return {
            "host_reads": self.host_reads,
            "attention_calls": self.attention_calls,
            "host_read_ops": {op: n for op, n in sorted(self.ops.items()) if op in HOST_READ_OPS},
            "math_attention_suspected": self.attention_calls == 0 and any(op in self.ops for op in _MATH_HINTS),
        }


def count_forward(fn: Callable[[], object]) -> Dict[str, object]:
    """Run ``fn()`` (one forward, under no_grad) inside a :class:`DispatchCounter` -> its ``summary()``."""
    with torch.no_grad(), DispatchCounter() as counter:
        fn()
    return counter.summary()
