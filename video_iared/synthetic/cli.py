"""The body of ``tools/make_synthetic.py``: generate the synthetic benchmark from a config or from options."""
from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import List, Optional

from video_iared.utils.logging import setup_logging


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Generate the synthetic motion benchmark: either --cfg FILE [KEY VALUE ...] (its SYNTHETIC "
                    "group, into DATA.PATH_TO_DATA_DIR, skipped when up to date) or --out DIR with size options.")
    p.add_argument("--cfg", dest="cfg_file", default="", help="YAML config whose SYNTHETIC group to use")
    p.add_argument("--out", default="", help="output folder (without --cfg)")
    p.add_argument("--num-classes", type=int, default=8)
    p.add_argument("--videos-per-class", type=int, nargs=3, default=[24, 6, 10], metavar=("TRAIN", "VAL", "TEST"))
    p.add_argument("--frames", type=int, default=32)
    p.add_argument("--size", type=int, nargs=2, default=[64, 64], metavar=("H", "W"))
    p.add_argument("--fps", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--format", default="kinetics", choices=["kinetics", "ssv2"])
    p.add_argument("--workers", type=int, default=2, help="processes used to render and encode")
    p.add_argument("--force", action="store_true", help="with --cfg: regenerate even when up to date")
    p.add_argument("opts", nargs=argparse.REMAINDER, default=[], help="KEY VALUE config overrides (with --cfg)")
    args = p.parse_args(argv)
    if bool(args.cfg_file) == bool(args.out):
        p.error("give exactly one of --cfg FILE and --out DIR")
    if args.opts and not args.cfg_file:
        p.error(f"KEY VALUE overrides need --cfg: {args.opts}")
    return args


def main(argv: Optional[List[str]] = None) -> int:
    """Run the CLI; returns the exit code (2: bad config or settings)."""
    args = parse_args(argv)
    setup_logging()
    from video_iared.config import ConfigError, load_config

    from .ensure import ensure_synthetic_dataset, synthetic_settings
    from .generator import generate_from_settings, generate_synthetic, read_meta

    try:
        if args.cfg_file:
            cfg = load_config(args.cfg_file, args.opts)
            if args.force:
                generate_from_settings(cfg.DATA.PATH_TO_DATA_DIR, synthetic_settings(cfg), args.workers)
            out = ensure_synthetic_dataset(cfg, workers=args.workers)
        else:
            generate_synthetic(args.out, args.num_classes, args.videos_per_class, args.frames, args.size,
                               args.fps, args.seed, args.format, args.workers)
            out = args.out
    except (ConfigError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    logging.getLogger(__name__).info("summary: %s", json.dumps(read_meta(out).get("summary", {})))
    return 0
