"""The body of ``tools/run_net.py``, importable so the console script and the tests run the same code."""
from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from video_iared.config import ConfigError, load_config


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Train, test, predict or benchmark a video_iared model.")
    p.add_argument("--cfg", dest="cfg_file", required=True, help="path to a YAML config")
    p.add_argument("opts", nargs=argparse.REMAINDER, default=[], help="KEY VALUE overrides, e.g. TRAIN.BATCH_SIZE 4")
    return p.parse_args(argv)


def run_net(argv: Optional[List[str]] = None) -> int:
    """Parse, validate and run; returns the process exit code (2: config error, 3: stage not built)."""
    args = parse_args(argv)
    try:
        cfg = load_config(args.cfg_file, args.opts)
    except (ConfigError, FileNotFoundError) as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    from video_iared.engine.run import StageNotBuiltError, run

    try:
        run(cfg)
    except StageNotBuiltError as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    return 0
