"""The conv3d stem (models/conv_stem.py): token grid, motion in the tokens, config, checkpoints, pruning, FLOPs."""
import pytest
import torch

from video_iared.models.conv_stem import ConvStemEmbed
from video_iared.models.patch_embed import PatchEmbed
from video_iared.models.timesformer import TimeSformer

KW = dict(img_size=32, patch_size=8, num_classes=5, embed_dim=32, depth=2, num_heads=4, num_frames=4,
          drop_path_rate=0.0)


def test_same_token_grid_as_the_patch_embedding():
    x = torch.randn(2, 3, 4, 32, 48)
    tokens, T, H, W = ConvStemEmbed(32, 8, 3, 24, hidden_chans=8)(x)
    ref, *grid = PatchEmbed(32, 8, 3, 24)(x)
    assert tokens.shape == ref.shape == (8, 4 * 6, 24)
    assert (T, H, W) == tuple(grid) == (4, 4, 6)


def test_tokens_see_neighbouring_frames_and_their_own_patch_only():
    """Two temporal kernels of 3: frame t's tokens depend on frames t-2..t+2 and nothing else; spatially each
    token depends on its own patch only (strided, non-overlapping kernels)."""
    torch.manual_seed(0)
    stem = ConvStemEmbed(32, 8, 3, 16, hidden_chans=8).eval()
    stem.norm = torch.nn.Identity()  # GroupNorm mixes the whole clip; the receptive field is the convolutions'
    x = torch.randn(1, 3, 7, 32, 32)
    y = x.clone()
    y[:, :, 3, :8, :8] += 1.0  # frame 3, patch (0, 0)
    a, *_ = stem(x)
    b, *_ = stem(y)
    changed = (a - b).abs().amax(-1) > 0  # (T, H'*W')
    expect = torch.zeros(7, 16, dtype=torch.bool)
    expect[1:6, 0] = True
    assert torch.equal(changed, expect)


def test_conv_stem_config_builds_trains_and_checks():
    from video_iared import build_model
    from video_iared.config import ConfigError, load_config

    cfg = load_config("configs/synthetic_dense.yaml", ["TIMESFORMER.DEPTH", "2", "TIMESFORMER.STEM", "conv3d",
                                                      "TIMESFORMER.STEM_CHANNELS", "8"])
    model = build_model(cfg)
    assert isinstance(model.patch_embed, ConvStemEmbed) and model.arch()["stem"] == "conv3d"
    assert model.patch_embed.conv1.out_channels == 8
    model.train()(torch.randn(2, 3, 8, 64, 64)).logsumexp(-1).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.patch_embed.parameters())
    with pytest.raises(ConfigError, match="TIMESFORMER.STEM"):
        load_config("configs/synthetic_dense.yaml", ["TIMESFORMER.STEM", "resnet"])
    with pytest.raises(ConfigError, match="TIMESFORMER.PATCH_SIZE: must be a multiple of 4"):
        load_config("configs/synthetic_dense.yaml", ["TIMESFORMER.PATCH_SIZE", "2"])
    with pytest.raises(ConfigError, match="TIMESFORMER.STEM_CHANNELS"):
        load_config("configs/synthetic_dense.yaml", ["TIMESFORMER.STEM_CHANNELS", "0"])
    with pytest.raises(ValueError, match="multiple of 4"):
        TimeSformer(**{**KW, "patch_size": 6, "img_size": 36}, stem="conv3d")


def test_checkpoint_of_another_stem_is_refused(tmp_path):
    from video_iared.checkpoint import load_checkpoint
    from video_iared.checkpoint.export import write_weights
    from video_iared.checkpoint.io import CheckpointError, check_arch

    conv = TimeSformer(**KW, stem="conv3d")
    patch = TimeSformer(**KW)
    with pytest.raises(CheckpointError, match="stem"):
        check_arch(conv.arch(), patch.arch(), str(tmp_path / "c.pyth"))
    old = {k: v for k, v in patch.arch().items() if k != "stem"}  # written before the stem existed
    check_arch(old, patch.arch(), "old.pyth")
    with pytest.raises(CheckpointError, match="stem: checkpoint 'patch' vs model 'conv3d'"):
        check_arch(old, conv.arch(), "old.pyth")
    # the loading path of test / finetune runs: an old patch-stem checkpoint into a conv3d model
    path = str(tmp_path / "old.pyth")
    write_weights(path, patch.state_dict(), old)
    with pytest.raises(CheckpointError, match="stem: checkpoint 'patch' vs model 'conv3d'"):
        load_checkpoint(path, TimeSformer(**KW, stem="conv3d"))
    load_checkpoint(path, TimeSformer(**KW))
    # the conv3d stem's width is part of the architecture: refused by name, not by a tensor-shape error
    narrow = TimeSformer(**KW, stem="conv3d", stem_channels=8)
    assert narrow.arch()["stem_channels"] == 8 and "stem_channels" not in patch.arch()
    path8 = str(tmp_path / "narrow.pyth")
    write_weights(path8, narrow.state_dict(), narrow.arch())
    with pytest.raises(CheckpointError, match="stem_channels: checkpoint 8 vs model 16"):
        load_checkpoint(path8, TimeSformer(**KW, stem="conv3d"))
    load_checkpoint(path8, TimeSformer(**KW, stem="conv3d", stem_channels=8))
    # official / timm weights carry no arch: the stem mismatch is still named, both ways
    from video_iared.checkpoint.load import load_state_dict_checked

    with pytest.raises(CheckpointError, match=r"holds the linear patch embedding \(patch_embed.proj.\*\) but the model "
                                              "is built with TIMESFORMER.STEM conv3d: set TIMESFORMER.STEM patch"):
        load_state_dict_checked(patch.state_dict(), TimeSformer(**KW, stem="conv3d"), "official", "ref.pyth")
    with pytest.raises(CheckpointError, match=r"holds the conv3d stem \(patch_embed.conv1.\*\).*STEM patch: set "
                                              "TIMESFORMER.STEM conv3d"):
        load_state_dict_checked(conv.state_dict(), TimeSformer(**KW), "official", "conv.pyth")


def test_pruned_model_with_conv_stem_packed_equals_masked_and_fvcore_counts_the_stem():
    from pruning_fixtures import packed_and_masked
    from video_iared.profiling.flops import model_gflops
    from video_iared.pruning.iared import IAREDTimeSformer

    torch.manual_seed(0)
    dense = TimeSformer(**KW, stem="conv3d").eval()
    model = IAREDTimeSformer(groups=(1, 1), interp_heads=2, interp_head_dim=8, stem="conv3d", **KW).eval()
    model.load_state_dict(dense.state_dict(), strict=False)
    x = torch.randn(2, 3, 4, 32, 32)
    g = torch.Generator().manual_seed(1)
    k0 = torch.rand(2, 64, generator=g) < 0.6
    keeps = [k0, k0 & (torch.rand(2, 64, generator=g) < 0.5)]
    outs = packed_and_masked(model, x, keeps)
    torch.testing.assert_close(outs["packed"], outs["masked"], atol=1e-5, rtol=0)
    # fvcore sees the stem: a model with a wider stem costs more, by the stem convolutions' MACs
    wide = TimeSformer(**KW, stem="conv3d", stem_channels=32).eval()
    conv1 = 4 * 8 * 8 * 3 * (3 * 4 * 4)  # outputs (T x 8 x 8) x in_chans x kernel
    conv2 = 4 * 4 * 4 * 32 * (3 * 2 * 2)  # outputs (T x 4 x 4 x D) x kernel
    norm = 4 * 8 * 8 * 5  # fvcore counts a group norm as 5 flops per element
    extra = (32 - 16) * (conv1 + conv2 + norm)  # the convolutions and the norm grow with the hidden width
    probe = x[:1]
    diff = model_gflops(wide, probe) - model_gflops(dense, probe)
    assert diff == pytest.approx(extra / 1e9, rel=1e-6)
