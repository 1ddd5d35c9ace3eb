#!/usr/bin/env python
"""Pictures of what the IA-RED² interpreters keep, next to raw attention, rollout and Grad-CAM.

    python tools/visualize.py --cfg configs/synthetic.yaml [--checkpoint P] [--videos N] [--format gif|mp4]
                              [--out DIR] [KEY VALUE ...]

For N test videos of TEST.SPLIT (the first video of each class in list order, then the next ones), writes
<video>_grid.png (rows: frames; columns: input, kept tokens per group, interpreter score, attention, rollout,
Grad-CAM) and <video>_kept.gif (the input with the kept tokens highlighted and the dropped ones dimmed) into
DIR (default OUTPUT_DIR/visualize).
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
    p.add_argument("--cfg", dest="cfg_file", required=True, help="a YAML config: a path, or a name listed below")
    p.add_argument("--checkpoint", default="", help="weights (default: TEST.CHECKPOINT_FILE_PATH, else the "
                   "trained IA-RED² model of OUTPUT_DIR)")
    p.add_argument("--videos", type=int, default=4, help="number of test videos to draw (default 4)")
    p.add_argument("--format", choices=("gif", "mp4"), default="gif", help="animation format")
    p.add_argument("--out", default="", help="output folder (default OUTPUT_DIR/visualize)")
    p.add_argument("opts", nargs=argparse.REMAINDER, default=[], help="KEY VALUE overrides")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s %(levelname)s] %(message)s", stream=sys.stderr)

    from video_iared.interpret.interpretability import visualize_from_cfg
    from video_iared.config import load_config_for_cli

    if args.videos < 1:
        print("error: --videos must be >= 1", file=sys.stderr)
        return 2
    cfg = load_config_for_cli(args.cfg_file, args.opts)
    if cfg is None:
        return 2
    try:
        paths = visualize_from_cfg(cfg, args.checkpoint, args.videos, args.out, args.format)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
