#!/usr/bin/env python
"""Parameters and fvcore GFLOPs (GMACs: 1 multiply-add = 1 flop) per view and for all test views.

    python tools/flops.py --cfg FILE [KEY VALUE ...]

Ends with one machine-readable line: params_m=<float> gflops_per_view=<float> views=<int> gflops_total=<float>
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
    p.add_argument("opts", nargs=argparse.REMAINDER, default=[], help="KEY VALUE overrides")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)

    from video_iared.benchmarks.flops_report import report_flops
    from video_iared.profiling.flops import format_flops_line
    from video_iared.config import load_config_for_cli

    cfg = load_config_for_cli(args.cfg_file, args.opts)
    if cfg is None:
        return 2
    print(format_flops_line(report_flops(cfg)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
