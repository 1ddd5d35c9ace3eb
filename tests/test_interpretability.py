"""Explanation maps (interpreter, kept masks, attention, rollout, Grad-CAM, Chefer) on a tiny IA-RED² model,
and the mask metrics against hand-computed values."""
import math

import numpy as np
import pytest
import torch

from video_iared.interpret import interp_metrics as im
from video_iared.interpret.explain import (METHODS, block_operators, capture_attention, dense_forward, explain,
                                          interpreter_maps, map_to_tokens, spatial_operator, temporal_operator,
                                          tokens_to_map)
from video_iared.models.token_grid import TokenGrid
from video_iared.pruning import IAREDTimeSformer

T, SIZE, PATCH = 4, 32, 8  # grid 4 x 4 x 4 = 64 patch tokens


def tiny_model(execution="packed", attention_type="divided_space_time", seed=0, threshold=0.5):
    torch.manual_seed(seed)
    m = IAREDTimeSformer(groups=(2, 2), interp_heads=2, interp_head_dim=8, threshold=threshold, execution=execution,
                         img_size=SIZE, patch_size=PATCH, num_classes=5, embed_dim=32, depth=4, num_heads=2,
                         num_frames=T, attention_type=attention_type, drop_path_rate=0.0)
    # the reference zero-initialises temporal_fc (blocks 1..): give it weights so time mixing matters here
    for blk in m.blocks:
        if hasattr(blk, "temporal_fc"):
            torch.nn.init.normal_(blk.temporal_fc.weight, std=0.1)
    # spread the interpreters' logits so the 0.5 threshold keeps some tokens and drops others
    for it in m.interpreters:
        torch.nn.init.normal_(it.qk.weight, std=0.5)
    return m.eval()


def clips(b=2, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 3, T, SIZE, SIZE, generator=g)


# ----------------------------------------------------------------------------- layout
def test_token_order_matches_frames():
    """A bright patch at (t=2, h=1, w=3) of the input lands at [2, 1, 3] of the maps."""
    m = tiny_model()
    with torch.no_grad():
        m.patch_embed.proj.bias.zero_()
        m.pos_embed.zero_()
        m.time_embed.zero_()
        m.cls_token.zero_()
    x = torch.zeros(1, 3, T, SIZE, SIZE)
    x[:, :, 2, 8:16, 24:32] = 1.0
    tokens, grid = m.embed(x)
    norms = tokens[:, 1:].norm(dim=-1)
    mp = tokens_to_map(norms, grid)
    assert mp.shape == (1, T, 4, 4)
    nz = torch.nonzero(mp[0] > 1e-6).tolist()
    assert nz == [[2, 1, 3]]
    assert torch.equal(map_to_tokens(mp), norms)


# ----------------------------------------------------------------------------- interpreter maps
def _group_inputs(m, x):
    """The patch tokens entering the first block of each group (what temporal_norm1 receives)."""
    seen = []
    hooks = [m.blocks[i].temporal_norm1.register_forward_pre_hook(lambda mod, a: seen.append(a[0].detach()))
             for i in (0, 2)]
    try:
        with torch.no_grad():
            logits = m(x)
    finally:
        for h in hooks:
            h.remove()
    return logits, seen


def test_kept_masks_are_the_tokens_that_reach_each_group():
    m = tiny_model("masked")
    x = clips()
    out = interpreter_maps(m, x)
    G, B = 2, x.shape[0]
    assert out.probs.shape == (B, G, T, 4, 4) and out.kept.shape == (B, G, T, 4, 4) and out.scored == [True, True]
    kept = out.kept
    assert 0 < kept[:, 0].float().mean() < 1, "the test needs a group that keeps some tokens and drops others"
    assert bool((kept[:, 1] <= kept[:, 0]).all()), "hierarchical: a dropped token stays dropped"
    assert bool((kept[:, 1] != kept[:, 0]).any()), "the second group must drop tokens too"

    # masked execution: the full grid enters every block, dropped tokens zeroed
    logits, seen_masked = _group_inputs(m, x)
    assert torch.allclose(logits, out.logits, atol=1e-5)
    # packed execution (same weights): only the kept patch rows enter, clip after clip in (h w t) order
    m = tiny_model("packed")  # the same seed: the same weights
    assert torch.equal(interpreter_maps(m, x).kept, kept)
    logits_p, seen_packed = _group_inputs(m, x)
    assert torch.allclose(logits_p, logits, atol=1e-4)
    for g in range(G):
        k = map_to_tokens(kept[:, g])  # (B, N) in (h w t) order
        rows = seen_masked[g].reshape(B, -1, seen_masked[g].shape[-1])  # (B*S, T, D) -> (B, S*T, D)
        nonzero = rows.abs().sum(-1) > 0
        assert torch.equal(nonzero, k), f"group {g}: zero (dropped) rows differ from the kept mask"
        assert seen_packed[g].shape[0] == int(k.sum())
        assert torch.allclose(seen_packed[g], rows[k], atol=1e-4), f"group {g}: packed rows are not the kept tokens"
    # the model's own decisions, replayed through keep_masks, give the same logits
    with torch.no_grad():
        replay = m(x, keep_masks=[map_to_tokens(kept[:, g]) for g in range(G)])
    assert torch.allclose(replay, logits, atol=1e-4)


def test_interpreter_score_ranks_by_groups_survived():
    m = tiny_model()
    out = interpreter_maps(m, clips(3))
    score, depth = out.hierarchical_score().flatten(), out.depth().flatten()
    assert bool(((score >= 0) & (score <= 1)).all())
    deeper = depth[:, None] > depth[None, :]
    assert bool((score[:, None] > score[None, :])[deeper].all())
    # where the first group scored a token and dropped it, the score is p0 / G
    first_drop = ~out.kept[:, 0]
    assert torch.allclose(out.hierarchical_score()[first_drop], out.probs[:, 0][first_drop].double() / 2)


def test_explain_gives_every_map_on_the_grid():
    m = tiny_model()
    methods = [k for k in METHODS if k != "interpreter_g2"]  # two groups
    e = explain(m, clips(), methods)
    assert set(e.maps) == set(methods)
    for name, mp in e.maps.items():
        assert mp.shape == (2, T, 4, 4), name
        assert torch.isfinite(mp).all(), name
    for name in ("gradcam", "chefer", "attention", "rollout", "kept"):
        assert bool((e.maps[name] >= 0).all()), name
    for name in ("gradcam", "chefer", "attention", "rollout", "interpreter", "random"):
        assert e.maps[name].std() > 0, f"{name} map is constant"
    # raw attention: per frame, the CLS copy's attention over the patches is < 1 (the rest is on itself)
    per_frame = e.maps["attention"].sum((2, 3))
    assert bool(((per_frame > 0) & (per_frame < 1)).all())
    assert torch.equal(e.target, e.dense_logits.argmax(1))
    assert not any(p.grad is not None for p in m.parameters()), "explain must leave no gradients behind"


def test_each_groups_interpreter_map_is_its_keep_probability_over_the_tokens_alive_there():
    m = tiny_model()
    x = clips()
    out = interpreter_maps(m, x)
    e = explain(m, x, ["interpreter_g0", "interpreter_g1"])
    assert torch.equal(e.maps["interpreter_g0"], out.probs[:, 0].float())
    assert torch.equal(e.maps["interpreter_g1"], out.probs[:, 1].float())
    dropped_by_g0 = ~out.kept[:, 0]
    assert dropped_by_g0.any() and bool((e.maps["interpreter_g1"][dropped_by_g0] == 0).all())
    assert bool((e.maps["interpreter_g1"][~dropped_by_g0] > 0).all())
    with pytest.raises(ValueError, match="interpreter_g2: group 2's interpreter did not run .*2 groups"):
        explain(m, x, ["interpreter_g2"])


def test_capture_hooks_reproduce_the_module_output():
    m = tiny_model()
    x = clips()
    with torch.no_grad():
        ref = dense_forward(m, x)
    with capture_attention(m, with_grad=True) as cap:
        out = dense_forward(m, x)
    assert torch.allclose(out, ref, atol=1e-5)
    assert len(cap.temporal) == len(cap.spatial) == 4
    assert cap.temporal[0].shape == (2 * 16, 2, T, T) and cap.spatial[0].shape == (2 * T, 2, 17, 17)
    assert torch.allclose(cap.spatial[-1].sum(-1), torch.ones(()), atol=1e-5)
    # hooks are removed afterwards
    assert not any(blk.attn._forward_hooks for blk in m.blocks)


def test_gradient_maps_work_with_frozen_parameters():
    m = tiny_model()
    for p in m.parameters():
        p.requires_grad_(False)
    e = explain(m, clips(1), ("gradcam", "chefer"))
    assert e.maps["gradcam"].sum() > 0 and e.maps["chefer"].sum() > 0


def test_joint_attention_maps():
    m = tiny_model(attention_type="joint_space_time")
    e = explain(m, clips(1), ("attention", "rollout", "gradcam", "chefer"))
    assert e.maps["attention"].shape == (1, T, 4, 4)
    assert 0.0 < float(e.maps["attention"].sum()) < 1.0  # the CLS row over the patches (minus itself)
    assert float(e.maps["rollout"].sum()) < 1.0 + 1e-5


# ----------------------------------------------------------------------------- rollout
def _naive_operators(att_t, att_s, grid):
    """Loop-by-loop construction of the temporal and spatial operators for one clip."""
    S, Tt = grid.spatial, grid.T
    n = 1 + S * Tt
    top, sop = torch.zeros(n, n), torch.zeros(n, n)
    top[0, 0] = 1
    for s in range(S):
        for t in range(Tt):
            for u in range(Tt):
                top[1 + s * Tt + t, 1 + s * Tt + u] = att_t[s, t, u]
    for t in range(Tt):
        sop[0, 0] += att_s[t, 0, 0] / Tt
        for s in range(S):
            sop[0, 1 + s * Tt + t] = att_s[t, 0, 1 + s] / Tt
            sop[1 + s * Tt + t, 0] = att_s[t, 1 + s, 0]
            for r in range(S):
                sop[1 + s * Tt + t, 1 + r * Tt + t] = att_s[t, 1 + s, 1 + r]
    return top, sop


def test_divided_operators_match_a_loop_construction_and_are_stochastic():
    grid = TokenGrid(3, 2, 2)
    g = torch.Generator().manual_seed(0)
    att_t = torch.rand(grid.spatial, grid.T, grid.T, generator=g).softmax(-1)
    att_s = torch.rand(grid.T, 1 + grid.spatial, 1 + grid.spatial, generator=g).softmax(-1)
    top, sop = _naive_operators(att_t, att_s, grid)
    assert torch.allclose(temporal_operator(att_t[None], grid)[0], top)
    assert torch.allclose(spatial_operator(att_s[None], grid)[0], sop)
    op = block_operators(att_t, att_s, grid, 1, "rollout")[0]
    assert torch.allclose(op.sum(-1), torch.ones(op.shape[0]), atol=1e-6)  # rows still sum to 1
    expected = (0.5 * sop + 0.5 * torch.eye(op.shape[0])) @ (0.5 * top + 0.5 * torch.eye(op.shape[0]))
    # the residual acts on the per-frame CLS copies, so the CLS row of 0.5 S + 0.5 I equals the operator of
    # 0.5 A + 0.5 I built per frame: same matrix
    assert torch.allclose(op, expected, atol=1e-6)


def test_rollout_of_uniform_attention_is_uniform():
    """Zero q and k weights -> every attention is uniform; all patch tokens are then interchangeable (every
    operator commutes with permutations of positions and of frames), so the CLS row is constant over them."""
    m = tiny_model()
    D = m.embed_dim
    with torch.no_grad():
        for blk in m.blocks:
            for a in (blk.attn, blk.temporal_attn):
                a.qkv.weight[: 2 * D].zero_()
                a.qkv.bias[: 2 * D].zero_()
    e = explain(m, clips(1), ("rollout", "attention"))
    r = e.maps["rollout"]
    assert torch.allclose(r, r.flatten()[0].expand_as(r), rtol=1e-5, atol=0)
    # raw attention of the last block is uniform too: 1 / (1 + H*W) per patch
    assert torch.allclose(e.maps["attention"], torch.full_like(e.maps["attention"], 1 / 17), atol=1e-6)


def test_rollout_follows_a_planted_attention_path():
    """Make every patch's spatial attention point at one patch: rollout puts the most mass there."""
    m = tiny_model()
    e_plain = explain(m, clips(1), ("rollout",)).maps["rollout"]
    # bias the last block's keys so that patch (h=2, w=1) (all frames) is attended by the CLS copy
    with capture_attention(m) as cap:
        dense_forward(m, clips(1))
    a = cap.spatial[-1].mean(1)  # (T, 17, 17)
    grid = TokenGrid(T, 4, 4)
    spiked = a.clone()
    spiked[:, 0, :] = 0.0
    spiked[:, 0, 1 + 2 * 4 + 1] = 1.0  # CLS copy -> patch s = h*W + w = 9
    t_avg = [x.mean(1) for x in cap.temporal]
    s_avg = [x.mean(1) for x in cap.spatial[:-1]] + [spiked]
    from video_iared.interpret.explain import compose_cls_row
    row = compose_cls_row(t_avg, s_avg, grid, 1, "rollout")
    mp = tokens_to_map(row[:, 1:], grid)[0]
    assert tuple(torch.nonzero(mp == mp.max())[0].tolist())[1:] == (2, 1)
    assert not torch.allclose(mp, e_plain[0])


# ----------------------------------------------------------------------------- metrics
def test_roc_auc_hand_values():
    assert im.roc_auc([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0]) == pytest.approx(0.75)
    assert im.roc_auc([1, 1, 0], [1, 0, 0]) == pytest.approx(0.75)  # one tie (1/2) and one win
    assert im.roc_auc([3, 2, 1, 0], [1, 1, 0, 0]) == 1.0
    assert im.roc_auc([0, 1, 2, 3], [1, 1, 0, 0]) == 0.0
    assert im.roc_auc(np.ones(10), np.arange(10) < 3) == 0.5
    assert math.isnan(im.roc_auc([1, 2], [1, 1]))
    np.testing.assert_allclose(im.average_ranks(np.array([5.0, 1.0, 5.0, 2.0])), [3.5, 1, 3.5, 2])


def test_average_precision_hand_values():
    assert im.average_precision([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0]) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    assert im.average_precision([1, 1, 0, 0], [1, 0, 1, 0]) == pytest.approx(0.5)
    assert im.average_precision([0.1, 0.9, 0.2], [0, 1, 0]) == 1.0
    assert im.average_precision(np.zeros(8), np.arange(8) < 2) == pytest.approx(0.25)  # the positive rate
    assert math.isnan(im.average_precision([1, 2], [0, 0]))


def test_topk_iou_and_pointing_hand_values():
    assert im.topk_iou([4, 3, 2, 1], [1, 0, 1, 0], 0.5) == pytest.approx(1 / 3)
    assert im.topk_iou([4, 3, 2, 1], [1, 1, 0, 0], 0.5) == 1.0
    assert im.topk_iou([4, 3, 2, 1], [1, 1, 0, 0], 0.25) == 0.5  # ceil(0.25 * 4) = 1 token
    s = np.array([[[1.0, 1.0], [0.0, 0.0]], [[0.0, 2.0], [0.0, 0.0]], [[9.0, 0.0], [0.0, 0.0]]])
    y = np.array([[[1, 0], [0, 0]], [[0, 1], [0, 0]], [[0, 0], [0, 0]]], dtype=bool)
    # frame 0: tie between a hit and a miss -> 0.5; frame 1: hit; frame 2: no foreground, skipped
    assert im.pointing_game(s, y) == pytest.approx(0.75)
    assert im.curve_auc([0, 0.5, 1], [1, 1, 1]) == pytest.approx(1.0)
    assert im.curve_auc([0, 0.5, 1], [0, 0.5, 1]) == pytest.approx(0.5)


def test_perfect_and_random_maps_on_a_synthetic_mask():
    rng = np.random.default_rng(0)
    mask = np.zeros((4, 8, 8), dtype=bool)
    mask[:, 2:5, 3:6] = True  # a 3 x 3 object in every frame: 14 % of the tokens
    perfect = mask.astype(float) + 0.01 * rng.random(mask.shape)
    assert im.roc_auc(perfect, mask) == 1.0
    assert im.average_precision(perfect, mask) == 1.0
    assert im.topk_iou(perfect, mask, mask.mean()) == 1.0
    assert im.pointing_game(perfect, mask) == 1.0
    aucs = [im.roc_auc(rng.random(mask.shape), mask) for _ in range(300)]
    aps = [im.average_precision(rng.random(mask.shape), mask) for _ in range(300)]
    points = [im.pointing_game(rng.random(mask.shape), mask) for _ in range(300)]
    assert abs(np.mean(aucs) - 0.5) < 0.01
    assert abs(np.mean(aps) - mask.mean()) < 0.03  # AP of a random ranking is about the positive rate
    assert abs(np.mean(points) - 9 / 64) < 0.03
    assert im.pointing_game(np.zeros(mask.shape), mask) == pytest.approx(9 / 64)  # all tied: expected hit rate
