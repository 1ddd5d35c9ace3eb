"""Normalisation on the model's device (DATA.NORMALIZE_ON_DEVICE): loader workers hand over uint8 clips.

A normalised float32 clip is 4x the bytes of its uint8 pixels. With DATA.NORMALIZE_ON_DEVICE the datasets return
uint8 (C, T, H, W) clips (``(num_crops, C, T, H, W)`` test views), so the workers skip the normalisation, and
shared memory, pinned memory and the host-to-device copy carry a quarter of the bytes. Every loop that feeds a
model moves the batch with ``.to(device, non_blocking=True)`` and then calls its normaliser (built once per
loop): a ``ClipNormalizer`` turns uint8 into float32 ``(x / 255 - mean) / std`` there, with the same arithmetic
function as the worker-side ``transforms.normalize_clip`` (``transforms.normalize_pixels``). Float input is
passed through unchanged, so a normaliser can stand in any loop whatever the dataset returns.
"""
from __future__ import annotations

from typing import Callable, Dict, Optional, Sequence, Tuple

import torch
from fvcore.common.config import CfgNode

from .transforms import normalize_pixels

# normalizer(x) -> the model's input: float clips unchanged, uint8 clips normalised on x's device
Normalizer = Callable[[torch.Tensor], torch.Tensor]


class ClipNormalizer:
    """uint8 clips (..., C, T, H, W) -> float32 ``(x / 255 - mean) / std`` per channel, on the clip's device.

    ``mean`` / ``std``: one value per channel (0-1 pixel scale). The per-channel tensors are made once per
    (device, dtype) and cached; a call is four elementwise kernels (cast, /255, -mean, /std) and reads nothing
    back to the host. Floating-point input is returned as it is (already normalised by the worker)."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], channel_dim: int = -4):
        self.mean, self.std = [float(v) for v in mean], [float(v) for v in std]
        if not self.mean or len(self.mean) != len(self.std):
            raise ValueError(f"mean {self.mean} and std {self.std} need the same number (> 0) of channels")
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std {self.std}: every value must be > 0")
        if channel_dim >= 0:
            raise ValueError(f"channel_dim {channel_dim}: counted from the end (-4 for (..., C, T, H, W))")
        self.channel_dim = channel_dim
        self._stats: Dict[Tuple[torch.device, torch.dtype], Tuple[torch.Tensor, torch.Tensor]] = {}

    def stats(self, device: torch.device, dtype: torch.dtype = torch.float32) -> Tuple[torch.Tensor, torch.Tensor]:
        """(mean, std) on ``device`` as (C, 1, ..., 1) tensors broadcasting over the channel dimension."""
        key = (torch.device(device), dtype)
        if key not in self._stats:
            shape = (-1,) + (1,) * (-self.channel_dim - 1)
            self._stats[key] = tuple(torch.tensor(v, dtype=dtype, device=device).reshape(shape)
                                     for v in (self.mean, self.std))
        return self._stats[key]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.is_floating_point():
            return x
        if x.dtype != torch.uint8:
            raise TypeError(f"ClipNormalizer: clips must be uint8 pixels or floats, got {x.dtype}")
        if x.dim() < -self.channel_dim or x.shape[self.channel_dim] != len(self.mean):
            raise ValueError(f"ClipNormalizer: clip of shape {tuple(x.shape)} has no {len(self.mean)} channels "
                             f"at dim {self.channel_dim} (DATA.MEAN / DATA.STD give {len(self.mean)})")
        mean, std = self.stats(x.device)
        return normalize_pixels(x, mean, std, self.channel_dim)

    def __repr__(self) -> str:
        return f"ClipNormalizer(mean={self.mean}, std={self.std})"


class FloatPassThrough:
    """The normaliser when the workers normalise (DATA.NORMALIZE_ON_DEVICE False): floats pass unchanged; a
    uint8 clip means a dataset built for on-device normalisation met a loop given no ``ClipNormalizer``."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not x.is_floating_point():
            raise TypeError(f"a {x.dtype} clip reached the model without a normaliser: datasets built with "
                            "DATA.NORMALIZE_ON_DEVICE True return uint8 clips; pass the loop "
                            "build_normalizer(cfg) (video_iared.data.device_normalize)")
        return x

    def __repr__(self) -> str:
        return "FloatPassThrough()"


def as_normalizer(normalizer: Optional[Normalizer]) -> Normalizer:
    """``normalizer``, or a ``FloatPassThrough`` for None (the loops' default: float clips, as before)."""
    return normalizer if normalizer is not None else FloatPassThrough()


def build_normalizer(cfg: CfgNode) -> Normalizer:
    """DATA.NORMALIZE_ON_DEVICE: ``ClipNormalizer(DATA.MEAN, DATA.STD)``; else a ``FloatPassThrough``."""
    if cfg.DATA.NORMALIZE_ON_DEVICE:
        return ClipNormalizer(cfg.DATA.MEAN, cfg.DATA.STD)
    return FloatPassThrough()

