"""TimeSformer: equality with an independent restatement of the reference, gradients, batching, layout."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange

from video_iared.models import ATTENTION_TYPES, TimeSformer, TokenGrid

torch.set_num_threads(1)


def tiny(attention_type: str = "divided_space_time", **kw) -> TimeSformer:
    args = dict(img_size=32, patch_size=8, num_classes=5, embed_dim=32, depth=3, num_heads=4, num_frames=4,
                drop_path_rate=0.0, attention_type=attention_type)
    args.update(kw)
    torch.manual_seed(0)
    model = TimeSformer(**args)
    # Non-zero temporal_fc everywhere so the temporal branch of every block is exercised.
    with torch.no_grad():
        for blk in model.blocks:
            if hasattr(blk, "temporal_fc"):
                blk.temporal_fc.weight.normal_(0, 0.05)
                blk.temporal_fc.bias.normal_(0, 0.05)
        model.time_embed.normal_(0, 0.02) if hasattr(model, "time_embed") else None
    return model


# ---------------------------------------------------------------- the reference, restated independently
def ref_attention(attn, x):
    B, N, C = x.shape
    h = attn.num_heads
    qkv = attn.qkv(x).reshape(B, N, 3, h, C // h).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    a = ((q @ k.transpose(-2, -1)) * attn.scale).softmax(dim=-1)
    return attn.proj((a @ v).transpose(1, 2).reshape(B, N, C))


def ref_block(blk, x, B, T, W, attention_type):
    H = (x.size(1) - 1) // T // W
    if attention_type in ("space_only", "joint_space_time"):
        x = x + ref_attention(blk.attn, blk.norm1(x))
        return x + blk.mlp(blk.norm2(x))
    xt = x[:, 1:, :]
    xt = rearrange(xt, "b (h w t) m -> (b h w) t m", b=B, h=H, w=W, t=T)
    res_t = ref_attention(blk.temporal_attn, blk.temporal_norm1(xt))
    res_t = rearrange(res_t, "(b h w) t m -> b (h w t) m", b=B, h=H, w=W, t=T)
    res_t = blk.temporal_fc(res_t)
    xt = x[:, 1:, :] + res_t
    init_cls = x[:, 0, :].unsqueeze(1)
    cls = rearrange(init_cls.repeat(1, T, 1), "b t m -> (b t) m", b=B, t=T).unsqueeze(1)
    xs = rearrange(xt, "b (h w t) m -> (b t) (h w) m", b=B, h=H, w=W, t=T)
    xs = torch.cat((cls, xs), 1)
    res_s = ref_attention(blk.attn, blk.norm1(xs))
    cls = torch.mean(rearrange(res_s[:, 0, :], "(b t) m -> b t m", b=B, t=T), 1, True)
    res_s = rearrange(res_s[:, 1:, :], "(b t) (h w) m -> b (h w t) m", b=B, h=H, w=W, t=T)
    x = torch.cat((init_cls, xt), 1) + torch.cat((cls, res_s), 1)
    return x + blk.mlp(blk.norm2(x))


def ref_forward(model, x):
    B, T = x.shape[0], x.shape[2]
    at = model.attention_type
    p = model.patch_embed.proj(rearrange(x, "b c t h w -> (b t) c h w"))
    W = p.size(-1)
    p = p.flatten(2).transpose(1, 2)
    x = torch.cat((model.cls_token.expand(p.size(0), -1, -1), p), dim=1)
    if x.size(1) != model.pos_embed.size(1):
        pe = model.pos_embed
        cls_pe = pe[0, 0, :].unsqueeze(0).unsqueeze(1)
        other = pe[0, 1:, :].unsqueeze(0).transpose(1, 2)
        P = int(other.size(2) ** 0.5)
        H = x.size(1) // W
        other = F.interpolate(other.reshape(1, x.size(2), P, P), size=(H, W), mode="nearest")
        x = x + torch.cat((cls_pe, other.flatten(2).transpose(1, 2)), 1)
    else:
        x = x + model.pos_embed
    if at != "space_only":
        cls = x[:B, 0, :].unsqueeze(1)
        x = rearrange(x[:, 1:], "(b t) n m -> (b n) t m", b=B, t=T)
        te = model.time_embed
        if T != te.size(1):
            te = F.interpolate(te.transpose(1, 2), size=T, mode="nearest").transpose(1, 2)
        x = rearrange(x + te, "(b n) t m -> b (n t) m", b=B, t=T)
        x = torch.cat((cls, x), dim=1)
    for blk in model.blocks:
        x = ref_block(blk, x, B, T, W, at)
    if at == "space_only":
        x = torch.mean(rearrange(x, "(b t) n m -> b t n m", b=B, t=T), 1)
    return model.head(model.norm(x)[:, 0])


@pytest.mark.parametrize("attention_type", ATTENTION_TYPES)
@pytest.mark.parametrize("shape", [(4, 32, 32), (2, 48, 48), (6, 24, 40)])
def test_matches_reference(attention_type, shape):
    """Same weights, same outputs as the reference computation, also at another T and crop (resized embeddings)."""
    model = tiny(attention_type).double().eval()
    T, H, W = shape
    x = torch.randn(2, 3, T, H, W, dtype=torch.float64)
    with torch.no_grad():
        ours, ref = model(x), ref_forward(model, x)
    assert ours.shape == (2, 5)
    torch.testing.assert_close(ours, ref, rtol=1e-9, atol=1e-10)


def test_split_forward_and_token_layout():
    model = tiny().eval()
    x = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        tokens, grid = model.embed(x)
        assert grid == TokenGrid(4, 4, 4) and tokens.shape == (2, 1 + 64, 32)
        # (h w t) order: token 1 + (h*W + w)*T + t is patch (h, w) of frame t.
        conv = model.patch_embed.proj(x[:, :, 2])  # frame t=2: (B, D, 4, 4)
        h, w, t = 1, 3, 2
        expect = conv[:, :, h, w] + model.pos_embed[0, 1 + h * 4 + w] + model.time_embed[0, t]
        torch.testing.assert_close(tokens[:, 1 + (h * 4 + w) * 4 + t], expect)
        for blk in model.blocks:
            tokens = blk(tokens, grid)
        torch.testing.assert_close(model.forward_head(tokens), model(x))


def test_grid_is_checked():
    model = tiny().eval()
    tokens, grid = model.embed(torch.randn(1, 3, 4, 32, 32))
    with pytest.raises(ValueError, match="tokens for grid"):
        model.blocks[0](tokens, TokenGrid(2, 4, 4))


@pytest.mark.parametrize("attention_type", ATTENTION_TYPES)
def test_every_parameter_gets_a_gradient(attention_type):
    model = tiny(attention_type, drop_rate=0.1, drop_path_rate=0.1).train()
    model(torch.randn(2, 3, 4, 32, 32)).logsumexp(-1).sum().backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not no_grad
    zero = [n for n, p in model.named_parameters() if p.grad.abs().sum() == 0]
    assert not zero, zero


@pytest.mark.parametrize("attention_type", ATTENTION_TYPES)
def test_eval_deterministic_and_batch_independent(attention_type):
    model = tiny(attention_type, drop_rate=0.2, drop_path_rate=0.2).eval()
    x = torch.randn(3, 3, 4, 32, 32)
    with torch.no_grad():
        a, b = model(x), model(x)
        single = torch.cat([model(x[i : i + 1]) for i in range(3)])
    assert torch.equal(a, b)
    torch.testing.assert_close(single, a, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(a[0], a[1])  # the clips differ, so must the logits


def test_init_conventions():
    model = TimeSformer(img_size=32, patch_size=8, embed_dim=32, depth=3, num_heads=4, num_frames=4, num_classes=5)
    assert model.blocks[0].temporal_fc.weight.abs().sum() > 0
    for blk in list(model.blocks)[1:]:
        assert blk.temporal_fc.weight.abs().sum() == 0 and blk.temporal_fc.bias.abs().sum() == 0
    assert torch.all(model.time_embed == 0)
    assert model.norm.eps == 1e-6 and model.blocks[0].norm1.eps == 1e-6
    assert [b.drop_path.drop_prob for b in list(model.blocks)[1:]] == pytest.approx([0.05, 0.1])
    assert model.no_weight_decay() == {"cls_token", "pos_embed", "time_embed"}
    names = set(dict(model.named_parameters()))
    for n in ("cls_token", "pos_embed", "time_embed", "patch_embed.proj.weight", "blocks.1.attn.qkv.weight",
              "blocks.1.attn.proj.bias", "blocks.1.temporal_norm1.weight", "blocks.1.temporal_attn.qkv.bias",
              "blocks.1.temporal_attn.proj.weight", "blocks.1.temporal_fc.weight", "blocks.1.norm2.bias",
              "blocks.1.mlp.fc1.weight", "blocks.1.mlp.fc2.bias", "norm.weight", "head.weight"):
        assert n in names, n
    space = TimeSformer(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=4, attention_type="space_only")
    assert not any("temporal" in n or n == "time_embed" for n, _ in space.named_parameters())


def test_build_model_from_config():
    from video_iared import build_model
    from video_iared.config import load_config

    cfg = load_config("configs/synthetic_dense.yaml", ["TIMESFORMER.DEPTH", "2", "TIMESFORMER.PATCH_SIZE", "8", "MODEL.DROPPATH_RATE", "0.2"])
    model = build_model(cfg)
    assert isinstance(model, TimeSformer)
    assert (model.embed_dim, model.depth, model.num_heads, model.patch_size, model.num_classes) == (64, 2, 4, 8, 8)
    assert model.time_embed.shape == (1, 8, 64) and model.pos_embed.shape == (1, 1 + 64, 64)
    assert model.blocks[1].drop_path.drop_prob == pytest.approx(0.2)
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, 8, 64, 64)).shape == (1, 8)


def test_bad_input_shapes_are_named():
    model = tiny().eval()
    with pytest.raises(ValueError, match="multiple of the patch size"):
        model(torch.randn(1, 3, 4, 30, 32))
    with pytest.raises(ValueError, match=r"\(B, C, T, H, W\)"):
        model(torch.randn(1, 3, 32, 32))


@pytest.mark.parametrize("attention_type", ATTENTION_TYPES)
def test_explicit_attention_path_equals_sdpa(attention_type):
    model = tiny(attention_type).double().eval()
    x = torch.randn(2, 3, 4, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        fused = model(x)
        for m in model.modules():
            if hasattr(m, "fused"):
                m.fused = False
        torch.testing.assert_close(model(x), fused, rtol=1e-9, atol=1e-10)
    # A boolean key-padding mask means the same on both paths.
    attn = model.blocks[0].attn
    tokens = torch.randn(3, 7, 32, dtype=torch.float64)
    mask = torch.ones(3, 1, 1, 7, dtype=torch.bool)
    mask[:, :, :, 5:] = False
    with torch.no_grad():
        attn.fused = False
        explicit = attn(tokens, mask)
        attn.fused = True
        torch.testing.assert_close(attn(tokens, mask), explicit, rtol=1e-9, atol=1e-10)
