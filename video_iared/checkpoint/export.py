"""Writing clean weights-only checkpoints (``tools/convert_checkpoint.py``)."""
from __future__ import annotations

import json
import logging
import os
from typing import Any, Dict, Optional

import torch
from torch import nn

from .convert import detect_format, read_source
from .io import CALIBRATION_KEY, CheckpointError, read_calibration, unwrap
from .load import LoadReport, load_checkpoint

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
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if path.endswith(".safetensors"):
        from safetensors.torch import save_file

        meta = {"format": "video_iared"}
        if arch:
            meta["arch"] = json.dumps(arch)
        if calibration:
            meta[CALIBRATION_KEY] = json.dumps(calibration)
        save_file(sd, path, metadata=meta)
    else:
        obj: Dict[str, Any] = {"model_state": sd, "arch": dict(arch) if arch else None}
        if calibration:
            obj[CALIBRATION_KEY] = dict(calibration)
        torch.save(obj, path)
    return path


def convert_checkpoint(source: str, out: str, model: Optional[nn.Module] = None) -> Optional[LoadReport]:
    """Convert ``source`` (official .pyth, ours, timm image weights) into a clean weights file at ``out``.

    With ``model`` the weights are first loaded into it (strict, with resizing / inflation to the model's
    size and the report, returned) and the model's weights are written. Without a model, official and our
    checkpoints are written as they are (prefix stripped, optimizer and config dropped); timm image weights
    need a model to be inflated into. An IA-RED² checkpoint's calibrated threshold (``CALIBRATION_KEY``) is
    carried over either way.
    """
    if model is not None:
        report = load_checkpoint(source, model)
        target = unwrap(model)
        calibration = _source_calibration(source)
        write_weights(out, target.state_dict(), target.arch() if hasattr(target, "arch") else None, calibration)
        _log_calibration(calibration, out)
        return report
    obj, file = read_source(source)
    sd, fmt, arch = detect_format(obj, file)
    if fmt == "timm":
        raise CheckpointError(f"{file}: image weights must be inflated into a model; pass --cfg")
    calibration = obj.get(CALIBRATION_KEY)
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


def _source_calibration(source: str) -> Optional[Dict[str, Any]]:
    """The calibration record of a checkpoint file that ``load_checkpoint`` has already read, or None (a timm
    name). A file that does not load with ``weights_only=True`` (the official .pyth pickles their config) is
    read again the way ``load_checkpoint`` read it, with the same warning."""
    if not os.path.isfile(source):
        return None
    try:
        return read_calibration(source)
    except CheckpointError:
        return read_source(source)[0].get(CALIBRATION_KEY)


def _log_calibration(calibration: Optional[Dict[str, Any]], out: str) -> None:
    if calibration:
        logger.info("kept the calibrated IA-RED² threshold %s (target cost %s) in %s",
                    calibration.get("threshold"), calibration.get("target_cost"), out)
