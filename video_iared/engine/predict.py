"""Batch clip inference on arbitrary videos: a folder, a glob or a list file -> one row per video.

Each video is decoded once into the test views (TEST.NUM_ENSEMBLE_VIEWS x TEST.NUM_SPATIAL_CROPS), views of
several videos are run together in chunks of TEST.VIEWS_PER_CHUNK, and the views are ensembled
(TEST.ENSEMBLE_METHOD). A video that cannot be read gets a row with its error instead of a prediction.
"""
from __future__ import annotations

import csv
import glob
import json
import logging
import math
import os
from typing import Dict, List, Optional, Sequence

import torch

from video_iared.data.annotations import VideoRecord, read_class_names, read_ssv2_labels, ssv2_class_names
from video_iared.data.build import ADAPTERS, build_sampler, build_test_transform, reader_fn
from video_iared.data.device_normalize import build_normalizer
from video_iared.data.loader import ShardSampler, collate_list
from video_iared.data.multiview import MultiViewDataset
from video_iared.engine.amp import amp_dtype
from video_iared.engine.device import init_from_cfg
from video_iared.engine import distributed as du
from video_iared.engine.multiview_test import NoVideoEvaluatedError, build_test_model, dense_forward, gather_records, iared_forward, run_multiview
from video_iared.profiling.flops import model_gflops
from video_iared.utils.precision import maybe_compile

logger = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".webm", ".avi", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv")
PREDICT_COLUMNS = ["path", "status", "error", "top_classes", "top_names", "top_probs", "gflops", "views",
                   "kept_fraction", "keep_rates"]


class PredictInputError(ValueError):
    """PREDICT.INPUT names nothing usable."""


def list_videos(spec: str) -> List[str]:
    """The videos named by ``spec``: a folder (its video files, recursively, sorted), a list file (one path
    per line, optionally followed by a label; '#' comments; relative paths are taken relative to the list
    file's folder when they exist there) or a glob pattern."""
    if os.path.isdir(spec):
        found = sorted(os.path.join(root, f) for root, _, files in os.walk(spec) for f in files
                       if f.lower().endswith(VIDEO_EXTENSIONS))
        if not found:
            raise PredictInputError(f"PREDICT.INPUT: no video files ({', '.join(VIDEO_EXTENSIONS)}) in folder {spec}")
        return found
    if os.path.isfile(spec) and not spec.lower().endswith(VIDEO_EXTENSIONS):
        base = os.path.dirname(os.path.abspath(spec))
        out = []
        with open(spec) as f:
            for line in f:
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                parts = line.rsplit(None, 1)
                path = parts[0] if len(parts) == 2 and parts[1].lstrip("-").isdigit() else line
                if not os.path.isabs(path) and os.path.exists(os.path.join(base, path)):
                    path = os.path.join(base, path)
                out.append(path)
        if not out:
            raise PredictInputError(f"PREDICT.INPUT: list file {spec} names no videos")
        return out
    if os.path.isfile(spec):
        return [spec]
    found = sorted(glob.glob(spec, recursive=True))
    if not found:
        raise PredictInputError(f"PREDICT.INPUT: {spec!r} is not a folder, a list file, a video or a glob matching anything")
    return found


def kept_fraction(keep_rates: Optional[Sequence[float]], groups: Optional[Sequence[int]]) -> Optional[float]:
    """The fraction of token x block computations kept: sum_g keep_g * blocks_g / depth (None if dense)."""
    if keep_rates is None or not groups:
        return None
    return float(sum(k * b for k, b in zip(keep_rates, groups)) / sum(groups))


def prediction_rows(records: List[Dict], class_names: Optional[Sequence[str]], topk: int,
                    groups: Optional[Sequence[int]] = None) -> List[Dict]:
    """One output row per video record (``multiview_test`` records), in input order."""
    rows = []
    for r in sorted(records, key=lambda r: r["index"]):
        row: Dict = {"path": r["path"], "status": "ok", "error": None, "top_classes": [], "top_names": [],
                     "top_probs": [], "gflops": None, "views": 0, "kept_fraction": None, "keep_rates": None}
        if r["probs"] is None:
            row.update(status="failed", error=r["error"])
        else:
            top = r["probs"].topk(min(topk, r["probs"].numel()))
            row["top_classes"] = top.indices.tolist()
            row["top_probs"] = [round(float(p), 6) for p in top.values]
            if class_names is not None:
                row["top_names"] = [class_names[i] if i < len(class_names) else str(i) for i in row["top_classes"]]
            views = int(r["view_logits"].shape[0])
            row["views"] = views
            if not math.isnan(r["gflops"]):
                row["gflops"] = round(r["gflops"] * views, 6)  # spent on this video: every view
            if r.get("keep_rates") is not None:
                row["keep_rates"] = [round(float(k), 6) for k in r["keep_rates"]]
                row["kept_fraction"] = kept_fraction(r["keep_rates"], groups)
        rows.append(row)
    return rows


def write_rows(path: str, rows: List[Dict]) -> str:
    """CSV (lists space-separated, names '|'-separated) or JSON (a list of objects), by the extension."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    if path.lower().endswith(".json"):
        with open(tmp, "w") as f:
            json.dump(rows, f, indent=1)
    else:
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=PREDICT_COLUMNS)
            w.writeheader()
            for r in rows:
                w.writerow({
                    **r,
                    "error": (r["error"] or "").replace("\n", " "),
                    "top_classes": " ".join(map(str, r["top_classes"])),
                    "top_names": "|".join(r["top_names"]),
                    "top_probs": " ".join(f"{p:.6f}" for p in r["top_probs"]),
                    "gflops": "" if r["gflops"] is None else f"{r['gflops']:.6f}",
                    "kept_fraction": "" if r["kept_fraction"] is None else f"{r['kept_fraction']:.6f}",
                    "keep_rates": " ".join(f"{k:.6f}" for k in r["keep_rates"] or []),
                })
    os.replace(tmp, path)
    return path


def read_rows(path: str) -> List[Dict]:
    """The rows of a predict output file (CSV or JSON) with the same types ``write_rows`` was given."""
    if path.lower().endswith(".json"):
        with open(path) as f:
            return json.load(f)
    rows = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            rows.append({
                "path": r["path"], "status": r["status"], "error": r["error"] or None,
                "top_classes": [int(x) for x in r["top_classes"].split()],
                "top_names": r["top_names"].split("|") if r["top_names"] else [],
                "top_probs": [float(x) for x in r["top_probs"].split()],
                "gflops": float(r["gflops"]) if r["gflops"] else None, "views": int(r["views"]),
                "kept_fraction": float(r["kept_fraction"]) if r["kept_fraction"] else None,
                "keep_rates": [float(x) for x in r["keep_rates"].split()] if r["keep_rates"] else None,
            })
    return rows


def load_class_names(path: str) -> Optional[List[str]]:
    """Class names from a JSON list / {name: id} file or a text file with one name per line."""
    if not path:
        return None
    if path.lower().endswith(".json"):
        names = read_class_names(path)
        if names is None:
            raise FileNotFoundError(f"PREDICT.CLASS_NAMES: {path} not found")
        return names
    with open(path) as f:
        return [line.strip() for line in f if line.strip()]


def dataset_class_names(cfg) -> Optional[List[str]]:
    """The configured dataset's class names when its annotation folder has them (else None)."""
    d = cfg.DATA.PATH_TO_DATA_DIR
    if not d:
        return None
    try:
        if cfg.TEST.DATASET == "ssv2":
            p = os.path.join(d, "something-something-v2-labels.json")
            return ssv2_class_names(read_ssv2_labels(p)) if os.path.isfile(p) else None
        return read_class_names(os.path.join(d, "classes.json"))
    except Exception as e:  # names are a convenience: a broken names file must not stop inference
        logger.warning("class names of %s not readable: %s", d, e)
        return None


def predict(cfg, info: Optional[du.DistInfo] = None, checkpoint: str = "") -> str:
    """Run batch inference on PREDICT.INPUT; writes OUTPUT_DIR/PREDICT.OUTPUT and returns its path."""
    from torch.utils.data import DataLoader

    info = info or init_from_cfg(cfg)
    p, t, d = cfg.PREDICT, cfg.TEST, cfg.DATA
    paths = list_videos(p.INPUT)
    names = load_class_names(p.CLASS_NAMES) or dataset_class_names(cfg)
    if names is not None and len(names) != cfg.MODEL.NUM_CLASSES:  # checked before any video is decoded
        source = p.CLASS_NAMES or f"the class names in {cfg.DATA.PATH_TO_DATA_DIR}"
        raise PredictInputError(f"{source}: {len(names)} class names but MODEL.NUM_CLASSES is {cfg.MODEL.NUM_CLASSES}")
    model = build_test_model(cfg, info.device, checkpoint, "[predict] ")
    clip = torch.zeros(1, d.INPUT_CHANNEL_NUM[0], d.NUM_FRAMES, d.TEST_CROP_SIZE, d.TEST_CROP_SIZE, device=info.device)
    # IA-RED²: every view's GFLOPs from its kept sets (pruning.exact_cost, no trace per view)
    forward_fn = iared_forward() if cfg.IARED.ENABLE else dense_forward(model_gflops(model, clip))
    # label -1: unknown (the records are not a labelled split)
    records = [VideoRecord(path, -1, f"{p.INPUT}[{i}]") for i, path in enumerate(paths)]
    dataset = MultiViewDataset(records, reader_fn(cfg), build_sampler(cfg, ADAPTERS[t.DATASET]),
                               build_test_transform(cfg, t.NUM_SPATIAL_CROPS), t.NUM_ENSEMBLE_VIEWS,
                               decode_timeout=d.DECODE_TIMEOUT, class_names=names)
    workers = cfg.DATA_LOADER.NUM_WORKERS
    loader = DataLoader(dataset, batch_size=max(1, t.BATCH_SIZE // info.world_size),
                        sampler=ShardSampler(len(dataset), info.rank, info.world_size), collate_fn=collate_list,
                        num_workers=workers)
    logger.info("predict: %d videos from %s, %d views each (%d clips x %d crops)", len(paths), p.INPUT,
                dataset.num_views, t.NUM_ENSEMBLE_VIEWS, t.NUM_SPATIAL_CROPS)
    run_model = maybe_compile(model, t.COMPILE, dynamic=True if cfg.IARED.ENABLE else None)
    local = run_multiview(run_model, loader, info.device, t.VIEWS_PER_CHUNK, t.ENSEMBLE_METHOD,
                          amp_dtype(info.device, t.PRECISION), forward_fn, normalizer=build_normalizer(cfg))
    records_out = gather_records(local)
    out = os.path.abspath(os.path.join(cfg.OUTPUT_DIR, p.OUTPUT))
    if info.is_main:
        rows = prediction_rows(records_out, names, p.TOP_K, getattr(model, "groups", None))
        write_rows(out, rows)
        failed = sum(r["status"] == "failed" for r in rows)
        logger.info("predict: wrote %d rows (%d failed) to %s", len(rows), failed, out)
    du.barrier()
    if records_out and all(r["probs"] is None for r in records_out):  # the same on every process
        raise NoVideoEvaluatedError(f"predict: none of the {len(records_out)} videos could be predicted (the "
                                    f"reasons are in {out})")
    return out
