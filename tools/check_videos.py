#!/usr/bin/env python
"""Scan a split's videos: ``python tools/check_videos.py --cfg FILE [--split train|val|test] [--out CSV] [KEY VALUE ...]``.

Decodes every listed video (first, middle, last frame) with the configured reader in DATA_LOADER.NUM_WORKERS
processes, writes a CSV report (ok / fps_fallback / too_short / failed with the reason) and prints a summary.
Exit code 1 when some video failed.
"""
import argparse
import logging
import os
import sys

if not __package__:  # a script of the checkout (installed, this file is the module video_iared.tools.X)
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None) -> int:
    from video_iared.config import config_help

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=config_help())
    p.add_argument("--cfg", required=True, help="a YAML config: a path, or a name listed below")
    p.add_argument("--split", default="train", choices=["train", "val", "test"])
    p.add_argument("--out", default=None, help="CSV report (default OUTPUT_DIR/check_videos_<split>.csv)")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.ERROR, format="%(message)s", stream=sys.stderr)  # the CSV has the details
    from video_iared.config import ConfigError, load_config
    from video_iared.data.annotations import AnnotationError
    from video_iared.data.check import check_videos, format_summary

    try:
        cfg = load_config(args.cfg, args.opts)
        summary = check_videos(cfg, args.split, args.out)
    except (ConfigError, AnnotationError, OSError) as e:  # OSError: the report cannot be written there
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(format_summary(summary))
    return 1 if summary["counts"]["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
