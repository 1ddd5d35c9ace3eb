"""The body of ``tools/run_net.py``, importable so the console script and the tests run the same code."""
from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional

from video_iared.config import config_help, load_config_for_cli


CFG_HELP = "a YAML config: a path, or a name from the list below"


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """``run_net``'s command line: ``--cfg FILE`` then ``KEY VALUE`` overrides; ``--help`` names the configs."""
    p = argparse.ArgumentParser(description="Train, test, predict or benchmark a video_iared model.",
                                epilog=config_help())
    p.add_argument("--cfg", dest="cfg_file", required=True, help=CFG_HELP)
    p.add_argument("opts", nargs=argparse.REMAINDER, default=[], help="KEY VALUE overrides, e.g. TRAIN.BATCH_SIZE 4")
    return p.parse_args(argv)


def user_errors() -> tuple:
    """Exceptions that describe a problem with the user's files or settings: printed as one clear line
    (they name the file, line or key), not as a traceback."""
    from video_iared.checkpoint.io import CheckpointError
    from video_iared.data import AnnotationError, TooManyBadVideosError
    from video_iared.engine.predict import PredictInputError

    return (AnnotationError, CheckpointError, FileNotFoundError, PredictInputError, TooManyBadVideosError)


def run_net(argv: Optional[List[str]] = None) -> int:
    """Parse, validate and run; returns the exit code (1: data / checkpoint error, 2: config error, 3: stage not built)."""
    args = parse_args(argv)
    cfg = load_config_for_cli(args.cfg_file, args.opts)
    if cfg is None:
        return 2
    from video_iared.engine.run import StageNotBuiltError, run

    try:
        run(cfg)
    except StageNotBuiltError as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    except user_errors() as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


def predict_main(argv: Optional[List[str]] = None) -> int:
    """The body of ``tools/predict.py``: the PREDICT stage alone, with the usual flags mapped onto config keys."""
    p = argparse.ArgumentParser(description="Batch clip inference: one row per video (CSV or JSON).",
                                epilog=config_help())
    p.add_argument("--cfg", dest="cfg_file", required=True, help=CFG_HELP + " (model and data settings)")
    p.add_argument("--input", required=True, help="a folder, a glob or a list file of videos (PREDICT.INPUT)")
    p.add_argument("--checkpoint", default="", help="weights (TEST.CHECKPOINT_FILE_PATH; default: latest in OUTPUT_DIR)")
    p.add_argument("--output", default="", help="output file name in OUTPUT_DIR, .csv or .json (PREDICT.OUTPUT)")
    p.add_argument("opts", nargs=argparse.REMAINDER, default=[], help="KEY VALUE overrides")
    args = p.parse_args(argv)
    opts = ["PREDICT.ENABLE", "True", "PREDICT.INPUT", args.input, "TRAIN.ENABLE", "False", "TEST.ENABLE", "False",
            "SYNTHETIC.ENABLE", "False", "BENCHMARK.TYPE", ""]
    if args.checkpoint:
        opts += ["TEST.CHECKPOINT_FILE_PATH", args.checkpoint]
    if args.output:
        opts += ["PREDICT.OUTPUT", args.output]
    cfg = load_config_for_cli(args.cfg_file, opts + list(args.opts))
    if cfg is None:
        return 2
    from video_iared.engine import distributed as du
    from video_iared.engine.predict import predict
    from video_iared.utils.logging import setup_logging

    info = du.init_distributed(cfg.DEVICE, cfg.NUM_GPUS, cfg.DIST_BACKEND)
    setup_logging(cfg.OUTPUT_DIR if info.is_main else "", is_main=info.is_main)
    try:
        out = predict(cfg, info)
    except user_errors() as e:
        du.cleanup(synchronize=False)
        print(f"error: {e}", file=sys.stderr)
        return 1
    except BaseException:
        du.cleanup(synchronize=False)
        raise
    du.cleanup()
    if info.is_main:
        print(f"predictions: {os.path.abspath(out)}", flush=True)
    return 0
