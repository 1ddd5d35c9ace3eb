"""``utils.precision.matmul_weights_in``: the matmul weights held in the autocast dtype for inference give
the same outputs as autocast's own casts, leave the float32 islands alone, and are put back afterwards."""
import pytest
import torch
from torch import nn

from video_iared.benchmarks.speed import benchmark_variants
from video_iared.benchmarks.variant import Variant
from video_iared.engine.multiview_test import iared_forward, run_multiview
from video_iared.utils.precision import float32_weights, inference_precision, matmul_weights_in
from video_iared.models.timesformer import TimeSformer
from video_iared.pruning.cost import clip_gflops
from video_iared.pruning.iared import IAREDTimeSformer

T, SIZE = 4, 32
KW = dict(img_size=SIZE, patch_size=8, num_classes=5, embed_dim=48, depth=4, num_heads=4, num_frames=T,
          drop_path_rate=0.0)


def _dense():
    torch.manual_seed(0)
    return TimeSformer(**KW).eval()


def _iared(execution="packed", mode="keep_ratio"):
    torch.manual_seed(0)
    m = IAREDTimeSformer(groups=(2, 2), interp_heads=2, interp_head_dim=8, mode=mode, keep_ratio=[0.6, 0.5],
                         execution=execution, **KW).eval()
    with torch.no_grad():  # well separated keep probabilities (threshold mode)
        for it in m.interpreters:
            it.qk.weight.mul_(30.0)
    return m


def _clips(n=2, seed=0):
    return torch.randn(n, 3, T, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


def _snapshot(model):
    return {n: (p, p.detach().clone()) for n, p in model.named_parameters()}


def _assert_restored(model, snap):
    for n, p in model.named_parameters():
        obj, value = snap[n]
        assert p is obj and p.dtype == torch.float32 and torch.equal(p, value), n


@pytest.mark.parametrize("build", [_dense, lambda: _iared("packed"), lambda: _iared("masked"),
                                   lambda: _iared("packed", "threshold")],
                         ids=["dense", "iared-packed", "iared-masked", "iared-threshold"])
def test_outputs_bit_identical_under_bf16_autocast(build):
    model, x = build(), _clips()
    snap = _snapshot(model)
    with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16):
        pruned = getattr(model, "returns_decisions", False)
        run = (lambda: model(x, return_decisions=True)) if pruned else (lambda: (model(x), None))
        ref, ref_dec = run()
        with matmul_weights_in(model, torch.bfloat16) as n:
            held, held_dec = run()
    assert n > 0 and torch.equal(ref, held)
    if pruned:
        assert torch.equal(ref_dec.keep_masks, held_dec.keep_masks)
    _assert_restored(model, snap)


def test_float32_islands_and_norms_stay_float32_inside():
    model = _iared()
    with matmul_weights_in(model, torch.bfloat16) as n:
        low = {name for name, p in model.named_parameters() if p.dtype == torch.bfloat16}
        assert all(p.dtype == torch.float32 for p in model.interpreters.parameters())
        assert all(p.dtype == torch.float32 for p in model.head.parameters())
        assert model.norm.weight.dtype == torch.float32 and model.pos_embed.dtype == torch.float32
        assert model.blocks[0].attn.qkv.weight.dtype == torch.bfloat16
        assert model.blocks[0].mlp.fc1.bias.dtype == torch.bfloat16
    linear_or_conv = {f"{mn}.{pn}" for mn, m in model.named_modules()
                      if isinstance(m, (nn.Linear, nn.Conv2d, nn.Conv3d)) and not mn.startswith(("interpreters", "head"))
                      for pn, _ in m.named_parameters(recurse=False)}
    assert low == linear_or_conv and n == len(low)


def test_no_op_for_float32_and_restored_for_training():
    model = _dense().train()
    snap = _snapshot(model)
    with matmul_weights_in(model, None) as n:
        assert n == 0 and all(p.dtype == torch.float32 for p in model.parameters())
    with torch.no_grad(), matmul_weights_in(model, torch.bfloat16):
        pass
    _assert_restored(model, snap)
    # training after inference: float32 gradients and an optimizer step on the same parameters
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model(_clips()).sum().backward()
    opt.step()
    assert all(p.grad is None or p.grad.dtype == torch.float32 for p in model.parameters())
    assert not torch.equal(model.blocks[0].attn.qkv.weight, snap["blocks.0.attn.qkv.weight"][1])


def test_restored_after_an_exception_and_nested_entry_is_harmless():
    model = _dense()
    snap = _snapshot(model)
    with pytest.raises(RuntimeError, match="boom"):
        with matmul_weights_in(model, torch.bfloat16):
            with matmul_weights_in(model, torch.bfloat16) as inner:
                assert inner == 0  # already held: nothing cast twice
            raise RuntimeError("boom")
    _assert_restored(model, snap)


def test_float32_weights_inside_gives_the_float32_model_back():
    model, x = _iared(mode="threshold"), _clips(1)
    with torch.inference_mode():
        ref = model(x)
        with matmul_weights_in(model, torch.bfloat16):
            with float32_weights(model) as n:
                assert n > 0 and all(p.dtype == torch.float32 for p in model.parameters())
                again = model(x)
            assert model.blocks[0].attn.qkv.weight.dtype == torch.bfloat16
    assert torch.equal(ref, again)
    with float32_weights(model) as n:
        assert n == 0


def test_run_multiview_bf16_holds_the_weights_and_traces_gflops_in_float32():
    model = _iared(mode="threshold")
    snap = _snapshot(model)
    views = _clips(3, seed=1)
    batches = [[{"index": 0, "path": "v0", "label": 1, "views": views, "error": None}]]
    seen = []

    def fwd(m, v):
        seen.append(m.blocks[0].mlp.fc1.weight.dtype)
        return iared_forward(clip_gflops)(m, v)

    rec_low = run_multiview(model, batches, torch.device("cpu"), 3, dtype=torch.bfloat16, forward_fn=fwd,
                            show_progress=False)
    rec_32 = run_multiview(model, batches, torch.device("cpu"), 3, dtype=None, forward_fn=fwd,
                           show_progress=False)
    assert seen == [torch.bfloat16, torch.float32]
    _assert_restored(model, snap)
    # the per-clip GFLOPs are the float32 trace's in both runs
    assert rec_low[0]["gflops"] == rec_32[0]["gflops"] > 0
    with torch.no_grad(), torch.autocast("cpu", torch.bfloat16):
        direct = model(views)
    assert torch.equal(rec_low[0]["view_logits"], direct.float())


def test_inference_precision_and_the_benchmark_leave_float32_weights():
    dense, pruned = _dense(), _iared()
    snaps = [_snapshot(dense), _snapshot(pruned)]
    with inference_precision(dense, "bf16", "cpu"):
        assert torch.is_autocast_enabled("cpu") and dense.blocks[0].attn.proj.weight.dtype == torch.bfloat16
    with inference_precision(dense, "fp32", "cpu"):
        assert not torch.is_autocast_enabled("cpu") and dense.blocks[0].attn.proj.weight.dtype == torch.float32
    variants = [Variant("dense", dense), Variant("iared", pruned)]
    benchmark_variants(variants, [1], T, SIZE, warmup=1, reps=1, precisions=["fp32", "bf16"])
    for m, snap in zip((dense, pruned), snaps):
        _assert_restored(m, snap)


def test_a_failed_cast_restores_the_weights_already_cast(monkeypatch):
    import torch as _torch
    from torch import nn as _nn
    from video_iared.utils.precision import matmul_weights_in

    model = _nn.Sequential(_nn.Linear(4, 4), _nn.Linear(4, 4))
    calls = {"n": 0}
    real_to = _torch.Tensor.to

    def flaky_to(self, *a, **k):
        if a and a[0] is _torch.bfloat16:
            calls["n"] += 1
            if calls["n"] == 3:
                raise RuntimeError("simulated out of memory")
        return real_to(self, *a, **k)

    monkeypatch.setattr(_torch.Tensor, "to", flaky_to)
    try:
        with matmul_weights_in(model, _torch.bfloat16):
            pass
    except RuntimeError:
        pass
    monkeypatch.undo()
    assert all(p.dtype == _torch.float32 for p in model.parameters())
    with matmul_weights_in(model, _torch.bfloat16) as n:  # nothing left registered as held
        assert n == 4
