"""Training checkpoints: atomic writes, finding the latest one, resuming model + optimizer + scaler.

The layout is PySlowFast's (``model_state``, ``optimizer_state``, ``scaler_state``, ``epoch``, ``cfg``) with
``cfg`` stored as a YAML string and ``arch`` as a plain dict, so ``torch.load(weights_only=True)`` reads the
whole file and a checkpoint of another architecture is refused with a clear error before any tensor is copied.
Loading *weights* from other formats (official .pyth, timm) is ``video_iared.checkpoint.load_checkpoint``'s job.
"""
from __future__ import annotations

import fcntl
import json
import os
import pickle
import re
import tempfile
from typing import Any, BinaryIO, Callable, Dict, List, Optional, Tuple

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


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint whose pickle needs globals beyond tensors and plain containers: unpickling it could run code."""


def safe_torch_load(path: str, mmap: bool = False) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU, the only way any weights are read in this package.

    The official TimeSformer / PySlowFast ``.pyth`` files hold tensors, numbers and the config as a YAML string,
    so nothing needs allow-listing. A pickle that needs any other global (a ``__reduce__`` payload, a pickled
    object) is refused with ``UnsafeCheckpointError`` naming the file and the globals; it is never unpickled.
    """
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:
        refused = _unsafe_globals(path)
        if refused is None:  # not a pickle of disallowed globals: a corrupt or truncated file
            raise CheckpointError(f"{path}: cannot read checkpoint (UnpicklingError: {_first_line(e)})") from e
        raise UnsafeCheckpointError(
            f"{path}: refused to load: its pickle needs the global(s) {', '.join(refused)}, and unpickling them "
            "could run code. Only tensors, numbers, strings and containers are loaded. If you trust the file, "
            f"convert it once: python tools/convert_checkpoint.py --trust-pickle {path} OUT.pyth") from None
    except Exception as e:  # truncated file, not a torch file, ...
        raise CheckpointError(f"{path}: cannot read checkpoint ({type(e).__name__}: {_first_line(e)})") from e


def _unsafe_globals(path: str) -> Optional[list]:
    """The globals of ``path``'s pickle that ``weights_only=True`` refuses (read without running them), or None."""
    try:
        found = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # noqa: BLE001 - not a zip checkpoint: report the load error itself
        return None
    return list(found) or None


def _first_line(e: BaseException) -> str:
    lines = [line for line in str(e).splitlines() if line.strip()]
    return lines[0] if lines else type(e).__name__


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


def stage_checkpoint_name(stage: int) -> str:
    """``iared_stage_XX.pyth``: the file of the model after curriculum stage ``stage`` (0-based)."""
    return f"iared_stage_{stage:02d}.pyth"


def stage_checkpoint_path(output_dir: str, stage: int) -> str:
    """``OUTPUT_DIR/checkpoints/iared_stage_XX.pyth``."""
    return os.path.join(checkpoint_dir(output_dir), stage_checkpoint_name(stage))


def final_checkpoint_path(output_dir: str) -> str:
    """``OUTPUT_DIR/checkpoints/checkpoint_iared.pyth``: the trained IA-RED² model."""
    return os.path.join(checkpoint_dir(output_dir), "checkpoint_iared.pyth")


def latest_checkpoint(output_dir: str) -> Optional[str]:
    """The epoch checkpoint with the highest epoch in ``OUTPUT_DIR/checkpoints``, or None.

    Temporary files of interrupted writes never match the name pattern, so they are ignored.
    """
    d = checkpoint_dir(output_dir)
    if not os.path.isdir(d):
        return None
    found = [(int(m.group(1)), name) for name in os.listdir(d) if (m := _EPOCH_RE.match(name))]
    return os.path.join(d, max(found)[1]) if found else None


def weights_to_evaluate(output_dir: str, iared: bool, configured: str = "", explicit: str = "",
                        just_trained: str = "") -> str:
    """The one rule for the weights an evaluation uses (test, predict, explanations, precision check):
    ``explicit`` (a tool's --checkpoint; must exist), else ``configured`` (TEST.CHECKPOINT_FILE_PATH, PySlowFast's
    rule), else ``just_trained`` (the checkpoint the run just wrote), else, for an IA-RED² config (``iared``), the
    final ``checkpoint_iared.pyth`` of ``output_dir`` when it exists, else its latest epoch checkpoint; "" when
    there is none."""
    if explicit:
        if not os.path.isfile(explicit):
            raise FileNotFoundError(f"--checkpoint {explicit}: no such file")
        return explicit
    if configured or just_trained:
        return configured or just_trained
    final = final_checkpoint_path(output_dir)
    if iared and os.path.isfile(final):
        return final
    return latest_checkpoint(output_dir) or ""


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
    return atomic_write(path, lambda f: torch.save(state, f))


def atomic_write(path: str, write: Callable[[BinaryIO], None]) -> str:
    """``write(f)`` into a temporary file beside ``path`` (held under an exclusive ``flock`` while it is written),
    fsync, then ``os.replace``: a process killed mid-write leaves at most a stray ``.tmp`` file (which
    ``remove_stale_temporaries`` deletes later) and the previous file at ``path`` stays intact. A failed write
    (a full disk, say) raises ``CheckpointError`` naming the file, the OS error and the free space."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = _open_temporary(folder, os.path.basename(path))
    except OSError as e:
        raise CheckpointError(f"{path}: cannot write the checkpoint: {e}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.remove(tmp)
        cause = _os_error_in(e)
        if cause is None:
            raise
        raise CheckpointError(f"{path}: cannot write the checkpoint: {cause} ({_free_mib(folder)} MiB free in "
                              f"{folder}); any previous file there is intact") from None
    return path


def _open_temporary(folder: str, name: str) -> Tuple[int, str]:
    """A new temporary file ``.NAME.XXXX.tmp`` in ``folder``: (fd, path)."""
    return tempfile.mkstemp(prefix="." + name + ".", suffix=".tmp", dir=folder)


def _os_error_in(e: BaseException) -> Optional[OSError]:
    """The OSError behind ``e`` (itself, or in its cause / context chain: torch.save wraps a failed write in its
    own RuntimeError), or None."""
    seen = 0
    while e is not None and seen < 8:
        if isinstance(e, OSError):
            return e
        e, seen = e.__cause__ or e.__context__, seen + 1
    return None


def _free_mib(folder: str) -> int:
    try:
        st = os.statvfs(folder)
    except OSError:
        return -1
    return st.f_bavail * st.f_frsize // (1 << 20)


def remove_stale_temporaries(folder: str) -> List[str]:
    """Delete the ``.*.tmp`` files that killed writes left in ``folder``; returns their paths. A temporary that
    a live writer holds (its ``flock``) is left alone; the finished checkpoints are never touched."""
    removed: List[str] = []
    if not os.path.isdir(folder):
        return removed
    for name in sorted(os.listdir(folder)):
        if not (name.startswith(".") and name.endswith(".tmp")):
            continue
        path = os.path.join(folder, name)
        try:
            with open(path, "rb") as f:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # fails while a writer holds it
                os.remove(path)
            removed.append(path)
        except OSError:  # being written (locked), or gone meanwhile
            continue
    return removed


def read_checkpoint(path: str, mmap: bool = False) -> Dict[str, Any]:
    """Load one of our checkpoints with ``weights_only=True``; errors name the file. ``mmap``: tensors are mapped,
    not read (for the small fields of a checkpoint whose weights are loaded elsewhere)."""
    return safe_torch_load(path, mmap=mmap)


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


def nonfinite_tensors(state_dict: Dict[str, Any]) -> list:
    """The names of the floating-point tensors of ``state_dict`` holding NaN or Inf."""
    return [k for k, v in state_dict.items()
            if isinstance(v, torch.Tensor) and v.is_floating_point() and not bool(torch.isfinite(v).all())]


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
    bad = nonfinite_tensors(state["model_state"])
    if bad:
        raise CheckpointError(f"{path}: non-finite (NaN / Inf) values in {len(bad)} tensor(s): {', '.join(bad[:12])}")
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
