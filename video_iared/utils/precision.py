"""Inference precision in one place: autocast around the forward pass, the pieces kept in float32, compile.

``TEST.PRECISION`` (used by multi-view testing and by prediction) picks the forward precision:

- ``fp32``: no autocast;
- ``bf16``: ``torch.autocast(device, torch.bfloat16)`` on cpu or cuda. Matmuls and linear layers run in
  bfloat16 (about 4.7x the float32 matmul rate on this project's avx512_bf16 CPU), the residual stream stays
  float32 (a float32 + bfloat16 add promotes to float32), so the error does not accumulate over the blocks;
- ``fp16``: cuda only. The CPU has no fp16 matmul kernels worth using, so fp16 there is refused with an
  error naming the config key rather than silently run in another precision.

What stays in float32 (and why):

- the ensemble of the views (``engine.ensemble.ensemble_views`` casts the logits to float32 before its
  softmax; ``float32_softmax`` here is the same rule for any other caller): the probabilities of a
  400-class softmax are ~1e-3, where bfloat16 keeps 2-3 significant digits, enough to swap near-ties between
  the top classes;
- the interpreter's keep decision, when ``float32_forward`` decorates ``Interpreter.forward`` /
  ``Interpreter.forward_packed``: its queries, keys and dot products in bfloat16 move keep probabilities by
  a few 1e-3 (measured on the synthetic IA-RED² model, 160 views: 280 decisions flipped by their own
  group, all within 0.0034 of the threshold, and the mean kept fraction biased from 0.4033 to 0.4001; with
  the interpreter in float32, 10 flipped, all within 0.0003 of the threshold — moved there by the bf16
  patch embedding and blocks). The interpreter is one narrow linear layer per group (about 1 % of a
  group's MACs at ViT-B), so float32 costs little there;
- the classifier head (``TimeSformer.forward_head``: final norm + linear), for the same reason: bf16 logits
  are rounded to 2^-8 relative, which turned a 0.0005 probability margin between the top two classes of one
  synthetic test video into an exact tie (1 of 80 predictions changed; none with the head in float32).
  ``forward_head`` disables autocast itself, so logits always come out float32.

``float32_islands(model)`` applies the float32 interpreters and head to a model for measuring
(``benchmarks.precision_check``, the ``f32i`` rows of the speed benchmark).

``matmul_weights_in(model, dtype)`` holds the linear / convolution weights in the autocast dtype for a
stretch of inference (autocast would otherwise cast all of them again on every forward pass: ~10 % of a
TimeSformer-B bf16 batch-1 forward); ``float32_weights`` undoes it for a float32 computation inside, and
``inference_precision(model, precision, device)`` is autocast plus the held weights in one context.

``maybe_compile(model, enabled)`` wraps ``torch.compile`` behind ``TEST.COMPILE`` (off by default).
"""
from __future__ import annotations

import contextlib
import functools
import logging
from typing import Any, Callable, ContextManager, Dict, Iterator, Optional, TypeVar, Union

import torch
from torch import nn

logger = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16", "fp16")
_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}

F = TypeVar("F", bound=Callable[..., Any])


class PrecisionError(ValueError):
    """A precision the device cannot run; the message names the config key."""


def _device(device: Union[str, torch.device]) -> torch.device:
    return device if isinstance(device, torch.device) else torch.device(device)


def precision_dtype(precision: str, device: Union[str, torch.device], key: str = "TEST.PRECISION") -> Optional[torch.dtype]:
    """The autocast dtype of ``precision`` on ``device`` (None for float32).

    Raises ``PrecisionError`` naming ``key`` for an unknown name and for fp16 on a non-cuda device.
    """
    dev = _device(device)
    if precision not in _DTYPES:
        raise PrecisionError(f"{key}: unknown precision {precision!r}; expected one of {list(PRECISIONS)}")
    if precision == "fp16" and dev.type != "cuda":
        raise PrecisionError(
            f"{key} fp16 needs a cuda device (this run is on {dev.type}); use bf16 on the cpu, whose autocast "
            f"runs bfloat16 matmuls natively")
    return _DTYPES[precision]


def forward_precision(precision: str, device: Union[str, torch.device], key: str = "TEST.PRECISION") -> ContextManager:
    """A context manager running the forward passes inside it at ``precision`` ("fp32" | "bf16" | "fp16").

    Usage: ``with torch.inference_mode(), forward_precision(cfg.TEST.PRECISION, device): logits = model(x)``.
    Logits come out in bfloat16 / float16 under autocast: cast them with ``.float()`` before any softmax,
    ensemble or metric (``run_multiview`` does).
    """
    dtype = precision_dtype(precision, device, key)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=_device(device).type, dtype=dtype)


def _to_float32(x: Any) -> Any:
    if isinstance(x, torch.Tensor) and x.is_floating_point() and x.dtype != torch.float32:
        return x.float()
    return x


def float32_forward(fn: F) -> F:
    """Decorator: run ``fn`` with autocast disabled and its floating tensor arguments cast to float32.

    For the pieces whose result is a decision rather than a value (the interpreter's keep probabilities,
    compared with a threshold): put ``@float32_forward`` on ``Interpreter.forward`` and
    ``Interpreter.forward_packed``. Outside autocast and with float32 inputs it changes nothing.
    """
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        args = tuple(_to_float32(a) for a in args)
        kwargs = {k: _to_float32(v) for k, v in kwargs.items()}
        device_types = {a.device.type for a in list(args) + list(kwargs.values()) if isinstance(a, torch.Tensor)}
        ctx = contextlib.ExitStack()
        for dt in device_types or {"cpu"}:
            ctx.enter_context(torch.autocast(device_type=dt, enabled=False))
        with ctx:
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


@contextlib.contextmanager
def float32_islands(model: nn.Module, interpreters: bool = True, head: bool = True) -> Iterator[int]:
    """Temporarily run the decision-making pieces of ``model`` in float32 inside a low-precision forward:
    every ``Interpreter`` (``forward`` and ``forward_packed``) when ``interpreters``, and the model's
    ``forward_head`` (final norm + classifier) when ``head``. Instance attributes, removed on exit; yields
    how many methods were wrapped.

    This is the measuring tool of ``benchmarks.precision_check``; the permanent form is autocast disabled
    inside ``Interpreter.forward`` / ``Interpreter.forward_packed`` (or ``@float32_forward`` on them) and
    inside ``TimeSformer.forward_head`` (done there).
    """
    targets = []
    if interpreters:
        targets += [(m, name) for m in model.modules() if _is_decision(m)
                    for name in ("forward", "forward_packed")]
    if head and hasattr(model, "forward_head"):
        targets.append((model, "forward_head"))
    targets = [(m, n) for m, n in targets if n not in vars(m)]  # already wrapped: leave it alone
    for m, n in targets:
        setattr(m, n, float32_forward(getattr(m, n)))
    try:
        yield len(targets)
    finally:
        for m, n in targets:
            delattr(m, n)


def _is_decision(module: nn.Module) -> bool:
    """An interpreter: a module whose class sets ``float32_decision`` (``pruning.interpreter.Interpreter``); read
    by name, so this leaf imports no model code."""
    return bool(getattr(type(module), "float32_decision", False))


def _float32_owner(name: str, module: nn.Module) -> bool:
    """Modules whose forward computes in float32 under autocast (see the module docstring): the interpreters
    and the classifier head."""
    return _is_decision(module) or name == "head" or name.endswith(".head")


# float32 data of the parameters an active ``matmul_weights_in`` holds in low precision, by id(parameter):
# what ``float32_weights`` puts back for a float32 computation inside it
_HELD_FLOAT32: Dict[int, torch.Tensor] = {}


@contextlib.contextmanager
def matmul_weights_in(model: nn.Module, dtype: Optional[torch.dtype]) -> Iterator[int]:
    """Hold the weights that autocast would cast to ``dtype`` in ``dtype`` already, for inference inside an
    autocast of that dtype; the float32 parameters are put back on exit. Yields how many tensors were cast.

    Autocast casts every linear / convolution weight (and bias) to bfloat16 on every forward pass: for
    TimeSformer-B that is reading 0.49 GB of float32 and writing 0.24 GB of bfloat16 per clip, measured at
    about 10 % of a bf16 batch-1 forward on this project's CPU. Casting them once gives the same numbers
    (autocast's own cast is a no-op on a tensor already in its dtype) without that traffic. Norms, embeddings
    and the float32 islands (interpreters, classifier head) are left in float32. ``dtype=None`` (fp32) and
    fp32-only models: no change. The parameters stay the same ``nn.Parameter`` objects (only their data is
    swapped), so optimizers and state dicts keep working after exit. Not for training (the optimizer holds
    the float32 tensors), and nothing may run the model without autocast inside it except under
    ``float32_weights``. Entering it costs one cast of the weights (0.1-0.17 s for TimeSformer-B at 1
    thread): enter it once around many forward passes, or outside the timed region.
    """
    if dtype is None:
        yield 0
        return
    skip = set()
    for name, module in model.named_modules():
        if _float32_owner(name, module):
            skip.update(id(m) for m in module.modules())
    saved = []
    try:  # the casts inside too: an error or Ctrl-C half-way still restores what was cast
        with torch.no_grad():
            for module in model.modules():
                if id(module) in skip or not isinstance(module, (nn.Linear, nn.Conv2d, nn.Conv3d)):
                    continue
                for pname in ("weight", "bias"):
                    p = getattr(module, pname, None)
                    if isinstance(p, nn.Parameter) and p.dtype == torch.float32 and id(p) not in _HELD_FLOAT32:
                        saved.append((p, p.data))
                        _HELD_FLOAT32[id(p)] = p.data
                        p.data = p.data.to(dtype)
        yield len(saved)
    finally:
        with torch.no_grad():
            for p, data in saved:
                p.data = data
                del _HELD_FLOAT32[id(p)]


@contextlib.contextmanager
def float32_weights(model: nn.Module) -> Iterator[int]:
    """Inside ``matmul_weights_in``: put the float32 weights of ``model`` back for a float32 computation (the
    per-clip fvcore GFLOPs trace of the multi-view test runs the model without autocast), then the
    low-precision ones again. Swaps tensors only (no cast); outside ``matmul_weights_in`` a no-op. Yields
    how many tensors were swapped."""
    swapped = []
    with torch.no_grad():
        for p in model.parameters():
            data = _HELD_FLOAT32.get(id(p))
            if data is not None and p.data.dtype != data.dtype:
                swapped.append((p, p.data))
                p.data = data
    try:
        yield len(swapped)
    finally:
        with torch.no_grad():
            for p, low in swapped:
                p.data = low


@contextlib.contextmanager
def inference_precision(model: nn.Module, precision: str, device: Union[str, torch.device],
                        key: str = "TEST.PRECISION") -> Iterator[None]:
    """``forward_precision`` with ``model``'s matmul weights held in the autocast dtype
    (``matmul_weights_in``): the inference context of one model at ``precision``; fp32: no change. Enter it
    outside any timed region (entering casts the weights)."""
    with forward_precision(precision, device, key), matmul_weights_in(model, precision_dtype(precision, device, key)):
        yield


def float32_softmax(logits: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Softmax computed in float32 whatever the logits' dtype and any surrounding autocast: (..., K) -> (..., K)."""
    with torch.autocast(device_type=logits.device.type, enabled=False):
        return logits.float().softmax(dim=dim)


def maybe_compile(model: nn.Module, enabled: bool, dynamic: Optional[bool] = None, mode: Optional[str] = None) -> nn.Module:
    """``torch.compile(model)`` when ``enabled`` (TEST.COMPILE), else ``model`` unchanged.

    ``dynamic=None`` lets torch decide (it recompiles once with symbolic shapes after a shape change); the
    packed IA-RED² path changes its shapes with every clip's kept set, so pass ``dynamic=True`` for it or
    expect recompilations. The compiled module shares the parameters of ``model`` (a state_dict saved from
    it carries an ``_orig_mod.`` prefix: save ``model``, not the compiled wrapper).

    Measured here (TimeSformer 768-wide, 6 blocks, 8x224, batch 1, CPU, interleaved, heavily loaded machine:
    ratios only): dense fp32 compiled 1.02x eager (matmul-bound: nothing to gain); dense bf16 compiled 1.5x
    eager bf16 (inductor fuses the casts and elementwise ops around the bf16 matmuls); the packed IA-RED²
    path breaks into 49 graphs (48 breaks at the data-dependent group sizes in ``token_ops``) and ran
    0.7x eager. Compiling took 2-6 minutes per model and precision. Hence off by default.
    """
    if not enabled:
        return model
    logger.info("compiling %s with torch.compile (dynamic=%s, mode=%s); the first forward passes are slow",
                type(model).__name__, dynamic, mode)
    return torch.compile(model, dynamic=dynamic, mode=mode)
