"""Writing clean weights-only checkpoints (``tools/convert_checkpoint.py``)."""
from __future__ import annotations

import json
import logging
from typing import Any, Dict, Optional

import torch
from torch import nn

from .convert import detect_format, read_source, read_trusted_pickle
from .io import CALIBRATION_KEY, CheckpointError, atomic_write, unwrap
from .load import LoadReport, check_model_arch, load_state_dict_checked

logger = logging.getLogger(__name__)


def write_weights(path: str, state_dict: Dict[str, torch.Tensor], arch: Optional[Dict[str, Any]] = None,
                  calibration: Optional[Dict[str, Any]] = None) -> str:
    """Write weights only: ``.safetensors`` (arch in the metadata) or a ``.pyth`` {"model_state", "arch"}.

    ``calibration``: an IA-RED² checkpoint's calibrated-threshold record (``CALIBRATION_KEY``), kept with the
    weights (in the .safetensors metadata as JSON) so the converted file is evaluated at the same threshold.
    The written file loads with ``load_checkpoint`` as format "ours" (``torch.load(weights_only=True)``-safe).
    """
    sd = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    calibration = _plain_record(calibration, path)
    if path.endswith(".safetensors"):
        from safetensors.torch import save

        meta = {"format": "video_iared"}
        if arch:
            meta["arch"] = json.dumps(arch)
        if calibration:
            meta[CALIBRATION_KEY] = json.dumps(calibration)
        return atomic_write(path, lambda f: f.write(save(sd, metadata=meta)))
    obj: Dict[str, Any] = {"model_state": sd, "arch": dict(arch) if arch else None}
    if calibration:
        obj[CALIBRATION_KEY] = dict(calibration)
    return atomic_write(path, lambda f: torch.save(obj, f))


def convert_checkpoint(source: str, out: str, model: Optional[nn.Module] = None,
                       trust_pickle: bool = False) -> Optional[LoadReport]:
    """Convert ``source`` (official .pyth, ours, timm image weights) into a clean weights file at ``out``.

    With ``model`` the weights are first loaded into it (strict, with resizing / inflation to the model's
    size and the report, returned) and the model's weights are written. Without a model, official and our
    checkpoints are written as they are (prefix stripped, optimizer and config dropped); timm image weights
    need a model to be inflated into. An IA-RED² checkpoint's calibrated threshold (``CALIBRATION_KEY``) is
    carried over either way. ``trust_pickle`` (UNSAFE, the user's explicit opt-in): ``source`` is fully
    unpickled instead of refused when it needs globals beyond tensors; the output is weights only.
    """
    if trust_pickle and not source.endswith(".safetensors"):
        obj, file = read_trusted_pickle(source), source
    else:
        obj, file = read_source(source)
    sd, fmt, arch = detect_format(obj, file)
    calibration = obj.get(CALIBRATION_KEY)
    if model is not None:
        if fmt == "ours":
            check_model_arch(arch, unwrap(model), file)
        report = load_state_dict_checked(sd, model, fmt, source=file)
        logger.info("checkpoint report:\n%s", report.summary())
        target = unwrap(model)
        write_weights(out, target.state_dict(), target.arch() if hasattr(target, "arch") else None, calibration)
        _log_calibration(calibration, out)
        return report
    if fmt == "timm":
        raise CheckpointError(f"{file}: image weights must be inflated into a model; pass --cfg")
    write_weights(out, sd, arch, calibration)
    logger.info("wrote %d tensors from %s (%s) to %s", len(sd), file, fmt, out)
    _log_calibration(calibration, out)
    return None


def _plain_record(calibration: Optional[Dict[str, Any]], path: str) -> Optional[Dict[str, Any]]:
    """``calibration`` as plain JSON values (readable with ``weights_only=True`` and storable as safetensors
    metadata), or None when empty; a record that is not JSON-able is refused, naming ``path``."""
    if not calibration:
        return None
    try:
        return json.loads(json.dumps(calibration))
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: the {CALIBRATION_KEY} record is not plain numbers ({e})") from e


def _log_calibration(calibration: Optional[Dict[str, Any]], out: str) -> None:
    if calibration:
        logger.info("kept the calibrated IA-RED² threshold %s (target cost %s) in %s",
                    calibration.get("threshold"), calibration.get("target_cost"), out)
