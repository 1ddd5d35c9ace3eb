#!/usr/bin/env python
"""The three-split average of UCF101 / HMDB51 test runs.

    python tools/split_average.py output/ucf101_dense/split1 output/ucf101_dense/split2 output/ucf101_dense/split3

Each argument is a run's OUTPUT_DIR (its predictions.csv) or a predictions CSV. Prints a table and one line
``splits=<n> video_top1_mean=<float> gflops_per_view_mean=<float>``.
"""
import argparse
import os
import sys

if not __package__:  # a script of the checkout (installed, this file is the module video_iared.tools.X)
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="OUTPUT_DIR of each split's run (or its predictions.csv)")
    args = p.parse_args(argv)
    from video_iared.benchmarks.split_average import format_split_average, split_average

    try:
        print(format_split_average(split_average(args.runs)))
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
