"""Packed vs masked vs dense execution of the IA-RED² TimeSformer on a tiny model (every attention type)."""
import pytest
import torch

from video_iared.models.timesformer import TimeSformer
from video_iared.pruning.decisions import PruningPolicy
from video_iared.pruning.iared import IAREDTimeSformer
from video_iared.pruning.token_ops import PackedLayout
from pruning_fixtures import run_execution

T, P, SIZE = 4, 8, 32  # 4 frames of 4x4 patches: N = 64
N = T * (SIZE // P) ** 2
ATOL = 1e-5  # fp32; logits are O(1). Observed differences are ~1e-7 (summation order only).
TYPES = ["divided_space_time", "joint_space_time", "space_only"]


def _models(attention_type: str, groups=(2, 2)):
    torch.manual_seed(0)
    kw = dict(img_size=SIZE, patch_size=P, num_classes=5, embed_dim=32, depth=sum(groups), num_heads=4,
              num_frames=T, attention_type=attention_type, drop_path_rate=0.0)
    dense = TimeSformer(**kw).eval()
    for blk in dense.blocks:  # the reference zero-inits temporal_fc: make the temporal path matter
        if hasattr(blk, "temporal_fc"):
            torch.nn.init.normal_(blk.temporal_fc.weight, std=0.1)
    model = IAREDTimeSformer(groups=groups, interp_heads=2, interp_head_dim=8, **kw).eval()
    missing = model.load_state_dict(dense.state_dict(), strict=False).missing_keys
    assert all(k.startswith("interpreters.") for k in missing) and missing
    return dense, model


def _run(model, x, keeps, execution):
    return run_execution(model, x, keeps, execution)


def _extreme_keeps(B: int, seed: int = 1):
    """Random nested keep sets with the extremes: clip 0 keeps only CLS from group 1 on, clip 1 only CLS in
    group 2, clip 2 has an empty frame and an empty spatial position, clip 3 keeps everything."""
    g = torch.Generator().manual_seed(seed)
    k0 = torch.rand(B, N, generator=g) < 0.7
    k1 = k0 & (torch.rand(B, N, generator=g) < 0.6)
    k0[0] = False
    k1[1] = False
    k1[2].view(N // T, T)[:, 1] = False  # frame 1 has no kept patch
    k1[2].view(N // T, T)[3, :] = False  # position 3 has no kept frame
    k0[3] = True
    k1[3] = True
    return [k0, k1]


@pytest.mark.parametrize("attention_type", TYPES)
def test_all_kept_equals_dense(attention_type):
    dense, model = _models(attention_type)
    x = torch.randn(2, 3, T, SIZE, SIZE)
    with torch.no_grad():
        ref = dense(x)
    keeps = [torch.ones(2, N, dtype=torch.bool)] * 2
    for execution in ("packed", "masked"):
        out, decisions = _run(model, x, keeps, execution)
        torch.testing.assert_close(out, ref, atol=ATOL, rtol=0)
        assert torch.equal(decisions.keep_rates, torch.ones(2, 2))
    # the "all" policy (no interpreter acts) is the dense model too
    with torch.no_grad():
        out, decisions = model(x, policy=PruningPolicy.uniform("all", 2), return_decisions=True)
    torch.testing.assert_close(out, ref, atol=ATOL, rtol=0)
    assert decisions.interpreted.tolist() == [False, False] and decisions.probs == [None, None]


@pytest.mark.parametrize("attention_type", TYPES)
def test_packed_equals_masked_on_extreme_keep_sets(attention_type):
    _, model = _models(attention_type)
    x = torch.randn(4, 3, T, SIZE, SIZE)
    keeps = _extreme_keeps(4)
    packed, dec_packed = _run(model, x, keeps, "packed")
    rates_packed = dec_packed.keep_rates
    masked, dec_masked = _run(model, x, keeps, "masked")
    torch.testing.assert_close(packed, masked, atol=ATOL, rtol=0)
    torch.testing.assert_close(rates_packed, dec_masked.keep_rates)
    assert torch.equal(dec_packed.keep_masks, dec_masked.keep_masks)
    nested = [keeps[0], keeps[0] & keeps[1]]  # a dropped token stays dropped
    assert dec_packed.kept_counts.tolist() == [[int(k[b].sum()) for k in nested] for b in range(4)]
    assert rates_packed[0].tolist() == [0.0, 0.0]
    assert rates_packed[1, 1] == 0.0 and rates_packed[3].tolist() == [1.0, 1.0]
    # pruning changes the output (the test would pass vacuously if the masks were ignored)
    dense_out, _ = _run(model, x, [torch.ones(4, N, dtype=torch.bool)] * 2, "packed")
    assert (dense_out[2] - packed[2]).abs().max() > 1e-3


@pytest.mark.parametrize("attention_type", TYPES)
def test_clip_independent_of_batch_mates(attention_type):
    _, model = _models(attention_type)
    x = torch.randn(4, 3, T, SIZE, SIZE)
    keeps = _extreme_keeps(4, seed=3)
    batched, _ = _run(model, x, keeps, "packed")
    for b in range(4):
        alone, _ = _run(model, x[b: b + 1], [k[b: b + 1] for k in keeps], "packed")
        torch.testing.assert_close(alone, batched[b: b + 1], atol=ATOL, rtol=0)


def test_interpreter_decisions_shrink_and_keep_ratio_budget():
    _, model = _models("divided_space_time", groups=(1, 1, 2))
    model.set_operating_point(mode="keep_ratio", keep_ratio=[0.5, 0.5, 0.75])
    x = torch.randn(3, 3, T, SIZE, SIZE)
    with torch.no_grad():
        _, decisions = model(x, return_decisions=True)
    expected = [32 / N, 16 / N, 12 / N]
    torch.testing.assert_close(decisions.keep_rates, torch.tensor([expected] * 3))
    assert decisions.policy.groups == ("keep_ratio",) * 3 and decisions.kept_counts.tolist() == [[32, 16, 12]] * 3
    probs = decisions.probs
    for g in range(1, 3):  # a dropped token stays dropped: its probability is 0 in every later group
        dead = probs[g - 1] == 0
        assert (probs[g][dead] == 0).all()


def test_layout_groups_cover_every_kept_token_once():
    keep = _extreme_keeps(4)[1]
    lay = PackedLayout(keep, T, 4, 4)
    for groups, covered in ((lay.spatial_groups(), lay.num_patches), (lay.joint_groups(), lay.num_patches)):
        assert groups.inverse.numel() == covered
        assert groups.inverse.unique().numel() == covered
        assert groups.valid.any(1).all()  # no empty group
    # spatial: one group per frame of every clip, each with its CLS at slot 0
    sp = lay.spatial_groups()
    assert sp.num_groups == 4 * T and torch.equal(sp.table[:, 0], torch.arange(4).repeat_interleave(T))
    # temporal: positions with no kept frame have no group; every bucket holds whole runs of one position
    runs = lay.temporal_runs()
    expected = int((keep.view(4, N // T, T).any(2)).sum())
    assert runs.num_groups == expected and sum(rows for _, rows in runs.buckets) == lay.num_patches
    position = lay.patch_batch * (N // T) + lay.patch_index // T
    ordered, start = runs.to_buckets(position), 0
    assert torch.equal(runs.from_buckets(ordered), position)
    for length, rows in runs.buckets:
        per_run = ordered[start:start + rows].view(rows // length, length)
        assert (per_run == per_run[:, :1]).all() and per_run[:, 0].unique().numel() == rows // length
        assert torch.equal(keep.view(-1, T)[per_run[:, 0]].sum(1), torch.full((rows // length,), length))
        start += rows
    x = torch.randn(4, 1 + N, 8)
    x[:, 1:][~keep] = 0
    torch.testing.assert_close(lay.unpack(lay.pack(x)), x)


def test_fvcore_traces_the_packed_path_per_clip():
    from video_iared.profiling.flops import model_gflops
    from video_iared.pruning.cost import analytic_fraction, clip_gflops, dense_gflops

    dense, model = _models("divided_space_time")
    clip = torch.randn(1, 3, T, SIZE, SIZE)
    g_dense = model_gflops(dense, clip)
    assert dense_gflops(model, clip) == pytest.approx(g_dense, rel=1e-9)  # nothing extra when all is kept
    model.set_operating_point(mode="keep_ratio", keep_ratio=[0.5, 0.5])
    views = torch.randn(2, 3, T, SIZE, SIZE)
    with torch.no_grad():
        _, decisions = model(views, return_decisions=True)
    g = clip_gflops(model, views)  # raises if a heavy op went uncounted
    frac = float(analytic_fraction(decisions.keep_rates[0], model.groups))
    assert frac == pytest.approx(1 - (0.5 * 2 + 0.75 * 2) / 4)
    # fvcore also counts the embedding, head and interpreters (a few % here), so it sits slightly above
    assert frac < float(g[0]) / g_dense < frac + 0.08
    # threshold mode: different clips, different cost — each measured on its own clip
    model.set_operating_point(mode="threshold")
    with torch.no_grad():
        _, decisions = model(views, return_decisions=True)
    rates = decisions.keep_rates
    g = clip_gflops(model, views)
    for i in range(2):
        f = float(analytic_fraction(rates[i], model.groups))
        assert f < float(g[i]) / g_dense < f + 0.08
