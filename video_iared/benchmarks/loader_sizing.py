"""Sizing a node: how many loader workers keep one GPU fed (``tools/benchmark_loader.py --sizing DIR``).

At the clip settings of the given config (configs/k400_dense.yaml: 8 frames at sampling rate 32, jitter
256-320, crop 224, 1x3 test views) on Kinetics-like videos written into DIR (10 s, 30 fps, 320p H.264, a
scrolling texture so the codec works as on real footage), for each decoding backend, in this process with one
thread (a DataLoader worker runs with one torch thread):
- a training clip: decode, the transform's uint8 part (scale, crop, flip) and its normalisation to float;
- a test video: one decode of the clip, its 3 crops (``MultiViewDataset`` as the config builds it: normalised
  in the worker only with DATA.NORMALIZE_ON_DEVICE False).
``clips/s per worker`` = 1 / seconds per clip. Handing uint8 clips to the device and normalising there (as a
GPU input pipeline does, and as DATA.NORMALIZE_ON_DEVICE True, the default, makes the loops do) saves the
normalisation's CPU time and 4x the bytes moved per clip; both rates are printed (``transform_ms`` and
``train_clips_per_s_per_worker`` are the float handoff's, ``uint8_*`` the uint8 handoff's), and the header
says which one the config's workers run. ``workers per GPU`` = ceil(GPU model rate / per-worker rate) for the rates given as flags — each
worker wants a core of its own (rates add up only while there are idle cores: compare with os.cpu_count()).
"""
from __future__ import annotations

import math
import os
import time
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from fvcore.common.config import CfgNode

from video_iared.data.build import build_dataset, build_multiview_dataset
from video_iared.data.readers import BackendUnavailableError, check_backend
from video_iared.data.transforms import normalize_clip
from video_iared.data.video_dataset import load_frames
from video_iared.utils.video_io import write_video


def kinetics_like_frames(seconds: float = 10.0, fps: int = 30, height: int = 320, width: int = 568,
                         seed: int = 0) -> np.ndarray:
    """uint8 (T, H, W, 3): a random texture scrolling 3 px per frame plus a moving bright block, so motion
    compensation and residuals both cost something (a flat or static video decodes unrealistically fast)."""
    rng = np.random.default_rng(seed)
    tile = rng.integers(0, 256, (height // 8 + 1, (width + 3 * int(seconds * fps)) // 8 + 1, 3), dtype=np.uint8)
    texture = np.kron(tile, np.ones((8, 8, 1), np.uint8))[:height]
    frames = np.empty((int(seconds * fps), height, width, 3), np.uint8)
    for t in range(frames.shape[0]):
        frames[t] = texture[:, 3 * t: 3 * t + width]
        b = max(min(height, width) // 5, 2)  # the block: 64 px at 320p
        x = (7 * t) % (width - b + 1)
        frames[t, height // 3: height // 3 + b, x: x + b] = 240
    return frames


def write_sizing_videos(out_dir: str, num_videos: int = 4, seconds: float = 10.0, fps: int = 30, height: int = 320,
                        width: int = 568, gop: int = 60) -> List[str]:
    """Videos ``v<i>.mp4`` (H.264) and ``{train,val,test}.csv`` listing them in ``out_dir``; existing videos kept."""
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for i in range(num_videos):
        path = os.path.join(out_dir, f"v{i}.mp4")
        if not os.path.isfile(path):
            write_video(path + ".tmp.mp4", kinetics_like_frames(seconds, fps, height, width, seed=i), fps=fps, gop=gop)
            os.replace(path + ".tmp.mp4", path)
        paths.append(path)
    for split in ("train", "val", "test"):
        with open(os.path.join(out_dir, f"{split}.csv"), "w") as f:
            f.write("".join(f"v{i}.mp4 0\n" for i in range(num_videos)))
    return paths


def _sizing_cfg(cfg: CfgNode, data_dir: str, backend: str) -> CfgNode:
    c = cfg.clone()
    c.defrost()
    c.DATA.PATH_TO_DATA_DIR, c.DATA.PATH_PREFIX, c.DATA.DECODING_BACKEND = data_dir, data_dir, backend
    c.TRAIN.DATASET = c.TEST.DATASET = "kinetics"
    c.MODEL.NUM_CLASSES = max(int(c.MODEL.NUM_CLASSES), 1)
    c.SYNTHETIC.ENABLE = False
    c.freeze()
    return c


def time_one_worker(cfg: CfgNode, clips: int = 8) -> Dict[str, float]:
    """ms per training clip (decode / transform / normalisation) and per test video (all its views), one
    thread; ``views``: views per test video. ``transform_ms`` is the float handoff's transform (uint8 part +
    normalisation): measured as it is when the workers normalise, else the measured uint8 transform plus
    ``normalise_ms`` (DATA.NORMALIZE_ON_DEVICE: the config's transform stops at uint8)."""
    train, test = build_dataset(cfg, "train"), build_multiview_dataset(cfg, "test")
    rng = np.random.default_rng(0)
    d = cfg.DATA
    t = {"decode": 0.0, "transform": 0.0, "normalise": 0.0, "test": 0.0}
    for i in range(clips):
        rec = train.records[i % len(train)]
        t0 = time.perf_counter()
        (frames,) = load_frames(train.reader_fn, rec.path, lambda n, fps: [train.sampler(n, -1, 1, rng, fps)])
        t1 = time.perf_counter()
        clip = train.transform(frames, rng)  # (C, T, crop, crop): float normalised, or uint8 (NORMALIZE_ON_DEVICE)
        t2 = time.perf_counter()
        crop = torch.randint(0, 256, (clip.shape[1], clip.shape[0], *clip.shape[2:]), dtype=torch.uint8)
        t3 = time.perf_counter()
        normalize_clip(crop, d.MEAN, d.STD)  # that normalisation alone, on a uint8 (T, C, crop, crop) crop
        t4 = time.perf_counter()
        test[i % len(test)]
        t5 = time.perf_counter()
        t["decode"] += t1 - t0
        t["transform"] += t2 - t1
        t["normalise"] += t4 - t3
        t["test"] += t5 - t4
    out = {f"{k}_ms": 1000 * v / clips for k, v in t.items()}
    if not train.transform.normalize:  # the workers hand over uint8: the float handoff adds the normalisation
        out["transform_ms"] += out["normalise_ms"]
    out["views"] = float(test.num_views)
    out["clip_bytes_float"] = float(clip.numel() * 4)
    return out


def _workers(gpu_rate: Optional[float], per_worker: float) -> Optional[int]:
    return math.ceil(gpu_rate / per_worker) if gpu_rate and per_worker > 0 else None


def sizing_rows(cfg: CfgNode, data_dir: str, backends: Sequence[str], clips: int = 8,
                gpu_train_clips_per_s: Optional[float] = None,
                gpu_test_views_per_s: Optional[float] = None) -> List[Dict[str, object]]:
    """One row per backend (unavailable backends: a row with ``skipped``): per-worker rates and workers per GPU."""
    rows: List[Dict[str, object]] = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for backend in backends:
            try:
                check_backend(backend)
            except BackendUnavailableError as e:
                rows.append({"backend": backend, "skipped": str(e)})
                continue
            m = time_one_worker(_sizing_cfg(cfg, data_dir, backend), clips)
            train_ms = m["decode_ms"] + m["transform_ms"]
            uint8_ms = train_ms - m["normalise_ms"]
            r = {"backend": backend, **m, "train_clips_per_s": 1000 / train_ms, "uint8_clips_per_s": 1000 / uint8_ms,
                 "test_views_per_s": 1000 * m["views"] / m["test_ms"]}
            r["workers_train"] = _workers(gpu_train_clips_per_s, r["train_clips_per_s"])
            r["workers_train_uint8"] = _workers(gpu_train_clips_per_s, r["uint8_clips_per_s"])
            r["workers_test"] = _workers(gpu_test_views_per_s, r["test_views_per_s"])
            rows.append(r)
    finally:
        torch.set_num_threads(threads)
    return rows


def _handoff_note(on_device: bool) -> str:
    """Which of the two training rates the config's workers run (DATA.NORMALIZE_ON_DEVICE)."""
    if on_device:
        return ("DATA.NORMALIZE_ON_DEVICE True: the workers hand over uint8 clips and do not normalise (the device "
                "does): size with uint8_clips_per_s_per_worker / workers_per_gpu_train_uint8; test views are uint8")
    return ("DATA.NORMALIZE_ON_DEVICE False: the workers normalise to float32: size with "
            "train_clips_per_s_per_worker / workers_per_gpu_train; test views are normalised in the worker")


def format_sizing(cfg: CfgNode, rows: Sequence[Dict[str, object]], gpu_train: Optional[float],
                  gpu_test: Optional[float]) -> str:
    """The table and one ``sizing backend=...`` line per backend (machine readable)."""
    d, t = cfg.DATA, cfg.TEST
    lines = [f"loader sizing: {d.NUM_FRAMES} frames x rate {d.SAMPLING_RATE}, jitter {list(d.TRAIN_JITTER_SCALES)}, "
             f"crop {d.TRAIN_CROP_SIZE}; test {t.NUM_ENSEMBLE_VIEWS}x{t.NUM_SPATIAL_CROPS} views at {d.TEST_CROP_SIZE}; "
             f"one worker = one process, one thread; this machine: {os.cpu_count()} cores, load average "
             f"{os.getloadavg()[0]:.1f}; GPU model rates given: train {gpu_train or '-'} clips/s, test {gpu_test or '-'} views/s",
             _handoff_note(bool(d.NORMALIZE_ON_DEVICE))]
    for r in rows:
        if "skipped" in r:
            lines.append(f"sizing backend={r['backend']} skipped: {r['skipped']}")
            continue
        lines.append(
            f"sizing backend={r['backend']} decode_ms={r['decode_ms']:.1f} transform_ms={r['transform_ms']:.1f} "
            f"normalise_ms={r['normalise_ms']:.1f} train_clips_per_s_per_worker={r['train_clips_per_s']:.2f} "
            f"uint8_clips_per_s_per_worker={r['uint8_clips_per_s']:.2f} test_ms_per_video={r['test_ms']:.1f} "
            f"test_views_per_s_per_worker={r['test_views_per_s']:.2f} workers_per_gpu_train={r['workers_train'] or '-'} "
            f"workers_per_gpu_train_uint8={r['workers_train_uint8'] or '-'} workers_per_gpu_test={r['workers_test'] or '-'}")
    measured = [r for r in rows if "skipped" not in r]
    if measured:
        mib = measured[0]["clip_bytes_float"] / 2**20
        lines.append(f"uint8 handoff (normalise on the GPU): a training clip crosses the worker pipe in {mib / 4:.2f} MiB "
                     f"instead of {mib:.2f} MiB of float32, and the worker skips normalise_ms")
    return "\n".join(lines)


def run_sizing(cfg: CfgNode, data_dir: str, backends: Sequence[str], num_videos: int = 4, clips: int = 8,
               gpu_train_clips_per_s: Optional[float] = None, gpu_test_views_per_s: Optional[float] = None,
               video_kwargs: Optional[Dict] = None) -> List[Dict[str, object]]:
    """Write the videos (once), measure every backend, print the table; returns the rows."""
    write_sizing_videos(data_dir, num_videos, **(video_kwargs or {}))
    rows = sizing_rows(cfg, data_dir, backends, clips, gpu_train_clips_per_s, gpu_test_views_per_s)
    print(format_sizing(cfg, rows, gpu_train_clips_per_s, gpu_test_views_per_s), flush=True)
    return rows
