"""Per-clip cost of the pruned model: fvcore GFLOPs of each real clip, summaries, and the analytic check.

A pruned model's cost depends on its input. The test stage, predict and the calibration take each clip's
fvcore count from the kept sets of the forward they ran (``exact_cost.forward_gflops``: no trace); a few
clips are also traced (``clip_gflops``: one fvcore trace per clip, the reference the trace-free count equals)
and both are logged side by side (``fvcore_sample_lines``). Costs are reported as mean / min / max over the
evaluated set (``summarize_costs``) next to the dense model's count. The analytic estimate from the keep
rates, ``1 - sum_g (1 - keep_g) * blocks_g / depth`` of the dense cost, ignores the interpreters, the
embedding and the head; printing it beside fvcore's figure checks the packed path really skips the work.
"""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import torch
from torch import nn

from video_iared.profiling.flops import model_gflops
from video_iared.pruning.decisions import PolicyBound, PruningPolicy


def analytic_fraction(keep_rates: torch.Tensor, groups: Sequence[int]) -> torch.Tensor:
    """keep_rates (..., G) -> (...,) estimated fraction of the dense blocks' cost that runs."""
    w = torch.tensor([float(g) for g in groups], dtype=torch.float64)
    k = keep_rates.to(torch.float64)
    return 1.0 - ((1.0 - k) * w).sum(-1) / w.sum()


@torch.no_grad()
def clip_gflops(model: nn.Module, views: torch.Tensor) -> torch.Tensor:
    """fvcore GFLOPs (GMACs) of each clip of ``views`` (n, C, T, H, W), traced one clip at a time: (n,).

    Slow (one forward through the JIT tracer per clip): the reference ``exact_cost.forward_gflops`` equals,
    run on a sample. ``model`` runs with the policy it is given (a ``PolicyBound`` fixes one).
    """
    return torch.tensor([model_gflops(model, v.unsqueeze(0)) for v in views], dtype=torch.float64)


def summarize_costs(gflops: Sequence[float], keep_rates: Sequence[Sequence[float]], groups: Sequence[int],
                    dense_gflops: float) -> Dict[str, object]:
    """Mean / min / max GFLOPs over the evaluated videos (each entry of ``gflops`` / ``keep_rates`` a video's mean
    over its views), mean keep rate per group, and the two ratios.

    ``gflops_fraction_fvcore`` = mean GFLOPs / dense GFLOPs; ``gflops_fraction_analytic`` is the estimate from
    the mean keep rates (blocks only).
    """
    g = torch.tensor(list(gflops), dtype=torch.float64)
    k = torch.tensor([list(r) for r in keep_rates], dtype=torch.float64)
    mean_keep = k.mean(0)
    return {
        "gflops_mean": float(g.mean()),
        "gflops_min": float(g.min()),
        "gflops_max": float(g.max()),
        "dense_gflops": float(dense_gflops),
        "keep_rate_per_group": [float(v) for v in mean_keep],
        "gflops_fraction_fvcore": float(g.mean() / dense_gflops),
        "gflops_fraction_analytic": float(analytic_fraction(k, groups).mean()),
        "videos": int(g.numel()),
    }


def format_cost_summary(s: Dict[str, object]) -> List[str]:
    """Human-readable lines of ``summarize_costs``'s result (units: fvcore GFLOPs = GMACs per view)."""
    keeps = ", ".join(f"{v:.3f}" for v in s["keep_rate_per_group"])
    return [
        f"IA-RED² GFLOPs per view over {s['videos']} videos (fvcore's count, GMACs, from every view's kept "
        f"sets: pruning.exact_cost): mean "
        f"{s['gflops_mean']:.4f}, min {s['gflops_min']:.4f}, max {s['gflops_max']:.4f} (of the per-video means); "
        f"dense {s['dense_gflops']:.4f}",
        f"mean keep rate per group: [{keeps}]; cost fraction fvcore {s['gflops_fraction_fvcore']:.3f} vs "
        f"analytic (blocks only) {s['gflops_fraction_analytic']:.3f}",
    ]


@torch.no_grad()
def dense_gflops(model: nn.Module, clip: torch.Tensor) -> float:
    """fvcore GFLOPs of the dense backbone inside an IA-RED² model (clip (1, C, T, H, W)): every token kept, no
    interpreter run, on the masked path, whose ops are the dense TimeSformer's (the packed path with every
    token kept is a little cheaper: it runs norm1/qkv once for the CLS instead of once per frame copy)."""
    return model_gflops(PolicyBound(model, PruningPolicy.dense(model.num_groups)), clip)


def cost_report(records: Sequence[Dict], model: nn.Module, clip: torch.Tensor) -> Tuple[Dict[str, object], List[str]]:
    """Cost summary of a test run from the engine's per-video records (fields "gflops", "keep_rates": each the
    mean over the video's views, each view's count that of the view alone) -> (summary dict, printable lines)."""
    ok = [r for r in records if r.get("keep_rates") is not None and r.get("gflops") == r.get("gflops")]
    if not ok:
        return {}, ["IA-RED² cost: no evaluated video carried GFLOPs and keep rates"]
    s = summarize_costs([r["gflops"] for r in ok], [r["keep_rates"] for r in ok], model.groups,
                        dense_gflops(model, clip))
    return s, format_cost_summary(s)


def fvcore_sample_lines(pairs: Sequence[Tuple[float, float]], all_mean: float, all_views: int) -> List[str]:
    """The log lines comparing the trace-free count with fvcore's traces: ``pairs`` (trace-free, fvcore) GFLOPs
    of the sampled views; ``all_mean`` the trace-free mean over all ``all_views`` views."""
    if not pairs:
        return [f"GFLOPs per view, trace-free (pruning.exact_cost) over all {all_views} views: {all_mean:.6f}; "
                f"no view traced by fvcore (TEST.FVCORE_SAMPLE_CLIPS 0)"]
    ours = torch.tensor([a for a, _ in pairs], dtype=torch.float64)
    ref = torch.tensor([b for _, b in pairs], dtype=torch.float64)
    worst = float(((ours - ref).abs() / ref.abs().clamp_min(1e-30)).max())
    return [f"GFLOPs per view on the {len(pairs)} views traced by fvcore: trace-free {float(ours.mean()):.6f} vs "
            f"fvcore {float(ref.mean()):.6f} (largest relative difference {worst:.1e}); trace-free over all "
            f"{all_views} views: {all_mean:.6f}"]
