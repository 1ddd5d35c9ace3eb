"""``load_checkpoint(path, model)``: strict weight loading from any supported format, with a report."""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import torch
from torch import nn

from .convert import StateDict, detect_format, inflate_image_state_dict, read_source
from .io import ARCH_KEYS, CheckpointError, nonfinite_tensors, unwrap
from video_iared.models.embeddings import resize_pos_embed, resize_time_embed

logger = logging.getLogger(__name__)

Shape = Tuple[int, ...]


@dataclass
class LoadReport:
    """What ``load_checkpoint`` did: every model key is in exactly one of loaded / kept_at_init / missing.

    - loaded: model keys filled from the checkpoint (including resized and inflated ones);
    - resized: key -> (checkpoint shape, model shape) for embeddings resized to the model's grid;
    - inflated: keys created from image weights (temporal_attn/temporal_norm1 copies, zero time_embed);
    - kept_at_init: key -> reason, model keys the report expects to stay at their initialisation
      (head on a class-count change, temporal_fc on inflation, interpreters.* from a dense checkpoint);
    - dropped: key -> reason, checkpoint keys deliberately not loaded (a head of another class count);
    - missing / unexpected: anything else (non-empty only when strict=False).
    """

    source: str
    format: str
    loaded: List[str] = field(default_factory=list)
    resized: Dict[str, Tuple[Shape, Shape]] = field(default_factory=dict)
    inflated: List[str] = field(default_factory=list)
    kept_at_init: Dict[str, str] = field(default_factory=dict)
    dropped: Dict[str, str] = field(default_factory=dict)
    missing: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"loaded {len(self.loaded)} tensors from {self.source} (format: {self.format})"]
        for k, (old, new) in self.resized.items():
            lines.append(f"  resized {k}: {list(old)} -> {list(new)}")
        if self.inflated:
            lines.append(f"  inflated from image weights ({len(self.inflated)}): {_short(self.inflated)}")
        for k, why in self.dropped.items():
            lines.append(f"  dropped {k}: {why}")
        if self.kept_at_init:
            reasons: Dict[str, List[str]] = {}
            for k, why in self.kept_at_init.items():
                reasons.setdefault(why, []).append(k)
            for why, keys in reasons.items():
                lines.append(f"  kept at init ({why}): {_short(keys)}")
        lines.append(f"  missing: {_short(self.missing) if self.missing else 'none'}")
        lines.append(f"  unexpected: {_short(self.unexpected) if self.unexpected else 'none'}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def _short(keys: List[str], n: int = 12) -> str:
    return ", ".join(keys[:n]) + (f", ... ({len(keys)} in all)" if len(keys) > n else "")


def check_model_arch(saved: Optional[dict], model: nn.Module, path: str) -> None:
    """Ours: refuse a checkpoint of another architecture (a class-count change is allowed: head dropped)."""
    if not saved or not hasattr(model, "arch"):
        return
    expected = model.arch()
    saved = {"stem": "patch", **saved}  # written before the stem was a choice: the linear patch embedding
    diff = [f"{k}: checkpoint {saved[k]!r} vs model {expected[k]!r}" for k in ARCH_KEYS
            if k != "num_classes" and k in saved and k in expected and saved[k] != expected[k]]
    if diff:
        raise CheckpointError(f"{path}: checkpoint is for another architecture ({'; '.join(diff)})")


def _grid_hw(model: nn.Module) -> Optional[Tuple[int, int]]:
    pe = getattr(model, "patch_embed", None)
    return tuple(pe.grid_size) if pe is not None and hasattr(pe, "grid_size") else None


def _fit_tensor(key: str, value: torch.Tensor, target: torch.Tensor, model: nn.Module, path: str) -> Optional[torch.Tensor]:
    """``value`` reshaped to ``target``'s shape when ``key`` is a resizable embedding, None for a head of
    another class count; raises for any other mis-shaped tensor."""
    if key == "pos_embed" and value.dim() == 3 and value.shape[-1] == target.shape[-1] and _grid_hw(model):
        return resize_pos_embed(value, _grid_hw(model)).to(target.dtype)
    if key == "time_embed" and value.dim() == 3 and value.shape[-1] == target.shape[-1]:
        return resize_time_embed(value, target.shape[1]).to(target.dtype)
    if key in ("head.weight", "head.bias") and value.shape[1:] == target.shape[1:]:
        return None
    raise CheckpointError(
        f"{path}: {key} has shape {list(value.shape)} in the checkpoint but {list(target.shape)} in the model"
    )


def _check_stem(sd: StateDict, model_sd: StateDict, source: str, fmt: str) -> None:
    """Name a patch-embedding mismatch (the reference's linear ``patch_embed.proj`` vs the conv3d stem's
    ``patch_embed.conv1/conv2``) instead of listing its keys: official and timm weights carry no "arch"."""
    def stem(keys) -> Optional[str]:
        if any(k.startswith("patch_embed.proj.") for k in keys):
            return "patch"
        return "conv3d" if any(k.startswith("patch_embed.conv1.") for k in keys) else None

    have, want = stem(sd), stem(model_sd)
    if have and want and have != want:
        held = "the linear patch embedding (patch_embed.proj.*)" if have == "patch" else \
            "the conv3d stem (patch_embed.conv1.*)"
        raise CheckpointError(f"{source} ({fmt}) holds {held} but the model is built with TIMESFORMER.STEM {want}: "
                              f"set TIMESFORMER.STEM {have} to load it")


def load_state_dict_checked(
    sd: StateDict, model: nn.Module, fmt: str, source: str = "<state dict>", strict: bool = True,
    for_evaluation: bool = False,
) -> LoadReport:
    """Map ``sd`` (TimeSformer names) onto ``model`` with resizing, inflation and the strict key check.

    Non-finite tensors are refused, naming them. ``for_evaluation``: every model tensor must come from the
    checkpoint: a head of another class count, image weights or a dense checkpoint for the IA-RED² model (whose
    interpreters would stay random) are refused instead of kept at their initialisation, which is right only for
    finetuning."""
    bad = nonfinite_tensors(sd)
    if bad:
        raise CheckpointError(f"{source}: non-finite (NaN / Inf) values in {len(bad)} tensor(s): {_short(bad)}")
    target = unwrap(model)
    model_sd = target.state_dict()
    report = LoadReport(source=source, format=fmt)

    if fmt == "timm":
        has_temporal = any(".temporal_attn." in k for k in model_sd)
        num_frames = model_sd["time_embed"].shape[1] if "time_embed" in model_sd else 1
        sd, report.inflated = inflate_image_state_dict(sd, has_temporal, num_frames, "time_embed" in model_sd)

    new_sd = _fit_state_dict(sd, model_sd, target, source, report)
    _classify_unfilled(model_sd, new_sd, fmt, any(k.startswith("interpreters.") for k in sd), report)
    if for_evaluation:
        _refuse_init_for_evaluation(report, source)
    if strict and (report.missing or report.unexpected):
        _check_stem(sd, model_sd, source, fmt)
        _raise_does_not_fit(report, source, fmt)

    result = target.load_state_dict(new_sd, strict=False)
    assert not result.unexpected_keys, result.unexpected_keys  # filtered above
    return report


def _fit_state_dict(sd: StateDict, model_sd: StateDict, model: nn.Module, source: str, report: LoadReport) -> StateDict:
    """The tensors of ``sd`` that the model has, resized to its shapes; records loaded / resized / dropped /
    unexpected keys in ``report``."""
    new_sd: StateDict = {}
    for key, value in sd.items():
        if key not in model_sd:
            report.unexpected.append(key)
            continue
        target_t = model_sd[key]
        if value.shape != target_t.shape:
            fitted = _fit_tensor(key, value, target_t, model, source)
            if fitted is None:
                report.dropped[key] = f"class count {value.shape[0]} in the checkpoint, {target_t.shape[0]} in the model"
                continue
            report.resized[key] = (tuple(value.shape), tuple(target_t.shape))
            value = fitted
        new_sd[key] = value
        report.loaded.append(key)
    return new_sd


def _classify_unfilled(
    model_sd: StateDict, new_sd: StateDict, fmt: str, ckpt_has_interpreters: bool, report: LoadReport,
) -> None:
    """Each model key the checkpoint does not fill goes to ``report.kept_at_init`` (with its reason) when its
    initialisation is expected, else to ``report.missing``."""
    for key in model_sd:
        if key in new_sd:
            continue
        if key.startswith("head.") and (f"{key}" in report.dropped or fmt == "timm"):
            report.kept_at_init[key] = "new classifier head (class count changed or image head)"
        elif fmt == "timm" and ".temporal_fc." in key:
            report.kept_at_init[key] = "temporal_fc, not in image weights (reference init)"
        elif key.startswith("interpreters.") and not ckpt_has_interpreters:
            report.kept_at_init[key] = "IA-RED² interpreters, not in a dense checkpoint"
        else:
            report.missing.append(key)


def _raise_does_not_fit(report: LoadReport, source: str, fmt: str) -> None:
    """The strict key check's error: the missing and the unexpected keys."""
    parts = []
    if report.missing:
        parts.append(f"missing keys: {_short(report.missing, 30)}")
    if report.unexpected:
        parts.append(f"unexpected keys: {_short(report.unexpected, 30)}")
    raise CheckpointError(f"{source} ({fmt}) does not fit the model: " + "; ".join(parts))


def _refuse_init_for_evaluation(report: LoadReport, source: str) -> None:
    """Evaluation with tensors left at their initialisation is a silent wrong result: name what is missing."""
    if not report.kept_at_init and not report.dropped:
        return
    heads = [k for k in report.dropped if k.startswith("head.")]
    if heads:
        saved, built = re.findall(r"\d+", report.dropped[heads[0]])[:2]  # "class count A in the ..., B in the model"
        raise CheckpointError(f"{source}: the checkpoint's classifier has {saved} classes but MODEL.NUM_CLASSES is "
                              f"{built}: evaluating it would use a random head; set MODEL.NUM_CLASSES {saved}")
    if any(k.startswith("interpreters.") for k in report.kept_at_init):
        raise CheckpointError(f"{source}: a dense checkpoint (no IA-RED² interpreters) cannot be evaluated by the "
                              "IA-RED² model (IARED.ENABLE True): its interpreters would be random; evaluate it with "
                              "IARED.ENABLE False, or pass the IA-RED² checkpoint (checkpoints/checkpoint_iared.pyth)")
    raise CheckpointError(f"{source} ({report.format}): evaluation needs trained weights for every tensor, but "
                          f"these would stay at their initialisation: {_short(list(report.kept_at_init))}")


def load_checkpoint(path: str, model: nn.Module, strict: bool = True, log: Optional[logging.Logger] = None,
                    for_evaluation: bool = False) -> LoadReport:
    """Load weights into ``model`` from an official TimeSformer .pyth, one of ours, or timm image weights.

    ``path``: a file (.pyth / .pth / .pt / .bin / .safetensors) or a timm model name cached locally.
    Strict by default: a key missing or unexpected that the report does not expect raises
    ``CheckpointError`` naming the keys; a mis-shaped tensor (other than a resizable embedding or a head of
    another class count) always raises naming the key; non-finite tensors are refused. ``for_evaluation`` (test,
    predict): nothing may stay at its initialisation (see ``load_state_dict_checked``). The report is logged and
    returned.
    """
    obj, file = read_source(path)
    sd, fmt, arch = detect_format(obj, file)
    if fmt == "ours":
        check_model_arch(arch, unwrap(model), file)
    report = load_state_dict_checked(sd, model, fmt, source=file, strict=strict, for_evaluation=for_evaluation)
    (log or logger).info("checkpoint report:\n%s", report.summary())
    return report
