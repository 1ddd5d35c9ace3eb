"""Speed tables of model variants (dense here; ``keep_ratio_speed`` adds the keep-ratio rows), timed by ``profiling.timing``.

Each variant is timed on the same random clips, batch size by batch size: ``warmup`` untimed passes, then
``reps`` timed ones; the median and the spread (min, max) are reported per forward pass and per clip.
"""
from __future__ import annotations

import logging
import time
from typing import Dict, List, Optional, Sequence

import torch
from torch import nn

from video_iared.benchmarks.variant import Variant
from video_iared.build import build_keep_ratio_models, timesformer_kwargs
from video_iared.engine.device import device_from_cfg
from video_iared.models.attention import Attention
from video_iared.models import TimeSformer
from video_iared.profiling.flops import model_gflops
from video_iared.profiling.timing import SpeedResult, interleaved_speed, load_note
from video_iared.utils.precision import float32_islands, maybe_compile, precision_dtype

logger = logging.getLogger(__name__)


def benchmark_variants(
    variants: Sequence[Variant],
    batch_sizes: Sequence[int],
    num_frames: int,
    crop_size: int,
    in_chans: int = 3,
    warmup: int = 1,
    reps: int = 3,
    precisions: Sequence[str] = ("fp32",),
    device: str = "cpu",
    seed: int = 0,
) -> List[SpeedResult]:
    """Time every (variant, precision) pair at every batch size on the same random clips (B, C, T, crop, crop).

    Within a batch size all pairs run round-robin (rep 1 of each pair, rep 2 of each, ...), so fp32 and
    bf16, dense and pruned, see the same machine load and their ratios are comparable on a shared machine.
    Results come in the order precision-major: for each batch size, every variant at precisions[0], then
    every variant at precisions[1], ...
    """
    for p in precisions:
        precision_dtype(p, device, key="--precision")  # fp16 on the cpu: a clear error before any timing
    pairs = [(v.name, v.model, p) for p in precisions for v in variants]
    return interleaved_speed(pairs, batch_sizes, num_frames, crop_size, in_chans, warmup, reps, device, seed)


def format_speed_table(results: Sequence[SpeedResult]) -> str:
    """A table of the results; speed-up is relative to the first variant at the same batch size."""
    first: Dict[int, float] = {}
    rows = [f"{'variant':<24} {'batch':>5} {'prec':>5} {'median s':>9} {'min s':>8} {'max s':>8} "
            f"{'s/clip':>8} {'cores':>5} {'speed-up':>8}"]
    for r in results:
        base = first.setdefault(r.batch_size, r.median_s)
        rows.append(f"{r.name:<24} {r.batch_size:>5} {r.precision:>5} {r.median_s:>9.3f} {r.min_s:>8.3f} "
                    f"{r.max_s:>8.3f} {r.per_clip_s:>8.3f} {r.cores_used:>5.2f} {base / r.median_s:>7.2f}x")
    return "\n".join(rows)


def explicit_attention_variant(variant: Variant) -> Variant:
    """A copy of ``variant`` whose attention runs as explicit q@k^T, softmax, @v matmuls (``fused = False``):
    the straightforward implementation the SDPA path should not be slower than."""
    import copy

    model = copy.deepcopy(variant.model)
    for m in model.modules():
        if isinstance(m, Attention):
            m.fused = False
    return Variant(f"{variant.name} explicit-attn", model, "reference-style attention")


def build_speed_variants(cfg) -> List[Variant]:
    """The variants of ``cfg`` to time: the dense TimeSformer (random weights: speed does not depend on them).

    The IA-RED² code extends this list with its keep-ratio rows.
    """
    return [Variant("dense", TimeSformer(**timesformer_kwargs(cfg)).eval())]


def run_speed_benchmark(
    cfg,
    batch_sizes: Sequence[int] = (1, 4),
    warmup: Optional[int] = None,
    reps: Optional[int] = None,
    precision: str = "fp32",
    variants: Optional[Sequence[Variant]] = None,
    with_explicit: bool = False,
) -> List[SpeedResult]:
    """tools/benchmark.py --speed: time ``variants`` (default: ``build_speed_variants(cfg)``) at test size;
    ``with_explicit`` adds the explicit-matmul-attention copy of the first variant."""
    variants = list(variants) if variants is not None else build_speed_variants(cfg)
    if with_explicit:
        variants.append(explicit_attention_variant(variants[0]))
    warmup = cfg.BENCHMARK.WARMUP_ITERS if warmup is None else warmup
    reps = cfg.BENCHMARK.NUM_ITERS if reps is None else reps
    logger.info("speed benchmark: %d frames x %d crop, warm-up %d, reps %d, %s; before: %s",
                cfg.DATA.NUM_FRAMES, cfg.DATA.TEST_CROP_SIZE, warmup, reps, precision, load_note())
    results = benchmark_variants(variants, batch_sizes, cfg.DATA.NUM_FRAMES, cfg.DATA.TEST_CROP_SIZE,
                                 cfg.DATA.INPUT_CHANNEL_NUM[0], warmup, reps, [precision])
    logger.info("after: %s", load_note())
    return results


def benchmark_from_cfg(cfg) -> List[SpeedResult]:
    """``BENCHMARK.TYPE speed`` in run_net: batch sizes 1 and TEST.BATCH_SIZE, fp32 or TEST.PRECISION; prints
    the table."""
    batch_sizes = sorted({1, int(cfg.TEST.BATCH_SIZE)})
    results = run_speed_benchmark(cfg, batch_sizes, precision=cfg.TEST.PRECISION)
    print(format_speed_table(results), flush=True)
    return results


# ----------------------------------------------------------------------------- precision column (issue 10)
def format_precision_table(results: Sequence[SpeedResult], gflops: Dict[str, float]) -> str:
    """ms/clip and clips/s per (variant, precision, batch); speed-up against the first row of the same batch
    size (dense fp32 when the variants start with dense and the precisions with fp32); GFLOPs per clip."""
    first: Dict[int, float] = {}
    rows = [f"{'variant':<18} {'prec':>5} {'GFLOPs':>8} {'batch':>5} {'ms/clip':>9} {'min ms':>8} {'max ms':>8} "
            f"{'clips/s':>8} {'cpu/wall':>8} {'speed-up':>8}"]
    for r in results:
        base = first.setdefault(r.batch_size, r.per_clip_s)
        g = gflops.get(r.name, float("nan"))
        rows.append(f"{r.name:<18} {r.precision:>5} {g:>8.2f} {r.batch_size:>5} {1000 * r.per_clip_s:>9.1f} "
                    f"{1000 * r.min_s / r.batch_size:>8.1f} {1000 * r.max_s / r.batch_size:>8.1f} "
                    f"{1.0 / r.per_clip_s:>8.3f} {r.cores_used:>8.2f} {base / r.per_clip_s:>7.2f}x")
    return "\n".join(rows)


class Float32IslandsModel(nn.Module):
    """``model`` run with its interpreters and classifier head in float32 (``utils.precision.float32_islands``)
    inside any autocast: the variant that shows what the float32 keep decision costs."""

    returns_decisions = True  # passed through: fvcore's trace sees the decisions' work (profiling.flops)

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, return_decisions: bool = False):
        with float32_islands(self.model):
            return self.model(x, return_decisions=return_decisions)


def build_precision_variants(cfg, keep_rates: Sequence[float] = (0.7,), compile_model: bool = False,
                             with_gflops: bool = True, fp32_islands: bool = False) -> List[Variant]:
    """Dense TimeSformer and IA-RED² (keep_ratio mode, packed, the dense weights) at ``keep_rates``, with
    fvcore GFLOPs per clip measured on one random clip (exact: the kept counts are fixed in keep_ratio mode).
    ``compile_model`` wraps each in ``torch.compile`` (``maybe_compile``; dynamic shapes for the pruned ones).
    ``fp32_islands`` adds, for every keep rate, the same model with float32 interpreters and head."""
    dense, pruned = build_keep_ratio_models(cfg, keep_rates)
    out = [Variant("dense", dense)] + [Variant(f"iared keep {r:g}", m, keep_ratio=r) for r, m in zip(keep_rates, pruned)]
    if fp32_islands:
        out += [Variant(f"iared keep {r:g} f32i", Float32IslandsModel(m), keep_ratio=r) for r, m in zip(keep_rates, pruned)]
    if with_gflops:
        probe = torch.randn(1, cfg.DATA.INPUT_CHANNEL_NUM[0], cfg.DATA.NUM_FRAMES, cfg.DATA.TEST_CROP_SIZE,
                            cfg.DATA.TEST_CROP_SIZE, generator=torch.Generator().manual_seed(cfg.RNG_SEED))
        for v in out:
            v.gflops = model_gflops(v.model, probe)
    for v in out:
        v.model = maybe_compile(v.model, compile_model, dynamic=None if v.name == "dense" else True)
    return out


def precision_speed_from_cfg(cfg, precisions: Sequence[str] = ("fp32", "bf16"), batch_sizes: Sequence[int] = (1,),
                             keep_rates: Sequence[float] = (0.7,), warmup: int = 1, reps: int = 3,
                             compile_model: bool = False, fp32_islands: bool = False) -> List[SpeedResult]:
    """tools/benchmark.py --speed --precision fp32 bf16: dense and IA-RED² at every precision, interleaved;
    prints the table, the machine load before/after, the process CPU/wall ratio of the whole run, and the
    ``precision_speedups ...`` line (each row's speed-up against dense fp32 at batch 1)."""
    variants = build_precision_variants(cfg, keep_rates, compile_model, fp32_islands=fp32_islands)
    logger.info("precision speed benchmark: %d frames x %d crop, precisions %s, keep ratios %s, warm-up %d, "
                "reps %d (interleaved), compile %s; before: %s", cfg.DATA.NUM_FRAMES, cfg.DATA.TEST_CROP_SIZE,
                list(precisions), list(keep_rates), warmup, reps, compile_model, load_note())
    c0, w0 = time.process_time(), time.perf_counter()
    device = device_from_cfg(cfg).type  # the one device rule: DEVICE auto is cuda when present
    results = benchmark_variants(variants, batch_sizes, cfg.DATA.NUM_FRAMES, cfg.DATA.TEST_CROP_SIZE,
                                 cfg.DATA.INPUT_CHANNEL_NUM[0], warmup, reps, precisions, device, cfg.RNG_SEED)
    ratio = (time.process_time() - c0) / max(time.perf_counter() - w0, 1e-9)
    print(format_precision_table(results, {v.name: v.gflops for v in variants}), flush=True)
    print(f"after: {load_note()}; process cpu/wall over the run {ratio:.2f}", flush=True)
    for bs in batch_sizes:
        rows = [r for r in results if r.batch_size == bs]
        base = next((r for r in rows if r.name == "dense" and r.precision == "fp32"), None)
        if base is not None:
            print(f"precision_speedups batch={bs} " + " ".join(
                f"{r.name.replace(' ', '_')}_{r.precision}={base.per_clip_s / r.per_clip_s:.3f}" for r in rows), flush=True)
    return results
