#!/usr/bin/env python
"""Benchmarks. ``--speed``: forward-pass time of the model variants at test size.

    python tools/benchmark.py --speed [--batch-sizes 1 4] [--warmup N] [--reps N] [--precision fp32|bf16]
                              [--with-explicit]
                              --cfg FILE [KEY VALUE ...]

Prints a table (median, min, max seconds per forward pass and per clip) and one ``speed ...`` line per row.
"""
import argparse
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cfg", nargs="+", required=True, metavar=("FILE", "KEY VALUE"),
                   help="a YAML config, then KEY VALUE overrides")
    p.add_argument("--speed", action="store_true", help="time the forward pass of the model variants")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4])
    p.add_argument("--warmup", type=int, default=None, help="default: BENCHMARK.WARMUP_ITERS")
    p.add_argument("--reps", type=int, default=None, help="default: BENCHMARK.NUM_ITERS")
    p.add_argument("--with-explicit", action="store_true",
                   help="also time a copy with explicit-matmul attention (the straightforward implementation)")
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)

    from video_iared.config import ConfigError, load_config

    try:
        cfg = load_config(args.cfg[0], args.cfg[1:])
    except (ConfigError, FileNotFoundError) as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    if not args.speed:
        p.error("choose a benchmark: --speed")
    if cfg.NUM_THREADS > 0:
        import torch

        torch.set_num_threads(cfg.NUM_THREADS)
    from video_iared.analysis.speed import format_speed_table, run_speed_benchmark

    results = run_speed_benchmark(cfg, args.batch_sizes, args.warmup, args.reps, args.precision,
                                  with_explicit=args.with_explicit)
    print(format_speed_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
