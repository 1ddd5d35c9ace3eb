"""``build_model(cfg)``: where the config stops and the model's plain arguments begin."""
from __future__ import annotations

import logging

from fvcore.common.config import CfgNode
from torch import nn

from .timesformer import TimeSformer

logger = logging.getLogger(__name__)


def timesformer_kwargs(cfg: CfgNode) -> dict:
    """The dense TimeSformer's keyword arguments read from ``cfg`` (also used by the IA-RED² builder)."""
    return dict(
        img_size=cfg.DATA.TRAIN_CROP_SIZE,
        patch_size=cfg.TIMESFORMER.PATCH_SIZE,
        in_chans=cfg.DATA.INPUT_CHANNEL_NUM[0],
        num_classes=cfg.MODEL.NUM_CLASSES,
        embed_dim=cfg.TIMESFORMER.EMBED_DIM,
        depth=cfg.TIMESFORMER.DEPTH,
        num_heads=cfg.TIMESFORMER.NUM_HEADS,
        mlp_ratio=cfg.TIMESFORMER.MLP_RATIO,
        qkv_bias=True,
        drop_rate=cfg.MODEL.DROPOUT_RATE,
        drop_path_rate=cfg.MODEL.DROPPATH_RATE,
        num_frames=cfg.DATA.NUM_FRAMES,
        attention_type=cfg.TIMESFORMER.ATTENTION_TYPE,
        time_embed_std=cfg.TIMESFORMER.TIME_EMBED_INIT_STD,
        stem=cfg.TIMESFORMER.STEM,
        stem_channels=cfg.TIMESFORMER.STEM_CHANNELS,
    )


def build_model(cfg: CfgNode) -> nn.Module:
    """The dense TimeSformer, or the IA-RED² model when ``IARED.ENABLE`` (built by ``video_iared.pruning``).

    When ``TIMESFORMER.PRETRAINED_MODEL`` is set (dense model), those image / video weights are loaded
    into the new model (strict, with a logged report), as the reference does at build time.
    """
    if cfg.IARED.ENABLE:
        try:
            from video_iared.pruning import build_iared_model
        except ImportError as e:
            raise RuntimeError(
                "IARED.ENABLE is set but video_iared.pruning.build_iared_model is not available "
                f"(the IA-RED² model is not built yet): {e}"
            ) from e
        return build_iared_model(cfg)

    model = TimeSformer(**timesformer_kwargs(cfg))
    if cfg.TIMESFORMER.PRETRAINED_MODEL:
        from video_iared.checkpoint import load_checkpoint

        load_checkpoint(cfg.TIMESFORMER.PRETRAINED_MODEL, model)
    return model
