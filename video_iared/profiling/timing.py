"""The one timing loop: wall-clock and process CPU seconds of forward passes, round-robin over models.

Takes models, imports no model code: every speed table (``benchmarks``), the ONNX comparison (``deploy``) and the
method benchmark time their forwards here (``round_robin`` on given clips, ``interleaved_speed`` on seeded random
ones). Low precision is entered per call (``utils.precision``).
"""
from __future__ import annotations

import logging
import math
import os
import statistics
import time
from dataclasses import dataclass, field
from typing import List, Sequence, Tuple

import torch
from torch import nn
from tqdm import tqdm

from video_iared.profiling.memory import PeakMemory
from video_iared.utils.precision import inference_precision

logger = logging.getLogger(__name__)


@dataclass
class SpeedResult:
    """Wall-clock seconds of ``reps`` forward passes of one variant at one batch size."""

    name: str
    batch_size: int
    precision: str
    times_s: List[float] = field(default_factory=list)
    cpu_times_s: List[float] = field(default_factory=list)  # process CPU time: cpu/wall ~ cores actually used
    peak_mem_mb: float = math.nan  # round_robin(memory=True): the first timed pass's peak above the level before it

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

    Low precision: autocast with the matmul weights held in its dtype (``utils.precision.inference_precision``),
    entered per call because a model is timed at several precisions in turn (round-robin); the one-off cast
    of the weights on entering is outside the timed region, as in inference that keeps them cast.
    """
    sync = torch.cuda.synchronize if clip.is_cuda else (lambda: None)
    with torch.inference_mode(), inference_precision(model, precision, clip.device, key="--precision"):
        sync()
        w0, c0 = time.perf_counter(), time.process_time()
        model(clip)
        sync()
        return time.perf_counter() - w0, time.process_time() - c0


def round_robin(pairs: Sequence[Tuple[str, nn.Module, str]], clip: torch.Tensor, warmup: int, reps: int,
                memory: bool = False, progress: bool = False) -> List[SpeedResult]:
    """Time (name, model, precision) pairs on one clip (B, C, T, H, W): ``warmup`` untimed rounds, then ``reps``
    timed rounds, each round one pass of every pair in turn (so a change of machine load hits all of them alike).

    ``memory``: the first timed pass of each pair also records its peak memory (``profiling.memory.PeakMemory``,
    ``SpeedResult.peak_mem_mb``). ``progress``: tqdm bars for the warm-up and the timed rounds.
    """
    bs = clip.shape[0]
    for _ in tqdm(range(warmup), desc=f"warm-up batch {bs}", leave=False, dynamic_ncols=True,
                  disable=not (progress and warmup)):
        for _, model, precision in pairs:
            time_once(model, clip, precision)
    rows = [SpeedResult(name, bs, precision) for name, _, precision in pairs]
    for rep in tqdm(range(reps), desc=f"timing batch {bs} (interleaved)", dynamic_ncols=True, disable=not progress):
        for (_, model, precision), row in zip(pairs, rows):
            if memory and rep == 0:
                with PeakMemory(clip.device) as mem:
                    wall, cpu = time_once(model, clip, precision)
                row.peak_mem_mb = mem.peak_mb
            else:
                wall, cpu = time_once(model, clip, precision)
            row.times_s.append(wall)
            row.cpu_times_s.append(cpu)
    return rows


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
    """The speed tables' form of ``round_robin``: the models moved to ``device`` in eval mode, then at every batch
    size a seeded random clip (B, in_chans, num_frames, crop, crop) and its warm-up and timed rounds, each result
    logged as its ``speed ...`` line; one SpeedResult per pair and batch size, batch-major."""
    if reps < 1:
        raise ValueError(f"reps must be >= 1, got {reps}")
    gen = torch.Generator().manual_seed(seed)
    for _, model, _ in pairs:
        model.to(device).eval()
    results: List[SpeedResult] = []
    for bs in batch_sizes:
        clip = torch.randn(bs, in_chans, num_frames, crop_size, crop_size, generator=gen).to(device)
        rows = round_robin(pairs, clip, warmup, reps)
        for row in rows:
            logger.info(row.line())
        results.extend(rows)
    return results


def load_note() -> str:
    """The 1/5/15-minute load average and core count: other processes change the timings."""
    try:
        one, five, fifteen = os.getloadavg()
        return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores, torch threads {torch.get_num_threads()}"
    except OSError:
        return f"load average unavailable; torch threads {torch.get_num_threads()}"
