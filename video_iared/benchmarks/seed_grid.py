"""Seeds x cost budgets of the IA-RED² recipe from one dense model, compared with "dense + N" on the same videos.

For every seed and budget (``IARED.TARGET_COST``), the run_net IA-RED² stages run from the given dense checkpoint
into ``OUT/seed<S>_cost<B>``: curriculum, calibration to the budget, finetune, test; with the first budget of a
seed, also "dense + N" (the dense model finetuned for the same N epochs by the same recipe, ``engine.finetune``),
which does not depend on the budget and is shared by the seed's other budgets. A run whose predictions exist is not
run again, so an interrupted grid resumes where it stopped. The curriculum does not depend on the budget (the
threshold is calibrated after it), so a seed's later budgets start from the first budget's curriculum stage
checkpoints (copied; run_net resumes after the stages it finds) instead of training the same stages again; the cell
that run_net's own run of the config already is (its RNG_SEED and IARED.TARGET_COST, dense + N on, the dense model
of its OUTPUT_DIR) is read from OUTPUT_DIR.

The report compares, on the test videos every run scored:

- per seed and budget: IA-RED² top-1 and GFLOPs per view against dense and against that seed's dense + N, with
  paired bootstrap 95 % intervals (``engine.comparison.paired_top1``);
- per budget over the seeds: the seed-averaged difference (each video's correctness averaged over the seeds, for
  IA-RED² and for dense + N, then the paired bootstrap over videos), whose interval half-width is the figure of
  issue 21 ("at most 1 point").

Outputs in OUT: ``seed_grid.md``, ``seed_grid.csv`` (a row per seed and budget, and the pooled rows with seed
"all"), ``seed_grid.json``; the last line printed is ``seed_grid budgets=... seeds=...
cost<B>_vs_dense_plus_n=<points> cost<B>_ci=[<lo>,<hi>] cost<B>_half_width=<points> cost<B>_gflops_ratio=<x> ...``.
"""
from __future__ import annotations

import csv
import json
import logging
import os
import shutil
from dataclasses import asdict, dataclass
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch
from fvcore.common.config import CfgNode

from video_iared.checkpoint.io import stage_checkpoint_path
from video_iared.engine.comparison import correct_by_index, paired_top1, records_from_predictions
from video_iared.engine.results import load_predictions
from video_iared.engine.run import DENSE_DIR, DENSE_PLUS_N_DIR
from video_iared.utils.bootstrap import PairedCI, paired_bootstrap_ci

logger = logging.getLogger(__name__)

RunFn = Callable[[CfgNode], object]  # engine.run.run (tests pass a stand-in)


def run_dir(out_dir: str, seed: int, budget: float) -> str:
    return os.path.join(out_dir, f"seed{seed}_cost{budget:g}")


def cell_dir(cfg: CfgNode, out_dir: str, seed: int, budget: float, dense_checkpoint: str) -> str:
    """Where the cell's runs are: run_net's OUTPUT_DIR when the config's own finished run is this cell (same seed and
    budget, dense + N on, and ``dense_checkpoint`` is that run's dense model), else OUT/seed<S>_cost<B>."""
    own_dense = os.path.abspath(os.path.join(cfg.OUTPUT_DIR, DENSE_DIR))
    if (seed == cfg.RNG_SEED and budget == cfg.IARED.TARGET_COST and cfg.IARED.DENSE_PLUS_N
            and os.path.abspath(dense_checkpoint).startswith(own_dense + os.sep)
            and os.path.isfile(_predictions(cfg.OUTPUT_DIR, cfg))
            and os.path.isfile(_predictions(os.path.join(cfg.OUTPUT_DIR, DENSE_PLUS_N_DIR), cfg))):
        return cfg.OUTPUT_DIR
    return run_dir(out_dir, seed, budget)


def grid_config(cfg: CfgNode, out_dir: str, seed: int, budget: float, dense_checkpoint: str,
                with_dense_plus_n: bool) -> CfgNode:
    """The run_net config of one grid cell: ``cfg`` with the seed, the budget, the dense model and its folder."""
    c = cfg.clone()
    c.defrost()
    c.RNG_SEED = int(seed)
    c.IARED.ENABLE = True
    c.IARED.TARGET_COST = float(budget)
    c.IARED.DENSE_CHECKPOINT = dense_checkpoint
    c.IARED.DENSE_PLUS_N = bool(with_dense_plus_n)
    c.TRAIN.ENABLE = True
    c.TEST.ENABLE = True
    c.PREDICT.ENABLE = False
    c.OUTPUT_DIR = run_dir(out_dir, seed, budget)
    c.freeze()
    return c


def _predictions(folder: str, cfg: CfgNode) -> str:
    return os.path.join(folder, cfg.TEST.SAVE_RESULTS_PATH + ".pt")


def run_grid(cfg: CfgNode, dense_checkpoint: str, seeds: Sequence[int], budgets: Sequence[float], out_dir: str,
             run_fn: RunFn) -> None:
    """Run every (seed, budget) cell whose IA-RED² predictions (and, for the seed's first budget, dense + N's) are
    missing. ``run_fn``: engine.run.run."""
    if not os.path.isfile(dense_checkpoint):
        raise FileNotFoundError(f"seed grid: dense checkpoint {dense_checkpoint} does not exist (train it with "
                                f"tools/run_net.py on the same config, or pass --dense-checkpoint)")
    for seed in seeds:
        for i, budget in enumerate(budgets):
            if cell_dir(cfg, out_dir, seed, budget, dense_checkpoint) == cfg.OUTPUT_DIR:
                logger.info("seed grid: seed %d budget %g is run_net's own run in %s", seed, budget, cfg.OUTPUT_DIR)
                continue
            c = grid_config(cfg, out_dir, seed, budget, dense_checkpoint, with_dense_plus_n=i == 0)
            needed = [_predictions(c.OUTPUT_DIR, c)]
            if i == 0 and c.IARED.FINETUNE_EPOCHS > 0:
                needed.append(_predictions(os.path.join(c.OUTPUT_DIR, DENSE_PLUS_N_DIR), c))
            if all(os.path.isfile(p) for p in needed):
                logger.info("seed grid: seed %d budget %g already done (%s)", seed, budget, c.OUTPUT_DIR)
                continue
            if i > 0:
                _share_curriculum(cell_dir(cfg, out_dir, seed, budgets[0], dense_checkpoint), c)
            logger.info("seed grid: seed %d budget %g -> %s", seed, budget, c.OUTPUT_DIR)
            run_fn(c)


def _share_curriculum(first_dir: str, c: CfgNode) -> None:
    """Copy the curriculum stage checkpoints of the seed's first budget into this cell (where it has none yet)."""
    for stage in range(len(c.IARED.GROUPS)):
        src, dst = stage_checkpoint_path(first_dir, stage), stage_checkpoint_path(c.OUTPUT_DIR, stage)
        if os.path.isfile(src) and not os.path.exists(dst):
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            shutil.copyfile(src, dst + ".tmp")
            os.replace(dst + ".tmp", dst)
            logger.info("seed grid: curriculum stage %d from %s (it does not depend on the budget)", stage, src)


@dataclass
class CellReport:
    """One row of the report: IA-RED² at ``budget`` (seed ``seed``, or "all" for the seed average)."""

    seed: str
    budget: float
    videos: int
    top1: float  # points
    dense_top1: float
    dense_plus_n_top1: float
    gflops_per_view: float
    dense_gflops_per_view: float
    vs_dense: Optional[PairedCI]
    vs_dense_plus_n: Optional[PairedCI]

    @property
    def gflops_ratio(self) -> float:
        return self.dense_gflops_per_view / self.gflops_per_view if self.gflops_per_view else float("nan")


def _correct(pt_path: str) -> Dict[int, Optional[int]]:
    return correct_by_index(records_from_predictions(pt_path))


def _mean_gflops(pt_path: str) -> float:
    g = load_predictions(pt_path)["gflops"]
    g = g[~torch.isnan(g)]
    return float(g.mean()) if g.numel() else float("nan")


def _top1(correct: Dict[int, Optional[int]], keys: Sequence[int]) -> float:
    return 100.0 * float(np.mean([correct[k] for k in keys])) if keys else float("nan")


@dataclass
class _Cell:
    seed: int
    budget: float
    iared: str  # predictions .pt
    dense: str
    dense_plus_n: str


def _cells(cfg: CfgNode, out_dir: str, seeds: Sequence[int], budgets: Sequence[float],
           dense_checkpoint: str) -> List[_Cell]:
    cells = []
    for seed in seeds:
        first = cell_dir(cfg, out_dir, seed, budgets[0], dense_checkpoint)
        for budget in budgets:
            folder = cell_dir(cfg, out_dir, seed, budget, dense_checkpoint)
            cells.append(_Cell(seed, budget, _predictions(folder, cfg), _predictions(os.path.join(folder, DENSE_DIR), cfg),
                               _predictions(os.path.join(first, DENSE_PLUS_N_DIR), cfg)))
    missing = [p for c in cells for p in (c.iared, c.dense, c.dense_plus_n) if not os.path.isfile(p)]
    if missing:
        raise FileNotFoundError(f"seed grid: {len(missing)} predictions file(s) missing, e.g. {missing[0]} "
                                f"(run the grid first)")
    return cells


def summarize(cfg: CfgNode, out_dir: str, seeds: Sequence[int], budgets: Sequence[float], dense_checkpoint: str = "",
              num_resamples: int = 10_000) -> List[CellReport]:
    """The report's rows: one per (seed, budget), then one per budget averaged over the seeds (seed "all"), on the
    test videos scored by every run of the grid (a video failed anywhere is left out everywhere)."""
    cells = _cells(cfg, out_dir, seeds, budgets, dense_checkpoint)
    correct = {p: _correct(p) for c in cells for p in (c.iared, c.dense, c.dense_plus_n)}
    keys = sorted(set.intersection(*[{k for k, v in cr.items() if v is not None} for cr in correct.values()]))
    if not keys:
        raise ValueError("seed grid: no test video was scored by every run")
    rows = []

    def ci(a: Sequence[float], b: Sequence[float]) -> PairedCI:
        return paired_bootstrap_ci(a, b, num_resamples=num_resamples)

    for c in cells:
        a, d, n = ([correct[p][k] for k in keys] for p in (c.iared, c.dense, c.dense_plus_n))
        rows.append(CellReport(str(c.seed), c.budget, len(keys), _top1(correct[c.iared], keys),
                               _top1(correct[c.dense], keys), _top1(correct[c.dense_plus_n], keys),
                               _mean_gflops(c.iared), _mean_gflops(c.dense), ci(a, d), ci(a, n)))
    for budget in budgets:
        mine = [c for c in cells if c.budget == budget]
        avg = {name: np.mean([[correct[getattr(c, name)][k] for k in keys] for c in mine], axis=0)
               for name in ("iared", "dense", "dense_plus_n")}
        per_seed = [r for r in rows if r.budget == budget]
        rows.append(CellReport("all", budget, len(keys), 100.0 * float(avg["iared"].mean()),
                               100.0 * float(avg["dense"].mean()), 100.0 * float(avg["dense_plus_n"].mean()),
                               float(np.mean([r.gflops_per_view for r in per_seed])),
                               float(np.mean([r.dense_gflops_per_view for r in per_seed])),
                               ci(avg["iared"], avg["dense"]), ci(avg["iared"], avg["dense_plus_n"])))
    return rows


@dataclass
class VersusReport:
    """This grid's IA-RED² against another grid's at one budget (seed ``seed``, or "all": seed-averaged)."""

    seed: str
    budget: float
    videos: int
    top1: float  # points
    other_top1: float
    diff: PairedCI  # this grid minus the other


def versus(cfg: CfgNode, out_dir: str, other_dir: str, seeds: Sequence[int], budgets: Sequence[float],
           dense_checkpoint: str = "", num_resamples: int = 10_000) -> List[VersusReport]:
    """This grid's IA-RED² cells against ``other_dir``'s (another grid of the same seeds and budgets: another
    inference policy, say), paired per seed and budget and, per budget, seed-averaged as in :func:`summarize`, on
    the test videos both grids scored."""
    pairs = [(seed, budget, _predictions(cell_dir(cfg, out_dir, seed, budget, dense_checkpoint), cfg),
              _predictions(cell_dir(cfg, other_dir, seed, budget, dense_checkpoint), cfg))
             for seed in seeds for budget in budgets]
    missing = [p for _, _, a, b in pairs for p in (a, b) if not os.path.isfile(p)]
    if missing:
        raise FileNotFoundError(f"seed grid: {len(missing)} predictions file(s) missing, e.g. {missing[0]}")
    correct = {p: _correct(p) for _, _, a, b in pairs for p in (a, b)}
    keys = sorted(set.intersection(*[{k for k, v in cr.items() if v is not None} for cr in correct.values()]))
    if not keys:
        raise ValueError("seed grid: no test video was scored by every run of both grids")
    rows = []
    for budget in budgets:
        mine = [(seed, a, b) for seed, bud, a, b in pairs if bud == budget]
        for seed, a, b in mine:
            x, y = [correct[a][k] for k in keys], [correct[b][k] for k in keys]
            rows.append(VersusReport(str(seed), budget, len(keys), _top1(correct[a], keys), _top1(correct[b], keys),
                                     paired_bootstrap_ci(x, y, num_resamples=num_resamples)))
        x = np.mean([[correct[a][k] for k in keys] for _, a, _ in mine], axis=0)
        y = np.mean([[correct[b][k] for k in keys] for _, _, b in mine], axis=0)
        rows.append(VersusReport("all", budget, len(keys), 100.0 * float(x.mean()), 100.0 * float(y.mean()),
                                 paired_bootstrap_ci(x, y, num_resamples=num_resamples)))
    return rows


def format_versus(rows: Sequence[VersusReport], other_dir: str) -> str:
    head = f"| seed | budget | videos | IA-RED² top-1 | {other_dir} top-1 | Δ [95 % CI] |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    lines += [f"| {r.seed} | {r.budget:g} | {r.videos} | {r.top1:.2f} | {r.other_top1:.2f} | {_pts(r.diff)} |"
              for r in rows]
    return "\n".join(lines)


def _pts(ci: Optional[PairedCI]) -> str:
    return "n/a" if ci is None else ci.describe(scale=100.0)


def format_table(rows: Sequence[CellReport]) -> str:
    head = ("| seed | budget | videos | IA-RED² top-1 | GFLOPs/view | fewer GFLOPs | dense + N top-1 | "
            "Δ vs dense + N [95 % CI] | half-width | dense top-1 | Δ vs dense [95 % CI] |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        hw = "n/a" if r.vs_dense_plus_n is None else f"{100 * r.vs_dense_plus_n.half_width:.2f}"
        lines.append(f"| {r.seed} | {r.budget:g} | {r.videos} | {r.top1:.2f} | {r.gflops_per_view:.4f} | "
                     f"{r.gflops_ratio:.2f}x | {r.dense_plus_n_top1:.2f} | {_pts(r.vs_dense_plus_n)} | {hw} | "
                     f"{r.dense_top1:.2f} | {_pts(r.vs_dense)} |")
    return "\n".join(lines)


def summary_line(rows: Sequence[CellReport], seeds: Sequence[int], budgets: Sequence[float],
                 versus_rows: Sequence[VersusReport] = ()) -> str:
    """``seed_grid budgets=0.7,0.5 seeds=0,1,2 videos=N cost0.7_vs_dense_plus_n=<pts> cost0.7_ci=[lo,hi]
    cost0.7_half_width=<pts> cost0.7_vs_dense=<pts> cost0.7_gflops_ratio=<x> ...`` from the seed-averaged rows;
    with ``versus_rows`` (:func:`versus`), then ``cost0.7_vs_other=<pts> cost0.7_vs_other_ci=[lo,hi]`` per budget."""
    parts = ["seed_grid", "budgets=" + ",".join(f"{b:g}" for b in budgets), "seeds=" + ",".join(map(str, seeds)),
             f"videos={rows[0].videos}"]
    for r in rows:
        if r.seed != "all":
            continue
        k, n, d = f"cost{r.budget:g}", r.vs_dense_plus_n, r.vs_dense
        parts += [f"{k}_top1={r.top1:.4f}", f"{k}_vs_dense_plus_n={100 * n.diff:+.4f}",
                  f"{k}_ci=[{100 * n.lower:+.4f},{100 * n.upper:+.4f}]", f"{k}_half_width={100 * n.half_width:.4f}",
                  f"{k}_vs_dense={100 * d.diff:+.4f}", f"{k}_gflops_ratio={r.gflops_ratio:.4f}"]
    for v in versus_rows:
        if v.seed == "all":
            k, c = f"cost{v.budget:g}", v.diff
            parts += [f"{k}_vs_other={100 * c.diff:+.4f}", f"{k}_vs_other_ci=[{100 * c.lower:+.4f},{100 * c.upper:+.4f}]"]
    return " ".join(parts)


def write_report(rows: Sequence[CellReport], out_dir: str, seeds: Sequence[int], budgets: Sequence[float]) -> str:
    """seed_grid.md / .csv / .json in ``out_dir``; returns the Markdown table."""
    table = format_table(rows)
    with open(os.path.join(out_dir, "seed_grid.md"), "w") as f:
        f.write("IA-RED² vs dense + N and dense over seeds x budgets (paired bootstrap 95 % intervals over the same "
                "test videos; seed 'all': each video's correctness averaged over the seeds)\n\n" + table + "\n")
    fields = ["seed", "budget", "videos", "top1", "gflops_per_view", "gflops_ratio", "dense_plus_n_top1",
              "vs_dense_plus_n", "vs_dense_plus_n_lower", "vs_dense_plus_n_upper", "dense_top1", "vs_dense",
              "vs_dense_lower", "vs_dense_upper", "dense_gflops_per_view"]
    with open(os.path.join(out_dir, "seed_grid.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(fields)
        for r in rows:
            n, d = r.vs_dense_plus_n, r.vs_dense
            w.writerow([r.seed, r.budget, r.videos, f"{r.top1:.4f}", f"{r.gflops_per_view:.6f}", f"{r.gflops_ratio:.4f}",
                        f"{r.dense_plus_n_top1:.4f}", *(f"{100 * v:.4f}" for v in (n.diff, n.lower, n.upper)),
                        f"{r.dense_top1:.4f}", *(f"{100 * v:.4f}" for v in (d.diff, d.lower, d.upper)),
                        f"{r.dense_gflops_per_view:.6f}"])
    with open(os.path.join(out_dir, "seed_grid.json"), "w") as f:
        json.dump({"seeds": list(seeds), "budgets": list(budgets),
                   "rows": [{**asdict(r), "gflops_ratio": r.gflops_ratio} for r in rows]}, f, indent=1)
    return table
