"""Shared by the engine tests: a tiny synthetic dataset (real encoded videos) and a tiny-model config."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import List, Optional

from video_iared.config import load_config

ROOT = Path(__file__).resolve().parents[1]
PYTHON = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() else "python"


def load_tool(name: str):
    """The module of ``tools/<name>.py`` (tools are scripts, not a package), to call its ``main(argv)``."""
    spec = importlib.util.spec_from_file_location(f"tool_{name}", ROOT / "tools" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def tiny_opts(data_dir: str, out_dir: str, extra: Optional[List[str]] = None) -> List[str]:
    """KEY VALUE overrides of configs/synthetic_dense.yaml: 4 classes, 32 px, 4 frames, dim 32, 2 blocks."""
    opts = [
        "DATA.PATH_TO_DATA_DIR", data_dir, "DATA.PATH_PREFIX", data_dir, "OUTPUT_DIR", out_dir,
        "SYNTHETIC.NUM_CLASSES", "4", "MODEL.NUM_CLASSES", "4", "SYNTHETIC.VIDEOS_PER_CLASS", "[6, 2, 3]",
        "SYNTHETIC.NUM_FRAMES", "16", "SYNTHETIC.SIZE", "[32, 32]",
        "DATA.NUM_FRAMES", "4", "DATA.SAMPLING_RATE", "2", "DATA.TRAIN_JITTER_SCALES", "[32, 40]",
        "DATA.TRAIN_CROP_SIZE", "32", "DATA.TEST_CROP_SIZE", "32",
        "TIMESFORMER.EMBED_DIM", "32", "TIMESFORMER.DEPTH", "2", "TIMESFORMER.NUM_HEADS", "2",
        "TIMESFORMER.PATCH_SIZE", "8", "TRAIN.BATCH_SIZE", "8", "TEST.BATCH_SIZE", "4",
        "SOLVER.MAX_EPOCH", "2", "SOLVER.WARMUP_EPOCHS", "0.0", "SOLVER.BASE_LR", "0.003",
        "TRAIN.EVAL_PERIOD", "1", "DATA_LOADER.NUM_WORKERS", "0", "LOG_PERIOD", "1", "NUM_THREADS", "1",
    ]
    return opts + list(extra or [])


def tiny_cfg(data_dir: str, out_dir: str, extra: Optional[List[str]] = None):
    return load_config(str(ROOT / "configs" / "synthetic_dense.yaml"), tiny_opts(data_dir, out_dir, extra))


def make_dataset(data_dir: str) -> str:
    """Generate (once per folder) the tiny synthetic dataset: 24 train, 8 val, 12 test videos."""
    from video_iared.synthetic import ensure_synthetic_dataset

    return ensure_synthetic_dataset(tiny_cfg(data_dir, os.path.join(data_dir, "_unused")), workers=1)


def write_broken_video(path: str) -> str:
    """A file with a video extension whose content is not a video (an interrupted download)."""
    with open(path, "wb") as f:
        f.write(b"\x00\x00\x00\x18ftypmp42" + b"\x17" * 2000)
    return path
