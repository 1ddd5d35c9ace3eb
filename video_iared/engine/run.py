"""The stage dispatcher behind ``tools/run_net.py``: set-up, then benchmark / train / test / predict."""
from __future__ import annotations

import logging
import os
import random

import numpy as np
import torch
from fvcore.common.config import CfgNode

from video_iared.utils.logging import setup_logging

logger = logging.getLogger(__name__)


class StageNotBuiltError(NotImplementedError):
    """A stage the config asks for that this version of the package does not implement yet."""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _not_built(stage: str) -> None:
    raise StageNotBuiltError(f"the {stage} stage is not built yet in this version of video_iared")


def run(cfg: CfgNode) -> None:
    """Run every stage the config enables, in PySlowFast's order."""
    setup_logging(cfg.OUTPUT_DIR)
    os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
    with open(os.path.join(cfg.OUTPUT_DIR, "config.yaml"), "w") as f:
        f.write(cfg.dump())
    seed_everything(cfg.RNG_SEED)
    if cfg.NUM_THREADS > 0:
        torch.set_num_threads(cfg.NUM_THREADS)
    logger.info("output dir: %s", os.path.abspath(cfg.OUTPUT_DIR))

    if cfg.SYNTHETIC.ENABLE:
        from video_iared.synthetic import ensure_synthetic_dataset

        ensure_synthetic_dataset(cfg)

    if cfg.BENCHMARK.TYPE:
        _not_built(f"benchmark ({cfg.BENCHMARK.TYPE})")
        return
    if cfg.TRAIN.ENABLE:
        _not_built("train")
    if cfg.TEST.ENABLE:
        _not_built("test")
    if cfg.PREDICT.ENABLE:
        _not_built("predict")
