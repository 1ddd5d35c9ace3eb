"""Measuring a model it is handed: fvcore counting (``flops``), dispatcher call counts (``dispatch_count``), the
one timing loop (``timing``). Imports no model code: fvcore handles are registered by op name."""
