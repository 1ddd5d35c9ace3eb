"""Scanning a split's videos with the configured reader: a CSV report and a summary (tools/check_videos.py).

Each video is opened and its first, middle and last frames decoded (under DATA.DECODE_TIMEOUT), in
DATA_LOADER.NUM_WORKERS processes. Status, worst first: failed (with the reason) > too_short (fewer
frames than one clip spans, so frames repeat) > fps_fallback (unusable fps metadata) > ok.
"""
from __future__ import annotations

import csv
import functools
import multiprocessing
import os
import time
from collections import Counter
from typing import Dict, List, Optional, Tuple

from fvcore.common.config import CfgNode
from tqdm import tqdm

from .build import build_sampler, load_records
from .readers import VideoDecodeError, build_reader
from .video_dataset import run_with_timeout

FIELDS = ["path", "source", "label", "status", "reason", "num_frames", "fps", "height", "width", "too_short",
          "fps_fallback", "seconds"]


def check_video(path: str, backend: str, span: Tuple[float, bool], timeout: float) -> Dict[str, object]:
    """One row of the report for ``path``. ``span`` = (frames one clip spans at the target fps, whether
    that span scales with the video's fps)."""
    row: Dict[str, object] = {"path": path, "status": "ok", "reason": "", "num_frames": "", "fps": "",
                              "height": "", "width": "", "too_short": False, "fps_fallback": False}
    t0 = time.perf_counter()

    def work():
        reader = build_reader(path, backend)
        try:
            n = reader.num_frames
            frames = reader.get_frames([0, n // 2, n - 1])
            return n, reader.fps, frames.shape
        finally:
            reader.close()

    try:
        if not os.path.isfile(path):
            raise VideoDecodeError(path, "file not found")
        n, fps, shape = run_with_timeout(work, timeout, path)
        frames_needed, scales = span
        if scales and fps:
            frames_needed = frames_needed * fps
        row.update(num_frames=n, fps=round(fps, 3) if fps else "", height=shape[1], width=shape[2],
                   too_short=n < frames_needed, fps_fallback=fps is None)
        row["status"] = "too_short" if row["too_short"] else "fps_fallback" if fps is None else "ok"
    except VideoDecodeError as e:
        row.update(status="failed", reason=e.reason)
    except Exception as e:  # a reader bug must not end the scan either
        row.update(status="failed", reason=f"{type(e).__name__}: {e}")
    row["seconds"] = round(time.perf_counter() - t0, 4)
    return row


def check_videos(cfg: CfgNode, split: str = "train", out_csv: Optional[str] = None, progress: bool = True) -> Dict[str, object]:
    """Scan ``split``, write the CSV report (default ``OUTPUT_DIR/check_videos_<split>.csv``) and return
    ``{"csv", "total", "counts": {status: n}, "failed": [(path, reason), ...]}``."""
    records, _, adapter = load_records(cfg, split, check_files=False)  # missing files are rows, not an error
    out_csv = out_csv or os.path.join(cfg.OUTPUT_DIR, f"check_videos_{split}.csv")
    try:  # a report that cannot be written fails now, not after an hour of decoding
        os.makedirs(os.path.dirname(os.path.abspath(out_csv)), exist_ok=True)
    except OSError as e:
        raise OSError(f"{out_csv}: cannot create the report's folder ({e.strerror})") from None
    sampler = build_sampler(cfg, adapter)
    if sampler.mode == "dense" and cfg.DATA.TARGET_FPS > 0:
        span = (sampler.span(1.0), True)  # clip span per unit of video fps
    else:
        span = (sampler.span(None), False)
    fn = functools.partial(check_video, backend=cfg.DATA.DECODING_BACKEND, span=span, timeout=cfg.DATA.DECODE_TIMEOUT)
    paths = [r.path for r in records]
    workers = cfg.DATA_LOADER.NUM_WORKERS
    bar = dict(total=len(paths), desc=f"checking {split} ({cfg.DATA.DECODING_BACKEND})", disable=not progress)
    if workers > 0:
        with multiprocessing.get_context().Pool(workers) as pool:
            rows = list(tqdm(pool.imap(fn, paths, chunksize=4), **bar))
    else:
        rows = [fn(p) for p in tqdm(paths, **bar)]
    for rec, row in zip(records, rows):
        row["source"], row["label"] = rec.source, rec.label
    with open(out_csv, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    counts = Counter(r["status"] for r in rows)
    return {
        "csv": out_csv,
        "total": len(rows),
        "counts": {k: counts.get(k, 0) for k in ("ok", "fps_fallback", "too_short", "failed")},
        "failed": [(r["path"], r["reason"]) for r in rows if r["status"] == "failed"],
    }


def format_summary(summary: Dict[str, object], show: int = 10) -> str:
    """Human-readable summary of ``check_videos``'s result."""
    c = summary["counts"]
    lines = [f"{summary['total']} videos: {c['ok']} ok, {c['fps_fallback']} fps fallback, "
             f"{c['too_short']} too short, {c['failed']} failed -> {summary['csv']}"]
    failed: List[Tuple[str, str]] = summary["failed"]
    lines += [f"  failed: {p}: {r}" for p, r in failed[:show]]
    if len(failed) > show:
        lines.append(f"  ... and {len(failed) - show} more (see the CSV)")
    return "\n".join(lines)
