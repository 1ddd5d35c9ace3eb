"""Token-reduction baselines on IA-RED²'s execution layer: random drop, EViT top-k, ToMe (``token_reduction``)."""
from video_iared.baselines.token_reduction import Budget, build_baseline

__all__ = ["Budget", "build_baseline"]
