"""Loader benchmark (``BENCHMARK.TYPE loader``, tools/benchmark_loader.py): how fast clips reach the model.

For each decoding backend it measures, on the configured data:
- ``decode_ms_per_clip``: open + decode one training clip in this process (one thread; wall time, and
  ``decode_cpu_ms_per_clip``, the CPU time, which other processes sharing the cores do not inflate),
  ``transform_ms_per_clip``: the training transform of that clip (with DATA.NORMALIZE_ON_DEVICE, the default,
  it stops at uint8: the device normalises), and ``test_decode_ms_per_video``: open +
  decode all NUM_ENSEMBLE_VIEWS clips of one test video (one decode of their union);
- ``train_clips_per_s``: the training loader at DATA_LOADER.NUM_WORKERS workers (after warm-up batches);
- ``test_videos_per_s`` / ``test_views_per_s``: the multi-view loader (each video decoded once);
and, when a model can be built, ``model_train_clips_per_s``: forward + backward of ``build_model(cfg)`` at
TRAIN.BATCH_SIZE on this machine's CPU, so that the loader's rate can be compared with what training eats.
"""
from __future__ import annotations

import logging
import os
import time
from typing import Dict, Iterable, Optional

import numpy as np
import torch
from fvcore.common.config import CfgNode
from tqdm import tqdm

from video_iared.build import build_model
from video_iared.data import build_dataset, build_loader, build_multiview_loader
from video_iared.data.loader import set_loader_epoch
from video_iared.data.readers import BACKENDS, BackendUnavailableError, VideoDecodeError, check_backend
from video_iared.data.video_dataset import load_frames
from video_iared.synthetic import ensure_synthetic_dataset

logger = logging.getLogger(__name__)


def _with(cfg: CfgNode, **data) -> CfgNode:
    c = cfg.clone()
    c.defrost()
    for k, v in data.items():
        c.DATA[k] = v
    c.freeze()
    return c


def _time_batches(loader, warmup: int, iters: int, count, desc: str, progress: bool) -> Dict[str, float]:
    """Run ``warmup`` then ``iters`` batches (restarting the loader at its end); items counted by ``count``."""
    epoch = 0
    set_loader_epoch(loader, epoch)
    it = iter(loader)

    def next_batch():
        nonlocal it, epoch
        try:
            return next(it)
        except StopIteration:  # a new epoch: new order and draws, as in training
            epoch += 1
            set_loader_epoch(loader, epoch)
            it = iter(loader)
            return next(it)

    for _ in range(warmup):
        next_batch()
    items, t0 = 0, time.perf_counter()
    for _ in tqdm(range(iters), desc=desc, disable=not progress, leave=False):
        items += count(next_batch())
    return {"items": items, "seconds": time.perf_counter() - t0}


def measure_decode(cfg: CfgNode, num_videos: int, progress: bool = True) -> Dict[str, float]:
    """In this process (one thread): ms to open + decode one training clip and to transform it, and ms
    to open + decode all the clips of one multi-view test video (one decode of their union)."""
    ds = build_dataset(cfg, "train")
    rng = np.random.default_rng(0)
    times = {"decode": 0.0, "transform": 0.0, "test_decode": 0.0, "decode_cpu": 0.0}
    n = 0
    clips = cfg.TEST.NUM_ENSEMBLE_VIEWS
    for i in tqdm(range(num_videos), desc=f"decode ({cfg.DATA.DECODING_BACKEND})", disable=not progress, leave=False):
        rec = ds.records[i % len(ds)]
        try:
            t0, c0 = time.perf_counter(), time.process_time()
            (frames,) = load_frames(ds.reader_fn, rec.path, lambda nf, fps: [ds.sampler(nf, -1, 1, rng, fps)])
            t1, c1 = time.perf_counter(), time.process_time()
            ds.transform(frames, rng)
            t2 = time.perf_counter()
            load_frames(ds.reader_fn, rec.path, lambda nf, fps: [ds.sampler(nf, c, clips, fps=fps) for c in range(clips)])
            t3 = time.perf_counter()
        except VideoDecodeError as e:
            logger.warning("benchmark: skipping %s: %s", rec.path, e.reason)
            continue
        times["decode"] += t1 - t0
        times["decode_cpu"] += c1 - c0
        times["transform"] += t2 - t1
        times["test_decode"] += t3 - t2
        n += 1
    n = max(n, 1)
    return {"decode_ms_per_clip": 1000 * times["decode"] / n, "decode_cpu_ms_per_clip": 1000 * times["decode_cpu"] / n,
            "transform_ms_per_clip": 1000 * times["transform"] / n,
            "test_decode_ms_per_video": 1000 * times["test_decode"] / n}


def measure_model_training(cfg: CfgNode, iters: int = 3) -> Optional[float]:
    """Clips/s of forward + backward of ``build_model(cfg)`` at TRAIN.BATCH_SIZE on the CPU, or None when
    the config's model cannot be built (e.g. a checkpoint it names is missing)."""
    try:
        model = build_model(cfg)
    except Exception as e:  # the loader figures stand without the model's
        logger.info("no model timing: %s: %s", type(e).__name__, e)
        return None
    model.train()
    d = cfg.DATA
    b = cfg.TRAIN.BATCH_SIZE
    x = torch.randn(b, d.INPUT_CHANNEL_NUM[0], d.NUM_FRAMES, d.TRAIN_CROP_SIZE, d.TRAIN_CROP_SIZE)
    y = torch.randint(0, cfg.MODEL.NUM_CLASSES, (b,))

    def step():
        out = model(x)
        logits = out[0] if isinstance(out, (tuple, list)) else out
        torch.nn.functional.cross_entropy(logits, y).backward()
        model.zero_grad(set_to_none=True)

    step()  # warm-up
    t0 = time.perf_counter()
    for _ in range(iters):
        step()
    return b * iters / (time.perf_counter() - t0)


def benchmark_loader(
    cfg: CfgNode, backends: Iterable[str] = BACKENDS, with_model: bool = True, progress: bool = True
) -> Dict[str, object]:
    """Measure every backend (see the module docstring) and print one line per backend; returns
    ``{"workers", "batch_size", "backends": {name: {metric: value}}, "model_train_clips_per_s",
    "loader_vs_model"}`` (the last two None without a model)."""
    if cfg.SYNTHETIC.ENABLE:
        ensure_synthetic_dataset(cfg)
    warmup, iters = cfg.BENCHMARK.WARMUP_ITERS, cfg.BENCHMARK.NUM_ITERS
    results: Dict[str, Dict[str, float]] = {}
    skipped: Dict[str, str] = {}
    for backend in backends:
        c = _with(cfg, DECODING_BACKEND=backend)
        try:
            check_backend(backend)
        except BackendUnavailableError as e:  # e.g. torchcodec without FFmpeg's libraries: say so, time the rest
            skipped[backend] = str(e)
            logger.warning("loader benchmark: backend %s skipped: %s", backend, e)
            continue
        r = measure_decode(c, max(iters, 8), progress)
        train = build_loader(c, "train")
        t = _time_batches(train, warmup, iters, lambda b: 0 if b["clip"] is None else len(b["clip"]),
                          f"train loader ({backend})", progress)
        r["train_clips_per_s"] = t["items"] / t["seconds"]
        test = build_multiview_loader(c, cfg.TEST.SPLIT)
        views = test.dataset.num_views
        t = _time_batches(test, min(warmup, 1), max(1, min(iters, len(test))),
                          lambda b: sum(1 for it in b if it["views"] is not None), f"multi-view loader ({backend})", progress)
        r["test_videos_per_s"] = t["items"] / t["seconds"]
        r["test_views_per_s"] = r["test_videos_per_s"] * views
        results[backend] = r
        del train, test  # stop the persistent workers before the next backend
    if not results:
        raise BackendUnavailableError("loader benchmark: no decoding backend can run here: " + "; ".join(skipped.values()))
    model_rate = measure_model_training(cfg) if with_model else None
    best = max(r["train_clips_per_s"] for r in results.values())
    out = {
        "workers": cfg.DATA_LOADER.NUM_WORKERS,
        "batch_size": cfg.TRAIN.BATCH_SIZE,
        "backends": results,
        "skipped": skipped,
        "model_train_clips_per_s": model_rate,
        "loader_vs_model": best / model_rate if model_rate else None,
        "load_average": os.getloadavg()[0],
    }
    print(format_results(cfg, out))
    return out


def format_results(cfg: CfgNode, out: Dict[str, object]) -> str:
    d = cfg.DATA
    handoff = ("uint8 (DATA.NORMALIZE_ON_DEVICE: normalised on the device, not in the workers)" if d.NORMALIZE_ON_DEVICE
               else "normalised float32 (DATA.NORMALIZE_ON_DEVICE False)")
    lines = [
        f"loader benchmark: {d.PATH_TO_DATA_DIR}, {d.NUM_FRAMES} frames x rate {d.SAMPLING_RATE}, crop "
        f"{d.TRAIN_CROP_SIZE} (jitter {list(d.TRAIN_JITTER_SCALES)}), test {cfg.TEST.NUM_ENSEMBLE_VIEWS}x"
        f"{cfg.TEST.NUM_SPATIAL_CROPS} views at {d.TEST_CROP_SIZE}, {out['workers']} workers, batch {out['batch_size']}, "
        f"clips handed over as {handoff}",
        f"machine: {os.cpu_count()} cores, load average {out['load_average']:.1f} (other processes share the cores)",
    ]
    for name, r in out["backends"].items():
        lines.append(
            f"loader backend={name} decode_ms_per_clip={r['decode_ms_per_clip']:.2f} "
            f"(cpu {r['decode_cpu_ms_per_clip']:.2f}) "
            f"transform_ms_per_clip={r['transform_ms_per_clip']:.2f} train_clips_per_s={r['train_clips_per_s']:.1f} "
            f"test_decode_ms_per_video={r['test_decode_ms_per_video']:.2f} test_videos_per_s={r['test_videos_per_s']:.1f} test_views_per_s={r['test_views_per_s']:.1f}"
        )
    for name, why in out.get("skipped", {}).items():
        lines.append(f"loader backend={name} skipped: {why}")
    if out["model_train_clips_per_s"]:
        lines.append(f"model train (forward+backward, batch {out['batch_size']}, CPU) clips_per_s="
                     f"{out['model_train_clips_per_s']:.1f}; loader/model = {out['loader_vs_model']:.2f}x")
    else:
        lines.append("model train clips/s: not measured (no model could be built)")
    return "\n".join(lines)
