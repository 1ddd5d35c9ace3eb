"""Forward-pass speed of a list of model variants (dense here; the pruning code adds keep-ratio rows).

Each variant is timed on the same random clips, batch size by batch size: ``warmup`` untimed passes, then
``reps`` timed ones; the median and the spread (min, max) are reported per forward pass and per clip.
"""
from __future__ import annotations

import logging
import os
import statistics
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from video_iared.engine.device import device_from_cfg

logger = logging.getLogger(__name__)


@dataclass
class ModelVariant:
    """One row group of the benchmark: a model and a label (e.g. "dense", "iared keep 0.7")."""

    name: str
    model: nn.Module
    note: str = ""


@dataclass
class SpeedResult:
    """Wall-clock seconds of ``reps`` forward passes of one variant at one batch size."""

    name: str
    batch_size: int
    precision: str
    times_s: List[float] = field(default_factory=list)
    cpu_times_s: List[float] = field(default_factory=list)  # process CPU time: cpu/wall ~ cores actually used

    @property
    def median_s(self) -> float:
        return statistics.median(self.times_s)

    @property
    def min_s(self) -> float:
        return min(self.times_s)

    @property
    def max_s(self) -> float:
        return max(self.times_s)

    @property
    def per_clip_s(self) -> float:
        return self.median_s / self.batch_size

    @property
    def cores_used(self) -> float:
        """Median process CPU time over median wall time (NaN when CPU time was not recorded)."""
        return statistics.median(self.cpu_times_s) / self.median_s if self.cpu_times_s else float("nan")

    def line(self) -> str:
        """A machine-readable line for logs and scripts."""
        return (
            f"speed variant={self.name.replace(' ', '_')} batch={self.batch_size} precision={self.precision} "
            f"reps={len(self.times_s)} median_s={self.median_s:.4f} min_s={self.min_s:.4f} "
            f"max_s={self.max_s:.4f} per_clip_s={self.per_clip_s:.4f} clips_per_s={1.0 / self.per_clip_s:.3f} "
            f"cores_used={self.cores_used:.2f}"
        )


def time_once(model: nn.Module, clip: torch.Tensor, precision: str) -> Tuple[float, float]:
    """(wall seconds, process CPU seconds) of one forward pass at ``precision``.

    Low precision: autocast with the matmul weights held in its dtype (``engine.precision.inference_precision``),
    entered per call because a model is timed at several precisions in turn (round-robin); the one-off cast
    of the weights on entering is outside the timed region, as in inference that keeps them cast.
    """
    from video_iared.engine.precision import inference_precision

    sync = torch.cuda.synchronize if clip.is_cuda else (lambda: None)
    with torch.inference_mode(), inference_precision(model, precision, clip.device, key="--precision"):
        sync()
        w0, c0 = time.perf_counter(), time.process_time()
        model(clip)
        sync()
        return time.perf_counter() - w0, time.process_time() - c0


def time_forward(model: nn.Module, clip: torch.Tensor, warmup: int, reps: int, precision: str = "fp32") -> List[float]:
    """Seconds of each of ``reps`` forward passes of ``model`` on ``clip`` (B, C, T, H, W), after ``warmup``."""
    if reps < 1:
        raise ValueError(f"reps must be >= 1, got {reps}")
    model.eval()
    for _ in range(warmup):
        time_once(model, clip, precision)
    return [time_once(model, clip, precision)[0] for _ in range(reps)]


def benchmark_variants(
    variants: Sequence[ModelVariant],
    batch_sizes: Sequence[int],
    num_frames: int,
    crop_size: int,
    in_chans: int = 3,
    warmup: int = 2,
    reps: int = 5,
    precision: str = "fp32",
    device: str = "cpu",
    seed: int = 0,
) -> List[SpeedResult]:
    """Time every variant at every batch size on the same random clips (B, C, T, crop, crop).

    Within a batch size the variants run round-robin (rep 1 of each, rep 2 of each, ...), so a change of
    machine load hits all of them alike and their ratios stay meaningful on a shared machine.
    """
    pairs = [(v.name, v.model, precision) for v in variants]
    return interleaved_speed(pairs, batch_sizes, num_frames, crop_size, in_chans, warmup, reps, device, seed)


def interleaved_speed(
    pairs: Sequence[Tuple[str, nn.Module, str]],
    batch_sizes: Sequence[int],
    num_frames: int,
    crop_size: int,
    in_chans: int,
    warmup: int,
    reps: int,
    device: str,
    seed: int,
) -> List[SpeedResult]:
    """The timing loop shared by the speed benchmarks (also pruning.speed's keep-ratio table): (name, model, precision) pairs, round-robin within
    each batch size on the same seeded random clip; one SpeedResult per pair and batch size, batch-major."""
    if reps < 1:
        raise ValueError(f"reps must be >= 1, got {reps}")
    gen = torch.Generator().manual_seed(seed)
    for _, model, _ in pairs:
        model.to(device).eval()
    results: List[SpeedResult] = []
    for bs in batch_sizes:
        clip = torch.randn(bs, in_chans, num_frames, crop_size, crop_size, generator=gen).to(device)
        for _ in range(warmup):
            for _, model, precision in pairs:
                time_once(model, clip, precision)
        rows = [SpeedResult(name, bs, precision) for name, _, precision in pairs]
        for _ in range(reps):
            for (_, model, precision), row in zip(pairs, rows):
                wall, cpu = time_once(model, clip, precision)
                row.times_s.append(wall)
                row.cpu_times_s.append(cpu)
        for row in rows:
            logger.info(row.line())
        results.extend(rows)
    return results


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


def load_note() -> str:
    """The 1/5/15-minute load average and core count: other processes change the timings."""
    try:
        one, five, fifteen = os.getloadavg()
        return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores, torch threads {torch.get_num_threads()}"
    except OSError:
        return f"load average unavailable; torch threads {torch.get_num_threads()}"


def explicit_attention_variant(variant: ModelVariant) -> ModelVariant:
    """A copy of ``variant`` whose attention runs as explicit q@k^T, softmax, @v matmuls (``fused = False``):
    the straightforward implementation the SDPA path should not be slower than."""
    import copy

    from video_iared.models.attention import Attention

    model = copy.deepcopy(variant.model)
    for m in model.modules():
        if isinstance(m, Attention):
            m.fused = False
    return ModelVariant(f"{variant.name} explicit-attn", model, "reference-style attention")


def build_speed_variants(cfg) -> List[ModelVariant]:
    """The variants of ``cfg`` to time: the dense TimeSformer (random weights: speed does not depend on them).

    The IA-RED² code extends this list with its keep-ratio rows.
    """
    from video_iared.models import TimeSformer, timesformer_kwargs

    return [ModelVariant("dense", TimeSformer(**timesformer_kwargs(cfg)).eval())]


def run_speed_benchmark(
    cfg,
    batch_sizes: Sequence[int] = (1, 4),
    warmup: Optional[int] = None,
    reps: Optional[int] = None,
    precision: str = "fp32",
    variants: Optional[Sequence[ModelVariant]] = None,
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
                                 cfg.DATA.INPUT_CHANNEL_NUM[0], warmup, reps, precision)
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
@dataclass
class PrecisionVariant:
    """A model variant with its fvcore GFLOPs per clip (dense or IA-RED² at a fixed keep ratio)."""

    name: str
    model: nn.Module
    gflops: float = float("nan")


def benchmark_precisions(
    variants: Sequence[PrecisionVariant],
    precisions: Sequence[str],
    batch_sizes: Sequence[int],
    num_frames: int,
    crop_size: int,
    in_chans: int = 3,
    warmup: int = 1,
    reps: int = 3,
    device: str = "cpu",
    seed: int = 0,
) -> List[SpeedResult]:
    """Time every (variant, precision) pair at every batch size on the same random clips (B, C, T, crop, crop).

    Within a batch size all pairs run round-robin (rep 1 of each pair, rep 2 of each, ...), so fp32 and
    bf16, dense and pruned, see the same machine load and their ratios are comparable on a shared machine.
    Results come in the order precision-major: for each batch size, every variant at precisions[0], then
    every variant at precisions[1], ...
    """
    from video_iared.engine.precision import precision_dtype

    for p in precisions:
        precision_dtype(p, device, key="--precision")  # fp16 on the cpu: a clear error before any timing
    pairs = [(v.name, v.model, p) for p in precisions for v in variants]
    return interleaved_speed(pairs, batch_sizes, num_frames, crop_size, in_chans, warmup, reps, device, seed)


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
    """``model`` run with its interpreters and classifier head in float32 (``engine.precision.float32_islands``)
    inside any autocast: the variant that shows what the float32 keep decision costs."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from video_iared.engine.precision import float32_islands

        with float32_islands(self.model):
            return self.model(x)


def build_precision_variants(cfg, keep_rates: Sequence[float] = (0.7,), compile_model: bool = False,
                             with_gflops: bool = True, fp32_islands: bool = False) -> List[PrecisionVariant]:
    """Dense TimeSformer and IA-RED² (keep_ratio mode, packed, the dense weights) at ``keep_rates``, with
    fvcore GFLOPs per clip measured on one random clip (exact: the kept counts are fixed in keep_ratio mode).
    ``compile_model`` wraps each in ``torch.compile`` (``maybe_compile``; dynamic shapes for the pruned ones).
    ``fp32_islands`` adds, for every keep rate, the same model with float32 interpreters and head."""
    from video_iared.engine.precision import maybe_compile
    from video_iared.pruning.speed import build_keep_ratio_models

    dense, pruned = build_keep_ratio_models(cfg, keep_rates)
    out = [PrecisionVariant("dense", dense)] + [PrecisionVariant(f"iared keep {r:g}", m) for r, m in zip(keep_rates, pruned)]
    if fp32_islands:
        out += [PrecisionVariant(f"iared keep {r:g} f32i", Float32IslandsModel(m)) for r, m in zip(keep_rates, pruned)]
    if with_gflops:
        from video_iared.analysis.flops import model_gflops

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
    results = benchmark_precisions(variants, precisions, batch_sizes, cfg.DATA.NUM_FRAMES, cfg.DATA.TEST_CROP_SIZE,
                                   cfg.DATA.INPUT_CHANNEL_NUM[0], warmup, reps, device, cfg.RNG_SEED)
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
