"""The body of ``tools/run_net.py``, importable so the console script and the tests run the same code."""
from __future__ import annotations

import argparse
import logging
import os
import re
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
    from video_iared.data.readers import BackendUnavailableError
    from video_iared.engine.predict import PredictInputError
    from video_iared.engine.multiview_test import NoVideoEvaluatedError

    # OSError: an OUTPUT_DIR under a file, a read-only or full disk (the message names the path and errno);
    # BackendUnavailableError: DATA.DECODING_BACKEND torchcodec without the package or FFmpeg's libraries (the fix)
    return (AnnotationError, BackendUnavailableError, CheckpointError, OSError, PredictInputError,
            TooManyBadVideosError, NoVideoEvaluatedError)


def error_text(e: BaseException) -> str:
    """The message of ``e`` for an ``error:`` line. An exception raised in a DataLoader worker arrives with the
    worker's traceback inside its message ("Caught X in DataLoader worker process 0. Original Traceback ..."):
    only the original message is kept."""
    text = str(e)
    marker = "Original Traceback (most recent call last):"
    if marker in text:
        tail = text.split(marker, 1)[1]
        m = re.search(rf"^(?:[\w.]+\.)?{re.escape(type(e).__name__)}: ", tail, re.M)
        text = tail[m.end():] if m else tail.strip().splitlines()[-1]
    return text.strip()


def report_error(e: BaseException) -> None:
    """Print ``error: ...`` to stderr and record it in the run's log.txt (when logging to one is set up)."""
    text = error_text(e)
    record = logging.LogRecord("video_iared", logging.ERROR, __file__, 0, "error: %s", (text,), None)
    for h in logging.getLogger().handlers:
        if isinstance(h, logging.FileHandler):  # log.txt only: stdout's last line stays the summary line
            h.handle(record)
        h.flush()
    print(f"error: {text}", file=sys.stderr, flush=True)


def run_net(argv: Optional[List[str]] = None) -> int:
    """Parse, validate and run; returns the exit code (1: data / checkpoint error, 2: config error)."""
    args = parse_args(argv)
    cfg = load_config_for_cli(args.cfg_file, args.opts)
    if cfg is None:
        return 2
    # imported here, after the arguments and the config: --help and config errors need no torch
    from video_iared.benchmarks.stage import run_benchmark_stage
    from video_iared.engine.run import run

    try:
        run(cfg, benchmark=run_benchmark_stage)
    except user_errors() as e:
        report_error(e)
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
    from video_iared.engine.device import init_from_cfg
    from video_iared.engine.predict import predict
    from video_iared.utils.logging import setup_logging

    info = init_from_cfg(cfg)
    try:
        setup_logging(cfg.OUTPUT_DIR if info.is_main else "", is_main=info.is_main)
        out = predict(cfg, info)
    except user_errors() as e:
        du.cleanup(synchronize=False)
        report_error(e)
        return 1
    except BaseException:
        du.cleanup(synchronize=False)
        raise
    du.cleanup()
    if info.is_main:
        print(f"predictions: {os.path.abspath(out)}", flush=True)
    return 0
