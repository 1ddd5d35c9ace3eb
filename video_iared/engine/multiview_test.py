"""Multi-view testing: every video decoded once, its views run in chunks, ensembled per video.

The loader yields lists of per-video items (the data contract): ``{"index", "path", "label", "views"
(V, C, T, H, W) or None, "error"}``. Views of all the good videos in a batch are concatenated and run through
the model ``views_per_chunk`` at a time (batching across videos), then split back per video. A video whose
decoding failed becomes a record with its error: it is reported and counted, never replaced by another.
Under torchrun each process tests its shard; the records are gathered and de-duplicated by video index so
every video is counted exactly once.
"""
from __future__ import annotations

import logging
import math
import sys
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

import torch
from torch import nn
from tqdm import tqdm

from video_iared.build import build_model
from video_iared.checkpoint import load_checkpoint
from video_iared.checkpoint.io import weights_to_evaluate
from video_iared.data.device_normalize import as_normalizer
from video_iared.data import build_multiview_loader, build_normalizer
from video_iared.engine.amp import amp_dtype
from video_iared.engine.amp import autocast
from video_iared.engine.device import init_from_cfg
from video_iared.engine.ensemble import ensemble_views
from video_iared.engine import distributed as du
from video_iared.engine.results import write_predictions
from video_iared.engine.test_summary import parse_summary_line, summarize, summary_line, sweep_table, view_sweep  # noqa: F401
from video_iared.engine.train_iared import apply_calibration
from video_iared.profiling.flops import log_model_info, model_gflops
from video_iared.pruning.cost import clip_gflops, cost_report, fvcore_sample_lines
from video_iared.pruning.decisions import PruningDecisions, unwrap
from video_iared.pruning.exact_cost import forward_gflops
from video_iared.utils.precision import float32_weights
from video_iared.utils.precision import matmul_weights_in, maybe_compile

logger = logging.getLogger(__name__)


class NoVideoEvaluatedError(RuntimeError):
    """A test or predict run in which every video failed: there is no result, the run must not exit 0."""


@dataclass
class ChunkOutput:
    """What the model gives for a chunk of n views: logits (n, K); optionally GFLOPs (n,), keep rates (n, G) and
    the forward's decisions (an IA-RED² model's ``PruningDecisions``)."""

    logits: torch.Tensor
    gflops: Optional[torch.Tensor] = None
    keep_rates: Optional[torch.Tensor] = None
    decisions: Optional[PruningDecisions] = None


# forward_fn(model, views (n, C, T, H, W)) -> ChunkOutput
ForwardFn = Callable[[nn.Module, torch.Tensor], ChunkOutput]
# gflops_fn(model, views (n, C, T, H, W)) -> GFLOPs per view (n,)
GFlopsFn = Callable[[nn.Module, torch.Tensor], torch.Tensor]
# normalizer(views on the device) -> the model's input (data.device_normalize: uint8 views normalised there)
Normalizer = Callable[[torch.Tensor], torch.Tensor]


def dense_forward(gflops_per_view: Optional[float] = None) -> ForwardFn:
    """A forward function for a dense model, whose cost per view is one constant measured once."""
    def fn(model: nn.Module, views: torch.Tensor) -> ChunkOutput:
        logits = model(views)
        g = None if gflops_per_view is None else torch.full((views.shape[0],), float(gflops_per_view))
        return ChunkOutput(logits, g)
    return fn


@torch.no_grad()
def run_multiview(
    model: nn.Module,
    loader,
    device: torch.device,
    views_per_chunk: int = 16,
    ensemble_method: str = "mean_softmax",
    dtype: Optional[torch.dtype] = None,
    forward_fn: Optional[ForwardFn] = None,
    show_progress: bool = True,
    normalizer: Optional[Normalizer] = None,
) -> List[Dict]:
    """Per-video records of this process's shard (see ``results.write_predictions`` for the fields).

    Each record also holds ``view_logits`` (V, K) on the cpu, which the view sweep and SAVE_VIEW_LOGITS use.
    Under a low-precision ``dtype`` the matmul weights are held in it for the whole run
    (``utils.precision.matmul_weights_in``: cast once, not by autocast on every chunk; same logits) and
    put back in float32 at the end; a ``forward_fn`` that runs the model in float32 wraps that in
    ``float32_weights``. ``normalizer``: applied to every chunk of views on ``device`` (uint8 views under
    DATA.NORMALIZE_ON_DEVICE: ``device_normalize.build_normalizer(cfg)``; None: float views only).
    """
    model.eval()
    with matmul_weights_in(model, dtype):
        return _run_chunks(model, loader, device, views_per_chunk, ensemble_method, dtype,
                           forward_fn or dense_forward(), show_progress, as_normalizer(normalizer))


def _run_chunks(model: nn.Module, loader, device: torch.device, views_per_chunk: int, ensemble_method: str,
                dtype: Optional[torch.dtype], forward_fn: ForwardFn, show_progress: bool,
                normalize: Normalizer) -> List[Dict]:
    """The loop of ``run_multiview``: views of every batch concatenated, run in chunks, split back per video."""
    records: List[Dict] = []
    total = len(loader) if hasattr(loader, "__len__") else None
    bar = tqdm(loader, total=total, desc="test", leave=False, dynamic_ncols=True,
               disable=not (show_progress and du.is_main_process() and sys.stderr.isatty()))
    for batch in bar:
        good = [it for it in batch if it.get("views") is not None and not it.get("error")]
        for it in batch:
            if it.get("views") is None or it.get("error"):
                records.append(_record(it, None, None, None, ensemble_method))
        if not good:
            continue
        counts = [it["views"].shape[0] for it in good]
        views = torch.cat([it["views"] for it in good])  # (sum V, C, T, H, W)
        logits, gflops, keeps = [], [], []
        for chunk in views.split(views_per_chunk):
            x = normalize(chunk.to(device, non_blocking=True))  # float32, before autocast
            with autocast(device, dtype):
                out = forward_fn(model, x)
            logits.append(out.logits.float().cpu())
            gflops.append(out.gflops.float().cpu() if out.gflops is not None else torch.full((chunk.shape[0],), math.nan))
            if out.keep_rates is not None:
                keeps.append(out.keep_rates.float().cpu())
        logits_all = torch.cat(logits).split(counts)
        gflops_all = torch.cat(gflops).split(counts)
        keeps_all = torch.cat(keeps).split(counts) if keeps else [None] * len(good)
        for it, lg, gf, kp in zip(good, logits_all, gflops_all, keeps_all):
            records.append(_record(it, lg, gf, kp, ensemble_method))
    return records


def _record(item: Dict, view_logits, gflops, keep_rates, method: str) -> Dict:
    """One video's record; a video whose logits are not finite (NaN / Inf) is failed, with that reason."""
    error = None if view_logits is not None else (item.get("error") or "no views decoded")
    if view_logits is not None and not bool(torch.isfinite(view_logits).all()):
        bad_views = int((~torch.isfinite(view_logits)).any(dim=-1).sum())
        error = f"non-finite logits (NaN / Inf) in {bad_views} of {view_logits.shape[0]} views"
        view_logits = None
    ok = view_logits is not None
    return {
        "index": int(item["index"]),
        "path": str(item.get("path", "")),
        "label": int(item["label"]),
        "error": error,
        "view_logits": view_logits,
        "probs": ensemble_views(view_logits, method) if ok else None,
        "gflops": float(gflops.mean()) if ok and gflops is not None else math.nan,
        "keep_rates": keep_rates.mean(dim=0).tolist() if keep_rates is not None else None,
    }


def gather_records(records: List[Dict]) -> List[Dict]:
    """All processes' records, one per video index (first occurrence wins), sorted by index."""
    merged: Dict[int, Dict] = {}
    for part in du.all_gather_objects(records):
        for r in part:
            merged.setdefault(r["index"], r)
    return [merged[k] for k in sorted(merged)]


# ----------------------------------------------------------------------------- the TEST stage (config level)
class IAREDForward:
    """The forward function (a ``ForwardFn``) of an IA-RED² model: logits, keep rates per view, and every view's
    fvcore GFLOPs from the kept sets of that forward (``pruning.exact_cost``: the count fvcore gives tracing the
    view alone, without a trace). The first ``fvcore_sample`` views are put aside and traced by fvcore after the
    run (``trace_sample``: float32 weights, no autocast; outside the run's time, as the dense model's one trace);
    ``sample`` then holds their (trace-free, fvcore) GFLOPs, for the log.

    ``gflops_fn(model, views) -> (n,)``, when given, measures every view instead (e.g. ``clip_gflops``: one
    fvcore trace per view, in float32) and no sample is kept.
    """

    def __init__(self, fvcore_sample: int = 0, gflops_fn: Optional[GFlopsFn] = None) -> None:
        self.fvcore_sample = max(0, int(fvcore_sample))
        self.gflops_fn = gflops_fn
        self.sample: List[Tuple[float, float]] = []
        self._pending: List[Tuple[torch.Tensor, torch.Tensor]] = []  # (views, trace-free GFLOPs) to trace
        self._taken = 0

    def __call__(self, model: nn.Module, views: torch.Tensor) -> ChunkOutput:
        logits, decisions = model(views, return_decisions=True)
        bare = unwrap(model)  # under TEST.COMPILE: the module itself, for tracing
        keep = decisions.keep_rates
        if self.gflops_fn is not None:
            return ChunkOutput(logits, _traced(self.gflops_fn, bare, views), keep, decisions)
        gflops = forward_gflops(bare, decisions, views.shape)  # (n,) on the device: no host read, no trace
        need = self.fvcore_sample - self._taken
        if need > 0:
            self._pending.append((views[:need].detach().clone(), gflops[:need]))
            self._taken += min(need, views.shape[0])
        return ChunkOutput(logits, gflops, keep, decisions)

    def trace_sample(self, model: nn.Module) -> List[Tuple[float, float]]:
        """Trace the views put aside during the run, one fvcore trace per view -> ``sample``."""
        bare = unwrap(model)
        for views, gflops in self._pending:
            self.sample += list(zip(gflops.tolist(), _traced(clip_gflops, bare, views).tolist()))
        self._pending = []
        return self.sample


def _traced(fn: GFlopsFn, model: nn.Module, views: torch.Tensor) -> torch.Tensor:
    """``fn(model, views)`` in float32 (with the float32 weights, also inside run_multiview's low-precision
    ones) -> (n,) float64."""
    with torch.autocast(device_type=views.device.type, enabled=False), float32_weights(model):
        return torch.as_tensor(fn(model, views.float()), dtype=torch.float64).reshape(-1)


def iared_forward(gflops_fn: Optional[GFlopsFn] = None, fvcore_sample: int = 0) -> IAREDForward:
    """The forward function for an IA-RED² model (see :class:`IAREDForward`)."""
    return IAREDForward(fvcore_sample, gflops_fn)


def build_test_model(cfg, device: torch.device, checkpoint: str = "", tag: str = "") -> nn.Module:
    """``build_model(cfg)`` with the weights to evaluate (``checkpoint.io.weights_to_evaluate``: TEST.CHECKPOINT_FILE_PATH
    when set, else ``checkpoint`` (the one just trained), else (IA-RED² configs) the curriculum's final
    ``checkpoints/checkpoint_iared.pyth``, else the latest checkpoint of OUTPUT_DIR); loaded strictly through
    ``load_checkpoint``; in eval mode. With IARED.TARGET_COST > 0 the threshold is the one the checkpoint was
    calibrated to (``train_iared.apply_calibration``), not IARED.THRESHOLD."""
    import os

    model = build_model(cfg).to(device)
    path = weights_to_evaluate(cfg.OUTPUT_DIR, cfg.IARED.ENABLE, cfg.TEST.CHECKPOINT_FILE_PATH,
                               just_trained=checkpoint)
    if not path:
        raise FileNotFoundError(
            f"no weights to evaluate: set TEST.CHECKPOINT_FILE_PATH, or train first (no checkpoint in "
            f"{os.path.join(cfg.OUTPUT_DIR, 'checkpoints')})")
    logger.info("%sevaluating weights %s", tag, path)
    load_checkpoint(path, model, for_evaluation=True)  # no random head or interpreters

    apply_calibration(cfg, model, path, tag)  # IARED.TARGET_COST: the threshold calibrated in training
    return model.eval()


def _log_iared_cost(records: List[Dict], model: nn.Module, clip: torch.Tensor, forward_fn: IAREDForward,
                    summary: Dict, tag: str) -> Dict:
    """Log the IA-RED² cost of a test run (``cost_report``) and the trace-free count beside fvcore's traces of
    the sampled views (traced here: ``IAREDForward.trace_sample``); returns the cost summary dict. ``clip``
    (1, C, T, H, W): the shape of a view."""
    forward_fn.trace_sample(model)
    cost, lines = cost_report(records, model, clip)
    evaluated = sum(r["view_logits"].shape[0] for r in records if r["view_logits"] is not None)
    lines += fvcore_sample_lines(forward_fn.sample, summary["gflops_per_view"], evaluated)
    for line in lines:
        logger.info("%s%s", tag, line)
    worst = max((abs(a - b) / b for a, b in forward_fn.sample if b), default=0.0)
    if worst > 1e-9:  # a different decision in the float32 trace than in the run's forward (low precision)
        logger.warning("%strace-free and fvcore GFLOPs differ on the sampled views (relative %.1e): the traced "
                       "float32 forward kept other tokens than the test's forward", tag, worst)
    return cost


def test(cfg, info: Optional[du.DistInfo] = None, checkpoint: str = "", label: str = "") -> Dict:
    """Multi-view test of ``build_model(cfg)`` with the weights ``build_test_model`` picks; writes the predictions files and returns the summary dict
    (``summary_line`` formats it). Every process returns the same summary.
    """
    import os

    info = info or init_from_cfg(cfg)
    device = info.device
    t = cfg.TEST
    tag = f"[{label}] " if label else ""
    model = build_test_model(cfg, device, checkpoint, tag)
    model.eval()
    views = t.NUM_ENSEMBLE_VIEWS * t.NUM_SPATIAL_CROPS
    clip = torch.zeros(1, cfg.DATA.INPUT_CHANNEL_NUM[0], cfg.DATA.NUM_FRAMES, cfg.DATA.TEST_CROP_SIZE,
                       cfg.DATA.TEST_CROP_SIZE, device=device)
    if cfg.IARED.ENABLE:  # every view's cost from its kept sets; TEST.FVCORE_SAMPLE_CLIPS views also traced
        forward_fn = iared_forward(fvcore_sample=t.FVCORE_SAMPLE_CLIPS)
    else:
        # A dense model costs the same on every clip: one fvcore trace is exact.
        forward_fn = dense_forward(model_gflops(model, clip))
    if cfg.LOG_MODEL_INFO and info.is_main:
        log_model_info(model, cfg.DATA.NUM_FRAMES, cfg.DATA.TEST_CROP_SIZE, cfg.DATA.INPUT_CHANNEL_NUM[0],
                       views=views, log=logger)
    loader = build_multiview_loader(cfg, t.SPLIT, rank=info.rank, world_size=info.world_size)
    dataset = loader.dataset
    dtype = amp_dtype(device, t.PRECISION)
    # the pruned model's shapes change with every clip's kept set: compile it with dynamic shapes
    run_model = maybe_compile(model, t.COMPILE, dynamic=True if cfg.IARED.ENABLE else None)
    t0 = time.perf_counter()
    local = run_multiview(run_model, loader, device, t.VIEWS_PER_CHUNK, t.ENSEMBLE_METHOD, dtype, forward_fn,
                          normalizer=build_normalizer(cfg))
    seconds = time.perf_counter() - t0
    records = gather_records(local)
    summary = summarize(records, cfg.MODEL.NUM_CLASSES, views)
    if info.is_main:
        _report(cfg, records, summary, getattr(dataset, "class_names", None), len(local), seconds, tag)
        if cfg.IARED.ENABLE:  # GFLOPs per view: mean / min / max over the videos, analytic check, fvcore sample
            summary["cost"] = _log_iared_cost(records, model, clip, forward_fn, summary, tag)
        logger.info("%spredictions: %s and %s", tag, summary["predictions_csv"], summary["predictions_pt"])
        if t.VIEW_SWEEP:
            rows = view_sweep(records, t.NUM_ENSEMBLE_VIEWS, t.NUM_SPATIAL_CROPS, t.ENSEMBLE_METHOD)
            summary["view_sweep"] = rows
            logger.info("%sview sweep (same decodes):\n%s", tag, sweep_table(rows))
    return du.broadcast_object(summary)


def _report(cfg, records: List[Dict], summary: Dict, class_names, local_videos: int, seconds: float,
            tag: str) -> None:
    """The main process's part of the test stage: the predictions files (their paths into ``summary``), the
    failed videos, the accuracy, keep-rate and timing lines."""
    import os

    t = cfg.TEST
    views = t.NUM_ENSEMBLE_VIEWS * t.NUM_SPATIAL_CROPS
    stem = os.path.abspath(os.path.join(cfg.OUTPUT_DIR, t.SAVE_RESULTS_PATH))
    summary["predictions_csv"], summary["predictions_pt"] = write_predictions(
        stem, records, cfg.MODEL.NUM_CLASSES, class_names, 5, t.ENSEMBLE_METHOD, t.SAVE_VIEW_LOGITS)
    for r in records:
        if r["error"]:
            logger.warning("%sfailed video %d %s: %s", tag, r["index"], r["path"], r["error"])
    logger.info("%stest (%s split, %d clips x %d crops, %s): video top-1 %.2f%%, top-5 %.2f%%, mean class "
                "accuracy %.2f%% on %d videos (%d failed); %.4f GFLOPs per view (fvcore, 1 MAC = 1 flop), "
                "x %d views = %.4f GFLOPs per video", tag, t.SPLIT, t.NUM_ENSEMBLE_VIEWS, t.NUM_SPATIAL_CROPS,
                t.ENSEMBLE_METHOD, summary["video_top1"], summary["video_top5"], summary["mean_class_acc"],
                summary["videos"], summary["failed"], summary["gflops_per_view"], views,
                summary["gflops_per_view"] * views)
    if "keep_rates" in summary:
        logger.info("%smean keep rate after each group: %s", tag,
                    ", ".join(f"{k:.3f}" for k in summary["keep_rates"]))
    logger.info("%stest stage: %d videos x %d views run in %.1f s (decoding, forward and cost)", tag,
                local_videos, views, seconds)
