"""load_checkpoint: official .pyth, ours, timm inflation; strict key / shape errors; conversion."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from torch import nn

from video_iared.checkpoint import CheckpointError, LoadReport, convert_checkpoint, load_checkpoint
from video_iared.checkpoint.io import save_checkpoint
from video_iared.models import TimeSformer

torch.set_num_threads(1)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny(seed: int = 0, **kw) -> TimeSformer:
    args = dict(img_size=32, patch_size=8, num_classes=5, embed_dim=32, depth=2, num_heads=4, num_frames=4,
                drop_path_rate=0.0)
    args.update(kw)
    torch.manual_seed(seed)
    return TimeSformer(**args).eval()


def official(model: nn.Module, path: str, edit=None) -> str:
    """Write ``model`` in the official TimeSformer / PySlowFast layout."""
    sd = {"model." + k: v.clone() for k, v in model.state_dict().items()}
    if edit:
        edit(sd)
    torch.save({"model_state": sd, "epoch": 15, "optimizer_state": {}, "cfg": "TRAIN:\n  ENABLE: True\n"}, path)
    return path


def same_output(a: nn.Module, b: nn.Module, x: torch.Tensor) -> bool:
    with torch.no_grad():
        return torch.allclose(a(x), b(x), atol=1e-6)


def test_official_pyth_exact_report(tmp_path):
    src = tiny(0)
    path = official(src, str(tmp_path / "TimeSformer_divST_8x32_224_K400.pyth"))
    dst = tiny(1)
    x = torch.randn(2, 3, 4, 32, 32)
    assert not same_output(src, dst, x)
    report = load_checkpoint(path, dst)
    assert isinstance(report, LoadReport) and report.format == "official"
    assert sorted(report.loaded) == sorted(dst.state_dict())
    assert not (report.missing or report.unexpected or report.resized or report.kept_at_init or report.dropped)
    assert same_output(src, dst, x)
    assert "missing: none" in report.summary()


@pytest.mark.parametrize(
    "edit, key",
    [
        (lambda sd: sd.pop("model.blocks.1.temporal_fc.bias"), "blocks.1.temporal_fc.bias"),
        (lambda sd: sd.__setitem__("model.blocks.0.extra.weight", torch.zeros(3)), "blocks.0.extra.weight"),
        (lambda sd: sd.__setitem__("model.blocks.1.mlp.fc1.weight", torch.zeros(100, 32)), "blocks.1.mlp.fc1.weight"),
    ],
    ids=["missing", "unexpected", "misshaped"],
)
def test_official_errors_name_the_key(tmp_path, edit, key):
    path = official(tiny(0), str(tmp_path / "bad.pyth"), edit)
    dst = tiny(1)
    before = {k: v.clone() for k, v in dst.state_dict().items()}
    with pytest.raises(CheckpointError, match=key.replace(".", r"\.")):
        load_checkpoint(path, dst)
    assert all(torch.equal(before[k], v) for k, v in dst.state_dict().items())  # nothing half-loaded


def test_non_strict_reports_instead_of_raising(tmp_path):
    path = official(tiny(0), str(tmp_path / "m.pyth"), lambda sd: sd.pop("model.norm.weight"))
    report = load_checkpoint(path, tiny(1), strict=False)
    assert report.missing == ["norm.weight"] and not report.unexpected


def test_ours_with_arch_and_class_count_change(tmp_path):
    src = tiny(0)
    path = save_checkpoint(str(tmp_path / "checkpoint_epoch_00003.pyth"), src, epoch=3, arch=src.arch())
    dst = tiny(1)
    report = load_checkpoint(path, dst)
    assert report.format == "ours" and not report.missing and same_output(src, dst, torch.randn(1, 3, 4, 32, 32))

    other_head = tiny(2, num_classes=7)
    report = load_checkpoint(path, other_head)
    assert set(report.dropped) == {"head.weight", "head.bias"}
    assert set(report.kept_at_init) == {"head.weight", "head.bias"}
    assert torch.equal(other_head.blocks[1].attn.qkv.weight, src.blocks[1].attn.qkv.weight)

    with pytest.raises(CheckpointError, match="another architecture.*depth"):
        load_checkpoint(path, tiny(0, depth=3))


def test_embeddings_resized_to_model_size(tmp_path):
    src = tiny(0)
    path = official(src, str(tmp_path / "m.pyth"))
    dst = tiny(1, img_size=48, num_frames=8)
    report = load_checkpoint(path, dst)
    assert report.resized == {"pos_embed": ((1, 17, 32), (1, 37, 32)), "time_embed": ((1, 4, 32), (1, 8, 32))}
    assert "resized pos_embed: [1, 17, 32] -> [1, 37, 32]" in report.summary()
    # CLS entry kept; time embedding nearest: frames 2k and 2k+1 take source frame k.
    torch.testing.assert_close(dst.pos_embed[:, 0], src.pos_embed[:, 0])
    torch.testing.assert_close(dst.time_embed[0, 5], src.time_embed[0, 2])


def _timm_vit(num_classes: int = 5):
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(3)
    vit = VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=4, num_classes=num_classes)
    with torch.no_grad():  # timm zero-inits the head; give it weights so the comparison means something
        vit.head.weight.normal_(0, 0.5)
    return vit.eval()


@pytest.mark.parametrize("ext", [".pth", ".safetensors"])
def test_timm_inflation_equals_image_model(tmp_path, ext):
    vit = _timm_vit()
    path = str(tmp_path / f"vit{ext}")
    if ext == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in vit.state_dict().items()}, path)
    else:
        torch.save({"model": vit.state_dict()}, path)
    img = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = vit(img)

    # joint attention with T=1 is the image model exactly (time_embed is zero).
    joint = tiny(1, attention_type="joint_space_time", num_frames=1)
    report = load_checkpoint(path, joint)
    assert report.format == "timm" and report.inflated == ["time_embed"] and not report.missing
    with torch.no_grad():
        torch.testing.assert_close(joint(img.unsqueeze(2)), expected, rtol=1e-5, atol=1e-5)

    # divided: temporal weights are copies; with block 0's (random-init) temporal_fc zeroed, T=1 is exact.
    div = tiny(1, num_frames=4)
    report = load_checkpoint(path, div)
    assert sorted(report.inflated) == sorted(
        [f"blocks.{i}.temporal_{m}.{p}" for i in range(2) for m in ("attn.qkv", "attn.proj", "norm1")
         for p in ("weight", "bias")] + ["time_embed"])
    assert set(report.kept_at_init) == {f"blocks.{i}.temporal_fc.{p}" for i in range(2) for p in ("weight", "bias")}
    assert torch.equal(div.blocks[1].temporal_attn.qkv.weight, vit.blocks[1].attn.qkv.weight)
    assert torch.equal(div.time_embed, torch.zeros(1, 4, 32))
    with torch.no_grad():
        div.blocks[0].temporal_fc.weight.zero_()
        div.blocks[0].temporal_fc.bias.zero_()
        torch.testing.assert_close(div(img.unsqueeze(2)), expected, rtol=1e-5, atol=1e-5)
        # A static clip (every frame the same image) gives the image model's output too.
        torch.testing.assert_close(div(img.unsqueeze(2).expand(-1, -1, 4, -1, -1)), expected, rtol=1e-5, atol=1e-5)


def test_timm_head_dropped_and_pos_resized(tmp_path):
    vit = _timm_vit(num_classes=1000)
    path = str(tmp_path / "vit.pth")
    torch.save(vit.state_dict(), path)
    dst = tiny(1, img_size=64, num_classes=7)
    report = load_checkpoint(path, dst)
    assert set(report.dropped) == {"head.weight", "head.bias"}
    assert report.resized == {"pos_embed": ((1, 17, 32), (1, 65, 32))}


def test_dense_checkpoint_into_model_with_interpreters(tmp_path):
    class WithInterpreters(TimeSformer):  # stands in for the IA-RED² model: TimeSformer names + interpreters.N.*
        def __init__(self, **kw):
            super().__init__(**kw)
            self.interpreters = nn.ModuleList(nn.Linear(32, 8) for _ in range(2))

    src = tiny(0)
    path = official(src, str(tmp_path / "dense.pyth"))
    torch.manual_seed(1)
    dst = WithInterpreters(img_size=32, patch_size=8, num_classes=5, embed_dim=32, depth=2, num_heads=4, num_frames=4)
    report = load_checkpoint(path, dst)
    assert set(report.kept_at_init) == {f"interpreters.{i}.{p}" for i in range(2) for p in ("weight", "bias")}
    assert not report.missing


def test_missing_file_and_uncached_timm_name(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(str(tmp_path / "nope.pyth"), tiny())
    with pytest.raises(CheckpointError, match="not in the local Hugging Face cache|not a timm model"):
        load_checkpoint("vit_tiny_patch16_224", tiny())


def test_convert_to_safetensors_roundtrip(tmp_path):
    src = tiny(0)
    path = official(src, str(tmp_path / "official.pyth"))
    out = str(tmp_path / "clean.safetensors")
    assert convert_checkpoint(path, out) is None
    dst = tiny(1)
    report = load_checkpoint(out, dst)
    assert report.format == "ours" and same_output(src, dst, torch.randn(1, 3, 4, 32, 32))


@pytest.mark.slow
def test_convert_tool_inflates_with_cfg(tmp_path):
    from timm.models.vision_transformer import VisionTransformer

    vit = VisionTransformer(img_size=64, patch_size=8, embed_dim=64, depth=4, num_heads=4, num_classes=8)
    src = str(tmp_path / "vit.pth")
    torch.save(vit.state_dict(), src)
    out = str(tmp_path / "inflated.pyth")
    r = subprocess.run([sys.executable, "tools/convert_checkpoint.py", src, out, "--cfg", "configs/synthetic_dense.yaml",
                        "TIMESFORMER.PATCH_SIZE", "8", "TIMESFORMER.EMBED_DIM", "64", "TIMESFORMER.DEPTH", "4",
                        "TIMESFORMER.STEM", "patch"],
                       cwd=ROOT, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr
    assert "inflated from image weights" in r.stdout + r.stderr
    state = torch.load(out, weights_only=True)
    assert state["arch"]["depth"] == 4 and state["model_state"]["time_embed"].shape == (1, 8, 64)
    assert torch.equal(state["model_state"]["blocks.3.temporal_attn.proj.weight"], vit.blocks[3].attn.proj.weight)


@pytest.mark.parametrize("ext", [".pyth", ".safetensors"])
@pytest.mark.parametrize("with_model", [False, True])
def test_convert_keeps_the_calibrated_threshold(tmp_path, ext, with_model):
    from video_iared.checkpoint.io import read_calibration
    from video_iared.engine.train_iared import calibrated_threshold

    src = tiny(0)
    record = {"threshold": 0.5799, "target_cost": 0.5, "cost_fraction": 0.482, "top1": 91.25,
              "keep_rates": [0.368, 0.368], "clips": 48}
    path = save_checkpoint(str(tmp_path / "checkpoint_iared.pyth"), src, epoch=2, arch=src.arch(),
                           extra={"iared_calibration": record})
    out = str(tmp_path / f"clean{ext}")
    convert_checkpoint(path, out, tiny(1) if with_model else None)
    assert read_calibration(out) == record
    assert calibrated_threshold(out, 0.5)["threshold"] == 0.5799
    dst = tiny(2)
    load_checkpoint(out, dst)
    assert same_output(src, dst, torch.randn(1, 3, 4, 32, 32))


def test_convert_without_calibration_writes_none(tmp_path):
    from video_iared.checkpoint.io import read_calibration

    path = official(tiny(0), str(tmp_path / "official.pyth"))
    for ext in (".pyth", ".safetensors"):
        out = str(tmp_path / f"clean{ext}")
        convert_checkpoint(path, out, tiny(1))  # the official pickle needs full unpickling: no record, no error
        assert read_calibration(out) is None


def test_a_pickle_needing_other_globals_is_refused_unless_trusted(tmp_path):
    import argparse

    from video_iared.checkpoint.io import read_calibration

    src = tiny(0)
    record = {"threshold": 0.61, "target_cost": 0.5, "cost_fraction": 0.49, "top1": 90.0, "keep_rates": [0.4],
              "clips": 8}
    path = str(tmp_path / "pickled.pyth")  # an object weights_only=True refuses: only --trust-pickle reads it
    torch.save({"model_state": src.state_dict(), "arch": src.arch(), "iared_calibration": record,
                "args": argparse.Namespace(lr=0.1)}, path)
    with pytest.raises(CheckpointError, match="argparse.Namespace"):
        read_calibration(path)
    out = str(tmp_path / "clean.pyth")
    with pytest.raises(CheckpointError, match="argparse.Namespace"):
        convert_checkpoint(path, out, tiny(1))
    assert not os.path.exists(out)
    for model in (tiny(1), None):
        convert_checkpoint(path, out, model, trust_pickle=True)
        assert read_calibration(out) == record


def test_bad_calibration_metadata_does_not_block_the_weights(tmp_path, caplog):
    from safetensors.torch import save_file

    src = tiny(0)
    path = str(tmp_path / "bad.safetensors")
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, path,
              metadata={"format": "video_iared", "iared_calibration": "{not json"})
    dst = tiny(1)
    load_checkpoint(path, dst)
    assert same_output(src, dst, torch.randn(1, 3, 4, 32, 32))
    assert "ignoring the unreadable iared_calibration metadata" in caplog.text


def test_a_calibration_record_that_is_not_plain_numbers_is_refused(tmp_path):
    from video_iared.checkpoint import write_weights

    for ext in (".pyth", ".safetensors"):
        with pytest.raises(CheckpointError, match="iared_calibration record is not plain numbers"):
            write_weights(str(tmp_path / f"w{ext}"), tiny(0).state_dict(), None, {"threshold": torch.tensor(0.5)})
