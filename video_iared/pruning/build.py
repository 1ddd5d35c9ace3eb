"""``build_iared_model(cfg)``: the config stops here; ``IAREDTimeSformer`` takes plain arguments."""
from __future__ import annotations

from fvcore.common.config import CfgNode

from video_iared.pruning.iared import IAREDTimeSformer


def iared_kwargs(cfg: CfgNode) -> dict:
    """The IA-RED² keyword arguments read from ``cfg.IARED``."""
    ia = cfg.IARED
    return dict(
        groups=list(ia.GROUPS),
        interp_heads=ia.NUM_HEADS,
        interp_head_dim=ia.HEAD_DIM,
        threshold=ia.THRESHOLD,
        mode=ia.MODE,
        keep_ratio=list(ia.KEEP_RATIO),
        execution=ia.EXECUTION,
        init_keep_prob=ia.INIT_KEEP_PROB,
        attention_backend=ia.ATTENTION_BACKEND,
    )


def build_iared_model(cfg: CfgNode) -> IAREDTimeSformer:
    """The IA-RED² TimeSformer of ``cfg`` (dense backbone arguments from ``TIMESFORMER`` / ``MODEL``).

    Weights are not loaded here: the curriculum loads ``IARED.DENSE_CHECKPOINT`` (``train_iared``), the test
    stage loads the trained IA-RED² checkpoint. ``TIMESFORMER.PRETRAINED_MODEL`` (image / dense video weights)
    is loaded into the backbone when set, leaving the interpreters freshly initialised.
    """
    from video_iared.models.build import timesformer_kwargs

    model = IAREDTimeSformer(**iared_kwargs(cfg), **timesformer_kwargs(cfg))
    if cfg.TIMESFORMER.PRETRAINED_MODEL:
        from video_iared.checkpoint import load_checkpoint

        load_checkpoint(cfg.TIMESFORMER.PRETRAINED_MODEL, model)
    return model
