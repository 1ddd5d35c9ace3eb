"""Autocast and gradient-scaler choice from the device and a precision name, in one place."""
from __future__ import annotations

import contextlib
from typing import Optional

import torch
from video_iared.utils.precision import precision_dtype


def amp_dtype(device: torch.device, precision: str, key: str = "TEST.PRECISION") -> Optional[torch.dtype]:
    """The autocast dtype for ``precision`` ("fp32" | "bf16" | "fp16" | "mixed"), or None for float32.

    "mixed" is TRAIN.MIXED_PRECISION with TRAIN.AMP_DTYPE "auto": fp16 on cuda (with a GradScaler), bf16 on the
    cpu, whose autocast has no fp16 kernels worth using. The other names follow
    ``utils.precision.precision_dtype`` (fp16 on the cpu is refused, naming ``key``, rather than silently run
    in another precision).
    """
    if precision == "mixed":
        return torch.float16 if device.type == "cuda" else torch.bfloat16

    return precision_dtype(precision, device, key)


def train_dtype(device: torch.device, mixed: bool, amp: str = "auto") -> Optional[torch.dtype]:
    """The training autocast dtype: None without TRAIN.MIXED_PRECISION; else TRAIN.AMP_DTYPE ("auto" | "bf16" |
    "fp16"): bf16 trains without a GradScaler (float32's range), fp16 with one (cuda only)."""
    if not mixed:
        return None
    return amp_dtype(device, "mixed" if amp == "auto" else amp, key="TRAIN.AMP_DTYPE")


def policy_dtype(dtype: Optional[torch.dtype]) -> Optional[torch.dtype]:
    """The autocast dtype of the IA-RED² curriculum and calibration forwards under mixed precision: bf16 whatever
    the training dtype (the REINFORCE step has no GradScaler, and fp16 gradients of the interpreters would
    underflow), None in float32."""
    return None if dtype is None else torch.bfloat16


def autocast(device: torch.device, dtype: Optional[torch.dtype]):
    """``torch.autocast`` for ``dtype`` on ``device``, or a no-op context for float32."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def make_scaler(device: torch.device, dtype: Optional[torch.dtype]) -> torch.amp.GradScaler:
    """A GradScaler, enabled only for fp16 on cuda (bf16 has float32's range and needs none)."""
    return torch.amp.GradScaler(device.type, enabled=(dtype == torch.float16 and device.type == "cuda"))
