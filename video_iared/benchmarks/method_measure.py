"""The method benchmark's measurements of its variants: video accuracy on views decoded once, fvcore GFLOPs per
view, and latency / throughput / peak memory through the one timing loop (``profiling.timing.round_robin``,
``profiling.memory``)."""
from __future__ import annotations

import statistics
from typing import Callable, Dict, List, Optional, Sequence

import torch
from torch import nn
from tqdm import tqdm

from video_iared.benchmarks.method_variants import token_fraction_from_rates
from video_iared.benchmarks.variant import Variant
from video_iared.engine.multiview_test import ChunkOutput, run_multiview, summarize
from video_iared.profiling.flops import flop_analysis, heavy_unsupported_ops
from video_iared.profiling.timing import round_robin
from video_iared.pruning.decisions import PruningDecisions, unwrap
from video_iared.pruning.exact_cost import forward_gflops

# fvcore has no handle for these and they cost O(elements): the random baseline's draw, ToMe's matching and merge.
EXTRA_CHEAP_OPS = {"aten::rand", "aten::new_ones", "aten::linalg_vector_norm", "aten::expand_as", "aten::isfinite",
                   "aten::index_add", "aten::numel"}


def variant_gflops(model: nn.Module, clip: torch.Tensor) -> float:
    """fvcore GFLOPs (GMACs) of one forward on ``clip`` (1, C, T, H, W); raises if a heavy op went uncounted."""
    with torch.no_grad():
        analysis = flop_analysis(model.eval(), clip)
        total = analysis.total()
        heavy = {k: v for k, v in heavy_unsupported_ops(analysis).items() if k not in EXTRA_CHEAP_OPS}
    if heavy:
        raise RuntimeError(f"fvcore has no handle for heavy ops {heavy}: the GFLOPs count would be wrong")
    return total / 1e9


def cache_multiview(loader, max_videos: int = 0) -> List[List[Dict]]:
    """Decode the test split once: the loader's batches (lists of multi-view items) kept in memory."""
    batches, n = [], 0
    for batch in tqdm(loader, desc="decode test videos", leave=False, dynamic_ncols=True):
        if max_videos:
            batch = batch[: max(0, max_videos - n)]
        if batch:
            batches.append(batch)
            n += len(batch)
        if max_videos and n >= max_videos:
            break
    return batches


def measure_accuracy(variants: Sequence[Variant], batches: List[List[Dict]], num_classes: int, views: int,
                     device: torch.device, views_per_chunk: int, groups: Sequence[int],
                     normalizer: Optional[Callable[[torch.Tensor], torch.Tensor]] = None) -> None:
    """Video top-1 / top-5 of every variant on the cached views (engine's run_multiview, mean softmax), and its
    per-video records (``video_records``: index, label, probs; for the paired intervals); ``normalizer``: the
    views' on the device (uint8 views cached, DATA.NORMALIZE_ON_DEVICE; None: floats)."""
    cost: List[torch.Tensor] = []  # IA-RED² rows: every view's exact GFLOPs (on the device until the row ends)

    def fwd(model: nn.Module, v: torch.Tensor) -> ChunkOutput:
        if not getattr(model, "returns_decisions", False):  # dense
            return ChunkOutput(model(v), None, None)
        logits, decisions = model(v, return_decisions=True)
        if isinstance(decisions, PruningDecisions):
            cost.append(forward_gflops(unwrap(model), decisions, v.shape))
        return ChunkOutput(logits, None, decisions.keep_rates.float().cpu())

    for var in tqdm(variants, desc="accuracy", dynamic_ncols=True):
        base = unwrap(var.model)
        if hasattr(base, "reseed"):  # the random baseline: the same draws for every run of the benchmark
            base.reseed()
        cost.clear()
        records = run_multiview(var.model, batches, device, views_per_chunk, "mean_softmax", None, fwd,
                                show_progress=False, normalizer=normalizer)
        if cost:  # a thresholded row's cost is the clip's: its mean over every test view, not over a traced few
            every = torch.cat(cost)
            var.results["all_views"] = {"gflops": float(every.double().mean()), "gflops_min": float(every.min()),
                                        "gflops_max": float(every.max()), "gflops_views": every.numel()}
        s = summarize(records, num_classes, views)
        var.results.update(top1=s["video_top1"], top5=s["video_top5"], videos=s["videos"], failed=s["failed"])
        var.video_records = [{k: r[k] for k in ("index", "label", "probs")} for r in records]
        if var.method == "iared_threshold" and "keep_rates" in s:
            var.token_fraction = token_fraction_from_rates(s["keep_rates"], groups)
            var.results["keep_rates"] = s["keep_rates"]


def measure_gflops(variants: Sequence[Variant], clips: torch.Tensor) -> None:
    """Mean / min / max fvcore GFLOPs per view of every variant over ``clips`` (n, C, T, H, W), one trace each.

    An IA-RED² row whose accuracy pass counted every test view (``all_views``: the trace-free exact count,
    ``exact_cost.forward_gflops``) reports that mean as its GFLOPs — a thresholded row's cost differs from clip
    to clip, and a few traced views can be 10 % off it — after checking the count against fvcore's traces here
    (equal to 1e-6 relative, else an error); ``gflops_views`` says how many views the figure is the mean of."""
    for var in tqdm(variants, desc="fvcore GFLOPs", dynamic_ncols=True):
        g = [variant_gflops(var.model, c.unsqueeze(0)) for c in clips]
        var.results.update(gflops=statistics.mean(g), gflops_min=min(g), gflops_max=max(g), gflops_views=len(g))
        if "all_views" not in var.results:
            continue
        model = unwrap(var.model)
        with torch.no_grad():
            _, decisions = var.model.eval()(clips, return_decisions=True)
        counted = forward_gflops(model, decisions, clips.shape).double().cpu()
        traced = torch.tensor(g, dtype=torch.float64)
        if not torch.allclose(counted, traced, rtol=1e-6, atol=0.0):
            raise RuntimeError(f"{var.name}: trace-free GFLOPs {counted.tolist()} differ from fvcore's {g}")
        var.results.update(var.results.pop("all_views"))


def measure_speed(variants: Sequence[Variant], clips: Dict[int, torch.Tensor], warmup: int, reps: int,
                  precision: str = "fp32") -> str:
    """Wall-clock per forward at each batch size (clips: batch size -> (B, C, T, H, W)), variants interleaved
    (``profiling.timing.round_robin``); fills ``results`` with ms per clip (median, min, max) and clips/s.

    The ``warmup`` untimed rounds run at the first batch size only (on a 2-core CPU a TimeSformer-B round at
    batch 8 costs minutes); the first timed repetition at the largest batch size also records the peak memory
    (``peak_mem_mb``). Returns what the memory figure is.
    """
    sizes = list(clips)
    mem_bs = max(sizes)
    pairs = [(var.name, var.model, precision) for var in variants]
    for i, bs in enumerate(sizes):
        timed = round_robin(pairs, clips[bs], warmup if i == 0 else 0, reps, memory=bs == mem_bs, progress=True)
        for var, r in zip(variants, timed):
            if bs == mem_bs:  # before the batch's figures: the column order of methods.json
                var.results["peak_mem_mb"] = r.peak_mem_mb
            per_clip = [1000.0 * s / bs for s in r.times_s]
            var.results[f"ms_b{bs}"] = statistics.median(per_clip)
            var.results[f"ms_b{bs}_min"] = min(per_clip)
            var.results[f"ms_b{bs}_max"] = max(per_clip)
            var.results[f"clips_per_s_b{bs}"] = 1000.0 / statistics.median(per_clip)
    what = "CUDA max_memory_allocated" if clips[mem_bs].is_cuda else "CPU peak RSS (sampled each ms)"
    return f"{what} during the first timed batch-{mem_bs} forward, above the level before it"
