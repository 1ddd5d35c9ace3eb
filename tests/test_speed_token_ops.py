"""The speed paths of ``pruning.token_ops``: temporal runs bucketed by length, spatial groups padded to a
multiple of 16, single-gather pack / shrink — same results as the straightforward computations."""
import pytest
import torch
import torch.nn.functional as F

from pruning_fixtures import packed_and_masked
from video_iared.pruning import token_ops
from video_iared.pruning.iared import IAREDTimeSformer
from video_iared.pruning.token_ops import PackedLayout, group_attention, run_attention, ungroup

HEADS, DH = 2, 8
D = HEADS * DH


def _keep(B, T, H, W, p, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(B, T * H * W, generator=g) < p


def _reference_temporal(qkv, lay, scale):
    """Attention of every (clip, position) group on its own: the kept frames of the position, plain SDPA."""
    out = torch.empty(qkv.shape[0], D, dtype=qkv.dtype)
    position = lay.patch_batch * (lay.H * lay.W) + lay.patch_index // lay.T
    for pos in position.unique():
        rows = (position == pos).nonzero().squeeze(1)
        q, k, v = qkv[rows].reshape(1, -1, 3, HEADS, DH).permute(2, 0, 3, 1, 4).unbind(0)
        out[rows] = F.scaled_dot_product_attention(q, k, v, scale=scale).transpose(1, 2).reshape(-1, D)
    return out


def _temporal(qkv, lay, scale):
    runs = lay.temporal_runs()
    return runs.from_buckets(run_attention(runs.to_buckets(qkv), runs, HEADS, scale))


@pytest.mark.parametrize("p", [0.3, 0.7, 1.0])
def test_run_attention_equals_attention_per_position(p):
    lay = PackedLayout(_keep(3, 8, 3, 3, p), 8, 3, 3)
    qkv = torch.randn(lay.num_patches, 3 * D, generator=torch.Generator().manual_seed(1))
    runs = lay.temporal_runs()
    assert (runs.order is None) == (len(runs.buckets) == 1)  # all runs equally long: no gather at all
    if p == 1.0:
        assert runs.order is None and runs.buckets == ((8, lay.num_patches),)
    else:
        assert len(runs.buckets) > 2
    if p == 0.3:
        assert runs.buckets[0][0] == 1  # positions with one kept frame: the single-row shortcut is used
    torch.testing.assert_close(_temporal(qkv, lay, 0.3), _reference_temporal(qkv, lay, 0.3), atol=1e-6, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_single_row_runs_are_their_value_rows_exactly(dtype):
    qkv = torch.randn(5, 3 * D).to(dtype)
    q, k, v = qkv.reshape(5, 1, 3, HEADS, DH).permute(2, 0, 3, 1, 4).unbind(0)
    sdpa = F.scaled_dot_product_attention(q, k, v, scale=0.5).transpose(1, 2).reshape(5, D)
    runs = token_ops.RunIndex(None, None, ((1, 5),))
    out = run_attention(qkv, runs, HEADS, 0.5)
    assert torch.equal(out, qkv[:, 2 * D:]) and torch.equal(out, sdpa)


def test_short_low_precision_runs_are_computed_in_float32():
    lay = PackedLayout(_keep(2, 8, 4, 4, 0.5, seed=2), 8, 4, 4)
    qkv = torch.randn(lay.num_patches, 3 * D, generator=torch.Generator().manual_seed(3)).bfloat16()
    ref = _reference_temporal(qkv.float(), lay, 0.3)
    with torch.autocast("cpu", torch.bfloat16):
        out = _temporal(qkv, lay, 0.3)
        plain = _reference_temporal(qkv, lay, 0.3)  # bfloat16 SDPA on every group
    assert out.dtype == torch.bfloat16
    lengths = [length for length, _ in lay.temporal_runs().buckets]
    assert min(lengths) <= token_ops.SHORT_RUN < max(lengths)  # both kinds of bucket are exercised
    err, err_plain = (out.float() - ref).abs().max(), (plain.float() - ref).abs().max()
    assert err <= err_plain and err < 2e-2


def test_padded_lengths_only_for_uneven_long_groups():
    assert token_ops._padded_length(142, uneven=True) == 144
    assert token_ops._padded_length(144, uneven=True) == 144
    assert token_ops._padded_length(197, uneven=False) == 197  # full groups (the dense shape): no mask, no padding
    assert token_ops._padded_length(17, uneven=True) == 17  # short groups: left alone
    full = PackedLayout(torch.ones(1, 4 * 36, dtype=torch.bool), 4, 6, 6)
    assert full.spatial_groups().table.shape[1] == 37 and bool(full.spatial_groups().valid.all())
    lay = PackedLayout(_keep(2, 4, 6, 6, 0.9, seed=4), 4, 6, 6)
    sp = lay.spatial_groups()
    assert sp.table.shape[1] % token_ops.LENGTH_MULTIPLE == 0 and sp.table.shape[1] > int(sp.valid.sum(1).max())


def test_padded_spatial_attention_equals_attention_per_frame():
    lay = PackedLayout(_keep(2, 4, 6, 6, 0.9, seed=5), 4, 6, 6)
    x = torch.randn(lay.num_rows, 3 * D, generator=torch.Generator().manual_seed(6))
    sp = lay.spatial_groups()
    out = group_attention(x, sp, HEADS, 0.3)
    got = out.reshape(-1, D).index_select(0, sp.readout)  # frame CLS copies, then the patches in packed order
    assert torch.equal(got[lay.batch * lay.T:], ungroup(out, sp))
    for g in range(sp.num_groups):
        rows = sp.table[g][sp.valid[g]]
        q, k, v = x[rows].reshape(1, -1, 3, HEADS, DH).permute(2, 0, 3, 1, 4).unbind(0)
        ref = F.scaled_dot_product_attention(q, k, v, scale=0.3).transpose(1, 2).reshape(-1, D)
        torch.testing.assert_close(out[g, :rows.numel()], ref, atol=1e-6, rtol=0)
        torch.testing.assert_close(got[g], ref[0], atol=1e-6, rtol=0)


def test_pack_and_shrink_are_the_boolean_gathers():
    keep = _keep(3, 4, 3, 3, 0.6, seed=7)
    lay = PackedLayout(keep, 4, 3, 3)
    tokens = torch.randn(3, 1 + keep.shape[1], 5)
    x = lay.pack(tokens)
    assert torch.equal(x, torch.cat([tokens[:, 0], tokens[:, 1:][keep]]))
    new_keep = keep & _keep(3, 4, 3, 3, 0.5, seed=8)
    y, small = lay.shrink(x, new_keep)
    assert torch.equal(y, small.pack(tokens)) and torch.equal(small.keep, new_keep)


def _tiny_iared(img_size: int, num_frames: int) -> IAREDTimeSformer:
    """A seeded two-group IA-RED² TimeSformer (dim 32, 2 blocks) whose temporal_fc is not zero (it is at init)."""
    torch.manual_seed(0)
    model = IAREDTimeSformer(groups=(1, 1), interp_heads=2, interp_head_dim=8, img_size=img_size, patch_size=8,
                             num_classes=5, embed_dim=32, depth=2, num_heads=4, num_frames=num_frames,
                             drop_path_rate=0.0).eval()
    for blk in model.blocks:
        torch.nn.init.normal_(blk.temporal_fc.weight, std=0.1)
    return model


def test_packed_equals_masked_with_padded_groups_and_every_run_length():
    """An 8x8 grid over 8 frames: spatial groups long enough to be padded, temporal runs of 1..8 frames."""
    model = _tiny_iared(img_size=64, num_frames=8)
    x = torch.randn(2, 3, 8, 64, 64)
    k0 = _keep(2, 8, 8, 8, 0.8, seed=9)
    keeps = [k0, k0 & _keep(2, 8, 8, 8, 0.6, seed=10)]
    lay = PackedLayout(keeps[0], 8, 8, 8)
    assert lay.spatial_groups().table.shape[1] % 16 == 0 and len(lay.temporal_runs().buckets) >= 5
    out = packed_and_masked(model, x, keeps)
    torch.testing.assert_close(out["packed"], out["masked"], atol=1e-5, rtol=0)


def test_temporal_branch_in_bucket_order_keeps_drop_path_per_clip_and_gradients():
    from timm.layers import DropPath

    from video_iared.models.block import Block
    from video_iared.pruning.packed_block import _temporal_update

    torch.manual_seed(0)
    block = Block(16, 2, qkv_bias=True).train()
    torch.nn.init.normal_(block.temporal_fc.weight, std=0.1)
    torch.nn.init.zeros_(block.temporal_fc.bias)  # a dropped clip's rows are then exactly 0
    block.drop_path = DropPath(0.5)
    lay = PackedLayout(_keep(6, 4, 3, 3, 0.5, seed=11), 4, 3, 3)
    assert lay.temporal_runs().order is not None
    xp = torch.randn(lay.num_patches, 16, requires_grad=True)
    res = _temporal_update(block, xp, lay)
    dropped = [bool((res[lay.patch_batch == b] == 0).all()) for b in range(6)]
    kept = [bool((res[lay.patch_batch == b] != 0).all()) for b in range(6)]
    assert all(d != k for d, k in zip(dropped, kept)) and any(dropped) and any(kept)  # one decision per clip
    res.sum().backward()
    assert xp.grad is not None and block.temporal_attn.qkv.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("seed", [11, 12])
def test_frame_runs_equal_attention_per_frame(seed):
    """Spatial groups as unpadded runs (a clip with an empty frame included): rows gathered with
    ``FrameRuns.rows`` and attended per bucket give, read out with ``readout``, what each frame's group gives
    on its own — every CLS copy first, then the patch rows in packed order."""
    keep = _keep(3, 4, 5, 5, 0.6, seed=seed)
    keep[1].view(25, 4)[:, 2] = False  # clip 1, frame 2: no kept patch (its run is the CLS copy alone)
    lay = PackedLayout(keep, 4, 5, 5)
    x = torch.randn(lay.num_rows, 3 * D, generator=torch.Generator().manual_seed(seed))
    frames = token_ops._frame_runs(*lay._frames(), 4)
    assert frames.rows.numel() == lay.batch * lay.T + lay.num_patches and len(frames.runs.buckets) >= 3
    got = run_attention(x.index_select(0, frames.rows), frames.runs, HEADS, 0.3).index_select(0, frames.readout)
    sp = lay.spatial_groups()  # the padded groups, as the reference list of rows per frame
    want = torch.empty_like(got)
    for g in range(sp.num_groups):
        rows = sp.table[g][sp.valid[g]]
        q, k, v = x[rows].reshape(1, -1, 3, HEADS, DH).permute(2, 0, 3, 1, 4).unbind(0)
        ref = F.scaled_dot_product_attention(q, k, v, scale=0.3).transpose(1, 2).reshape(-1, D)
        want[g] = ref[0]
        want[lay.batch * lay.T + rows[1:] - lay.batch] = ref[1:]
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)


@pytest.mark.parametrize("runs_from", [0, 10 ** 9])  # spatial attention always as frame runs / always padded
def test_packed_equals_masked_with_either_spatial_grouping(monkeypatch, runs_from):
    monkeypatch.setattr(token_ops, "RUNS_FROM", runs_from)
    model = _tiny_iared(img_size=48, num_frames=4)
    x = torch.randn(3, 3, 4, 48, 48)
    k0 = _keep(3, 4, 6, 6, 0.8, seed=13)
    k1 = k0 & _keep(3, 4, 6, 6, 0.5, seed=14)
    k1[0] = False  # only the CLS from group 1 on
    k1[2].view(36, 4)[:, 3] = False  # an empty frame
    out = packed_and_masked(model, x, [k0, k1])
    torch.testing.assert_close(out["packed"], out["masked"], atol=1e-5, rtol=0)
    lay = PackedLayout(k0, 4, 6, 6)
    assert (lay.spatial_runs() is not None) == (runs_from == 0)
    assert PackedLayout(k0[:0], 4, 6, 6).spatial_runs() is None  # an empty batch has no frames


def test_spatial_update_with_key_bias_is_the_same_as_runs_or_padded(monkeypatch):
    """ToMe's per-row key bias reaches the attention the same way through frame runs and padded groups."""
    from video_iared.models.timesformer import TimeSformer
    from video_iared.pruning.packed_block import _spatial_update

    torch.manual_seed(0)
    block = TimeSformer(img_size=48, patch_size=8, embed_dim=32, depth=1, num_heads=4, num_frames=4).blocks[0].eval()
    keep = _keep(2, 4, 6, 6, 0.7, seed=15)
    xs = torch.randn(2 + int(keep.sum()), 32)
    bias = torch.rand(xs.shape[0]).log()
    outs = []
    for runs_from in (0, 10 ** 9):
        monkeypatch.setattr(token_ops, "RUNS_FROM", runs_from)
        with torch.no_grad():
            outs.append(_spatial_update(block, xs, PackedLayout(keep, 4, 6, 6), bias))
    torch.testing.assert_close(outs[0], outs[1], atol=1e-6, rtol=0)
    with torch.no_grad():
        assert not torch.allclose(_spatial_update(block, xs, PackedLayout(keep, 4, 6, 6)), outs[1])
