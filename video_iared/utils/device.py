"""The one device rule: the compute device from the config's DEVICE ("auto" | "cpu" | "cuda") and NUM_GPUS.

``engine.device`` applies it at the config boundary (one process per GPU under torchrun); the data package asks
it whether a run is on CUDA (torchcodec's GPU decoding, pinned host memory).
"""
from __future__ import annotations

import torch


def resolve_device(device: str, num_gpus: int, local_rank: int = 0) -> torch.device:
    """``auto``: CUDA (the GPU of ``local_rank``) when present and ``num_gpus`` > 0, else the cpu; ``cpu``; ``cuda``
    (an error without a GPU). ``num_gpus`` 0 forces the cpu."""
    if device == "cpu" or num_gpus == 0:
        return torch.device("cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("DEVICE is 'cuda' but torch.cuda.is_available() is False; set DEVICE auto or cpu")
    if device in ("cuda", "auto") and torch.cuda.is_available():
        return torch.device("cuda", local_rank % max(torch.cuda.device_count(), 1))
    if device == "auto":
        return torch.device("cpu")
    raise ValueError(f"DEVICE: unknown device {device!r} (auto | cpu | cuda)")
