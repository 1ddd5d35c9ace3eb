#!/usr/bin/env python
"""IA-RED² over seeds x cost budgets from one dense model, each seed against its own "dense + N".

    python tools/seed_grid.py --cfg configs/synthetic_bench.yaml [--seeds 0 1 2] [--budgets 0.7 0.5]
                              [--dense-checkpoint F] [--out-dir DIR] [--report-only] [--versus DIR]
                              [KEY VALUE ...]

Every (seed, budget) cell runs run_net's IA-RED² stages (curriculum, calibration to IARED.TARGET_COST = budget,
finetune, test) from the dense checkpoint into OUT/seed<S>_cost<B>; a seed's first budget also trains and tests
dense + N. Cells already done are skipped, so a stopped grid resumes. Then the report (benchmarks.seed_grid):
a row per cell and a seed-averaged row per budget, with paired bootstrap 95 % intervals against dense and dense + N,
written to OUT/seed_grid.{md,csv,json}. The dense checkpoint defaults to the one run_net trained for this config
(OUTPUT_DIR/dense/checkpoints, latest); OUT defaults to OUTPUT_DIR/seed_grid. Last line: ``seed_grid budgets=...
cost<B>_vs_dense_plus_n=<points> cost<B>_ci=[<lo>,<hi>] cost<B>_half_width=<points> ...``.
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
    p.add_argument("--cfg", dest="cfg_file", required=True, help="an IA-RED² config: a path, or a name listed below")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="RNG_SEED of each run (default 0 1 2)")
    p.add_argument("--budgets", type=float, nargs="+", default=[0.7, 0.5],
                   help="IARED.TARGET_COST of each run: cost as a fraction of dense GFLOPs (default 0.7 0.5)")
    p.add_argument("--dense-checkpoint", default="", help="the trained dense model (default: run_net's for this config)")
    p.add_argument("--out-dir", default="", help="default OUTPUT_DIR/seed_grid")
    p.add_argument("--report-only", action="store_true", help="only the report, from the runs already done")
    p.add_argument("--versus", default="", metavar="DIR",
                   help="also compare this grid's IA-RED² with the grid in DIR (same seeds and budgets, e.g. another "
                        "IARED.MODE), paired per cell and seed-averaged")
    p.add_argument("opts", nargs=argparse.REMAINDER, default=[], help="KEY VALUE overrides")
    args = p.parse_args(argv)

    from video_iared.config import load_config_for_cli

    cfg = load_config_for_cli(args.cfg_file, args.opts)
    if cfg is None:
        return 2
    if not cfg.IARED.ENABLE:
        p.error(f"{args.cfg_file}: the seed grid needs an IA-RED² config (IARED.ENABLE True)")
    if any(not 0.0 < b <= 1.0 for b in args.budgets):
        p.error(f"--budgets: each must be in (0, 1], got {args.budgets}")

    from video_iared.benchmarks import seed_grid
    from video_iared.checkpoint.io import latest_checkpoint
    from video_iared.engine.run import DENSE_DIR, run
    from video_iared.tools_main import report_error, user_errors
    from video_iared.utils.logging import setup_logging

    out_dir = args.out_dir or os.path.join(cfg.OUTPUT_DIR, "seed_grid")
    dense = args.dense_checkpoint or latest_checkpoint(os.path.join(cfg.OUTPUT_DIR, DENSE_DIR)) or ""
    try:
        if not args.report_only:
            if not dense:
                raise FileNotFoundError(f"seed grid: no dense checkpoint in {os.path.join(cfg.OUTPUT_DIR, DENSE_DIR)}: "
                                        f"run tools/run_net.py --cfg {args.cfg_file} first, or pass --dense-checkpoint")
            seed_grid.run_grid(cfg, dense, args.seeds, args.budgets, out_dir, run)
        os.makedirs(out_dir, exist_ok=True)
        setup_logging(out_dir)
        rows = seed_grid.summarize(cfg, out_dir, args.seeds, args.budgets, dense)
        other = seed_grid.versus(cfg, out_dir, args.versus, args.seeds, args.budgets, dense) if args.versus else []
    except user_errors() + (ValueError,) as e:  # ValueError: no video scored by every run
        report_error(e)
        return 1
    print(seed_grid.write_report(rows, out_dir, args.seeds, args.budgets))
    if other:
        table = seed_grid.format_versus(other, args.versus)
        with open(os.path.join(out_dir, "seed_grid_versus.md"), "w") as f:
            f.write(f"IA-RED² of {out_dir} minus IA-RED² of {args.versus} (paired bootstrap 95 % intervals over the "
                    f"same test videos; seed 'all': each video's correctness averaged over the seeds)\n\n{table}\n")
        print(table)
    print(f"report: {os.path.join(out_dir, 'seed_grid.md')}, .csv, .json" + (", seed_grid_versus.md" if other else ""))
    print(seed_grid.summary_line(rows, args.seeds, args.budgets, other), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
