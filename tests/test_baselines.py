"""Token-reduction baselines (random drop, EViT top-k, ToMe per frame) on the packed execution path."""
import pytest
import torch

from video_iared.benchmarks.method_measure import variant_gflops
from video_iared.models.timesformer import TimeSformer
from video_iared.baselines.token_reduction import (
    TokenReductionTimeSformer,
    bipartite_merge_plan,
    build_baseline,
    cls_attention,
    merge_rows,
)
from video_iared.pruning.iared import IAREDTimeSformer
from video_iared.pruning.token_ops import PackedLayout

KW = dict(img_size=32, patch_size=8, num_classes=5, embed_dim=32, depth=4, num_heads=4, num_frames=4,
          drop_path_rate=0.0)
T, S = 4, 16  # frames, patches per frame (32 px / patch 8 = 4 x 4)
N = T * S


@pytest.fixture(scope="module")
def dense():
    torch.manual_seed(0)
    m = TimeSformer(**KW).eval()
    # the reference zero-initialises temporal_fc; give it weights so temporal attention matters in the tests
    for b in m.blocks:
        torch.nn.init.normal_(b.temporal_fc.weight, std=0.05)
    return m


@pytest.fixture(scope="module")
def clips():
    return torch.randn(3, 3, T, 32, 32, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("method,ratio,r", [("random", 1.0, 0), ("evit", 1.0, 0), ("tome", 1.0, 0)])
def test_no_reduction_equals_dense(dense, clips, method, ratio, r):
    m = build_baseline(method, dense, [2, 2], [ratio, ratio], r, timesformer_kwargs=KW)
    with torch.no_grad():
        y, decisions = m(clips, return_decisions=True)
        torch.testing.assert_close(y, dense(clips), atol=1e-5, rtol=1e-4)
    assert torch.all(decisions.keep_rates == 1.0)


@pytest.mark.parametrize("method", ["random", "evit"])
def test_topk_counts_and_same_packed_path_as_iared(dense, clips, method):
    """Kept counts are round(r * alive) per group, and the IA-RED² model given the same keep masks (its own
    packed path, interpreters ignored) returns the same logits: the methods share the execution."""
    m = build_baseline(method, dense, [2, 2], [0.5, 0.5], timesformer_kwargs=KW)
    with torch.no_grad():
        y, decisions = m(clips, return_decisions=True)
    keeps = decisions.keeps
    counts = [k.sum(1).tolist() for k in keeps]
    assert counts == [[32] * 3, [16] * 3]
    assert torch.all(keeps[1] <= keeps[0])  # hierarchical: the kept set only shrinks
    iared = IAREDTimeSformer(groups=[2, 2], interp_heads=2, interp_head_dim=8, **KW).eval()
    iared.load_state_dict(dense.state_dict(), strict=False)
    with torch.no_grad():
        y_ref = iared(clips, keep_masks=keeps)
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(y, dense(clips), atol=1e-3)  # dropping half the tokens changes the output


def test_random_reseed_reproducible_and_clips_differ(dense, clips):
    m = build_baseline("random", dense, [2, 2], [0.5, 0.5], seed=3, timesformer_kwargs=KW)
    with torch.no_grad():
        first = m(clips, return_decisions=True)[1].keeps
        second = m(clips, return_decisions=True)[1].keeps
        m.reseed()
        third = m(clips, return_decisions=True)[1].keeps
    assert all(torch.equal(a, b) for a, b in zip(first, third))
    assert not torch.equal(first[0], second[0])  # a new draw per forward
    assert not torch.equal(first[0][0], first[0][1])  # and per clip


def test_evit_first_group_keeps_top_cls_attention(dense, clips):
    """Group 0's decision = the top half of block 0's spatial CLS attention, computed here by hand."""
    m = build_baseline("evit", dense, [2, 2], [0.5, 1.0], timesformer_kwargs=KW)
    with torch.no_grad():
        _, decisions = m(clips[:1], return_decisions=True)
        tokens, grid = dense.embed(clips[:1])
        blk = dense.blocks[0]
        qkv = blk.attn.qkv(blk.norm1(tokens))[0]  # (1 + N, 3D)
        D, H = 32, 4
        q, k = qkv[:, :D].reshape(-1, H, D // H), qkv[:, D:2 * D].reshape(-1, H, D // H)
        score = torch.empty(N)
        for t in range(T):
            idx = torch.arange(S) * T + t  # (h w t) order: the patches of frame t
            keys = torch.cat([k[:1], k[1 + idx]])  # the frame's CLS copy, then its patches
            a = torch.softmax(torch.einsum("hd,lhd->hl", q[0], keys) * blk.attn.scale, -1).mean(0)
            score[idx] = a[1:]
    expected = torch.zeros(N, dtype=torch.bool)
    expected[score.topk(N // 2).indices] = True
    assert torch.equal(decisions.keeps[0][0], expected)


def test_cls_attention_sums_to_one_per_frame_with_cls():
    keep = torch.rand(2, N, generator=torch.Generator().manual_seed(0)) < 0.6
    layout = PackedLayout(keep, T, 4, 4)
    qkv = torch.randn(layout.num_rows, 3 * 8)
    a = cls_attention(qkv, layout.spatial_groups(), 2, 0.5)
    assert a.shape == (layout.num_patches,) and torch.all(a > 0)
    frame = layout.patch_batch * T + layout.patch_index % T
    per_frame = torch.zeros(2 * T).index_add(0, frame, a)
    assert torch.all(per_frame < 1.0)  # the CLS self-weight takes the rest


def test_bipartite_merge_plan_merges_identical_tokens():
    """One frame of 6 patches at packed rows 1..6 (row 0: CLS). A = rows 1, 3, 5; B = rows 2, 4, 6."""
    keep = torch.zeros(1, 6, dtype=torch.bool)
    keep[0, :] = True
    layout = PackedLayout(keep, 1, 2, 3)
    g = torch.Generator().manual_seed(0)
    metric = torch.randn(layout.num_rows, 16, generator=g)
    metric[3] = metric[6] * 2.0  # row 3 (A) is parallel to row 6 (B): cosine similarity 1, the best edge
    src, dst = bipartite_merge_plan(metric, layout.spatial_groups(), 1)
    assert (src.tolist(), dst.tolist()) == ([3], [6])
    src3, _ = bipartite_merge_plan(metric, layout.spatial_groups(), 10)
    assert len(src3) == 3  # capped by |A|


def test_merge_rows_is_size_weighted():
    x = torch.tensor([[0.0], [1.0], [4.0], [10.0]])
    size = torch.tensor([[1.0], [3.0], [1.0], [2.0]])
    out, s = merge_rows(x, size, torch.tensor([1, 2]), torch.tensor([3, 3]))  # rows 1 and 2 into row 3
    assert s[3].item() == 6.0 and s[0].item() == 1.0
    assert out[3].item() == pytest.approx((3 * 1 + 1 * 4 + 2 * 10) / 6)
    assert out[0].item() == 0.0


def test_tome_counts_and_size_weighted_merge(dense, clips):
    m = build_baseline("tome", dense, [2, 2], merge_r=3, timesformer_kwargs=KW)
    with torch.no_grad():
        y, decisions = m(clips, return_decisions=True)
    assert y.shape == (3, 5) and torch.isfinite(y).all()
    # per frame: 16 -> 13 -> 10 -> 7 -> 4 patches in front of blocks 0..3
    assert [round(float(r) * N) for r in decisions.keep_rates[0]] == [52, 40, 28, 16]
    per_frame = decisions.keeps[-1][0].reshape(S, T).sum(0)
    assert per_frame.tolist() == [4] * T  # merging happens within frames


def test_gflops_fall_with_the_budget(dense, clips):
    g = {}
    for name, kw in {"dense": None, "random": dict(keep_ratio=[0.5, 0.5]), "evit": dict(keep_ratio=[0.5, 0.5]),
                     "tome": dict(merge_r=4)}.items():
        model = dense if kw is None else build_baseline(name, dense, [2, 2], timesformer_kwargs=KW, **kw)
        g[name] = variant_gflops(model, clips[:1])
    assert g["random"] < 0.6 * g["dense"]
    assert g["random"] < g["evit"] < 0.7 * g["dense"]  # EViT pays its block-0 probe
    assert g["tome"] < 0.7 * g["dense"]


def test_bad_arguments_name_the_problem(dense):
    with pytest.raises(ValueError, match="method"):
        TokenReductionTimeSformer(method="nope", groups=[2, 2], **KW)
    with pytest.raises(ValueError, match="groups"):
        TokenReductionTimeSformer(method="random", groups=[2, 1], **KW)
    with pytest.raises(ValueError, match="keep_ratio"):
        TokenReductionTimeSformer(method="random", groups=[2, 2], keep_ratio=[0.5, 0.0], **KW)
    with pytest.raises(ValueError, match="divided"):
        TokenReductionTimeSformer(method="tome", groups=[2, 2], **{**KW, "attention_type": "joint_space_time"})
