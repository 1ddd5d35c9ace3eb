"""Keep-ratio rows of the speed benchmark: does pruning save wall-clock time in proportion to its GFLOPs?

For each keep rate r the IA-RED² model runs in keep_ratio mode (every group keeps the top r of its alive
tokens) with the dense model's weights, so the kept counts — hence the cost — are fixed and the same for
every clip. Dense and pruned variants are timed side by side, round-robin within every repetition (so a
change of machine load hits all variants alike), at each batch size; the table compares the wall-clock
speed-up with the fvcore GFLOPs speed-up. The last printed line is machine readable:
``min_speedup_to_gflops_ratio=<float> dense_ms_b1=<float>``.
"""
from __future__ import annotations

import logging
from typing import Dict, List, Optional, Sequence

import torch

from video_iared.benchmarks.variant import Variant
from video_iared.build import build_keep_ratio_models
from video_iared.engine.device import device_from_cfg
from video_iared.profiling.flops import model_gflops
from video_iared.profiling.timing import SpeedResult, interleaved_speed, load_note

logger = logging.getLogger(__name__)


def keep_ratio_variants(cfg, keep_rates: Sequence[float]) -> List[Variant]:
    """The dense model ("dense") and IA-RED² in keep_ratio mode at every keep rate ("keep 0.7", ...) on the dense
    weights, each with its fvcore GFLOPs per clip and per-group token keep rates, measured on one seeded clip."""
    dense, pruned = build_keep_ratio_models(cfg, keep_rates)
    T, S, C = cfg.DATA.NUM_FRAMES, cfg.DATA.TEST_CROP_SIZE, cfg.DATA.INPUT_CHANNEL_NUM[0]
    probe = torch.randn(1, C, T, S, S, generator=torch.Generator().manual_seed(cfg.RNG_SEED))
    rows = [Variant("dense", dense, gflops=model_gflops(dense, probe),
                    token_rates=[1.0] * len(pruned[0].groups) if pruned else [])]
    for r, m in zip(keep_rates, pruned):
        with torch.no_grad():
            _, decisions = m(probe, return_decisions=True)
        rows.append(Variant(f"keep {r:g}", m, keep_ratio=r, gflops=model_gflops(m, probe),
                            token_rates=[float(v) for v in decisions.keep_rates[0]]))
    return rows


def keep_ratio_speed_table(cfg, keep_rates: Sequence[float] = (0.7, 0.5, 0.3), batch_sizes: Sequence[int] = (1, 8),
                           warmup: int = 1, reps: int = 3) -> Dict[str, object]:
    """Measure and print the keep-ratio table; returns {"rows": [...], "min_ratio", "dense_ms_b1", "narrow_ms_b1"}
    ("narrow_ms_b1": ``narrow_forward_ms``'s figures when batch 1 is timed, else {})."""

    device = device_from_cfg(cfg).type  # DEVICE auto: cuda when present
    rows = keep_ratio_variants(cfg, keep_rates)
    T, S, C = cfg.DATA.NUM_FRAMES, cfg.DATA.TEST_CROP_SIZE, cfg.DATA.INPUT_CHANNEL_NUM[0]
    logger.info("keep-ratio speed benchmark: %d frames x %d crop, groups %s, warm-up %d, reps %d (interleaved) on %s; %s",
                T, S, list(rows[1].model.groups) if len(rows) > 1 else [], warmup, reps, device, load_note())
    print("IA-RED² keep_ratio mode vs dense (fvcore GFLOPs = GMACs per clip; speed-up = dense ms / ms; "
          "ratio = speed-up / GFLOPs speed-up; ms = fastest of the repetitions; cpu columns: process CPU time, "
          "a diagnostic under machine load)", flush=True)
    print(f"{'keep':>5} {'tokens kept per group':>24} {'GFLOPs':>8} {'batch':>5} {'ms/clip':>9} "
          f"{'speed-up':>8} {'GFLOPs x':>8} {'ratio':>6} {'cpu ms/clip':>9} {'cpu ratio':>9}", flush=True)
    timed = interleaved_speed([(v.name, v.model, "fp32") for v in rows], batch_sizes, T, S, C, warmup, reps, device,
                              cfg.RNG_SEED)
    out_rows = [row for bs in batch_sizes for row in _batch_rows(rows, [r for r in timed if r.batch_size == bs])]
    ratios = [r["ratio"] for r in out_rows if r["keep"] is not None]
    min_ratio = min(ratios) if ratios else float("nan")
    dense_ms_b1 = next((r["ms_per_clip"] for r in out_rows if r["batch"] == 1), float("nan"))
    narrow_ms: Dict[str, float] = {}
    if 1 in batch_sizes:
        narrow_ms = narrow_forward_ms(cfg, keep_rates, warmup, reps)
        b1 = [r for r in out_rows if r["batch"] == 1]
        _print_narrow(narrow_ms, {v.name: r["ms_per_clip"] for v, r in zip(rows, b1)})
    print(f"after: {load_note()}", flush=True)
    print(f"min_speedup_to_gflops_ratio={min_ratio:.4f} dense_ms_b1={dense_ms_b1:.2f}", flush=True)
    return {"rows": out_rows, "min_ratio": min_ratio, "dense_ms_b1": dense_ms_b1, "narrow_ms_b1": narrow_ms}


def _batch_rows(variants: Sequence[Variant], timed: Sequence[SpeedResult]) -> List[Dict[str, object]]:
    """Print and return the table rows of one batch size (``timed``: one result per variant, dense first)."""
    bs = timed[0].batch_size
    # the fastest repetition: the one least disturbed by other processes on this shared machine
    fastest = [min(r.times_s) for r in timed]
    cpu_fastest = [min(r.cpu_times_s) for r in timed]
    out = []
    for i, (row, t) in enumerate(zip(variants, fastest)):
        speedup = fastest[0] / t
        g_speedup = variants[0].gflops / row.gflops
        ratio = speedup / g_speedup
        kept = "[" + ", ".join(f"{v:.3f}" for v in row.token_rates) + "]"
        name = "dense" if row.keep_ratio is None else f"{row.keep_ratio:.2f}"
        cpu_ratio = (cpu_fastest[0] / cpu_fastest[i]) / g_speedup
        print(f"{name:>5} {kept:>24} {row.gflops:>8.2f} {bs:>5} {1000 * t / bs:>9.1f} "
              f"{speedup:>7.2f}x {g_speedup:>7.2f}x {ratio:>6.2f} {1000 * cpu_fastest[i] / bs:>9.1f} "
              f"{cpu_ratio:>9.2f}", flush=True)
        out.append({"keep": row.keep_ratio, "token_rates": row.token_rates, "gflops": row.gflops, "batch": bs,
                    "ms_per_clip": 1000 * t / bs, "speedup": speedup, "gflops_speedup": g_speedup,
                    "ratio": ratio, "times_s": timed[i].times_s, "cpu_s": timed[i].cpu_times_s})
    return out


def _print_narrow(narrow_ms: Dict[str, float], full_b1: Dict[str, float]) -> None:
    """The narrow models' batch-1 ms beside the full-width ones' (``full_b1``: variant name -> ms per clip)."""
    models = {k: v for k, v in narrow_ms.items() if k != "width"}
    print(f"the same batch-1 forwards at width {narrow_ms['width']:g} (head dim {NARROW_HEAD_DIM}; the kept "
          f"token counts, calls and index work unchanged, the matmuls almost free) - an upper bound on what does "
          f"not shrink with the GEMMs: " + ", ".join(f"{k} {v:.1f} ms ({100 * v / full_b1[k]:.0f} % of its "
                                                      f"{full_b1[k]:.1f})" for k, v in models.items()), flush=True)


NARROW_HEAD_DIM = 4


def narrow_forward_ms(cfg, keep_rates: Sequence[float], warmup: int, reps: int) -> Dict[str, float]:
    """Batch-1 ms (fastest of ``reps``) of the dense and keep-ratio models rebuilt with NARROW_HEAD_DIM channels
    per head ({"width": D, "dense": ms, "keep 0.7": ms, ...}).

    Same heads, kept token counts per group, attention calls and index bookkeeping as the full-width models (the
    kept positions differ: the narrow models have weights of their own), while the linear layers shrink by
    (EMBED_DIM / D)^2: what remains is the part of a forward pass that pruning cannot
    shrink in proportion to its GFLOPs at batch 1 (Python and dispatch, per-call kernel costs, the index work),
    plus a little arithmetic that still scales with the tokens.
    """

    narrow = cfg.clone()
    narrow.defrost()
    narrow.TIMESFORMER.EMBED_DIM = NARROW_HEAD_DIM * cfg.TIMESFORMER.NUM_HEADS
    narrow.IARED.HEAD_DIM = NARROW_HEAD_DIM
    dense, pruned = build_keep_ratio_models(narrow, keep_rates)
    pairs = [("dense", dense, "fp32")] + [(f"keep {r:g}", m, "fp32") for r, m in zip(keep_rates, pruned)]
    T, S, C = cfg.DATA.NUM_FRAMES, cfg.DATA.TEST_CROP_SIZE, cfg.DATA.INPUT_CHANNEL_NUM[0]
    timed = interleaved_speed(pairs, [1], T, S, C, max(warmup, 1), reps, device_from_cfg(cfg).type, cfg.RNG_SEED)
    return {"width": float(narrow.TIMESFORMER.EMBED_DIM), **{r.name: 1000.0 * min(r.times_s) for r in timed}}


def run_from_args(cfg, keep_rates: Optional[Sequence[float]] = None, batch_sizes: Optional[Sequence[int]] = None,
                  warmup: Optional[int] = None, reps: Optional[int] = None) -> Dict[str, object]:
    """``tools/benchmark.py --speed`` on an IA-RED² config: defaults keep rates 0.7 / 0.5 / 0.3, batches 1 and 8,
    1 warm-up pass and 3 repetitions (a TimeSformer-B batch of 8 takes ~15 s on a 2-core CPU)."""
    return keep_ratio_speed_table(cfg, keep_rates or (0.7, 0.5, 0.3), batch_sizes or (1, 8),
                                  1 if warmup is None else warmup, 3 if reps is None else reps)
