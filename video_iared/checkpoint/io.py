"""Training checkpoints: atomic writes, finding the latest one, resuming model + optimizer + scaler.

The layout is PySlowFast's (``model_state``, ``optimizer_state``, ``scaler_state``, ``epoch``, ``cfg``) with
``cfg`` stored as a YAML string and ``arch`` as a plain dict, so ``torch.load(weights_only=True)`` reads the
whole file and a checkpoint of another architecture is refused with a clear error before any tensor is copied.
Loading *weights* from other formats (official .pyth, timm) is ``video_iared.checkpoint.load_checkpoint``'s job.
"""
from __future__ import annotations

import json
import os
import re
import tempfile
from typing import Any, Dict, Optional

import torch
from torch import nn

CHECKPOINT_DIR = "checkpoints"
_EPOCH_RE = re.compile(r"^checkpoint_epoch_(\d{5,})\.pyth$")
ARCH_KEYS = ("embed_dim", "depth", "num_heads", "patch_size", "attention_type", "num_classes", "stem",
             "stem_channels")  # stem_channels: conv3d stems only, and absent from checkpoints written before it
# the field holding an IA-RED² checkpoint's calibrated threshold (pruning/calibrate.py, ``Calibration.record``);
# a .safetensors weights file carries it as a JSON string in its metadata under the same name
CALIBRATION_KEY = "iared_calibration"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used: unreadable, or made for another architecture."""


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model inside DistributedDataParallel / DataParallel wrappers."""
    return model.module if hasattr(model, "module") and isinstance(model.module, nn.Module) else model


def checkpoint_dir(output_dir: str) -> str:
    return os.path.join(output_dir, CHECKPOINT_DIR)


def epoch_checkpoint_path(output_dir: str, epoch: int) -> str:
    """``OUTPUT_DIR/checkpoints/checkpoint_epoch_00007.pyth`` for epoch 7 (1-based: epochs completed)."""
    return os.path.join(checkpoint_dir(output_dir), f"checkpoint_epoch_{epoch:05d}.pyth")


def best_checkpoint_path(output_dir: str) -> str:
    return os.path.join(checkpoint_dir(output_dir), "checkpoint_best.pyth")


def latest_checkpoint(output_dir: str) -> Optional[str]:
    """The epoch checkpoint with the highest epoch in ``OUTPUT_DIR/checkpoints``, or None.

    Temporary files of interrupted writes never match the name pattern, so they are ignored.
    """
    d = checkpoint_dir(output_dir)
    if not os.path.isdir(d):
        return None
    found = [(int(m.group(1)), name) for name in os.listdir(d) if (m := _EPOCH_RE.match(name))]
    return os.path.join(d, max(found)[1]) if found else None


def save_checkpoint(
    path: str,
    model: nn.Module,
    epoch: int,
    optimizer: Optional[torch.optim.Optimizer] = None,
    scaler: Optional[Any] = None,
    cfg_yaml: str = "",
    arch: Optional[Dict[str, Any]] = None,
    extra: Optional[Dict[str, Any]] = None,
) -> str:
    """Write a checkpoint atomically: a temporary file in the same folder, fsync, then ``os.replace``.

    A process killed mid-write leaves at most a stray ``.tmp`` file; the previous file at ``path`` stays intact.
    """
    state: Dict[str, Any] = {
        "model_state": {k: v.detach().cpu() for k, v in unwrap(model).state_dict().items()},
        "epoch": int(epoch),
        "cfg": cfg_yaml,
        "arch": dict(arch) if arch else None,
    }
    if optimizer is not None:
        state["optimizer_state"] = optimizer.state_dict()
    if scaler is not None and getattr(scaler, "is_enabled", lambda: False)():
        state["scaler_state"] = scaler.state_dict()
    if extra:
        state.update(extra)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def read_checkpoint(path: str, mmap: bool = False) -> Dict[str, Any]:
    """Load one of our checkpoints with ``weights_only=True``; errors name the file. ``mmap``: tensors are mapped,
    not read (for the small fields of a checkpoint whose weights are loaded elsewhere)."""
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as e:  # truncated file, pickle of arbitrary objects, ...
        raise CheckpointError(f"{path}: cannot read checkpoint ({type(e).__name__}: {e})") from e


def read_calibration(path: str) -> Optional[Dict[str, Any]]:
    """The ``iared_calibration`` record of a checkpoint (.pyth or .safetensors), or None when it carries none.

    The weights are mapped, not read: callers load them separately."""
    if not path.endswith(".safetensors"):
        return read_checkpoint(path, mmap=True).get(CALIBRATION_KEY)
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: checkpoint file not found")
    from safetensors import safe_open

    try:
        with safe_open(path, framework="pt") as f:
            meta = f.metadata() or {}
        return json.loads(meta[CALIBRATION_KEY]) if CALIBRATION_KEY in meta else None
    except Exception as e:  # not a safetensors file, bad JSON in the metadata
        raise CheckpointError(f"{path}: cannot read the {CALIBRATION_KEY} record ({type(e).__name__}: {e})") from e


def check_arch(saved: Optional[Dict[str, Any]], expected: Optional[Dict[str, Any]], path: str) -> None:
    """Raise ``CheckpointError`` listing every field where the checkpoint's architecture differs."""
    if not saved or not expected:
        return
    saved = {"stem": "patch", **saved}  # written before the stem was a choice: the linear patch embedding
    diff = [f"{k}: checkpoint {saved.get(k)!r} vs model {expected.get(k)!r}" for k in ARCH_KEYS
            if k in saved and k in expected and saved[k] != expected[k]]
    if diff:
        raise CheckpointError(f"{path}: checkpoint is for another architecture ({'; '.join(diff)})")


def resume_training(
    path: str,
    model: nn.Module,
    optimizer: Optional[torch.optim.Optimizer] = None,
    scaler: Optional[Any] = None,
    arch: Optional[Dict[str, Any]] = None,
) -> int:
    """Restore model, optimizer and scaler from our checkpoint; returns the number of epochs completed.

    The model is loaded strictly: a resumed run that silently kept random weights would be worse than an error.
    """
    state = read_checkpoint(path)
    if "model_state" not in state or "epoch" not in state:
        raise CheckpointError(f"{path}: not a training checkpoint (no model_state / epoch)")
    check_arch(state.get("arch"), arch, path)
    try:
        unwrap(model).load_state_dict(state["model_state"], strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: model_state does not fit the model: {e}") from e
    if optimizer is not None:
        if "optimizer_state" not in state:
            raise CheckpointError(f"{path}: no optimizer_state to resume from")
        optimizer.load_state_dict(state["optimizer_state"])
    if scaler is not None and state.get("scaler_state") and getattr(scaler, "is_enabled", lambda: False)():
        scaler.load_state_dict(state["scaler_state"])
    return int(state["epoch"])
