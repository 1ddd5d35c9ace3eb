"""video_iared: IA-RED² interpretability-aware token pruning on TimeSformer."""

__version__ = "0.1.0"

__all__ = ["build_model", "load_checkpoint"]


def __getattr__(name: str):
    # Lazy: `import video_iared` (config, CLI) must not pay for importing torch/timm.
    if name == "build_model":
        from video_iared.build import build_model

        return build_model
    if name == "load_checkpoint":
        from video_iared.checkpoint.load import load_checkpoint

        return load_checkpoint
    raise AttributeError(f"module 'video_iared' has no attribute {name!r}")
