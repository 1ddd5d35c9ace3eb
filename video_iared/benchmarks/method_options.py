"""What the method benchmark measures: its options (``tools/benchmark.py --methods`` fills them) and the CI form."""
from __future__ import annotations

import argparse
import copy
from dataclasses import dataclass
from typing import Optional, Sequence

from video_iared.benchmarks.method_variants import ALL_METHODS
from video_iared.pruning.decisions import Threshold


@dataclass
class MethodBenchmarkOptions:
    """What ``run_method_benchmark`` measures (tools/benchmark.py --methods fills it from the command line)."""

    methods: Sequence[str] = ALL_METHODS
    keep_ratios: Sequence[float] = (0.7, 0.5, 0.3)
    thresholds: Sequence[Threshold] = (0.3, 0.5, 0.7)  # a tuple: one threshold per group
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


def parse_threshold(text: str) -> Threshold:
    """A --thresholds entry: "0.5" (every group) or "0.45/0.87" (one per group, in order)."""
    try:
        values = [float(v) for v in text.split("/")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"threshold {text!r}: a number, or one per group joined by '/' "
                                         "(0.45/0.87)") from None
    return values[0] if len(values) == 1 else tuple(values)
