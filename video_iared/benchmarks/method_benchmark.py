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
and the paired bootstrap 95 % interval of every row's top-1 difference to dense / dense + N and of every IA-RED²
row's to each baseline at the matched budget (``method_compare``); and writes ``methods.csv``, ``methods.md``,
``acc_vs_gflops.png``, ``acc_vs_latency.png`` (+ ``methods.json``, ``methods_matched.csv``).

Budgets: keep ratios r (random, EViT and IA-RED² keep_ratio keep the top r of the alive tokens in front of every
group, hierarchically); ToMe gets, per r, the merge count per frame per block whose token fraction is closest to
the keep-ratio methods' (``tome_r_for_fraction``); IA-RED² thresholded policies at the given thresholds.

The parts, one job each: ``method_variants`` (the rows and the budget maths), ``method_weights`` (checkpoints,
models, finetune), ``method_measure`` (accuracy, GFLOPs, timing and memory), ``method_compare`` (paired
intervals), ``method_outputs`` (CSV, Markdown, JSON, plots), ``method_options``; this module runs them in order.
"""
from __future__ import annotations

import copy
import logging
import os
from typing import List, Optional, Tuple

import torch

from video_iared.benchmarks.method_compare import add_paired_top1, matched_pairs
from video_iared.benchmarks.method_measure import cache_multiview, measure_accuracy, measure_gflops, measure_speed
from video_iared.benchmarks.method_options import MethodBenchmarkOptions, quick_options
from video_iared.benchmarks.method_outputs import write_outputs
from video_iared.benchmarks.method_variants import ALL_METHODS, build_variants
from video_iared.benchmarks.method_weights import (calibrated_threshold, finetune_rows, last_stage_checkpoint,
                                                   load_models, resolve_checkpoints)
from video_iared.benchmarks.variant import Variant
from video_iared.data import build_multiview_loader, build_normalizer
from video_iared.engine.device import device_from_cfg
from video_iared.profiling.timing import load_note
from video_iared.pruning.decisions import Threshold

__all__ = ["ALL_METHODS", "MethodBenchmarkOptions", "run_method_benchmark"]

logger = logging.getLogger(__name__)


def run_method_benchmark(cfg, opts: MethodBenchmarkOptions) -> List[Variant]:
    """Build every variant of ``cfg``'s model, measure it (see the module docstring), write the table and plots.

    Accuracy needs the test split (``cfg.DATA``) and trained weights; without ``opts.accuracy`` (TimeSformer-B
    speed runs) clips are random normal tensors and the accuracy columns stay empty. Returns the variants.
    """
    device = device_from_cfg(cfg)
    opts, calibrated = _resolved_options(cfg, opts)
    out_dir = opts.out_dir or os.path.join(cfg.OUTPUT_DIR, "method_benchmark")
    os.makedirs(out_dir, exist_ok=True)
    dense, iared, groups, tkw, weights_note = load_models(cfg, opts, device)
    variants = build_variants(dense, iared, opts.methods, groups, opts.keep_ratios, opts.thresholds, opts.tome_r,
                              tkw, cfg.RNG_SEED, calibrated)
    logger.info("method benchmark: %d variants (%s); %s", len(variants), ", ".join(v.name for v in variants),
                weights_note)
    finetune_note = _finetune(variants, cfg, opts, device, iared, len(groups)) if opts.finetune_epochs > 0 else ""
    pool, clip_source = _measure_accuracy(variants, cfg, opts, device, groups)
    measure_gflops(variants, pool[: opts.gflops_views].to(device))
    while pool.shape[0] < max(opts.batch_sizes):  # too few views for the biggest batch: repeat them
        pool = torch.cat([pool, pool])
    before = load_note()
    speed_clips = {bs: pool[:bs].to(device) for bs in opts.batch_sizes}
    mem_note = measure_speed(variants, speed_clips, opts.warmup, opts.reps, opts.precision)
    after = load_note()
    add_paired_top1(variants)  # after every measurement: the fields come last in methods.json's rows
    return write_outputs(variants, cfg, opts, out_dir, weights_note, clip_source, mem_note, before, after, device,
                         finetune_note, matched_pairs(variants))


def _resolved_options(cfg, opts: MethodBenchmarkOptions) -> Tuple[MethodBenchmarkOptions, Optional[Threshold]]:
    """A copy of ``opts`` as run: --quick applied, "auto" checkpoints resolved, the thresholded IA-RED² rows left
    out without an IA-RED² checkpoint, the checkpoint's calibrated threshold added; and that threshold (or None)."""
    opts = copy.copy(quick_options(opts) if opts.quick else opts)
    opts.dense_checkpoint, opts.iared_checkpoint = resolve_checkpoints(cfg, opts.dense_checkpoint,
                                                                       opts.iared_checkpoint)
    methods = list(opts.methods)
    if not opts.iared_checkpoint and "iared_threshold" in methods:
        logger.warning("no IA-RED² checkpoint: the thresholded IA-RED² rows are left out (random interpreters)")
        methods.remove("iared_threshold")
    opts.methods = methods
    calibrated = calibrated_threshold(opts.iared_checkpoint) if "iared_threshold" in methods else None
    if calibrated is not None:  # the model's own operating point (a given threshold within 1e-4 stands for it)
        opts.thresholds = [t for t in opts.thresholds if not _same_threshold(t, calibrated)] + [calibrated]
    # one threshold for every group in increasing order, then the per-group ones as given
    opts.thresholds = (sorted(t for t in opts.thresholds if not isinstance(t, tuple))
                       + [t for t in opts.thresholds if isinstance(t, tuple)])
    return opts, calibrated


def _same_threshold(a: Threshold, b: Threshold) -> bool:
    """Within 1e-4 of each other (a float and a tuple never are)."""
    if isinstance(a, tuple) != isinstance(b, tuple):
        return False
    pairs = zip(a, b) if isinstance(a, tuple) else [(a, b)]
    return (not isinstance(a, tuple) or len(a) == len(b)) and all(abs(x - y) < 1e-4 for x, y in pairs)


def _finetune(variants: List[Variant], cfg, opts: MethodBenchmarkOptions, device: torch.device, iared,
              num_groups: int) -> str:
    """--finetune-epochs: the comparison rows finetuned (``method_weights.finetune_rows``); returns the table note."""
    if not opts.accuracy:
        raise ValueError("--finetune-epochs needs the accuracy run (drop --no-accuracy): finetuning only changes "
                         "accuracy")
    curriculum = opts.iared_curriculum_checkpoint
    if curriculum == "auto":
        curriculum = last_stage_checkpoint(opts.iared_checkpoint, num_groups)
    if not curriculum and "iared_ratio" in opts.methods:
        logger.warning("no curriculum checkpoint (iared_stage_%02d.pyth beside %s, or "
                       "--iared-curriculum-checkpoint): the IA-RED² keep_ratio rows are NOT finetuned while the "
                       "baselines are", num_groups - 1, opts.iared_checkpoint or "the IA-RED² checkpoint")
    return finetune_rows(variants, cfg, opts.finetune_epochs, device, iared, curriculum)


def _measure_accuracy(variants: List[Variant], cfg, opts: MethodBenchmarkOptions, device: torch.device,
                      groups: List[int]) -> Tuple[torch.Tensor, str]:
    """Video accuracy of every variant on the test split decoded once (with ``opts.accuracy``); returns the clips
    (n, C, T, H, W) the GFLOPs and the timed forwards take — the first real views as the model's input on
    ``device``, else seeded random clips — and what they are."""
    n = max(max(opts.batch_sizes), opts.gflops_views)
    if not opts.accuracy:
        C, T, S = cfg.DATA.INPUT_CHANNEL_NUM[0], cfg.DATA.NUM_FRAMES, cfg.DATA.TEST_CROP_SIZE
        return torch.randn(n, C, T, S, S, generator=torch.Generator().manual_seed(cfg.RNG_SEED)), "random clips"
    normalize = build_normalizer(cfg)  # uint8 views cached under DATA.NORMALIZE_ON_DEVICE: 4x less memory
    batches = cache_multiview(build_multiview_loader(cfg, cfg.TEST.SPLIT), opts.max_videos)
    pool = torch.cat([it["views"] for b in batches for it in b if it.get("views") is not None])
    logger.info("test split %s: %d videos, %d views cached", cfg.TEST.SPLIT, sum(len(b) for b in batches),
                pool.shape[0])
    views = cfg.TEST.NUM_ENSEMBLE_VIEWS * cfg.TEST.NUM_SPATIAL_CROPS
    measure_accuracy(variants, batches, cfg.MODEL.NUM_CLASSES, views, device, cfg.TEST.VIEWS_PER_CHUNK, groups,
                     normalize)
    return normalize(pool[:n].to(device, non_blocking=True)), "real test views"
