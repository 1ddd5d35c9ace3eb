"""Forward-pass speed of a list of model variants (dense here; the pruning code adds keep-ratio rows).

Each variant is timed on the same random clips, batch size by batch size: ``warmup`` untimed passes, then
``reps`` timed ones; the median and the spread (min, max) are reported per forward pass and per clip.
"""
from __future__ import annotations

import contextlib
import logging
import os
import statistics
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

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


def _autocast(precision: str, device: torch.device):
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    return torch.autocast(device.type, dtype=dtype)


def _time_once(model: nn.Module, clip: torch.Tensor, precision: str) -> Tuple[float, float]:
    """(wall seconds, process CPU seconds) of one forward pass."""
    sync = torch.cuda.synchronize if clip.is_cuda else (lambda: None)
    with torch.inference_mode(), _autocast(precision, clip.device):
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
        _time_once(model, clip, precision)
    return [_time_once(model, clip, precision)[0] for _ in range(reps)]


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
    if reps < 1:
        raise ValueError(f"reps must be >= 1, got {reps}")
    results = []
    gen = torch.Generator().manual_seed(seed)
    for v in variants:
        v.model.to(device).eval()
    for bs in batch_sizes:
        clip = torch.randn(bs, in_chans, num_frames, crop_size, crop_size, generator=gen).to(device)
        for _ in range(warmup):
            for v in variants:
                _time_once(v.model, clip, precision)
        rows = [SpeedResult(v.name, bs, precision) for v in variants]
        for _ in range(reps):
            for v, row in zip(variants, rows):
                wall, cpu = _time_once(v.model, clip, precision)
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
