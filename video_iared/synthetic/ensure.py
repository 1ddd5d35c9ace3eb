"""``ensure_synthetic_dataset(cfg)``: the config boundary of the synthetic benchmark (used by ``engine.run``)."""
from __future__ import annotations

import fcntl
import logging
import os

from fvcore.common.config import CfgNode

from .generator import generate_from_settings, read_meta, settings_dict

logger = logging.getLogger(__name__)


def synthetic_settings(cfg: CfgNode) -> dict:
    """The generator settings a config asks for (the ``SYNTHETIC`` group), as meta.json stores them."""
    s = cfg.SYNTHETIC
    scene = {"distractors": list(s.DISTRACTORS), "camera_pan": s.CAMERA_PAN, "camera_zoom": s.CAMERA_ZOOM,
             "occluders": s.OCCLUDERS, "background": s.BACKGROUND, "distractor_scale": s.DISTRACTOR_SCALE,
             "target_tone": s.TARGET_TONE}
    return settings_dict(s.NUM_CLASSES, s.VIDEOS_PER_CLASS, s.NUM_FRAMES, s.SIZE, s.FPS, s.SEED, s.FORMAT, scene)


def ensure_synthetic_dataset(cfg: CfgNode, workers: int = 0) -> str:
    """Generate the benchmark into ``cfg.DATA.PATH_TO_DATA_DIR`` unless it is there with the same settings.

    Returns that directory. ``workers`` = 0 uses up to 2 processes. A file lock (``DIR.lock``) makes
    concurrent callers (several ranks, several runs) wait for one generation instead of racing.
    """
    data_dir = cfg.DATA.PATH_TO_DATA_DIR
    if not data_dir:
        raise ValueError("DATA.PATH_TO_DATA_DIR must name the folder to generate the synthetic benchmark into")
    wanted = synthetic_settings(cfg)
    expected_prefix = data_dir if wanted["format"] == "kinetics" else os.path.join(data_dir, "videos")
    if os.path.normpath(cfg.DATA.PATH_PREFIX or ".") != os.path.normpath(expected_prefix):
        logger.warning("DATA.PATH_PREFIX is %r but the synthetic %s layout's video paths are relative to %r",
                       cfg.DATA.PATH_PREFIX, wanted["format"], expected_prefix)
    parent = os.path.dirname(os.path.abspath(data_dir))
    os.makedirs(parent, exist_ok=True)
    with open(os.path.abspath(data_dir).rstrip(os.sep) + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        meta = read_meta(data_dir)
        keys = list(wanted) + ([] if "scene" in wanted else ["scene"])  # a default scene: meta has no "scene"
        found = {k: meta.get(k) for k in keys}
        if found == {k: wanted.get(k) for k in keys}:
            logger.info("synthetic dataset in %s is up to date (%s)", data_dir, _describe(wanted))
            return data_dir
        if not meta:
            logger.info("synthetic dataset %s is missing: generating it (%s)", data_dir, _describe(wanted))
        else:
            changed = [k for k in keys if found[k] != wanted.get(k)]
            logger.info("synthetic dataset %s was made with other settings (%s): regenerating it (%s)", data_dir,
                        ", ".join(f"{k}: {found[k]} -> {wanted.get(k)}" for k in changed), _describe(wanted))
        n = workers or max(1, min(2, os.cpu_count() or 1))
        generate_from_settings(data_dir, wanted, workers=n)
    return data_dir


def _describe(s: dict) -> str:
    h, w = s["size"]
    return (f"{s['format']}, {s['num_classes']} classes, {s['videos_per_class']} videos per class, "
            f"{s['num_frames']} frames of {h}x{w} at {s['fps']} fps, seed {s['seed']}"
            + (f", scene {s['scene']}" if "scene" in s else ""))
