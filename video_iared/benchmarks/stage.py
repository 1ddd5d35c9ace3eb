"""``BENCHMARK.TYPE`` inside ``tools/run_net.py``: the benchmark stage ``engine.run.run`` calls after its set-up.

Passed to ``run(cfg, benchmark=run_benchmark_stage)`` by ``tools_main`` (the engine imports no benchmark).
"""
from __future__ import annotations

import logging

from fvcore.common.config import CfgNode

from video_iared.benchmarks.loader_benchmark import benchmark_loader
from video_iared.benchmarks.speed import benchmark_from_cfg
from video_iared.utils.malloc import retain_freed_memory

logger = logging.getLogger(__name__)


def run_benchmark_stage(cfg: CfgNode) -> None:
    """``BENCHMARK.TYPE loader``: the loader benchmark; ``speed``: the dense speed table (``benchmark_from_cfg``)."""
    if cfg.BENCHMARK.TYPE == "loader":
        benchmark_loader(cfg)
        return
    logger.info(retain_freed_memory())  # as tools/benchmark.py: no page faults credited to any variant
    benchmark_from_cfg(cfg)
