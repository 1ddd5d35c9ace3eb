"""TimeSformer (Bertasius et al., ICML 2021) built from timm's bricks, weight-compatible with the official code."""
from __future__ import annotations

from functools import partial
from typing import Dict, Optional, Set, Tuple

import torch
from einops import rearrange
from timm.layers import DropPath, trunc_normal_
from torch import nn

from .block import ATTENTION_TYPES, Block
from .conv_stem import ConvStemEmbed
from .embeddings import pos_embed_for_grid, time_embed_for_frames
from .patch_embed import PatchEmbed
from .token_grid import TokenGrid

STEMS = ("patch", "conv3d")  # the reference linear patch embedding | models.conv_stem.ConvStemEmbed


class TimeSformer(nn.Module):
    """Video transformer: input (B, C, T, H, W) float, output (B, num_classes) logits.

    The forward pass is split for callers that run the blocks themselves (IA-RED² pruning):
    ``embed(x) -> (tokens, grid)``, ``for blk in blocks: tokens = blk(tokens, grid)``,
    ``forward_head(tokens, grid) -> logits``. Parameter names are the official checkpoints'.

    Token layout: divided / joint: (B, 1 + T*H*W, D), CLS then patches in (h w t) order.
    space_only: (B*T, 1 + H*W, D), one CLS per frame, averaged over time in ``forward_head`` — the
    reference's space-only baseline (each frame an image; no time embedding).
    T and H, W may differ from the training size: the embeddings are resized on the fly (nearest, as the
    reference does).
    """

    def __init__(
        self,
        img_size: int = 224,
        patch_size: int = 16,
        in_chans: int = 3,
        num_classes: int = 400,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        qk_scale: Optional[float] = None,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.1,
        num_frames: int = 8,
        attention_type: str = "divided_space_time",
        norm_eps: float = 1e-6,
        time_embed_std: float = 0.0,
        stem: str = "patch",
        stem_channels: int = 16,
    ) -> None:
        super().__init__()
        if attention_type not in ATTENTION_TYPES:
            raise ValueError(f"attention_type {attention_type!r} is not one of {list(ATTENTION_TYPES)}")
        self.attention_type = attention_type
        self.num_classes = num_classes
        self.embed_dim = embed_dim
        self.depth = depth
        self.num_heads = num_heads
        self.patch_size = patch_size
        self.num_frames = num_frames
        self.img_size = img_size
        self.time_embed_std = time_embed_std
        norm_layer = partial(nn.LayerNorm, eps=norm_eps)

        if stem not in STEMS:
            raise ValueError(f"stem {stem!r} is not one of {list(STEMS)}")
        self.stem = stem
        self.stem_channels = stem_channels
        self.in_chans = in_chans
        self._build_embeddings(img_size, patch_size, in_chans, embed_dim, num_frames, drop_rate)
        dpr = torch.linspace(0, drop_path_rate, depth).tolist()  # stochastic depth grows linearly with depth
        self.blocks = nn.ModuleList(
            Block(
                embed_dim, num_heads, mlp_ratio, qkv_bias, qk_scale, drop_rate, attn_drop_rate, dpr[i],
                norm_layer=norm_layer, attention_type=attention_type,
            )
            for i in range(depth)
        )
        self.norm = norm_layer(embed_dim)
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(embed_dim, num_classes) if num_classes > 0 else nn.Identity()
        self._init_weights()

    def _build_embeddings(
        self, img_size: int, patch_size: int, in_chans: int, embed_dim: int, num_frames: int, drop_rate: float,
    ) -> None:
        """The stem (``self.stem``), CLS token, position and (but for space_only) time embeddings."""
        self.patch_embed = (PatchEmbed(img_size, patch_size, in_chans, embed_dim) if self.stem == "patch" else
                            ConvStemEmbed(img_size, patch_size, in_chans, embed_dim, hidden_chans=self.stem_channels))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.patch_embed.num_patches, embed_dim))
        self.pos_drop = nn.Dropout(drop_rate)
        if self.attention_type != "space_only":
            self.time_embed = nn.Parameter(torch.zeros(1, num_frames, embed_dim))
            self.time_drop = nn.Dropout(drop_rate)

    # ------------------------------------------------------------------ init
    def _init_weights(self) -> None:
        trunc_normal_(self.pos_embed, std=0.02)
        trunc_normal_(self.cls_token, std=0.02)
        # The reference starts time_embed at zero (it begins from image weights, where frame order is
        # learnt on top of good features); from scratch, a zero start leaves temporal attention blind to
        # frame order for a long time, so the order-dependent classes stay confused.
        if self.time_embed_std > 0 and hasattr(self, "time_embed"):
            trunc_normal_(self.time_embed, std=self.time_embed_std)
        self.apply(_init_module)
        if self.attention_type == "divided_space_time":
            # The reference zero-initialises temporal_fc in every block but the first, so a model inflated
            # from image weights starts (nearly) as the image model.
            for blk in list(self.blocks)[1:]:
                nn.init.zeros_(blk.temporal_fc.weight)
                nn.init.zeros_(blk.temporal_fc.bias)

    def set_drop_path(self, rate: float) -> None:
        """Stochastic depth as the constructor sets it, 0 at the first block and ``rate`` at the last (e.g. to
        finetune a model that was built for evaluation, without it)."""
        for block, p in zip(self.blocks, torch.linspace(0, rate, len(self.blocks)).tolist()):
            block.drop_path = DropPath(p) if p > 0.0 else nn.Identity()

    def no_weight_decay(self) -> Set[str]:
        """Parameter names exempt from weight decay."""
        return {"pos_embed", "cls_token", "time_embed"}

    def arch(self) -> Dict[str, object]:
        """The architecture fields stored in our checkpoints ("arch") and checked when loading."""
        arch: Dict[str, object] = {
            "embed_dim": self.embed_dim,
            "depth": self.depth,
            "num_heads": self.num_heads,
            "patch_size": self.patch_size,
            "attention_type": self.attention_type,
            "num_classes": self.num_classes,
            "stem": self.stem,
        }
        if self.stem == "conv3d":  # the patch stem has no hidden channels
            arch["stem_channels"] = self.stem_channels
        return arch

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the head with a fresh one of ``num_classes`` outputs."""
        self.num_classes = num_classes
        self.head = nn.Linear(self.embed_dim, num_classes) if num_classes > 0 else nn.Identity()
        if num_classes > 0:
            _init_module(self.head)

    # ------------------------------------------------------------------ forward
    def embed(self, x: torch.Tensor) -> Tuple[torch.Tensor, TokenGrid]:
        """Clip (B, C, T, H, W) -> (tokens, grid): tokens (B, 1 + T*H'*W', D), (h w t) order
        ((B*T, 1 + H'*W', D) for space_only), with position and time embeddings added."""
        B = x.shape[0]
        tokens, T, H, W = self.patch_embed(x)  # (B*T, H*W, D)
        grid = TokenGrid(T, H, W)
        pos = pos_embed_for_grid(self.pos_embed, self.patch_embed.grid_size, H, W)
        if self.attention_type == "space_only":
            cls = self.cls_token.expand(B * T, -1, -1)
            return self.pos_drop(torch.cat((cls, tokens), dim=1) + pos), grid
        cls = self.pos_drop(self.cls_token + pos[:, :1]).expand(B, -1, -1)
        tokens = self.pos_drop(tokens + pos[:, 1:])
        tokens = rearrange(tokens, "(b t) s d -> b s t d", b=B)
        tokens = self.time_drop(tokens + time_embed_for_frames(self.time_embed, T).unsqueeze(1))
        return torch.cat((cls, tokens.reshape(B, grid.num_patches, -1)), dim=1), grid

    def forward_features(self, x: torch.Tensor) -> Tuple[torch.Tensor, TokenGrid]:
        """Clip (B, C, T, H, W) -> tokens after the last block, and the grid."""
        tokens, grid = self.embed(x)
        for blk in self.blocks:
            tokens = blk(tokens, grid)
        return tokens, grid

    def forward_head(self, tokens: torch.Tensor, grid: Optional[TokenGrid] = None) -> torch.Tensor:
        """Tokens (B, N, D) -> logits (B, num_classes): final norm on the CLS token, dropout, head.

        For space_only, tokens are (B*T, 1 + H*W, D) and ``grid`` is required: the per-frame CLS tokens are
        averaged over time before the norm (the reference averages every token, then takes CLS).
        """
        cls = tokens[:, 0]
        if self.attention_type == "space_only":
            if grid is None:
                raise ValueError("forward_head needs the grid for space_only attention (to average over T)")
            cls = cls.reshape(-1, grid.T, cls.shape[-1]).mean(dim=1)
        # float32 even under bf16/fp16 autocast: bf16 logits are rounded to 2^-8 relative, enough to turn a
        # near-tie between the top classes into an exact tie (measured in utils/precision.py); the head is tiny
        with torch.autocast(device_type=cls.device.type, enabled=False):
            cls = cls.to(self.norm.weight.dtype)  # the parameters' dtype: float32 unless the model was cast
            return self.head(self.head_drop(self.norm(cls)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens, grid = self.forward_features(x)
        return self.forward_head(tokens, grid)


def _init_module(m: nn.Module) -> None:
    """The reference initialisation: truncated-normal linear weights, zero biases, unit LayerNorms."""
    if isinstance(m, nn.Linear):
        trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
