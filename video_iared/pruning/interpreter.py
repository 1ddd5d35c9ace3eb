"""The multi-head interpreter of IA-RED²: a light policy network that scores every patch token.

For every token j: ``p_j = mean_h sigmoid(q_cls^h . k_j^h / sqrt(d_head))`` — the CLS token's query against
each token's key, per head, averaged over the heads — computed on non-affine LayerNorm'd features with a
single linear projection to queries and keys (the paper's design, shaped like one attention layer).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from video_iared.pruning.token_ops import PackedLayout


class Interpreter(nn.Module):
    """Keep probabilities for the patch tokens, from the CLS token's query.

    ``qk`` is one Linear(dim -> 2 * num_heads * head_dim): the first half gives queries, the second keys.
    Only the CLS row needs a query and only patch rows need keys, so the two halves are applied separately.
    """

    # utils.precision keeps modules that say so in float32 (the keep decision), without importing this class
    float32_decision = True

    def __init__(self, dim: int, num_heads: int = 6, head_dim: int = 64, eps: float = 1e-6,
                 init_keep_prob: float = 0.5) -> None:
        super().__init__()
        if not 0.0 < init_keep_prob < 1.0:
            raise ValueError(f"init_keep_prob must be in (0, 1), got {init_keep_prob}")
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.scale = head_dim**-0.5
        self.norm = nn.LayerNorm(dim, eps=eps, elementwise_affine=False)
        self.qk = nn.Linear(dim, 2 * num_heads * head_dim)
        self.reset_parameters(init_keep_prob)

    @torch.no_grad()
    def reset_parameters(self, init_keep_prob: float = 0.5) -> None:
        """Small weights (std 0.02, as the backbone's linears) and biases that put every token's keep
        probability near ``init_keep_prob`` at the start: the biases of q and k share one direction per head
        of squared length ``logit(init_keep_prob) / scale`` (0.5: zero biases). Starting near 1 lets the
        curriculum begin at the dense model's accuracy and drop tokens as the reward allows."""
        nn.init.trunc_normal_(self.qk.weight, std=0.02)
        self.qk.bias.zero_()
        logit = math.log(init_keep_prob / (1.0 - init_keep_prob))
        if logit != 0.0:
            a = math.sqrt(abs(logit) / self.scale)
            hd = self.num_heads * self.head_dim
            q_bias = self.qk.bias[:hd].view(self.num_heads, self.head_dim)
            k_bias = self.qk.bias[hd:].view(self.num_heads, self.head_dim)
            q_bias[:, 0] = a
            k_bias[:, 0] = a if logit > 0 else -a

    def _q_k(self, cls: torch.Tensor, patches: torch.Tensor):
        hd = self.num_heads * self.head_dim
        w, b = self.qk.weight, self.qk.bias
        # float32 even under bf16/fp16 autocast: bf16 queries/keys move keep probabilities by a few 1e-3 and
        # flip decisions near the threshold (measured in utils/precision.py); this layer is ~1 % of a group
        with torch.autocast(device_type=cls.device.type, enabled=False):
            cls, patches = cls.to(w.dtype), patches.to(w.dtype)
            q = F.linear(self.norm(cls), w[:hd], b[:hd])
            k = F.linear(self.norm(patches), w[hd:], b[hd:])
        return q, k

    def _probs(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """q (..., H*dh) and k (..., H*dh) broadcast row by row -> (...,) mean over heads of sigmoid."""
        q = q.reshape(*q.shape[:-1], self.num_heads, self.head_dim)
        k = k.reshape(*k.shape[:-1], self.num_heads, self.head_dim)
        logits = (q * k).sum(-1) * self.scale  # (..., H)
        return torch.sigmoid(logits).mean(-1)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (B, 1 + N, D), CLS first -> keep probabilities (B, N) (not yet multiplied by any mask)."""
        q, k = self._q_k(tokens[:, :1], tokens[:, 1:])
        return self._probs(q, k)  # q (B, 1, HD) broadcasts over the N keys

    def forward_packed(self, x: torch.Tensor, layout: PackedLayout) -> torch.Tensor:
        """Packed rows x (M, D) -> probabilities of the kept patch rows (Mp,), in packed order."""
        B = layout.batch
        q, k = self._q_k(x[:B], x[B:])
        return self._probs(q[layout.patch_batch], k)
