"""fvcore GFLOPs: the SDPA handle counts what the reference's explicit matmuls count; ViT-B = 196.05."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from torch import nn

from video_iared.profiling.flops import (
    CHEAP_OPS,
    count_params,
    flop_analysis,
    heavy_unsupported_ops,
    log_model_info,
    model_gflops,
)
from video_iared.models import ATTENTION_TYPES, Attention, TimeSformer

torch.set_num_threads(1)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny(attention_type="divided_space_time", **kw):
    args = dict(img_size=32, patch_size=8, num_classes=5, embed_dim=32, depth=2, num_heads=4, num_frames=4,
                attention_type=attention_type)
    args.update(kw)
    return TimeSformer(**args).eval()


def _explicit_attention(self, x, attn_mask=None):
    """The reference's attention: explicit q @ k^T and attn @ v matmuls (fvcore counts those natively)."""
    B, N, C = x.shape
    qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
    return self.proj((attn @ v).transpose(1, 2).reshape(B, N, C))


@pytest.mark.parametrize("attention_type", ATTENTION_TYPES)
def test_sdpa_handle_counts_the_reference_matmuls(attention_type, monkeypatch):
    model = tiny(attention_type)
    clip = torch.randn(1, 3, 4, 32, 32)
    ours = flop_analysis(model, clip)
    assert ours.by_operator()["scaled_dot_product_attention"] > 0
    assert not heavy_unsupported_ops(ours)
    assert set(ours.unsupported_ops()) <= CHEAP_OPS
    monkeypatch.setattr(Attention, "forward", _explicit_attention)
    ref = flop_analysis(model, clip)
    assert ours.total() == ref.total()
    assert ours.by_operator()["scaled_dot_product_attention"] == ref.by_operator()["matmul"]


def test_divided_count_matches_hand_formula():
    T, S, D, C, p, K, depth = 4, 16, 32, 3, 8, 5, 2
    N = T * S
    ln = lambda tokens: 5 * tokens * D  # fvcore: affine LayerNorm = 5 flops per element
    block = (ln(N) + N * D * 3 * D + 2 * S * T * T * D + 2 * N * D * D  # temporal: qkv, attn, proj, temporal_fc
             + ln(T * (S + 1)) + T * (S + 1) * 4 * D * D + 2 * T * (S + 1) ** 2 * D  # spatial: qkv+proj, attn
             + ln(N + 1) + 2 * (N + 1) * D * 4 * D)  # MLP
    expected = N * D * C * p * p + depth * block + ln(1) + D * K
    assert flop_analysis(tiny(), torch.randn(1, C, T, 32, 32)).total() == expected


def test_interpreters_whose_group_drops_nothing_are_still_counted():
    """An interpreter runs whether or not its group drops a token. When none is dropped its scores decide nothing
    the logits depend on, so a plain jit trace would leave it out of the count as dead code; the count is the same
    model with its groups inactive (no interpreter runs) + every interpreter (non-affine LayerNorm, 4 flops per
    element, and the q / k projections)."""
    from video_iared.pruning.decisions import PolicyBound, PruningPolicy
    from video_iared.pruning.iared import IAREDTimeSformer

    T, S, D, C, hd = 4, 16, 32, 3, 2 * 8
    N = T * S
    torch.manual_seed(0)
    kw = dict(img_size=32, patch_size=8, num_classes=5, embed_dim=32, depth=2, num_heads=4, num_frames=4)
    model = IAREDTimeSformer(groups=(1, 1), interp_heads=2, interp_head_dim=8, threshold=-1.0, **kw).eval()
    clip = torch.randn(1, C, T, 32, 32)
    # every group "all": the interpreters do not run
    backbone = flop_analysis(PolicyBound(model, PruningPolicy.uniform("all", 2)), clip).total()
    # thresholded at -1 (the model's own policy in eval mode): both interpreters run and keep every token
    interpreter = 4 * (1 + N) * D + (1 + N) * D * hd  # norm of the CLS and the patches, q of the CLS, k of each
    assert flop_analysis(model, clip).total() == backbone + 2 * interpreter
    assert model_gflops(model, clip) * 1e9 == pytest.approx(backbone + 2 * interpreter)
    with torch.no_grad():
        _, decisions = model(clip, return_decisions=True)
    assert decisions.keep_rates.tolist() == [[1.0, 1.0]]  # nothing was dropped: the case the trace would miss


@pytest.mark.slow
def test_vit_b_matches_reference_figures():
    """configs/k400_dense.yaml's model: 196.05 GFLOPs per view and 121.57 M parameters (reference, fvcore)."""
    torch.manual_seed(0)
    model = TimeSformer(img_size=224, patch_size=16, num_classes=400, embed_dim=768, depth=12, num_heads=12,
                        num_frames=8).eval()
    assert count_params(model) / 1e6 == pytest.approx(121.57, rel=1e-3)
    info = log_model_info(model, num_frames=8, crop_size=224, views=3)
    assert info["gflops_per_view"] == pytest.approx(196.05, rel=5e-3)
    assert info["gflops_total"] == pytest.approx(3 * info["gflops_per_view"])


def test_model_gflops_per_clip_and_mode_restored():
    model = tiny().train()
    g4 = model_gflops(model, torch.randn(1, 3, 4, 32, 32))
    g8 = model_gflops(model, torch.randn(1, 3, 8, 32, 32))
    assert model.training
    assert 1.9 < g8 / g4 < 2.2  # linear layers double, temporal attention quadruples


def test_heavy_unhandled_op_is_an_error():
    class Cdist(nn.Module):
        def forward(self, x):
            return torch.cdist(x.flatten(1), x.flatten(1))

    with pytest.raises(RuntimeError, match="cdist"):
        model_gflops(Cdist(), torch.randn(1, 3, 4, 8, 8))


@pytest.mark.slow
def test_tools_flops_machine_line():
    r = subprocess.run([sys.executable, "tools/flops.py", "--cfg", "configs/synthetic_dense.yaml",
                        "TEST.NUM_ENSEMBLE_VIEWS", "3", "TEST.NUM_SPATIAL_CROPS", "2"],
                       cwd=ROOT, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr
    last = r.stdout.strip().splitlines()[-1]
    fields = dict(kv.split("=") for kv in last.split())
    assert set(fields) == {"params_m", "gflops_per_view", "views", "gflops_total"}
    assert int(fields["views"]) == 6
    assert float(fields["gflops_total"]) == pytest.approx(6 * float(fields["gflops_per_view"]), rel=1e-3)
    assert "1 multiply-add = 1 flop" in r.stdout


def test_speed_benchmark_rows():
    from video_iared.benchmarks.speed import benchmark_variants, explicit_attention_variant, format_speed_table
    from video_iared.benchmarks.variant import Variant

    dense = Variant("dense", tiny())
    rows = benchmark_variants([dense, explicit_attention_variant(dense)], [1, 2], num_frames=4, crop_size=32,
                              warmup=1, reps=2)
    assert [(r.name, r.batch_size) for r in rows] == [("dense", 1), ("dense explicit-attn", 1), ("dense", 2),
                                                       ("dense explicit-attn", 2)]
    assert all(len(r.times_s) == 2 and r.min_s > 0 and r.min_s <= r.median_s <= r.max_s for r in rows)
    assert "explicit-attn" in format_speed_table(rows) and rows[0].line().startswith("speed variant=dense batch=1")
