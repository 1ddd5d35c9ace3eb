"""End-to-end batch clip inference throughput: decode + transforms + model, timed per stage.

A user running batch inference over a folder of videos pays for decoding, for the test transform (short
side scale, crop, normalise) and for the model. This benchmark runs that pipeline on real encoded files —
the data package's reader, ``ClipSampler`` and ``TestTransform``, then the model in batches — in one process,
stage after stage, so each stage's time is its own (no loader workers overlapping them), and reports
milliseconds per clip for each stage and clips/s overall, per model variant and precision. With
DATA.NORMALIZE_ON_DEVICE the transform stops at uint8 and the normalisation runs on the model's device, timed
with the forward (``model_ms``), as a loader handing uint8 clips to the device would.

``make_video_folder`` writes the synthetic test folder: H.264 videos at 320p (the short side Kinetics is
usually stored at), moving textured shapes on a textured background so the encoder does real work.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from typing import List, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from video_iared.engine.device import device_from_cfg
from video_iared.engine.precision import inference_precision

logger = logging.getLogger(__name__)


def make_video_folder(out_dir: str, num_videos: int = 8, height: int = 320, width: int = 568,
                      num_frames: int = 64, fps: int = 30, gop: int = 30, seed: int = 0) -> List[str]:
    """Write ``num_videos`` H.264 .mp4 files (uint8 RGB, ``height`` x ``width``, ``num_frames`` frames) into
    ``out_dir`` and return their paths. Existing files of the same name and size are kept (re-runs are cheap)."""
    from video_iared.utils.video_io import write_video

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
    """Per-clip stage times (seconds) of one variant and precision over the folder."""

    name: str
    precision: str
    batch_size: int
    decode_s: List[float] = field(default_factory=list)  # per clip: open + seek + decode the clip's frames
    transform_s: List[float] = field(default_factory=list)  # per clip: scale + crop (+ normalise in the worker)
    model_s: List[float] = field(default_factory=list)  # per batch: (the on-device normalisation and) one forward
    clips_in_batch: List[int] = field(default_factory=list)

    @property
    def clips(self) -> int:
        return len(self.decode_s)

    @property
    def decode_ms(self) -> float:
        return 1000.0 * sum(self.decode_s) / max(self.clips, 1)

    @property
    def transform_ms(self) -> float:
        return 1000.0 * sum(self.transform_s) / max(self.clips, 1)

    @property
    def model_ms(self) -> float:
        return 1000.0 * sum(self.model_s) / max(sum(self.clips_in_batch), 1)

    @property
    def total_ms(self) -> float:
        return self.decode_ms + self.transform_ms + self.model_ms

    @property
    def clips_per_s(self) -> float:
        return 1000.0 / self.total_ms

    def line(self) -> str:
        return (f"end_to_end variant={self.name.replace(' ', '_')} precision={self.precision} batch={self.batch_size} "
                f"clips={self.clips} decode_ms={self.decode_ms:.1f} transform_ms={self.transform_ms:.1f} "
                f"model_ms={self.model_ms:.1f} total_ms={self.total_ms:.1f} clips_per_s={self.clips_per_s:.3f} "
                f"decode_share={(self.decode_ms + self.transform_ms) / self.total_ms:.3f}")


def _load_clip(path: str, backend: str, sampler, transform) -> Tuple[torch.Tensor, float, float]:
    """(clip (C, T, S, S), decode seconds, transform seconds) of the centre clip of ``path``."""
    from video_iared.data.readers import build_reader

    t0 = time.perf_counter()
    with build_reader(path, backend) as reader:
        idx = sampler(reader.num_frames, 0, 1, fps=reader.fps)
        frames = reader.get_frames(idx)
    t1 = time.perf_counter()
    clip = transform(frames)[0]  # (1 crop, C, T, S, S) -> (C, T, S, S)
    return clip, t1 - t0, time.perf_counter() - t1


def run_end_to_end(
    paths: Sequence[str],
    variants: Sequence[Tuple[str, nn.Module, str]],
    num_frames: int = 8,
    sampling_rate: int = 8,
    crop_size: int = 224,
    mean: Sequence[float] = (0.45, 0.45, 0.45),
    std: Sequence[float] = (0.225, 0.225, 0.225),
    batch_size: int = 4,
    backend: str = "pyav",
    device: str = "cpu",
    warmup_batches: int = 1,
    normalize_on_device: bool = False,
) -> List[EndToEndResult]:
    """Batch clip inference over ``paths`` for every ``(name, model, precision)`` variant.

    Each video gives its centre clip (dense sampling, one clip, one centre crop). The variants take turns
    batch by batch (the same batch decoded again for each, so decode time is measured for every variant under
    the same machine load). ``warmup_batches`` untimed forward passes per variant come first.
    ``normalize_on_device``: the transform gives uint8 clips, normalised on ``device`` inside the timed forward.
    """
    from video_iared.data.device_normalize import ClipNormalizer, as_normalizer
    from video_iared.data.sampling import ClipSampler
    from video_iared.data.transforms import TestTransform

    sampler = ClipSampler("dense", num_frames, sampling_rate)
    transform = TestTransform(crop_size, 1, mean, std, normalize=not normalize_on_device)
    normalize = as_normalizer(ClipNormalizer(mean, std) if normalize_on_device else None)
    dev = torch.device(device)
    results = [EndToEndResult(n, p, batch_size) for n, _, p in variants]
    for _, m, _ in variants:
        m.to(dev).eval()
    batches = [list(paths[i:i + batch_size]) for i in range(0, len(paths), batch_size)]
    if warmup_batches:
        clips = normalize(torch.stack([_load_clip(p, backend, sampler, transform)[0] for p in batches[0]]).to(dev))
        for _, m, prec in variants:
            with torch.inference_mode(), inference_precision(m, prec, dev):
                for _ in range(warmup_batches):
                    m(clips)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    for batch in batches:
        for (name, m, prec), res in zip(variants, results):
            clips = []
            for p in batch:
                c, td, tt = _load_clip(p, backend, sampler, transform)
                clips.append(c)
                res.decode_s.append(td)
                res.transform_s.append(tt)
            x = torch.stack(clips).to(dev)
            # per batch: a model is timed at several precisions in turn; the weights' cast on entering
            # (inference_precision) is outside the timed forward, as in a service that keeps them cast
            with torch.inference_mode(), inference_precision(m, prec, dev):
                sync()
                t0 = time.perf_counter()
                m(normalize(x))
                sync()
                res.model_s.append(time.perf_counter() - t0)
            res.clips_in_batch.append(len(batch))
    for r in results:
        logger.debug(r.line())
    return results


def format_end_to_end_table(results: Sequence[EndToEndResult]) -> str:
    """ms per clip of each stage, clips/s, and the share of decode + transform in the total."""
    rows = [f"{'variant':<22} {'prec':>5} {'batch':>5} {'clips':>5} {'decode ms':>9} {'transf ms':>9} "
            f"{'model ms':>9} {'total ms':>9} {'clips/s':>8} {'decode share':>12}"]
    for r in results:
        rows.append(f"{r.name:<22} {r.precision:>5} {r.batch_size:>5} {r.clips:>5} {r.decode_ms:>9.1f} "
                    f"{r.transform_ms:>9.1f} {r.model_ms:>9.1f} {r.total_ms:>9.1f} {r.clips_per_s:>8.3f} "
                    f"{(r.decode_ms + r.transform_ms) / r.total_ms:>11.1%}")
    return "\n".join(rows)


def end_to_end_from_cfg(cfg, folder: str, num_videos: int = 8, precisions: Sequence[str] = ("fp32", "bf16"),
                        keep_rates: Sequence[float] = (0.7,), batch_size: int = 4, warmup_batches: int = 1,
                        compile_model: bool = False) -> List[EndToEndResult]:
    """The end-to-end table for cfg's model (dense, and IA-RED² in keep_ratio mode at ``keep_rates``; random
    weights — speed does not depend on them) at every precision, on ``num_videos`` 320p videos written into
    ``folder`` (or the videos already there, when it holds any and ``num_videos`` is 0)."""
    from video_iared.analysis.speed import load_note
    from video_iared.engine.precision import maybe_compile
    from video_iared.pruning.speed import build_keep_ratio_models

    d = cfg.DATA
    if num_videos > 0:
        span = int(d.NUM_FRAMES * d.SAMPLING_RATE)
        # 10 s at 30 fps, like a Kinetics clip (longer when one clip spans more)
        paths = make_video_folder(folder, num_videos, num_frames=max(span, 300), seed=cfg.RNG_SEED)
    else:
        from video_iared.engine.predict import list_videos

        paths = list_videos(folder)
    dense, pruned = build_keep_ratio_models(cfg, keep_rates)
    models = [("dense", dense)] + [(f"iared keep {r:g}", m) for r, m in zip(keep_rates, pruned)]
    variants = [(n, maybe_compile(m, compile_model), p) for p in precisions for n, m in models]
    print(f"end-to-end batch inference: {len(paths)} videos in {folder}, {d.NUM_FRAMES} frames x rate "
          f"{d.SAMPLING_RATE}, crop {d.TEST_CROP_SIZE}, batch {batch_size}, backend {d.DECODING_BACKEND}, "
          f"normalised {'on the device (in model ms)' if d.NORMALIZE_ON_DEVICE else 'in the transform'}; "
          f"before: {load_note()}", flush=True)
    c0, w0 = time.process_time(), time.perf_counter()
    results = run_end_to_end(paths, variants, d.NUM_FRAMES, d.SAMPLING_RATE, d.TEST_CROP_SIZE, d.MEAN, d.STD,
                             batch_size, d.DECODING_BACKEND, device_from_cfg(cfg).type, warmup_batches,
                             d.NORMALIZE_ON_DEVICE)
    ratio = (time.process_time() - c0) / max(time.perf_counter() - w0, 1e-9)
    print(format_end_to_end_table(results), flush=True)
    print(f"after: {load_note()}; process cpu/wall {ratio:.2f}", flush=True)
    for r in results:
        print(r.line(), flush=True)
    return results
