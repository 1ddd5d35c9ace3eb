"""The one record of a model variant in a benchmark: a named model at one budget, with what was measured of it.

The speed tables (``benchmarks.speed``, ``benchmarks.keep_ratio_speed``) and the method benchmark
(``benchmarks.method_benchmark``) all build lists of ``Variant`` and time their models with ``profiling.timing``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from torch import nn


@dataclass
class Variant:
    """A model variant: its name and model, and what is known or measured of it.

    ``name`` labels its rows ("dense", "iared keep 0.7", "keep 0.5"; ``at_budget`` makes it "<method> <budget>");
    ``model`` is what is run (e.g. ``pruning.decisions.PolicyBound(model, policy)``: a model at a budget).
    ``method`` / ``budget``: the method benchmark's identity columns ("tome", "r 4"); ``keep_ratio``: the fixed
    keep rate of a keep-ratio row (None: dense, or not a keep-ratio row). ``gflops``: fvcore GFLOPs (GMACs) per
    clip on one probe clip; ``token_fraction``: mean fraction of the patch tokens each block computes on (1 =
    dense); ``token_rates``: the measured keep rate after each group (G,). ``results``: the method benchmark's
    measured figures by column name (top1, gflops, ms_b1, ...); ``video_records``: the per-video test records
    behind top1 (``index``, ``label``, ``probs`` (K,) or None when the video failed), for paired comparisons.
    """

    name: str
    model: nn.Module
    note: str = ""
    method: str = ""
    budget: str = ""
    keep_ratio: Optional[float] = None
    gflops: float = math.nan
    token_fraction: float = math.nan
    token_rates: List[float] = field(default_factory=list)
    results: Dict[str, float] = field(default_factory=dict)
    video_records: List[Dict] = field(default_factory=list)

    @classmethod
    def at_budget(cls, method: str, budget: str, model: nn.Module, token_fraction: float = math.nan) -> "Variant":
        """A method at one budget, named "<method> <budget>" (just the method when the budget is "")."""
        return cls(f"{method} {budget}".strip(), model, method=method, budget=budget, token_fraction=token_fraction)

    def row(self) -> Dict[str, object]:
        """The method benchmark's output row: identity, token fraction, then every measured figure."""
        return {"method": self.method, "budget": self.budget, "token_fraction": self.token_fraction, **self.results}
