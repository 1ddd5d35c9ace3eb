"""video_iared: IA-RED² interpretability-aware token pruning on TimeSformer."""

__version__ = "0.1.0"
