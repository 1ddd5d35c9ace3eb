"""``tools/flops.py``: the parameters and fvcore GFLOPs of a config's model at test size, for all test views."""
from __future__ import annotations

import logging
from typing import Dict, Optional

from video_iared.build import build_model
from video_iared.profiling.flops import log_model_info


def report_flops(cfg, log: Optional[logging.Logger] = None) -> Dict[str, float]:
    """tools/flops.py: build the model of ``cfg`` and count it at test size for all test views.

    Per view: one (1, C, NUM_FRAMES, TEST_CROP_SIZE, TEST_CROP_SIZE) clip; views: NUM_ENSEMBLE_VIEWS x
    NUM_SPATIAL_CROPS. A pruned model's count depends on the clip: measure it on real clips with
    ``model_gflops`` (or, for IA-RED², without a trace: ``pruning.exact_cost``) instead of this random one.
    """
    cfg = cfg.clone()
    cfg.defrost()
    cfg.TIMESFORMER.PRETRAINED_MODEL = ""  # counting needs no weights
    model = build_model(cfg).eval()
    views = cfg.TEST.NUM_ENSEMBLE_VIEWS * cfg.TEST.NUM_SPATIAL_CROPS
    return log_model_info(model, cfg.DATA.NUM_FRAMES, cfg.DATA.TEST_CROP_SIZE, cfg.DATA.INPUT_CHANNEL_NUM[0],
                          views=views, log=log)
