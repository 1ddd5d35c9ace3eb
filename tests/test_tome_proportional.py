"""ToMe's proportional attention: the key bias of ``group_attention`` / ``run_attention`` /
``packed_block_forward`` (softmax(scale * q k^T + bias)), and the ToMe baseline passing log token size."""
import pytest
import torch

from video_iared.models.timesformer import TimeSformer
from video_iared.baselines import token_reduction as baselines
from video_iared.pruning import token_ops
from video_iared.baselines.token_reduction import build_baseline
from video_iared.pruning.packed_block import packed_block_forward
from video_iared.pruning.token_ops import PackedLayout, group_attention, run_attention, ungroup

HEADS, DH = 2, 8
D = HEADS * DH
SCALE = 0.3
KW = dict(img_size=32, patch_size=8, num_classes=5, embed_dim=32, depth=2, num_heads=4, num_frames=4,
          drop_path_rate=0.0)
T, S = 4, 16  # frames, patches per frame
N = T * S


def _keep(B, T, H, W, p, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(B, T * H * W, generator=g) < p


def _reference(qkv, rows, bias):
    """softmax(scale * q k^T + bias) v of one group: qkv rows (L,) of qkv (R, 3D), bias (R,) -> (L, D)."""
    q, k, v = qkv[rows].reshape(-1, 3, HEADS, DH).permute(1, 2, 0, 3).unbind(0)  # (heads, L, dh)
    logits = SCALE * q @ k.transpose(1, 2) + bias[rows]
    return (logits.softmax(-1) @ v).transpose(0, 1).reshape(-1, D)


def _temporal(qkv, lay, bias):
    """run_attention over the layout's temporal runs, in and out of bucket order (patch rows)."""
    runs = lay.temporal_runs()
    return runs.from_buckets(run_attention(runs.to_buckets(qkv), runs, HEADS, SCALE,
                                           key_bias=runs.to_buckets(bias)))


def test_group_attention_with_key_bias_equals_the_reference():
    lay = PackedLayout(_keep(3, 4, 3, 3, 0.6), 4, 3, 3)
    groups = lay.spatial_groups()
    assert not groups.valid.all()  # padded slots are exercised
    g = torch.Generator().manual_seed(1)
    qkv = torch.randn(lay.num_rows, 3 * D, generator=g, dtype=torch.float64)
    bias = torch.randn(lay.num_rows, generator=g, dtype=torch.float64)
    out = group_attention(qkv, groups, HEADS, SCALE, key_bias=bias)
    for gi in range(groups.num_groups):
        rows = groups.table[gi][groups.valid[gi]]
        torch.testing.assert_close(out[gi][groups.valid[gi]], _reference(qkv, rows, bias))


def test_run_attention_with_key_bias_equals_the_reference():
    lay = PackedLayout(_keep(3, 8, 3, 3, 0.5, seed=2), 8, 3, 3)
    assert len(lay.temporal_runs().buckets) > 2  # several run lengths (the single-row shortcut among them)
    g = torch.Generator().manual_seed(3)
    qkv = torch.randn(lay.num_patches, 3 * D, generator=g, dtype=torch.float64)
    bias = torch.randn(lay.num_patches, generator=g, dtype=torch.float64)
    out = _temporal(qkv, lay, bias)
    position = lay.patch_batch * (lay.H * lay.W) + lay.patch_index // lay.T
    for pos in position.unique():
        rows = (position == pos).nonzero().squeeze(1)
        torch.testing.assert_close(out[rows], _reference(qkv, rows, bias))


def _dense():
    torch.manual_seed(0)
    m = TimeSformer(**KW).eval()
    for b in m.blocks:  # the reference zero-initialises temporal_fc: make the temporal path matter
        if hasattr(b, "temporal_fc"):
            torch.nn.init.normal_(b.temporal_fc.weight, std=0.1)
    return m


@pytest.mark.parametrize("attention_type", ["divided_space_time", "joint_space_time", "space_only"])
def test_zero_bias_equals_no_bias_in_the_packed_block(attention_type):
    """Sizes all 1 (log 1 = 0): the biased path gives the unbiased one's result."""
    torch.manual_seed(0)
    block = TimeSformer(**{**KW, "attention_type": attention_type}).blocks[0].double().eval()
    lay = PackedLayout(_keep(3, T, 4, 4, 0.6, seed=4), T, 4, 4)
    x = torch.randn(lay.num_rows, KW["embed_dim"], dtype=torch.float64)
    with torch.no_grad():
        plain = packed_block_forward(block, x, lay, attention_type)
        zero = packed_block_forward(block, x, lay, attention_type, x.new_zeros(lay.num_rows))
    torch.testing.assert_close(zero, plain)


def test_tome_passes_log_size_of_every_row(monkeypatch):
    """Every block gets key_bias = log size: 0 at the CLS rows, and the sizes of a clip's patch rows add up to
    its N original patches."""
    seen = []

    def spy(block, x, layout, attention_type, key_bias=None):
        seen.append((layout.batch, layout.patch_batch, key_bias))
        return packed_block_forward(block, x, layout, attention_type, key_bias)

    monkeypatch.setattr(baselines, "packed_block_forward", spy)
    m = build_baseline("tome", _dense(), [1, 1], merge_r=3, timesformer_kwargs=KW)
    with torch.no_grad():
        m(torch.randn(2, 3, T, 32, 32, generator=torch.Generator().manual_seed(1)))
    assert len(seen) == 2
    for B, patch_batch, bias in seen:
        assert torch.equal(bias[:B], torch.zeros(B))
        per_clip = torch.zeros(B).index_add(0, patch_batch, bias[B:].exp())
        torch.testing.assert_close(per_clip, torch.full((B,), float(N)))
    assert seen[1][2].max() > 0.5  # merged tokens (size 2 at least) are weighted up in block 1


def _duplicate_vs_merged(frames, H, W, keep_dup, a, b):
    """Cells ``a`` and ``b`` (grid indices) of clip 0 hold identical tokens (size 1 each) in the first layout;
    in the second, ``a`` is merged into ``b`` (size 2). Returns (layout, qkv rows, key bias) of both, and the
    rows of the first that survive in the second."""
    dup = PackedLayout(keep_dup, frames, H, W)
    keep_merged = keep_dup.clone()
    keep_merged[0, a] = False
    merged = PackedLayout(keep_merged, frames, H, W)
    qkv = torch.randn(dup.num_rows, 3 * D, generator=torch.Generator().manual_seed(5), dtype=torch.float64)

    def row(lay, cell):
        return lay.batch + int(((lay.patch_batch == 0) & (lay.patch_index == cell)).nonzero())

    qkv[row(dup, a)] = qkv[row(dup, b)]
    bias = torch.zeros(merged.num_rows, dtype=torch.float64)
    bias[row(merged, b)] = torch.tensor(2.0, dtype=torch.float64).log()
    survive = torch.cat([torch.ones(dup.batch, dtype=torch.bool), keep_merged[dup.patch_batch, dup.patch_index]])
    return (dup, qkv, torch.zeros(dup.num_rows, dtype=torch.float64)), (merged, qkv[survive], bias), survive


def _spatial_outputs(qkv, lay, bias):
    """Every frame's CLS copy output, then the patch rows' outputs in packed order."""
    groups = lay.spatial_groups()
    out = group_attention(qkv, groups, HEADS, SCALE, key_bias=bias)
    return out.reshape(-1, D).index_select(0, groups.readout)


def test_a_size_2_token_attends_like_two_identical_tokens_spatially():
    """Spatial groups (with padding): one key of size 2 in place of two identical keys gives every query the
    same output (the defining property of proportional attention), the CLS copies included."""
    keep = torch.ones(2, 6, dtype=torch.bool)  # 2 frames x 3 positions; (h w t) index = w * T + t
    keep[1, 3] = False  # clip 1 frame 1 is shorter: padded groups
    (dup, qkv_dup, zero), (merged, qkv_merged, bias), survive = _duplicate_vs_merged(2, 1, 3, keep, 2, 4)
    assert not dup.spatial_groups().valid.all()
    out_dup = _spatial_outputs(qkv_dup, dup, zero)
    out_merged = _spatial_outputs(qkv_merged, merged, bias)
    cls = dup.batch * dup.T  # every frame's CLS copy comes first
    torch.testing.assert_close(out_merged[:cls], out_dup[:cls])
    torch.testing.assert_close(out_merged[cls:], out_dup[cls:][survive[dup.batch:]])
    assert not torch.allclose(_spatial_outputs(qkv_merged, merged, None)[:cls], out_dup[:cls])  # needs the bias


def test_a_size_2_token_attends_like_two_identical_tokens_temporally():
    """The same property within a temporal run (one position, frames 1 and 2 identical)."""
    keep = torch.ones(1, 4, dtype=torch.bool)  # one position, 4 frames: one run
    (dup, qkv_dup, zero), (merged, qkv_merged, bias), survive = _duplicate_vs_merged(4, 1, 1, keep, 1, 2)
    out_dup = _temporal(qkv_dup[1:], dup, zero[1:])
    out_merged = _temporal(qkv_merged[1:], merged, bias[1:])
    torch.testing.assert_close(out_merged, out_dup[survive[1:]])


def test_biased_attention_under_bf16_autocast_stays_close_to_fp32():
    """bf16 qkv under autocast: spatial groups (padded, bf16 SDPA) and temporal runs (short ones in float32,
    long ones in bf16) with a log-size bias stay close to the fp32 result."""
    lay = PackedLayout(_keep(2, 8, 4, 4, 0.5, seed=6), 8, 4, 4)
    lengths = [length for length, _ in lay.temporal_runs().buckets]
    assert min(lengths) <= token_ops.SHORT_RUN < max(lengths)
    g = torch.Generator().manual_seed(7)
    qkv = torch.randn(lay.num_rows, 3 * D, generator=g)
    bias = torch.randint(1, 5, (lay.num_rows,), generator=g).float().log()
    ref_s = ungroup(group_attention(qkv, lay.spatial_groups(), HEADS, SCALE, key_bias=bias), lay.spatial_groups())
    ref_t = _temporal(qkv[lay.batch:], lay, bias[lay.batch:])
    with torch.autocast("cpu", torch.bfloat16):
        low = qkv.bfloat16()
        out_s = ungroup(group_attention(low, lay.spatial_groups(), HEADS, SCALE, key_bias=bias), lay.spatial_groups())
        out_t = _temporal(low[lay.batch:], lay, bias[lay.batch:])
    assert out_s.dtype == out_t.dtype == torch.bfloat16
    assert (out_s.float() - ref_s).abs().max() < 3e-2
    assert (out_t.float() - ref_t).abs().max() < 3e-2


def test_tome_model_under_bf16_autocast_stays_close_to_fp32():
    m = build_baseline("tome", _dense(), [1, 1], merge_r=3, timesformer_kwargs=KW)
    clips = torch.randn(2, 3, T, 32, 32, generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        ref = m(clips)
        with torch.autocast("cpu", torch.bfloat16):
            low = m(clips)
    err = (low.float() - ref).abs().max()
    assert 0.0 < err < 1e-2  # autocast really ran (logits here are O(0.1))
