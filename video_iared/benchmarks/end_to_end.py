"""End-to-end multi-view test path, timed per stage: load (decode + transforms), model, cost accounting, writing.

A user testing or running inference on a folder of videos pays for decoding and the test transform (short
side scale, crops), for the model, for the per-view cost accounting and for writing the predictions. This
benchmark runs the test stage's own code on real encoded files: ``MultiViewDataset`` (every video decoded once,
TEST.NUM_ENSEMBLE_VIEWS x TEST.NUM_SPATIAL_CROPS views), ``engine.multiview_test.run_multiview`` with the test
stage's forward functions (dense: one GFLOPs figure; IA-RED²: every view's GFLOPs from its kept sets,
``pruning.exact_cost``) and ``engine.results.write_predictions``. The videos are loaded once, in this process
(no loader workers overlapping the stages), and every variant runs on the same loaded views, so "excluding
decoding" compares exactly the work pruning can save. It reports milliseconds per video for each stage, the
speed-up over dense excluding decoding, and that speed-up's ratio to the fvcore GFLOPs ratio.

Not timed: the fvcore trace the test stage makes once per run (dense: the model's GFLOPs; IA-RED²:
TEST.FVCORE_SAMPLE_CLIPS sampled views), a fixed cost per evaluation, not per video.

``make_video_folder`` writes the synthetic test folder: H.264 videos at 320p (the short side Kinetics is
usually stored at), moving textured shapes on a textured background so the encoder does real work.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from video_iared.build import build_keep_ratio_models
from video_iared.data.annotations import VideoRecord
from video_iared.data.build import ADAPTERS, build_sampler, build_test_transform, reader_fn
from video_iared.data.device_normalize import build_normalizer
from video_iared.data.multiview import MultiViewDataset
from video_iared.engine.amp import amp_dtype
from video_iared.engine.device import device_from_cfg
from video_iared.engine.multiview_test import dense_forward, iared_forward, run_multiview
from video_iared.engine.predict import list_videos
from video_iared.engine.results import write_predictions
from video_iared.profiling.flops import model_gflops
from video_iared.profiling.timing import load_note
from video_iared.pruning.exact_cost import forward_gflops
from video_iared.utils.precision import maybe_compile
from video_iared.utils.video_io import write_video

logger = logging.getLogger(__name__)


def make_video_folder(out_dir: str, num_videos: int = 8, height: int = 320, width: int = 568,
                      num_frames: int = 64, fps: int = 30, gop: int = 30, seed: int = 0) -> List[str]:
    """Write ``num_videos`` H.264 .mp4 files (uint8 RGB, ``height`` x ``width``, ``num_frames`` frames) into
    ``out_dir`` and return their paths. Existing files of the same name and size are kept (re-runs are cheap)."""
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    yy, xx = np.mgrid[0:height, 0:width]
    for i in range(num_videos):
        path = os.path.join(out_dir, f"video_{i:03d}_{height}p.mp4")
        paths.append(path)
        if os.path.isfile(path) and os.path.getsize(path) > 0:
            continue
        rng = np.random.default_rng(seed + i)
        # a smooth, coloured background pattern (drifting), plus a few moving rectangles
        phase = rng.uniform(0, 2 * np.pi, 3)
        frames = np.empty((num_frames, height, width, 3), dtype=np.uint8)
        bs = max(4, min(height, width) // 5)  # box side: 64 px at 320p
        boxes = [(rng.integers(0, height - bs), rng.integers(0, width - bs), rng.integers(-6, 7), rng.integers(-6, 7),
                  rng.integers(40, 256, 3)) for _ in range(3)]
        for t in range(num_frames):
            for c in range(3):
                frames[t, :, :, c] = (127 + 60 * np.sin(xx / (17.0 + 5 * c) + yy / 23.0 + phase[c] + 0.1 * t)).astype(np.uint8)
            for y0, x0, vy, vx, col in boxes:
                y = int(np.clip(y0 + vy * t, 0, height - bs))
                x = int(np.clip(x0 + vx * t, 0, width - bs))
                frames[t, y:y + bs, x:x + bs] = col
        write_video(path, frames, fps=fps, gop=gop)
    return paths


@dataclass
class EndToEndResult:
    """Stage times (seconds) of one variant and precision over the folder; ``views`` per video."""

    name: str
    precision: str
    batch_size: int  # videos per batch
    views: int = 1
    gflops_per_view: float = float("nan")  # mean over the views run (fvcore's count, 1 MAC = 1 flop)
    load_s: List[float] = field(default_factory=list)  # per video: decode + transforms of all its views
    run_s: List[float] = field(default_factory=list)  # per batch: run_multiview (forward, cost, records)
    cost_s: List[float] = field(default_factory=list)  # per batch: the trace-free cost accounting alone
    write_s: float = 0.0  # writing the predictions files of the whole folder

    @property
    def videos(self) -> int:
        return len(self.load_s)

    def _per_video_ms(self, seconds: float) -> float:
        return 1000.0 * seconds / max(self.videos, 1)

    @property
    def load_ms(self) -> float:
        return self._per_video_ms(sum(self.load_s))

    @property
    def cost_ms(self) -> float:
        return self._per_video_ms(sum(self.cost_s))

    @property
    def model_ms(self) -> float:
        return self._per_video_ms(sum(self.run_s) - sum(self.cost_s))

    @property
    def write_ms(self) -> float:
        return self._per_video_ms(self.write_s)

    @property
    def after_decode_ms(self) -> float:
        """Everything but decoding: model, cost accounting and writing, per video."""
        return self.model_ms + self.cost_ms + self.write_ms

    @property
    def total_ms(self) -> float:
        return self.load_ms + self.after_decode_ms

    @property
    def videos_per_s(self) -> float:
        return 1000.0 / self.total_ms

    def line(self, dense: Optional["EndToEndResult"] = None) -> str:
        extra = ""
        if dense is not None:
            speedup, gratio = speedups(self, dense)
            extra = f" speedup_after_decode={speedup:.3f} gflops_ratio={gratio:.3f} speedup_to_gflops_ratio={speedup / gratio:.3f}"
        return (f"end_to_end variant={self.name.replace(' ', '_')} precision={self.precision} batch={self.batch_size} "
                f"videos={self.videos} views={self.views} gflops_per_view={self.gflops_per_view:.4f} "
                f"load_ms={self.load_ms:.1f} model_ms={self.model_ms:.1f} cost_ms={self.cost_ms:.2f} "
                f"write_ms={self.write_ms:.2f} total_ms={self.total_ms:.1f} videos_per_s={self.videos_per_s:.3f} "
                f"decode_share={self.load_ms / self.total_ms:.3f}{extra}")


def speedups(r: EndToEndResult, dense: EndToEndResult) -> Tuple[float, float]:
    """(speed-up over ``dense`` excluding decoding, dense GFLOPs / ``r``'s GFLOPs per view)."""
    return dense.after_decode_ms / r.after_decode_ms, dense.gflops_per_view / r.gflops_per_view


class _CostTimer:
    """Wraps a test forward function; after each chunk it runs the trace-free cost accounting once more, timed,
    and subtracts that repeat from the chunk's time (so ``run_s`` holds the test path's own work only)."""

    def __init__(self, forward_fn: Callable, device: torch.device):
        self.forward_fn, self.device = forward_fn, device
        self.cost_s = 0.0  # the accounting, measured by its repeat
        self.repeat_s = 0.0  # the repeat's whole time (sync included), taken out of the run time

    def __call__(self, model: nn.Module, views: torch.Tensor):
        out = self.forward_fn(model, views)
        if out.decisions is not None:  # an IA-RED² forward: its cost came from the kept sets
            t0 = time.perf_counter()
            _sync(self.device)
            t1 = time.perf_counter()
            forward_gflops(model, out.decisions, views.shape)
            _sync(self.device)
            t2 = time.perf_counter()
            self.cost_s += t2 - t1
            self.repeat_s += t2 - t0
        return out


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def load_batches(dataset, batch_size: int) -> Tuple[List[List[Dict]], List[float]]:
    """Every item of ``dataset`` (decode + transforms, in this process), in batches; seconds per item."""
    batches, seconds = [], []
    for start in range(0, len(dataset), batch_size):
        batch = []
        for i in range(start, min(start + batch_size, len(dataset))):
            t0 = time.perf_counter()
            batch.append(dataset[i])
            seconds.append(time.perf_counter() - t0)
        batches.append(batch)
    return batches, seconds


def run_end_to_end(
    dataset,
    variants: Sequence[Tuple[str, nn.Module, str, Callable]],
    num_classes: int,
    out_dir: str,
    batch_size: int = 4,
    device: str = "cpu",
    views_per_chunk: int = 16,
    ensemble_method: str = "mean_softmax",
    warmup_batches: int = 1,
    normalizer: Optional[Callable] = None,
) -> List[EndToEndResult]:
    """The multi-view test path over ``dataset`` (a ``MultiViewDataset``) for every ``(name, model, precision,
    forward_fn)`` variant (``forward_fn``: the test stage's, e.g. ``multiview_test.iared_forward()``).

    The videos are loaded once; the variants then take turns batch by batch on the same loaded views (so
    each is timed under the same machine load), each batch through ``run_multiview``; each variant's
    predictions are written to ``out_dir/<variant>_<precision>`` (``.pt`` + ``.csv``) at the end, timed.
    ``warmup_batches`` untimed batches per variant come first. ``normalizer``: run_multiview's (uint8 views from
    a dataset built with DATA.NORMALIZE_ON_DEVICE, normalised on ``device`` inside the timed run).
    """
    dev = torch.device(device)
    batches, load_s = load_batches(dataset, batch_size)
    views = getattr(dataset, "num_views", 1)
    results = [EndToEndResult(n, p, batch_size, views, load_s=list(load_s)) for n, _, p, _ in variants]
    runs = [(m.to(dev).eval(), amp_dtype(dev, p), _CostTimer(fn, dev)) for _, m, p, fn in variants]
    for m, dtype, timed in runs:
        for batch in batches[:warmup_batches]:
            run_multiview(m, [batch], dev, views_per_chunk, ensemble_method, dtype, timed.forward_fn, False, normalizer)
    records: List[List[Dict]] = [[] for _ in variants]
    for batch in batches:
        for (m, dtype, timed), res, recs in zip(runs, results, records):
            repeat0, cost0 = timed.repeat_s, timed.cost_s
            _sync(dev)
            t0 = time.perf_counter()
            recs += run_multiview(m, [batch], dev, views_per_chunk, ensemble_method, dtype, timed, False, normalizer)
            _sync(dev)
            res.run_s.append(time.perf_counter() - t0 - (timed.repeat_s - repeat0))
            res.cost_s.append(timed.cost_s - cost0)
    os.makedirs(out_dir, exist_ok=True)
    for res, recs in zip(results, records):
        gflops = [r["gflops"] for r in recs if r["error"] is None]  # each video's mean over its (equally many) views
        res.gflops_per_view = float(np.mean(gflops)) if gflops else float("nan")
        t0 = time.perf_counter()
        write_predictions(os.path.join(out_dir, f"{res.name.replace(' ', '_')}_{res.precision}"), recs,
                          num_classes, None, 5, ensemble_method)
        res.write_s = time.perf_counter() - t0
    return results


def format_end_to_end_table(results: Sequence[EndToEndResult]) -> str:
    """ms per video of each stage, videos/s, and (vs the first row, dense) the speed-up excluding decoding and its
    ratio to the GFLOPs ratio."""
    rows = [f"{'variant':<16} {'prec':>5} {'videos':>6} {'views':>5} {'GFLOPs/view':>11} {'load ms':>8} "
            f"{'model ms':>9} {'cost ms':>8} {'write ms':>8} {'total ms':>9} {'videos/s':>8} {'speed-up*':>9} "
            f"{'GFLOPs x':>8} {'ratio':>6}"]
    dense = {r.precision: r for r in results if r.name == "dense"}
    for r in results:
        base = dense.get(r.precision)
        speedup, gratio = speedups(r, base) if base is not None else (float("nan"), float("nan"))
        rows.append(f"{r.name:<16} {r.precision:>5} {r.videos:>6} {r.views:>5} {r.gflops_per_view:>11.3f} "
                    f"{r.load_ms:>8.1f} {r.model_ms:>9.1f} {r.cost_ms:>8.2f} {r.write_ms:>8.2f} {r.total_ms:>9.1f} "
                    f"{r.videos_per_s:>8.3f} {speedup:>8.2f}x {gratio:>7.2f}x {speedup / gratio:>6.2f}")
    rows.append("* speed-up over dense (same precision) excluding decoding: model + cost accounting + writing; "
                "ratio = speed-up / GFLOPs ratio")
    return "\n".join(rows)


def _folder_dataset(cfg, paths: Sequence[str]):
    """The test stage's ``MultiViewDataset`` over ``paths`` (label 0: the benchmark times, it does not score)."""
    t = cfg.TEST
    records = [VideoRecord(p, 0, f"{p}") for p in paths]
    return MultiViewDataset(records, reader_fn(cfg), build_sampler(cfg, ADAPTERS[t.DATASET]),
                            build_test_transform(cfg, t.NUM_SPATIAL_CROPS), t.NUM_ENSEMBLE_VIEWS)


def end_to_end_from_cfg(cfg, folder: str, num_videos: int = 8, precisions: Sequence[str] = ("fp32",),
                        keep_rates: Sequence[float] = (0.7, 0.5), batch_size: int = 4, warmup_batches: int = 1,
                        compile_model: bool = False) -> List[EndToEndResult]:
    """The end-to-end table for cfg's model (dense, and IA-RED² in keep_ratio mode at ``keep_rates``; random
    weights — speed does not depend on them) at every precision, on ``num_videos`` 320p videos written into
    ``folder`` (or the videos already there, when ``num_videos`` is 0). The last line:
    ``end_to_end_summary min_speedup_to_gflops_ratio=<float> ...``."""
    d, t = cfg.DATA, cfg.TEST
    if num_videos > 0:
        span = int(d.NUM_FRAMES * d.SAMPLING_RATE)
        # 10 s at 30 fps, like a Kinetics clip (longer when one clip spans more)
        paths = make_video_folder(folder, num_videos, num_frames=max(span, 300), seed=cfg.RNG_SEED)
    else:
        paths = list_videos(folder)
    device = device_from_cfg(cfg)
    dense, pruned = build_keep_ratio_models(cfg, keep_rates)
    probe = torch.zeros(1, d.INPUT_CHANNEL_NUM[0], d.NUM_FRAMES, d.TEST_CROP_SIZE, d.TEST_CROP_SIZE)
    models = [("dense", dense, dense_forward(model_gflops(dense, probe)))]  # the test stage's one trace, untimed
    models += [(f"iared keep {r:g}", m, iared_forward()) for r, m in zip(keep_rates, pruned)]
    variants = [(n, maybe_compile(m, compile_model, dynamic=True if n != "dense" else None), p, fn)
                for p in precisions for n, m, fn in models]
    dataset = _folder_dataset(cfg, paths)
    print(f"end-to-end multi-view test path: {len(paths)} videos in {folder}, {d.NUM_FRAMES} frames x rate "
          f"{d.SAMPLING_RATE}, {t.NUM_ENSEMBLE_VIEWS} clips x {t.NUM_SPATIAL_CROPS} crops of {d.TEST_CROP_SIZE}, "
          f"batch {batch_size} videos, backend {d.DECODING_BACKEND}, device {device.type}, normalised "
          f"{'on the device (in model ms)' if d.NORMALIZE_ON_DEVICE else 'in the transform (in load ms)'}; "
          f"before: {load_note()}",
          flush=True)
    c0, w0 = time.process_time(), time.perf_counter()
    results = run_end_to_end(dataset, variants, cfg.MODEL.NUM_CLASSES, os.path.join(folder, "predictions"),
                             batch_size, device.type, t.VIEWS_PER_CHUNK, t.ENSEMBLE_METHOD, warmup_batches,
                             build_normalizer(cfg))
    ratio = (time.process_time() - c0) / max(time.perf_counter() - w0, 1e-9)
    print(format_end_to_end_table(results), flush=True)
    print(f"after: {load_note()}; process cpu/wall {ratio:.2f}", flush=True)
    print(summary_lines(results), flush=True)
    return results


def summary_lines(results: Sequence[EndToEndResult]) -> str:
    """One ``end_to_end ...`` line per variant, then ``end_to_end_summary min_speedup_to_gflops_ratio=<float>``
    (the smallest ratio over the pruned variants, vs dense at the same precision)."""
    dense = {r.precision: r for r in results if r.name == "dense"}
    lines, ratios = [], []
    for r in results:
        base = dense.get(r.precision) if r.name != "dense" else None
        lines.append(r.line(base))
        if base is not None:
            speedup, gratio = speedups(r, base)
            ratios.append(speedup / gratio)
    worst = min(ratios) if ratios else float("nan")
    lines.append(f"end_to_end_summary variants={len(results)} min_speedup_to_gflops_ratio={worst:.3f}")
    return "\n".join(lines)
