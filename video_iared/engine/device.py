"""The one device rule, at the config boundary: every stage, tool and benchmark gets its device from here.

``DEVICE auto`` is cuda when a GPU is present and NUM_GPUS > 0, else the cpu (``utils.device.resolve_device``);
under torchrun each process takes the GPU of its LOCAL_RANK. ``CUDA_TF32`` sets the TF32 flags on cuda.
"""
from __future__ import annotations

import torch
from fvcore.common.config import CfgNode

from video_iared.engine import distributed as du


def init_from_cfg(cfg: CfgNode) -> du.DistInfo:
    """``distributed.init_distributed`` with the config's DEVICE, NUM_GPUS, DIST_BACKEND and CUDA_TF32."""
    return du.init_distributed(cfg.DEVICE, cfg.NUM_GPUS, cfg.DIST_BACKEND, tf32=cfg.CUDA_TF32)


def device_from_cfg(cfg: CfgNode) -> torch.device:
    """The config's compute device for a single-process job (a benchmark, a check); TF32 set as configured."""
    dev = du.resolve_device(cfg.DEVICE, cfg.NUM_GPUS)
    if dev.type == "cuda":
        du.set_tf32(cfg.CUDA_TF32)
    return dev
