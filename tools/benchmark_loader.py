#!/usr/bin/env python
"""Loader benchmark: ``python tools/benchmark_loader.py --cfg FILE [KEY VALUE ...]``.

Prints clips/s and decode ms per clip for each decoding backend (training and multi-view test loading) at
DATA_LOADER.NUM_WORKERS workers, and the tiny model's training clips/s when a model can be built.

Sizing a node (video_iared.benchmarks.loader_sizing): at the config's clip settings, on Kinetics-like videos
(10 s, 30 fps, 320p H.264) written into DIR, clips/s per worker for each backend (float and uint8 handoff),
test views/s per worker, and the workers one GPU needs at the model rates given:

    python tools/benchmark_loader.py --cfg configs/k400_dense.yaml --sizing DIR \
        --gpu-train-clips-per-s 40 --gpu-test-views-per-s 150

ends with one ``sizing backend=<name> ... workers_per_gpu_train=<int> workers_per_gpu_test=<int>`` line per backend.
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
    p.add_argument("--sizing", metavar="DIR", default="", help="size a node on Kinetics-like videos written into DIR")
    p.add_argument("--sizing-videos", type=int, default=4, help="--sizing: videos written (10 s, 30 fps, 320p)")
    p.add_argument("--sizing-clips", type=int, default=8, help="--sizing: clips timed per backend")
    p.add_argument("--gpu-train-clips-per-s", type=float, default=None,
                   help="--sizing: training clips/s one GPU runs (forward + backward) at these settings")
    p.add_argument("--gpu-test-views-per-s", type=float, default=None,
                   help="--sizing: test views/s one GPU runs (forward) at these settings")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    from video_iared.benchmarks.loader_benchmark import benchmark_loader
    from video_iared.config import load_config_for_cli

    cfg = load_config_for_cli(args.cfg, args.opts)
    if cfg is None:
        return 2
    if args.sizing:
        from video_iared.benchmarks.loader_sizing import run_sizing

        run_sizing(cfg, args.sizing, args.backends, args.sizing_videos, args.sizing_clips,
                   args.gpu_train_clips_per_s, args.gpu_test_views_per_s)
        return 0
    benchmark_loader(cfg, args.backends, with_model=not args.no_model)
    return 0


if __name__ == "__main__":
    sys.exit(main())
