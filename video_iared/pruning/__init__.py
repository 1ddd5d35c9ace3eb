"""IA-RED²: interpreters, policies, packed / masked execution of pruned blocks, rewards, curriculum."""
from video_iared.pruning.cost import analytic_fraction, clip_gflops, cost_report, dense_gflops, summarize_costs
from video_iared.pruning.iared import IAREDTimeSformer
from video_iared.pruning.interpreter import Interpreter

__all__ = ["IAREDTimeSformer", "Interpreter", "analytic_fraction", "clip_gflops", "cost_report", "dense_gflops",
           "summarize_costs"]
