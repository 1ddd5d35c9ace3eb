"""Spatial transforms of decoded clips: uint8 (T, H, W, C) frames -> normalised float (C, T, H, W), or uint8
(C, T, H, W) with ``normalize=False`` (DATA.NORMALIZE_ON_DEVICE: the device normalises, data/device_normalize.py).

Built on ``torchvision.transforms.v2.functional``, which resizes uint8 video tensors (T, C, H, W) with its
fast uint8 path. ``pytorchvideo.transforms`` would be the natural choice, but pytorchvideo 0.1.5 fails to
import it with current torchvision (it imports the removed ``torchvision.transforms.functional_tensor``).
The random draws come from a numpy ``Generator`` passed in, so a seeded item is reproducible.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from torchvision.transforms.v2 import functional as F


def _to_tchw(frames: np.ndarray) -> torch.Tensor:
    """uint8 (T, H, W, C) numpy -> uint8 (T, C, H, W) tensor (no copy)."""
    if frames.ndim != 4:
        raise ValueError(f"frames must be (T, H, W, C), got shape {frames.shape}")
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)


def short_side_scale(x: torch.Tensor, size: int) -> torch.Tensor:
    """Resize (T, C, H, W) so that its short side is ``size`` (bilinear, antialiased), keeping the aspect."""
    h, w = x.shape[-2:]
    if min(h, w) == size:
        return x
    if h <= w:
        new_h, new_w = size, max(size, int(round(w * size / h)))
    else:
        new_h, new_w = max(size, int(round(h * size / w))), size
    return F.resize(x, [new_h, new_w], antialias=True)


def crop_offsets(length: int, crop: int, count: int) -> List[int]:
    """Offsets of ``count`` crops of size ``crop`` evenly spaced along a side of ``length`` pixels
    (1: center; 3: start / center / end, PySlowFast's left-center-right)."""
    if crop > length:
        raise ValueError(f"crop {crop} is larger than the side {length}")
    if count == 1:
        return [(length - crop) // 2]
    return [int(round((length - crop) * i / (count - 1))) for i in range(count)]


def _per_channel(values, x: torch.Tensor, channel_dim: int) -> torch.Tensor:
    """``values`` (one per channel) shaped to broadcast over ``x`` with channels on ``channel_dim``; a tensor
    already shaped (more than one dimension) is used as it is."""
    if isinstance(values, torch.Tensor) and values.dim() > 1:
        return values
    trailing = x.dim() - 1 - channel_dim % x.dim()
    return torch.as_tensor(values, dtype=x.dtype, device=x.device).reshape(-1, *([1] * trailing))


def normalize_pixels(x: torch.Tensor, mean, std, channel_dim: int) -> torch.Tensor:
    """``(x / 255 - mean) / std`` per channel: the ONE definition of the normalisation, used in the loader
    workers (``normalize_clip``) and on the device (``device_normalize.ClipNormalizer``), so both give the same
    numbers. ``x``: uint8 pixels (0-255), or floats already scaled to [0, 1], any layout with the channels on
    ``channel_dim``; ``mean`` / ``std``: one value per channel (sequences, or tensors shaped to broadcast).
    Returns float32 for uint8 input (the input's dtype for floats); the input is never modified. Elementwise
    ops only (cast, divide, subtract, divide): no host read, so it never synchronises a device."""
    if x.is_floating_point():
        x = x.sub(_per_channel(mean, x, channel_dim))
    else:
        x = x.to(torch.float32).div_(255.0)
        x.sub_(_per_channel(mean, x, channel_dim))
    return x.div_(_per_channel(std, x, channel_dim))


def to_cthw(x: torch.Tensor) -> torch.Tensor:
    """(T, C, H, W) -> contiguous (C, T, H, W), any dtype (the clip layout the model takes)."""
    return x.permute(1, 0, 2, 3).contiguous()


def normalize_clip(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 (T, C, H, W) -> float (C, T, H, W), scaled to [0, 1] then normalised per channel."""
    return to_cthw(normalize_pixels(x, mean, std, channel_dim=1))


def finish_clip(x: torch.Tensor, mean: Sequence[float], std: Sequence[float], normalize: bool) -> torch.Tensor:
    """A transform's last step: uint8 (T, C, H, W) -> normalised float (C, T, H, W), or uint8 (C, T, H, W)
    when ``normalize`` is False (the device normalises: 4x fewer bytes through the loader's shared memory)."""
    return normalize_clip(x, mean, std) if normalize else to_cthw(x)


class TrainTransform:
    """Random short-side scale in ``jitter_scales``, random ``crop_size`` crop, optional horizontal flip,
    normalisation. ``__call__(frames uint8 (T, H, W, C), rng) -> float (C, T, crop, crop)``; uint8 (C, T, crop,
    crop), not normalised, when ``normalize`` is False."""

    def __init__(self, jitter_scales: Tuple[int, int], crop_size: int, flip: bool,
                 mean: Sequence[float], std: Sequence[float], normalize: bool = True):
        self.jitter_scales, self.crop_size, self.flip = tuple(jitter_scales), crop_size, flip
        self.mean, self.std, self.normalize = list(mean), list(std), bool(normalize)

    def __call__(self, frames: np.ndarray, rng: Optional[np.random.Generator] = None) -> torch.Tensor:
        rng = rng if rng is not None else np.random.default_rng()
        x = _to_tchw(frames)
        lo, hi = self.jitter_scales
        x = short_side_scale(x, int(rng.integers(lo, hi + 1)))
        h, w = x.shape[-2:]
        top = int(rng.integers(0, h - self.crop_size + 1))
        left = int(rng.integers(0, w - self.crop_size + 1))
        x = F.crop(x, top, left, self.crop_size, self.crop_size)
        if self.flip and rng.random() < 0.5:
            x = F.horizontal_flip(x)
        return finish_clip(x, self.mean, self.std, self.normalize)


class TestTransform:
    """Short-side scale to ``crop_size`` then ``num_crops`` square crops evenly spaced along the long side,
    normalised. ``__call__(frames uint8 (T, H, W, C)) -> float (num_crops, C, T, crop, crop)``; uint8, not
    normalised, when ``normalize`` is False."""

    __test__ = False  # not a pytest test class despite its name

    def __init__(self, crop_size: int, num_crops: int, mean: Sequence[float], std: Sequence[float],
                 normalize: bool = True):
        self.crop_size, self.num_crops = crop_size, num_crops
        self.mean, self.std, self.normalize = list(mean), list(std), bool(normalize)

    def __call__(self, frames: np.ndarray, rng: Optional[np.random.Generator] = None) -> torch.Tensor:
        x = short_side_scale(_to_tchw(frames), self.crop_size)
        h, w = x.shape[-2:]
        crops = []
        if w >= h:
            for left in crop_offsets(w, self.crop_size, self.num_crops):
                crops.append(F.crop(x, (h - self.crop_size) // 2, left, self.crop_size, self.crop_size))
        else:
            for top in crop_offsets(h, self.crop_size, self.num_crops):
                crops.append(F.crop(x, top, (w - self.crop_size) // 2, self.crop_size, self.crop_size))
        return torch.stack([finish_clip(c, self.mean, self.std, self.normalize) for c in crops])
