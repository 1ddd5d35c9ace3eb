"""TimeSformer built from timm's bricks, with the official checkpoints' parameter names.

Knows nothing of pruning, checkpoints or the config: ``video_iared.build.build_model(cfg)`` builds it from a config.
"""
from .attention import Attention
from .block import ATTENTION_TYPES, Block
from .embeddings import pos_embed_for_grid, resize_pos_embed, resize_time_embed, time_embed_for_frames
from .patch_embed import PatchEmbed
from .timesformer import TimeSformer
from .token_grid import TokenGrid

__all__ = [
    "ATTENTION_TYPES",
    "Attention",
    "Block",
    "PatchEmbed",
    "TimeSformer",
    "TokenGrid",
    "pos_embed_for_grid",
    "resize_pos_embed",
    "resize_time_embed",
    "time_embed_for_frames",
]
