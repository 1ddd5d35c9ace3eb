"""One-run benchmark of token-reduction methods: dense, random drop, EViT top-k, ToMe, IA-RED², side by side.

For every method and budget (a *variant*) it measures, in one run:
- video-level top-1 / top-5 on the test split, multi-view (mean softmax), through the engine's ``run_multiview``
  on views decoded ONCE and cached for all variants (skipped without data, e.g. TimeSformer-B speed runs);
- fvcore GFLOPs per view (GMACs), traced on each of the first ``gflops_views`` real views (a pruned model's cost
  depends on its input) and averaged;
- ms per clip at batch 1 and clips/s at batch 8: warm-up, then ``reps`` repetitions with the variants
  interleaved (rep 1 of each, rep 2 of each, ...) so a change of machine load hits every variant alike;
  median and spread (min, max);
- peak memory of the first timed batch-8 forward: ``max_memory_allocated`` on CUDA; on CPU the peak resident
  set size sampled from /proc/self/statm every millisecond by a thread, minus the RSS before the pass (large
  activations are mmap-ed by the allocator and returned on free, so the difference is the pass's own peak;
  small models whose activations fit in memory the allocator already holds show ~0);
and writes ``methods.csv``, ``methods.md``, ``acc_vs_gflops.png``, ``acc_vs_latency.png`` (+ ``methods.json``).

Budgets: keep ratios r (random, EViT and IA-RED² keep_ratio keep the top r of the alive tokens in front of every
group, hierarchically); ToMe gets, per r, the merge count per frame per block whose token fraction is closest to
the keep-ratio methods' (``tome_r_for_fraction``); IA-RED² thresholded policies at the given thresholds.
"""
from __future__ import annotations

import copy
import csv
import json
import logging
import math
import os
import statistics
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

import torch
from torch import nn
from tqdm import tqdm

from video_iared.baselines.token_reduction import Budget, build_baseline
from video_iared.benchmarks.baseline_finetune import finetune_variant_model, recipe_from_cfg
from video_iared.build import iared_kwargs, timesformer_kwargs
from video_iared.checkpoint import load_checkpoint
from video_iared.checkpoint.io import final_checkpoint_path, latest_checkpoint, read_calibration, stage_checkpoint_name
from video_iared.data import build_multiview_loader, build_normalizer
from video_iared.data.loader import build_loader
from video_iared.engine.device import device_from_cfg
from video_iared.engine.multiview_test import ChunkOutput, run_multiview, summarize
from video_iared.models.timesformer import TimeSformer
from video_iared.profiling.flops import flop_analysis, heavy_unsupported_ops
from video_iared.profiling.memory import PeakMemory
from video_iared.profiling.timing import load_note, time_once
from video_iared.pruning.decisions import PolicyBound, PruningPolicy, unwrap
from video_iared.pruning.iared import IAREDTimeSformer

logger = logging.getLogger(__name__)

ALL_METHODS = ("dense", "random", "evit", "tome", "iared_ratio", "iared_threshold")
LABELS = {"dense": "dense", "random": "random drop", "evit": "EViT top-k", "tome": "ToMe (per frame)",
          "iared_ratio": "IA-RED² keep_ratio", "iared_threshold": "IA-RED² threshold"}
# fvcore has no handle for these and they cost O(elements): the random baseline's draw, ToMe's matching and merge.
EXTRA_CHEAP_OPS = {"aten::rand", "aten::new_ones", "aten::linalg_vector_norm", "aten::expand_as", "aten::isfinite",
                   "aten::index_add", "aten::numel"}


# ----------------------------------------------------------------------------- variants
@dataclass
class Variant:
    """One row: a method at one budget, its model, and every measured figure."""

    method: str
    budget: str
    model: nn.Module
    token_fraction: float  # analytic mean fraction of the patch tokens each block computes on (1 = dense)
    results: Dict[str, float] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.method} {self.budget}".strip()


def ratio_token_fraction(groups: Sequence[int], ratio: float) -> float:
    """Mean fraction of patch tokens per block when every group keeps ``ratio`` of the alive tokens."""
    alive, total = 1.0, 0.0
    for n in groups:
        alive *= ratio
        total += alive * n
    return total / sum(groups)


def tome_token_counts(tokens_per_frame: int, depth: int, r: int) -> List[int]:
    """Patches per frame at every block when ToMe merges min(r, |A|) of them in front of every block."""
    n, out = tokens_per_frame, []
    for _ in range(depth):
        if n >= 2:
            n -= min(r, (n + 1) // 2)
        out.append(n)
    return out


def tome_r_for_fraction(tokens_per_frame: int, depth: int, fraction: float) -> int:
    """The merge count r whose mean token fraction is closest to ``fraction`` (ties: the smaller r)."""
    best, best_err = 0, float("inf")
    for r in range(0, tokens_per_frame + 1):
        f = sum(tome_token_counts(tokens_per_frame, depth, r)) / (depth * tokens_per_frame)
        if abs(f - fraction) < best_err - 1e-12:
            best, best_err = r, abs(f - fraction)
    return best


def build_variants(dense: nn.Module, iared: Optional[nn.Module], methods: Sequence[str], groups: Sequence[int],
                   keep_ratios: Sequence[float], thresholds: Sequence[float], tome_rs: Optional[Sequence[int]],
                   timesformer_kwargs: dict, seed: int = 0, calibrated: Optional[float] = None) -> List[Variant]:
    """The variants to measure. ``dense`` carries the dense weights (random / EViT / ToMe run on it as is);
    ``iared`` (an ``IAREDTimeSformer`` with trained interpreters, or None) serves both IA-RED² methods.
    ``calibrated``: the threshold the IA-RED² checkpoint was calibrated to (its row is labelled so)."""
    unknown = [m for m in methods if m not in ALL_METHODS]
    if unknown:
        raise ValueError(f"unknown methods {unknown}; choose from {ALL_METHODS}")
    depth, G = sum(groups), len(groups)
    out: List[Variant] = []
    if "dense" in methods:
        out.append(Variant("dense", "", dense, 1.0))
    for method in ("random", "evit"):
        if method in methods:
            base = build_baseline(method, dense, groups, [1.0] * G, seed=seed, timesformer_kwargs=timesformer_kwargs)
            for r in keep_ratios:
                out.append(Variant(method, f"keep {r:g}", PolicyBound(base, Budget(keep_ratio=(float(r),) * G)),
                                   ratio_token_fraction(groups, r)))
    if "tome" in methods:
        base = build_baseline("tome", dense, groups, seed=seed, timesformer_kwargs=timesformer_kwargs)
        S = (base.img_size // base.patch_size) ** 2
        rs = list(tome_rs) if tome_rs else [tome_r_for_fraction(S, depth, ratio_token_fraction(groups, r))
                                            for r in keep_ratios]
        for r in rs:
            out.append(Variant("tome", f"r {r}", PolicyBound(base, Budget(merge_r=int(r))),
                               sum(tome_token_counts(S, depth, int(r))) / (depth * S)))
    if iared is not None:
        if "iared_ratio" in methods:
            for r in keep_ratios:
                out.append(Variant("iared_ratio", f"keep {r:g}",
                                   PolicyBound(iared, PruningPolicy.uniform("keep_ratio", G, iared.threshold,
                                                                            (float(r),) * G)),
                                   ratio_token_fraction(groups, r)))
        if "iared_threshold" in methods:
            for t in thresholds:
                # the fraction depends on the clips: filled in from the measured keep rates
                label = f"thr {t:g}" + (" (calibrated)" if calibrated is not None and t == calibrated else "")
                out.append(Variant("iared_threshold", label,
                                   PolicyBound(iared, PruningPolicy.uniform("threshold", G, float(t),
                                                                            iared.keep_ratio)),
                                   math.nan))
    return out


# ----------------------------------------------------------------------------- measurements
def variant_gflops(model: nn.Module, clip: torch.Tensor) -> float:
    """fvcore GFLOPs (GMACs) of one forward on ``clip`` (1, C, T, H, W); raises if a heavy op went uncounted."""
    with torch.no_grad():
        analysis = flop_analysis(model.eval(), clip)
        total = analysis.total()
        heavy = {k: v for k, v in heavy_unsupported_ops(analysis).items() if k not in EXTRA_CHEAP_OPS}
    if heavy:
        raise RuntimeError(f"fvcore has no handle for heavy ops {heavy}: the GFLOPs count would be wrong")
    return total / 1e9


def _token_fraction_from_rates(rates: Sequence[float], groups: Sequence[int]) -> float:
    """Measured keep rate after each group (G,) -> mean fraction of the patch tokens per block."""
    return sum(r * n for r, n in zip(rates, groups)) / sum(groups)


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
    """Video top-1 / top-5 of every variant on the cached views (engine's run_multiview, mean softmax);
    ``normalizer``: the views' on the device (uint8 views cached, DATA.NORMALIZE_ON_DEVICE; None: floats)."""
    def fwd(model: nn.Module, v: torch.Tensor) -> ChunkOutput:
        if not getattr(model, "returns_decisions", False):  # dense
            return ChunkOutput(model(v), None, None)
        logits, decisions = model(v, return_decisions=True)
        return ChunkOutput(logits, None, decisions.keep_rates.float().cpu())

    for var in tqdm(variants, desc="accuracy", dynamic_ncols=True):
        base = unwrap(var.model)
        if hasattr(base, "reseed"):  # the random baseline: the same draws for every run of the benchmark
            base.reseed()
        records = run_multiview(var.model, batches, device, views_per_chunk, "mean_softmax", None, fwd,
                                show_progress=False, normalizer=normalizer)
        s = summarize(records, num_classes, views)
        var.results.update(top1=s["video_top1"], top5=s["video_top5"], videos=s["videos"], failed=s["failed"])
        if var.method == "iared_threshold" and "keep_rates" in s:
            var.token_fraction = _token_fraction_from_rates(s["keep_rates"], groups)
            var.results["keep_rates"] = s["keep_rates"]


def measure_gflops(variants: Sequence[Variant], clips: torch.Tensor) -> None:
    """Mean / min / max fvcore GFLOPs per view of every variant over ``clips`` (n, C, T, H, W), one trace each."""
    for var in tqdm(variants, desc="fvcore GFLOPs", dynamic_ncols=True):
        g = [variant_gflops(var.model, c.unsqueeze(0)) for c in clips]
        var.results.update(gflops=statistics.mean(g), gflops_min=min(g), gflops_max=max(g), gflops_views=len(g))


def measure_speed(variants: Sequence[Variant], clips: Dict[int, torch.Tensor], warmup: int, reps: int,
                  precision: str = "fp32") -> str:
    """Wall-clock per forward at each batch size (clips: batch size -> (B, C, T, H, W)), variants interleaved.

    The ``warmup`` untimed rounds run at the first batch size only (on a 2-core CPU a TimeSformer-B round at
    batch 8 costs minutes); the first timed repetition at the largest batch size also records the peak memory
    (``peak_mem_mb``). Returns what the memory figure is.
    """
    sizes = list(clips)
    mem_bs = max(sizes)
    for _ in tqdm(range(warmup), desc=f"warm-up batch {sizes[0]}", leave=False, dynamic_ncols=True):
        for var in variants:
            time_once(var.model, clips[sizes[0]], precision)
    for bs in sizes:
        clip = clips[bs]
        times: List[List[float]] = [[] for _ in variants]
        for rep in tqdm(range(reps), desc=f"timing batch {bs} (interleaved)", dynamic_ncols=True):
            for i, var in enumerate(variants):
                if rep == 0 and bs == mem_bs:
                    with PeakMemory(clip.device) as mem:
                        times[i].append(time_once(var.model, clip, precision)[0])
                    var.results["peak_mem_mb"] = mem.peak_mb
                else:
                    times[i].append(time_once(var.model, clip, precision)[0])
        for var, t in zip(variants, times):
            per_clip = [1000.0 * s / bs for s in t]
            var.results[f"ms_b{bs}"] = statistics.median(per_clip)
            var.results[f"ms_b{bs}_min"] = min(per_clip)
            var.results[f"ms_b{bs}_max"] = max(per_clip)
            var.results[f"clips_per_s_b{bs}"] = 1000.0 / statistics.median(per_clip)
    what = "CUDA max_memory_allocated" if clips[mem_bs].is_cuda else "CPU peak RSS (sampled each ms)"
    return f"{what} during the first timed batch-{mem_bs} forward, above the level before it"


# ----------------------------------------------------------------------------- outputs
def csv_columns(batch_sizes: Sequence[int]) -> List[str]:
    """The CSV header: identity, accuracy, GFLOPs, then per batch size ms/clip (median, min, max) and clips/s."""
    cols = ["method", "budget", "token_fraction", "top1", "top5", "gflops", "gflops_min", "gflops_max", "gflops_views"]
    for bs in batch_sizes:
        cols += [f"ms_b{bs}", f"ms_b{bs}_min", f"ms_b{bs}_max", f"clips_per_s_b{bs}"]
    return cols + ["peak_mem_mb", "finetune_epochs"]


def _fmt(v, nd: int = 2) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{v:.{nd}f}" if isinstance(v, float) else str(v)


def write_csv(variants: Sequence[Variant], path: str, batch_sizes: Sequence[int]) -> None:
    cols = csv_columns(batch_sizes)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for v in variants:
            row = {"method": v.method, "budget": v.budget, "token_fraction": v.token_fraction, **v.results}
            w.writerow([row.get(c, "") for c in cols])


def markdown_table(variants: Sequence[Variant], batch_sizes: Sequence[int]) -> str:
    """The human table: accuracy, GFLOPs, latency with spread, throughput, memory."""
    dense = next((v for v in variants if v.method == "dense"), None)
    head = ["method", "budget", "tokens", "top-1 %", "GFLOPs/view", "GFLOPs x"]
    for bs in batch_sizes:
        head += [f"ms/clip b{bs} (min–max)", f"clips/s b{bs}"]
    head += ["speed-up b1", "peak MB"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for v in variants:
        r = v.results
        g = r.get("gflops")
        gx = dense.results["gflops"] / g if dense and g else math.nan
        label = LABELS.get(v.method, v.method) + (f" (+{r['finetune_epochs']} ep)" if r.get("finetune_epochs") else "")
        cells = [label, v.budget or "–", _fmt(v.token_fraction, 3), _fmt(r.get("top1")),
                 _fmt(g, 4), _fmt(gx)]
        for bs in batch_sizes:
            spread = f"{_fmt(r.get(f'ms_b{bs}_min'), 1)}–{_fmt(r.get(f'ms_b{bs}_max'), 1)}"
            cells += [f"{_fmt(r.get(f'ms_b{bs}'), 1)} ({spread})", _fmt(r.get(f"clips_per_s_b{bs}"), 1)]
        b1 = r.get(f"ms_b{batch_sizes[0]}")
        sp = dense.results.get(f"ms_b{batch_sizes[0]}") / b1 if dense and b1 else math.nan
        cells += [_fmt(sp), _fmt(r.get("peak_mem_mb"), 1)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(variants: Sequence[Variant], x_key: str, x_label: str, path: str, title: str) -> Optional[str]:
    """Top-1 against ``x_key`` for every method (one line each, dense as a point); None if nothing to plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [v for v in variants if not math.isnan(v.results.get("top1", math.nan)) and x_key in v.results]
    if not pts:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    markers = {"dense": "*", "random": "x", "evit": "s", "tome": "^", "iared_ratio": "o", "iared_threshold": "D"}
    for method in ALL_METHODS:
        mv = sorted((v for v in pts if v.method == method), key=lambda v: v.results[x_key])
        if not mv:
            continue
        xs, ys = [v.results[x_key] for v in mv], [v.results["top1"] for v in mv]
        style = dict(marker=markers[method], label=LABELS[method])
        if method == "dense":
            ax.scatter(xs, ys, s=160, color="black", zorder=5, **style)
        else:
            ax.plot(xs, ys, linestyle="-", **style)
        for v in mv:
            if v.budget:
                ax.annotate(v.budget, (v.results[x_key], v.results["top1"]), fontsize=6, xytext=(3, 3),
                            textcoords="offset points")
    ax.set_xlabel(x_label)
    ax.set_ylabel("video top-1 (%)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------- the config-level entry point
@dataclass
class MethodBenchmarkOptions:
    """What ``run_method_benchmark`` measures (tools/benchmark.py --methods fills it from the command line)."""

    methods: Sequence[str] = ALL_METHODS
    keep_ratios: Sequence[float] = (0.7, 0.5, 0.3)
    thresholds: Sequence[float] = (0.3, 0.5, 0.7)
    tome_r: Optional[Sequence[int]] = None
    dense_checkpoint: str = "auto"  # a path, "auto" (the run_net outputs of the config, if any) or "" (random)
    iared_checkpoint: str = "auto"
    accuracy: bool = True
    max_videos: int = 0  # 0 = the whole test split
    gflops_views: int = 8
    batch_sizes: Sequence[int] = (1, 8)
    warmup: int = 1
    reps: int = 3
    precision: str = "fp32"
    out_dir: str = ""
    quick: bool = False
    finetune_epochs: int = 0  # > 0: every row but IA-RED² threshold finetuned with IA-RED²'s recipe (accuracy runs)
    # the IA-RED² keep_ratio rows' starting point for that finetune: the curriculum's last stage (trained interpreters
    # on the dense backbone); "auto": the last iared_stage_XX.pyth beside the IA-RED² checkpoint, "" none
    iared_curriculum_checkpoint: str = "auto"


def quick_options(opts: MethodBenchmarkOptions) -> MethodBenchmarkOptions:
    """The CI setting: two budgets, a few videos, one GFLOPs view, batch sizes 1 and 2, one repetition."""
    o = copy.copy(opts)
    o.keep_ratios, o.thresholds = list(opts.keep_ratios)[:2], list(opts.thresholds)[:2]
    o.tome_r = list(opts.tome_r)[:2] if opts.tome_r else None
    o.max_videos = opts.max_videos or 4
    o.gflops_views, o.batch_sizes, o.warmup, o.reps = 1, (1, 2), 0, 1
    return o


def resolve_checkpoints(cfg, dense: str, iared: str) -> "tuple[str, str]":
    """Replace "auto" by what ``tools/run_net.py --cfg`` wrote for this config: the dense model's latest epoch
    checkpoint (OUTPUT_DIR/dense/checkpoints for an IA-RED² config, else OUTPUT_DIR/checkpoints) and the IA-RED²
    model's ``checkpoint_iared.pyth``; "" (random weights) where there is none."""
    if dense == "auto":
        dense = latest_checkpoint(os.path.join(cfg.OUTPUT_DIR, "dense") if cfg.IARED.ENABLE else cfg.OUTPUT_DIR) or ""
    if iared == "auto":
        path = final_checkpoint_path(cfg.OUTPUT_DIR)
        iared = path if os.path.isfile(path) else ""
    return dense, iared


def _calibrated_threshold(checkpoint: str) -> Optional[float]:
    """The threshold an IA-RED² checkpoint was calibrated to (IARED.TARGET_COST), or None."""
    rec = read_calibration(checkpoint) if checkpoint else None
    if rec is None:
        return None
    logger.info("%s: calibrated threshold %.4f (cost <= %.3f of dense on val): added to the thresholds", checkpoint,
                rec["threshold"], rec["target_cost"])
    return float(rec["threshold"])


def _load_models(cfg, opts: MethodBenchmarkOptions, device: torch.device):
    """(dense TimeSformer, IA-RED² model or None, groups, timesformer kwargs, weights note)."""
    torch.manual_seed(cfg.RNG_SEED)
    tkw = timesformer_kwargs(cfg)
    tkw["drop_path_rate"] = 0.0  # eval only
    dense = TimeSformer(**tkw)
    if opts.dense_checkpoint:
        load_checkpoint(opts.dense_checkpoint, dense)
    ikw = iared_kwargs(cfg)
    groups = list(ikw["groups"])
    ikw.update(execution="packed", keep_ratio=[1.0] * len(groups))  # the budget views set mode and ratios
    iared = None
    if "iared_ratio" in opts.methods or "iared_threshold" in opts.methods:
        iared = IAREDTimeSformer(**ikw, **tkw)
        if opts.iared_checkpoint:
            load_checkpoint(opts.iared_checkpoint, iared)
        else:  # random interpreters on the dense weights: only keep_ratio budgets mean anything for speed
            iared.load_state_dict(dense.state_dict(), strict=False)
        iared = iared.to(device).eval()
    note = (f"dense weights: {opts.dense_checkpoint or 'RANDOM'}; IA-RED² weights: "
            f"{opts.iared_checkpoint or ('RANDOM interpreters on the dense weights' if iared is not None else 'n/a')}")
    return dense.to(device).eval(), iared, groups, tkw, note


def run_method_benchmark(cfg, opts: MethodBenchmarkOptions) -> List[Variant]:
    """Build every variant of ``cfg``'s model, measure it (see the module docstring), write the table and plots.

    Accuracy needs the test split (``cfg.DATA``) and trained weights; without ``opts.accuracy`` (TimeSformer-B
    speed runs) clips are random normal tensors and the accuracy columns stay empty. Returns the variants.
    """
    if opts.quick:
        opts = quick_options(opts)
    device = device_from_cfg(cfg)
    out_dir = opts.out_dir or os.path.join(cfg.OUTPUT_DIR, "method_benchmark")
    os.makedirs(out_dir, exist_ok=True)
    opts = copy.copy(opts)
    opts.dense_checkpoint, opts.iared_checkpoint = resolve_checkpoints(cfg, opts.dense_checkpoint,
                                                                       opts.iared_checkpoint)
    methods = list(opts.methods)
    if not opts.iared_checkpoint and "iared_threshold" in methods:
        logger.warning("no IA-RED² checkpoint: the thresholded IA-RED² rows are left out (random interpreters)")
        methods.remove("iared_threshold")
    opts = copy.copy(opts)
    opts.methods = methods
    calibrated = _calibrated_threshold(opts.iared_checkpoint) if "iared_threshold" in methods else None
    if calibrated is not None:  # the model's own operating point (a given threshold within 1e-4 stands for it)
        opts.thresholds = sorted([t for t in opts.thresholds if abs(t - calibrated) >= 1e-4] + [calibrated])
    dense, iared, groups, tkw, weights_note = _load_models(cfg, opts, device)
    variants = build_variants(dense, iared, methods, groups, opts.keep_ratios, opts.thresholds, opts.tome_r, tkw,
                              cfg.RNG_SEED, calibrated)
    logger.info("method benchmark: %d variants (%s); %s", len(variants), ", ".join(v.name for v in variants),
                weights_note)
    C, T, S = cfg.DATA.INPUT_CHANNEL_NUM[0], cfg.DATA.NUM_FRAMES, cfg.DATA.TEST_CROP_SIZE
    views = cfg.TEST.NUM_ENSEMBLE_VIEWS * cfg.TEST.NUM_SPATIAL_CROPS
    finetune_note = ""
    if opts.finetune_epochs > 0:
        if not opts.accuracy:
            raise ValueError("--finetune-epochs needs the accuracy run (drop --no-accuracy): finetuning only changes "
                             "accuracy")
        curriculum = opts.iared_curriculum_checkpoint
        if curriculum == "auto":
            curriculum = last_stage_checkpoint(opts.iared_checkpoint, len(groups))
        if not curriculum and "iared_ratio" in methods:
            logger.warning("no curriculum checkpoint (iared_stage_%02d.pyth beside %s, or "
                           "--iared-curriculum-checkpoint): the IA-RED² keep_ratio rows are NOT finetuned while the "
                           "baselines are", len(groups) - 1, opts.iared_checkpoint or "the IA-RED² checkpoint")
        finetune_note = finetune_rows(variants, cfg, opts.finetune_epochs, device, iared, curriculum)
    if opts.accuracy:
        normalize = build_normalizer(cfg)  # uint8 views cached under DATA.NORMALIZE_ON_DEVICE: 4x less memory
        batches = cache_multiview(build_multiview_loader(cfg, cfg.TEST.SPLIT), opts.max_videos)
        pool = torch.cat([it["views"] for b in batches for it in b if it.get("views") is not None])
        logger.info("test split %s: %d videos, %d views cached", cfg.TEST.SPLIT, sum(len(b) for b in batches),
                    pool.shape[0])
        measure_accuracy(variants, batches, cfg.MODEL.NUM_CLASSES, views, device, cfg.TEST.VIEWS_PER_CHUNK, groups,
                         normalize)
        # the views the GFLOPs and the timed forwards take, as the model's input on the device
        pool = normalize(pool[: max(max(opts.batch_sizes), opts.gflops_views)].to(device, non_blocking=True))
        clip_source = "real test views"
    else:
        n = max(max(opts.batch_sizes), opts.gflops_views)
        pool = torch.randn(n, C, T, S, S, generator=torch.Generator().manual_seed(cfg.RNG_SEED))
        clip_source = "random clips"
    measure_gflops(variants, pool[: opts.gflops_views].to(device))
    while pool.shape[0] < max(opts.batch_sizes):  # too few views for the biggest batch: repeat them
        pool = torch.cat([pool, pool])
    before = load_note()
    speed_clips = {bs: pool[:bs].to(device) for bs in opts.batch_sizes}
    mem_note = measure_speed(variants, speed_clips, opts.warmup, opts.reps, opts.precision)
    after = load_note()
    return write_outputs(variants, cfg, opts, out_dir, weights_note, clip_source, mem_note, before, after, device,
                         finetune_note)


FINETUNED_METHODS = ("dense", "random", "evit", "tome")


def last_stage_checkpoint(iared_checkpoint: str, num_groups: int) -> str:
    """The checkpoint of the curriculum's last stage (``iared_stage_{G-1}.pyth``, ``engine.train_iared``) in the
    folder of an IA-RED² checkpoint, or "" when there is none."""
    if not iared_checkpoint:
        return ""

    path = os.path.join(os.path.dirname(os.path.abspath(iared_checkpoint)), stage_checkpoint_name(num_groups - 1))
    return path if os.path.isfile(path) else ""


def finetune_rows(variants: Sequence[Variant], cfg, epochs: int, device: torch.device,
                  iared: Optional[nn.Module] = None, iared_curriculum_checkpoint: str = "") -> str:
    """Give the comparison rows IA-RED²'s backbone finetune (``benchmarks.baseline_finetune``): the dense / random /
    EViT / ToMe rows from the dense weights; the IA-RED² keep_ratio rows, when ``iared_curriculum_checkpoint`` is
    given, from that checkpoint with the interpreters frozen (the IA-RED² threshold rows are the checkpoint as
    trained, its finetune included). Each row's model becomes its own finetuned copy (``results["finetune_epochs"]``).
    Returns the table note."""
    recipe = recipe_from_cfg(cfg, epochs)
    loader = build_loader(cfg, "train")
    distill = (f"; IA-RED²'s own finetune distilled from the dense model (IARED.FINETUNE_DISTILL "
               f"{cfg.IARED.FINETUNE_DISTILL:g}), these rows did not" if cfg.IARED.FINETUNE_DISTILL > 0 else "")
    methods = list(FINETUNED_METHODS)
    curriculum_model = None
    if iared is not None and iared_curriculum_checkpoint and any(v.method == "iared_ratio" for v in variants):
        curriculum_model = copy.deepcopy(iared)
        load_checkpoint(iared_curriculum_checkpoint, curriculum_model)
        methods.append("iared_ratio")
    rows = [v for v in variants if v.method in methods]
    for var in tqdm(rows, desc="finetune", dynamic_ncols=True):
        if var.method == "iared_ratio":
            var.model = finetune_variant_model(PolicyBound(curriculum_model, var.model.policy), loader, recipe,
                                               device, var.name, frozen=("interpreters.",))
        else:
            var.model = finetune_variant_model(var.model, loader, recipe, device, var.name)
        var.results["finetune_epochs"] = epochs
    names = ", ".join(LABELS[m] for m in methods)
    iared_note = "IA-RED² rows: the checkpoint as trained"
    if curriculum_model is not None:
        iared_note = (f"IA-RED² keep_ratio rows: from {iared_curriculum_checkpoint} (the curriculum's interpreters, "
                      f"frozen, on the dense backbone); IA-RED² threshold rows: the checkpoint as trained (its own "
                      f"finetune)")
    return (f"finetune: the {names} rows trained {epochs} epoch{'s' * (epochs != 1)} with the method active at the "
            f"row's budget, as IA-RED²'s backbone was (lr {recipe.lr:g} cosine, {recipe.optimizer}, weight decay "
            f"{recipe.weight_decay:g}, cross-entropy, the same augmentation draws), from the dense weights; "
            f"{iared_note}{distill}")


def write_outputs(variants: Sequence[Variant], cfg, opts: MethodBenchmarkOptions, out_dir: str, weights_note: str,
                  clip_source: str, mem_note: str, before: str, after: str, device: torch.device,
                  finetune_note: str = "") -> List[Variant]:
    """methods.csv / .md / .json and the two plots into ``out_dir``; prints the Markdown table."""
    import platform

    bs = list(opts.batch_sizes)
    table = markdown_table(variants, bs)
    model = (f"TimeSformer {cfg.TIMESFORMER.ATTENTION_TYPE}, dim {cfg.TIMESFORMER.EMBED_DIM}, depth "
             f"{cfg.TIMESFORMER.DEPTH}, {cfg.DATA.NUM_FRAMES}x{cfg.DATA.TEST_CROP_SIZE}, patch "
             f"{cfg.TIMESFORMER.PATCH_SIZE}, groups {list(cfg.IARED.GROUPS)}")
    machine = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
               f"{device}")
    notes = [
        f"model: {model}; {weights_note}",
        f"accuracy: video top-1 on TEST.SPLIT {cfg.TEST.SPLIT} ({cfg.TEST.NUM_ENSEMBLE_VIEWS} clips x "
        f"{cfg.TEST.NUM_SPATIAL_CROPS} crops, mean softmax)" if opts.accuracy else "accuracy: not measured",
        f"GFLOPs: fvcore (1 multiply-add = 1 flop, i.e. GMACs) per view, mean over {opts.gflops_views} {clip_source}",
        f"timing: {clip_source}, {opts.precision}, warm-up {opts.warmup}, {opts.reps} reps interleaved across "
        f"variants, median (min–max) ms per clip; tokens = mean fraction of patch tokens per block",
        f"memory: {mem_note}",
        f"machine: {machine}; before: {before}; after: {after}",
    ] + ([finetune_note] if finetune_note else [])
    md = "\n".join(["# Token-reduction methods side by side", ""] + [f"- {n}" for n in notes] + ["", table, ""])
    with open(os.path.join(out_dir, "methods.md"), "w") as f:
        f.write(md)
    write_csv(variants, os.path.join(out_dir, "methods.csv"), bs)
    with open(os.path.join(out_dir, "methods.json"), "w") as f:
        json.dump({"notes": notes, "rows": [{"method": v.method, "budget": v.budget,
                                             "token_fraction": v.token_fraction, **v.results} for v in variants]},
                  f, indent=1, default=float)
    title = f"{model}\n{cfg.TEST.SPLIT} split, {machine}"
    plot(variants, "gflops", "fvcore GFLOPs per view (GMACs)", os.path.join(out_dir, "acc_vs_gflops.png"), title)
    plot(variants, f"ms_b{bs[0]}", f"ms per clip at batch {bs[0]} (median)",
         os.path.join(out_dir, "acc_vs_latency.png"), title)
    print(md, flush=True)
    print(f"method benchmark written to {out_dir} (methods.md, methods.csv, methods.json, acc_vs_gflops.png, "
          f"acc_vs_latency.png)", flush=True)
    return list(variants)
