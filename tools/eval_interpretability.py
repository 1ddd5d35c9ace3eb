#!/usr/bin/env python
"""Interpretability of the IA-RED² model on the synthetic benchmark: every method's token map against the
ground-truth foreground masks (ROC-AUC, AP, top-k IoU, pointing game) and deletion / insertion curves.

    python tools/eval_interpretability.py --cfg configs/synthetic.yaml [--checkpoint P] [--out DIR] [KEY VALUE ...]

Settings: INTERP.* (methods, foreground fraction, top-k, curve steps, videos). Writes interpretability.md /
.csv / _per_video.csv / _per_view.csv / _curves.csv / _ci.md / _ci.csv / _bars.png / _curves.png into DIR
(default OUTPUT_DIR/interpretability) and prints the Markdown tables: mean ± std per method, then each
interpreter map minus each other method with its paired bootstrap 95 % interval ("tie" when it contains 0).
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
    p.add_argument("--out", default="", help="output folder (default OUTPUT_DIR/interpretability)")
    p.add_argument("opts", nargs=argparse.REMAINDER, default=[], help="KEY VALUE overrides")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s %(levelname)s] %(message)s", stream=sys.stderr)

    from video_iared.interpret.interpretability import evaluate_from_cfg, paired_markdown, summary_markdown
    from video_iared.config import load_config_for_cli

    cfg = load_config_for_cli(args.cfg_file, args.opts)
    if cfg is None:
        return 2
    try:
        res = evaluate_from_cfg(cfg, args.checkpoint, args.out)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(summary_markdown(res, cfg.INTERP.TOPK))
    print(paired_markdown(res, cfg.INTERP.TOPK))
    return 0


if __name__ == "__main__":
    sys.exit(main())
