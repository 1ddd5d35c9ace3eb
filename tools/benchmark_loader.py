#!/usr/bin/env python
"""Loader benchmark: ``python tools/benchmark_loader.py --cfg FILE [KEY VALUE ...]``.

Prints clips/s and decode ms per clip for each decoding backend (training and multi-view test loading) at
DATA_LOADER.NUM_WORKERS workers, and the tiny model's training clips/s when a model can be built.
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
    p.add_argument("--backends", nargs="+", default=["pyav", "decord", "torchcodec"],
                   choices=["pyav", "decord", "torchcodec"], help="decoding backends, side by side (default: all)")
    p.add_argument("--no-model", action="store_true", help="skip timing the model's training step")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    from video_iared.analysis.loader_benchmark import benchmark_loader
    from video_iared.config import load_config_for_cli

    cfg = load_config_for_cli(args.cfg, args.opts)
    if cfg is None:
        return 2
    benchmark_loader(cfg, args.backends, with_model=not args.no_model)
    return 0


if __name__ == "__main__":
    sys.exit(main())
