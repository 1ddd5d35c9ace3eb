"""ONNX export of the dense TimeSformer and of IA-RED² (``tools/export.py --format onnx``), checked in ONNX
Runtime, and ONNX Runtime rows beside eager PyTorch for the keep-ratio speed table (``tools/benchmark.py
--speed --onnx``).

The IA-RED² model exports through ``static_iared.StaticIARED`` (kept tokens gathered into one tensor):
keep_ratio mode with static shapes at the exported batch size, threshold mode at batch 1 with the kept count
a dynamic axis (ONNX ``NonZero``). torch's dynamo exporter (``torch.onnx.export(..., dynamo=True)``, opset 18)
does both; the TorchScript exporter fails on the bool scatter. Float32 logits agree with eager PyTorch to
``LOGIT_TOLERANCE`` (measured: 4e-8 on the tiny test models; 2.3e-6 for the dense TimeSformer-B 8x224).
Needs the ``export`` extra (``pip install -e .[export]``: onnx, onnxscript, onnxruntime).
"""
from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from video_iared.build import build_keep_ratio_models
from video_iared.deploy.static_iared import StaticIARED
from video_iared.engine.multiview_test import build_test_model
from video_iared.profiling.timing import interleaved_speed
from video_iared.pruning.decisions import PolicyBound
from video_iared.pruning.iared import IAREDTimeSformer

logger = logging.getLogger(__name__)

OPSET = 18
LOGIT_TOLERANCE = 1e-4  # max |ORT - eager| over the logits accepted by export_checked (float32)


class ExportError(RuntimeError):
    """The export cannot run (missing extra, unsupported model or mode) or its logits disagree."""


def _require_onnx():
    """onnxruntime, or an ExportError saying how to install the extra."""
    try:
        import onnx  # noqa: F401
        import onnxruntime
        import onnxscript  # noqa: F401  (the dynamo exporter's op library)
    except ImportError as e:
        raise ExportError(f"ONNX export needs the export extra ({e.name} is missing): pip install -e .[export]") from e
    return onnxruntime


def exportable(model: nn.Module, mode: Optional[str] = None) -> nn.Module:
    """The module that goes to ONNX: the dense model itself, an IA-RED² model wrapped in ``StaticIARED``
    (``mode``: keep_ratio or threshold; default the model's own)."""
    model = model.eval()
    if isinstance(model, IAREDTimeSformer):
        return StaticIARED(model, mode).eval()
    if mode:
        raise ExportError(f"mode {mode!r} applies to an IA-RED² model only (IARED.ENABLE False here)")
    return model


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """The exporter's and its optimizer's INFO logs (hundreds of "Replaced initializer ..." lines for ViT-B)
    at WARNING while exporting: the tools log INFO to stdout, where the tables and machine-readable lines go."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "onnxscript", "onnx_ir")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def export_onnx(model: nn.Module, path: str, clip_shape: Tuple[int, int, int, int, int], mode: Optional[str] = None) -> str:
    """Export ``model`` for clips of ``clip_shape`` (B, C, T, H, W) to ``path`` (input "clip", output
    "logits" (B, K)); returns ``path``. Threshold mode needs B = 1."""
    _require_onnx()
    module = exportable(model, mode)
    if isinstance(module, StaticIARED) and module.mode == "threshold" and clip_shape[0] != 1:
        raise ExportError(f"threshold mode keeps a different token count per clip: export at batch 1, not {clip_shape[0]}")
    clip = torch.randn(*clip_shape)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with torch.no_grad(), _quiet_exporter():
        program = torch.onnx.export(module, (clip,), dynamo=True, opset_version=OPSET, input_names=["clip"],
                                    output_names=["logits"], verbose=False)
    program.save(path)
    logger.info("ONNX: %s (%s, opset %d, clip %s)", path, type(module).__name__, OPSET, tuple(clip_shape))
    return path


def ort_session(path: str, threads: int = 0):
    """An ONNX Runtime CPU session (``threads`` intra-op threads; 0: torch's thread count)."""
    ort = _require_onnx()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or torch.get_num_threads()
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


class OrtModule(nn.Module):
    """An ONNX Runtime session behind the nn.Module call the timing loop uses: clip (B, C, T, H, W) -> logits."""

    def __init__(self, session) -> None:
        super().__init__()
        self.session = session

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.session.run(None, {"clip": clip.detach().cpu().numpy()})[0])


def max_logit_diff(model: nn.Module, session, clips: Sequence[torch.Tensor], mode: Optional[str] = None) -> float:
    """max |ORT - eager| over the logits of ``clips`` (each (B, C, T, H, W)); the eager side is the model as it
    runs in PyTorch (the packed IA-RED² path), not the exported wrapper."""
    model.eval()
    if mode and isinstance(model, IAREDTimeSformer):
        model = PolicyBound(model, model.policy_for([mode] * model.num_groups))
    with torch.no_grad():
        diffs = [float(np.abs(session.run(None, {"clip": c.numpy()})[0] - model(c).numpy()).max()) for c in clips]
    return max(diffs)


def export_checked(model: nn.Module, path: str, clip_shape: Tuple[int, int, int, int, int], mode: Optional[str] = None,
                   checks: int = 2, seed: int = 0) -> Dict[str, object]:
    """``export_onnx`` then ONNX Runtime against eager on ``checks`` random clips; raises ExportError above
    ``LOGIT_TOLERANCE``. Returns {"path", "max_abs_diff", "mode", "clip_shape"}."""
    export_onnx(model, path, clip_shape, mode)
    gen = torch.Generator().manual_seed(seed)
    clips = [torch.randn(*clip_shape, generator=gen) for _ in range(checks)]
    diff = max_logit_diff(model, ort_session(path), clips, mode)
    kind = (mode or model.mode) if isinstance(model, IAREDTimeSformer) else "dense"
    if not diff <= LOGIT_TOLERANCE:
        raise ExportError(f"{path}: ONNX Runtime logits differ from PyTorch by {diff:.3g} (> {LOGIT_TOLERANCE:g})")
    return {"path": path, "max_abs_diff": diff, "mode": kind, "clip_shape": list(clip_shape)}


def onnx_speed_rows(cfg, keep_rates: Sequence[float] = (0.7,), batch_sizes: Sequence[int] = (1,), warmup: int = 1,
                    reps: int = 3, work_dir: str = "") -> List[Dict[str, object]]:
    """Dense and IA-RED² keep_ratio (the dense weights, as ``benchmarks.keep_ratio_speed``'s table) in eager PyTorch (packed)
    and ONNX Runtime (exported per batch size), timed round-robin in one run; prints a table and one line
    ``onnx_speed ...``; returns the rows {"variant", "runtime", "batch", "ms_per_clip", "speedup", "max_abs_diff"}."""
    dense, pruned = build_keep_ratio_models(cfg, keep_rates)
    T, S, C = cfg.DATA.NUM_FRAMES, cfg.DATA.TEST_CROP_SIZE, cfg.DATA.INPUT_CHANNEL_NUM[0]
    models = [("dense", dense)] + [(f"keep {r:g}", m) for r, m in zip(keep_rates, pruned)]
    rows: List[Dict[str, object]] = []
    with tempfile.TemporaryDirectory(dir=work_dir or None) as tmp:
        for bs in batch_sizes:
            pairs, diffs = [], {}
            for name, m in models:
                rec = export_checked(m, os.path.join(tmp, f"{name.replace(' ', '_')}_b{bs}.onnx"), (bs, C, T, S, S))
                diffs[name] = rec["max_abs_diff"]
                pairs += [(f"{name} eager", m, "fp32"), (f"{name} onnxruntime", OrtModule(ort_session(rec["path"])), "fp32")]
            timed = interleaved_speed(pairs, [bs], T, S, C, warmup, reps, "cpu", cfg.RNG_SEED)
            base = min(timed[0].times_s)
            for (label, _, _), r in zip(pairs, timed):
                name, runtime = label.rsplit(" ", 1)
                rows.append({"variant": name, "runtime": runtime, "batch": bs, "ms_per_clip": 1000 * min(r.times_s) / bs,
                             "speedup": base / min(r.times_s), "max_abs_diff": diffs[name] if runtime != "eager" else 0.0})
    print(format_onnx_rows(rows), flush=True)
    return rows


def format_onnx_rows(rows: Sequence[Dict[str, object]]) -> str:
    """The table (speed-up vs dense eager at the same batch; fastest repetition) and the machine-readable line."""
    out = [f"{'variant':<10} {'runtime':<12} {'batch':>5} {'ms/clip':>9} {'speed-up':>8} {'max |dlogit|':>12}"]
    for r in rows:
        out.append(f"{r['variant']:<10} {r['runtime']:<12} {r['batch']:>5} {r['ms_per_clip']:>9.1f} "
                   f"{r['speedup']:>7.2f}x {r['max_abs_diff']:>12.2e}")
    out.append("onnx_speed " + " ".join(f"{r['variant'].replace(' ', '')}_{r['runtime']}_b{r['batch']}_ms={r['ms_per_clip']:.2f}"
                                        for r in rows))
    return "\n".join(out)


def export_from_cfg(cfg, checkpoint: str, output: str = "", mode: str = "", batch_size: int = 1) -> Dict[str, object]:
    """``tools/export.py``: the weights the test stage would evaluate (``build_test_model``: ``checkpoint``, the
    calibrated threshold of an IA-RED² checkpoint), exported at the test clip size and checked in ONNX Runtime.
    ``output`` defaults to OUTPUT_DIR/model[_<mode>].onnx; ``mode`` to IARED.MODE (IA-RED² configs)."""
    model = build_test_model(cfg, torch.device("cpu"), checkpoint)
    mode = mode or (cfg.IARED.MODE if cfg.IARED.ENABLE else "")
    d = cfg.DATA
    shape = (batch_size, d.INPUT_CHANNEL_NUM[0], d.NUM_FRAMES, d.TEST_CROP_SIZE, d.TEST_CROP_SIZE)
    path = output or os.path.join(cfg.OUTPUT_DIR, f"model_{mode}.onnx" if mode else "model.onnx")
    return export_checked(model, path, shape, mode or None, seed=cfg.RNG_SEED)
