"""``build_model(cfg)``: where the config stops and the model's plain arguments begin.

Above ``models`` (the dense TimeSformer), ``pruning`` (the IA-RED² TimeSformer) and ``checkpoint`` (the
weights named by ``TIMESFORMER.PRETRAINED_MODEL``): the one module that knows all three, so none of them
needs to know another (see docs/design.md, "Layers").
"""
from __future__ import annotations

import logging

from typing import List, Sequence, Tuple

import torch
from fvcore.common.config import CfgNode
from torch import nn

from video_iared.checkpoint import load_checkpoint
from video_iared.models.timesformer import TimeSformer
from video_iared.pruning.iared import IAREDTimeSformer

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
    model = IAREDTimeSformer(**iared_kwargs(cfg), **timesformer_kwargs(cfg))
    if cfg.TIMESFORMER.PRETRAINED_MODEL:
        load_checkpoint(cfg.TIMESFORMER.PRETRAINED_MODEL, model)
    return model


def build_model(cfg: CfgNode) -> nn.Module:
    """The dense TimeSformer, or the IA-RED² model when ``IARED.ENABLE`` (``build_iared_model``).

    When ``TIMESFORMER.PRETRAINED_MODEL`` is set (dense model), those image / video weights are loaded
    into the new model (strict, with a logged report), as the reference does at build time.
    """
    if cfg.IARED.ENABLE:
        return build_iared_model(cfg)
    model = TimeSformer(**timesformer_kwargs(cfg))
    if cfg.TIMESFORMER.PRETRAINED_MODEL:
        load_checkpoint(cfg.TIMESFORMER.PRETRAINED_MODEL, model)
    return model


def build_keep_ratio_models(cfg, keep_rates: Sequence[float]) -> Tuple[nn.Module, List[nn.Module]]:
    """(dense TimeSformer, [IA-RED² models in keep_ratio mode, one per rate]) sharing the dense weights."""
    torch.manual_seed(cfg.RNG_SEED)
    dense = TimeSformer(**timesformer_kwargs(cfg)).eval()
    models = []
    for r in keep_rates:
        kw = iared_kwargs(cfg)
        kw.update(mode="keep_ratio", keep_ratio=[float(r)] * len(kw["groups"]), execution="packed")
        m = IAREDTimeSformer(**kw, **timesformer_kwargs(cfg)).eval()
        m.load_state_dict(dense.state_dict(), strict=False)  # only interpreters.* are new
        models.append(m)
    return dense, models
