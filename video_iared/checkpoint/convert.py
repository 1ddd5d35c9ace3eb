"""Reading weights from any supported source and mapping them onto TimeSformer's parameter names.

Formats (``detect_format``):
  - "official": TimeSformer / PySlowFast ``.pyth`` (``{"model_state": {"model.<name>": ...}}``);
  - "ours": our checkpoints (``model_state`` without the prefix, optional ``arch``), or a clean weights file
    written by ``tools/convert_checkpoint.py`` (.pyth or .safetensors);
  - "timm": image ViT / DeiT weights (a .pth / .safetensors file, or a timm model name whose weights are
    already in the local Hugging Face cache — nothing is ever downloaded), inflated the reference way.
"""
from __future__ import annotations

import json
import logging
import os
import re
from typing import Any, Dict, List, Optional, Tuple

import torch

from .io import CALIBRATION_KEY, CheckpointError, safe_torch_load

logger = logging.getLogger(__name__)

StateDict = Dict[str, torch.Tensor]
_BLOCK_RE = re.compile(r"^blocks\.(\d+)\.(attn|norm1)\.(.+)$")


def resolve_timm_name(name: str) -> str:
    """The local file holding the pretrained weights of timm model ``name`` (from the HF cache only)."""
    import timm
    from huggingface_hub import try_to_load_from_cache

    pcfg = timm.models.get_pretrained_cfg(name)
    if pcfg is None or not getattr(pcfg, "hf_hub_id", None):
        raise CheckpointError(f"{name}: neither a file nor a timm model name with Hugging Face weights")
    for filename in ("model.safetensors", "pytorch_model.bin"):
        found = try_to_load_from_cache(pcfg.hf_hub_id, filename)
        if isinstance(found, str) and os.path.isfile(found):
            return found
    raise CheckpointError(
        f"{name}: weights of {pcfg.hf_hub_id} are not in the local Hugging Face cache "
        "(nothing is downloaded here; fetch them beforehand or pass a file path)"
    )


def read_source(source: str) -> Tuple[Any, str]:
    """Load ``source`` (a file, or a cached timm model name) on the CPU; returns (object, file path).

    Always ``torch.load(weights_only=True)`` (``io.safe_torch_load``): a file that needs full unpickling is
    refused with ``UnsafeCheckpointError`` naming the file and the globals it needs.
    """
    path = source if os.path.isfile(source) else None
    if path is None:
        if os.sep in source or source.endswith((".pyth", ".pth", ".pt", ".bin", ".safetensors")):
            raise CheckpointError(f"{source}: checkpoint file not found")
        path = resolve_timm_name(source)
    if path.endswith(".safetensors"):
        from safetensors import safe_open
        from safetensors.torch import load_file

        try:
            with safe_open(path, framework="pt") as f:
                meta = f.metadata() or {}
            obj: Any = {"model_state": load_file(path, device="cpu")}
            if "arch" in meta:
                obj["arch"] = json.loads(meta["arch"])
        except Exception as e:
            raise CheckpointError(f"{path}: cannot read safetensors file ({type(e).__name__}: {e})") from e
        if CALIBRATION_KEY in meta:  # the threshold record must not stand in the way of the weights
            try:
                obj[CALIBRATION_KEY] = json.loads(meta[CALIBRATION_KEY])
            except ValueError as e:
                logger.warning("%s: ignoring the unreadable %s metadata (%s)", path, CALIBRATION_KEY, e)
        return obj, path
    return safe_torch_load(path), path


def read_trusted_pickle(path: str) -> Any:
    """UNSAFE: fully unpickle ``path`` (it can run any code the file carries). Only for a file the user trusts,
    through ``tools/convert_checkpoint.py --trust-pickle``, which writes a weights-only copy that every other
    path then loads safely."""
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: checkpoint file not found")
    logger.warning("%s: fully unpickling a trusted file (--trust-pickle): it could run code", path)
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        raise CheckpointError(f"{path}: cannot read checkpoint ({type(e).__name__}: {e})") from e


def _strip(sd: StateDict, prefix: str) -> StateDict:
    return {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in sd.items()}


def detect_format(obj: Any, path: str) -> Tuple[StateDict, str, Optional[Dict[str, Any]]]:
    """(state dict with TimeSformer-style names, format, arch or None) of a loaded checkpoint object."""
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a dict of tensors or a checkpoint dict, got {type(obj).__name__}")
    arch = obj.get("arch") if isinstance(obj.get("arch"), dict) else None
    for container in ("model_state", "model", "state_dict", "module"):
        if container in obj and isinstance(obj[container], dict):
            sd = obj[container]
            break
    else:
        sd = obj
    bad = [k for k, v in sd.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}: entries that are not tensors: {bad[:5]}")
    sd = _strip(sd, "module.")  # DistributedDataParallel wrappers
    if sd and all(k.startswith("model.") for k in sd):
        return _strip(sd, "model."), "official", arch
    if any(k == "time_embed" or ".temporal_" in k for k in sd) or arch is not None:
        return dict(sd), "ours", arch
    if any(k.startswith("interpreters.") for k in sd):
        return dict(sd), "ours", arch
    return dict(sd), "timm", arch


def inflate_image_state_dict(sd: StateDict, has_temporal: bool, num_frames: int, has_time_embed: bool) -> Tuple[StateDict, List[str]]:
    """Image ViT weights -> TimeSformer weights, the reference way; returns (state dict, created keys).

    ``attn.*`` is copied to ``temporal_attn.*`` and ``norm1.*`` to ``temporal_norm1.*`` (divided attention
    only); ``time_embed`` is created as zeros (1, num_frames, D). ``temporal_fc`` is not created: it keeps
    the model's initialisation (zero except in block 0), as in the reference.
    """
    out = dict(sd)
    created: List[str] = []
    if has_temporal:
        for key, value in sd.items():
            m = _BLOCK_RE.match(key)
            if m:
                i, part, rest = m.groups()
                new = f"blocks.{i}.{'temporal_attn' if part == 'attn' else 'temporal_norm1'}.{rest}"
                out[new] = value.clone()
                created.append(new)
    if has_time_embed and "time_embed" not in out and "cls_token" in out:
        out["time_embed"] = torch.zeros(1, num_frames, out["cls_token"].shape[-1], dtype=out["cls_token"].dtype)
        created.append("time_embed")
    return out, created
