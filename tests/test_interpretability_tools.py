"""Pictures (PNG grid, GIF/MP4), the mask geometry of test views, and the two tools end to end on a tiny
synthetic dataset (real encoded videos and masks) with a tiny random-weight IA-RED² model."""
import csv
import os

import numpy as np
import pytest
import torch
from PIL import Image

from engine_fixtures import ROOT, load_tool, make_dataset, tiny_opts
from video_iared.interpret.interpretability import (curve_masks, curve_scores, mask_coverage, patch_foreground,
                                                   upsample_map)
from video_iared.interpret.visualize import kept_frames, save_explanation_grid, save_kept_animation
from video_iared.data.transforms import TestTransform


def _scene(T=4, S=32):
    """Frames with a bright square moving right, and its patch-level mask / kept masks."""
    frames = np.full((T, S, S, 3), 0.3, dtype=np.float32)
    kept = np.zeros((2, T, S // 8, S // 8), dtype=bool)
    for t in range(T):
        frames[t, 8:16, 8 * (t % 4): 8 * (t % 4) + 8] = (1.0, 0.8, 0.1)
        kept[0, t] = True
        kept[0, t, 3, :] = False  # group 0 drops the bottom row
        kept[1, t] = kept[0, t]
        kept[1, t, 0, :] = False  # group 1 also drops the top row
    return frames, kept


# ----------------------------------------------------------------------------- pictures
def test_grid_png_is_written_and_not_blank(tmp_path):
    frames, kept = _scene()
    rng = np.random.default_rng(0)
    maps = {"interpreter": rng.random((4, 4, 4)), "attention": rng.random((4, 4, 4)),
            "rollout": np.full((4, 4, 4), 0.25), "gradcam": rng.random((4, 4, 4))}
    path = save_explanation_grid(str(tmp_path / "g.png"), frames, maps, kept, "clip — class: x; prediction: y",
                                 foreground=kept[1])
    assert os.path.getsize(path) > 20_000
    img = np.asarray(Image.open(path).convert("RGB"))
    assert img.shape[0] > 400 and img.shape[1] > 800
    assert img.reshape(-1, 3).std(0).max() > 20, "the PNG is (nearly) one colour"
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 200  # colour maps, frames and text


def test_kept_animation_dims_dropped_tokens(tmp_path):
    frames, kept = _scene()
    imgs = kept_frames(frames, kept, scale=2)
    assert imgs.shape[0] == 4 and imgs.dtype == np.uint8
    # top row dropped at group 1 (dimmed), bottom row dropped at group 0 (darker), middle kept (as is)
    mid = imgs[0, 2 * 16 + 4, 2 * 24 + 4]  # a kept background pixel, inside its patch border
    top = imgs[0, 4, 4]
    bottom = imgs[0, 2 * 24 + 4, 4]
    assert int(mid.sum()) > int(top.sum()) > int(bottom.sum())
    gif = save_kept_animation(str(tmp_path / "k.gif"), frames, kept)
    with Image.open(gif) as im:
        assert im.n_frames == 4
        first = np.asarray(im.convert("RGB"))
        im.seek(1)
        second = np.asarray(im.convert("RGB"))
    assert os.path.getsize(gif) > 5_000
    assert first.reshape(-1, 3).std(0).max() > 20
    assert not np.array_equal(first, second), "the square moves: frames must differ"
    mp4 = save_kept_animation(str(tmp_path / "k.mp4"), frames, kept)
    from video_iared.data.readers import build_reader

    r = build_reader(mp4, "pyav")
    assert r.num_frames == 4
    r.close()


# ----------------------------------------------------------------------------- geometry
def test_mask_goes_through_the_views_resize_and_crop():
    """A 40 x 60 video, test crop 32: short side 40 -> 32 (x0.8), width 60 -> 48, centre crop at x = 8.
    A mask block at rows 10..29, cols 30..49 maps to rows 8..23, cols 24..39 - 8 = 16..31 of the view,
    i.e. patches (1..2, 2..3) of the 4 x 4 grid."""
    mask = np.zeros((2, 40, 60), dtype=bool)
    mask[:, 10:30, 30:50] = True
    tf = TestTransform(32, 1, [0.0] * 3, [1.0] * 3)
    cov = mask_coverage(mask, tf).numpy()[0]  # (T, 32, 32)
    assert cov.shape == (2, 32, 32)
    assert cov[0, 16, 24] > 0.99 and cov[0, 4, 4] < 0.01 and cov[0, 16, 8] < 0.01
    fg = patch_foreground(cov, 8, 0.5)
    expected = np.zeros((4, 4), dtype=bool)
    expected[1:3, 2:4] = True
    assert np.array_equal(fg[0], expected) and np.array_equal(fg[1], expected)
    # the same transform on the frames themselves puts the bright block at the same place
    frames = np.repeat(mask[..., None].astype(np.uint8) * 255, 3, -1)
    view = TestTransform(32, 1, [0.0] * 3, [1.0] * 3)(frames)[0, 0].numpy()
    assert np.allclose(view, cov, atol=1 / 255 + 1e-6)
    assert upsample_map(fg.astype(float), 8).shape == (2, 32, 32)


def test_deletion_insertion_masks():
    scores = np.array([0.1, 0.9, 0.5, 0.7])
    m = curve_masks(scores, [0.0, 0.5, 1.0], np.random.default_rng(0))
    assert m.shape == (2, 3, 4)
    assert m[0, 0].all() and not m[0, 2].any()  # deletion: all -> none
    assert np.array_equal(m[0, 1], [True, False, True, False])  # the two best (0.9, 0.7) removed first
    assert np.array_equal(m[1, 1], ~m[0, 1])


def test_curves_on_a_model(tmp_path):
    from video_iared.pruning import IAREDTimeSformer

    torch.manual_seed(0)
    model = IAREDTimeSformer(groups=(1, 1), interp_heads=2, interp_head_dim=8, img_size=32, patch_size=8,
                             num_classes=3, embed_dim=32, depth=2, num_heads=2, num_frames=4).eval()
    clip = torch.randn(3, 4, 32, 32)
    maps = {"a": np.random.default_rng(1).random((4, 4, 4)), "b": np.zeros((4, 4, 4))}
    c = curve_scores(model, clip, 1, maps, [0.0, 0.5, 1.0])
    with torch.no_grad():
        full = model(clip[None], keep_masks=[torch.ones(1, 64, dtype=torch.bool)] * 2).softmax(-1)[0, 1]
        empty = model(clip[None], keep_masks=[torch.zeros(1, 64, dtype=torch.bool)] * 2).softmax(-1)[0, 1]
    for name in maps:
        assert c[name]["deletion_prob"][0] == pytest.approx(float(full), abs=1e-5)
        assert c[name]["insertion_prob"][-1] == pytest.approx(float(full), abs=1e-5)
        assert c[name]["deletion_prob"][-1] == pytest.approx(float(empty), abs=1e-5)
        assert set(np.unique(c[name]["deletion_acc"])) <= {0.0, 1.0}
    # half the tokens removed: different maps remove different halves
    assert c["a"]["deletion_prob"][1] != pytest.approx(c["b"]["deletion_prob"][1], abs=1e-7)


# ----------------------------------------------------------------------------- the tools end to end
@pytest.fixture(scope="module")
def trained(synthetic_dataset, tmp_path_factory):
    """The tiny dataset and a random-weight tiny IA-RED² checkpoint."""
    from video_iared.checkpoint.io import save_checkpoint
    from video_iared.config import load_config
    from video_iared.build import build_model

    root = tmp_path_factory.mktemp("interp")
    data = synthetic_dataset(root / "data")
    out = str(root / "out")
    opts = tiny_opts(data, out, ["IARED.GROUPS", "[1, 1]", "IARED.NUM_HEADS", "2", "IARED.HEAD_DIM", "8",
                                 "TEST.NUM_SPATIAL_CROPS", "1"])
    cfg = load_config(str(ROOT / "configs" / "synthetic.yaml"), opts)
    torch.manual_seed(0)
    model = build_model(cfg)
    for it in model.interpreters:
        torch.nn.init.normal_(it.qk.weight, std=0.5)
    # configs/synthetic.yaml sets IARED.TARGET_COST 0.5: the tools evaluate at the checkpoint's calibrated threshold
    calibration = {"threshold": 0.5, "target_cost": cfg.IARED.TARGET_COST, "cost_fraction": 0.5, "top1": 0.0,
                   "keep_rates": [0.5, 0.5], "clips": 1}
    ckpt = save_checkpoint(os.path.join(out, "random_iared.pyth"), model, epoch=0,
                           extra={"iared_calibration": calibration})
    return opts, ckpt, out


def test_eval_tool_writes_tables_and_plots(trained, capsys):
    opts, ckpt, out = trained
    tool = load_tool("eval_interpretability")
    rc = tool.main(["--cfg", str(ROOT / "configs" / "synthetic.yaml"), "--checkpoint", ckpt] + opts +
                   ["INTERP.MAX_VIDEOS", "3", "INTERP.CURVE_STEPS", "4"])
    text = capsys.readouterr().out
    assert rc == 0
    d = os.path.join(out, "interpretability")
    for name in ("interpretability.md", "interpretability.csv", "interpretability_per_video.csv",
                 "interpretability_curves.csv", "interpretability_bars.png", "interpretability_curves.png"):
        assert os.path.getsize(os.path.join(d, name)) > 100, name
    with open(os.path.join(d, "interpretability.csv")) as f:
        rows = {r["method"]: r for r in csv.DictReader(f)}
    assert set(rows) == {"interpreter", "interpreter_g0", "kept", "attention", "rollout", "gradcam", "chefer", "random"}
    for r in rows.values():
        assert r["auc_patch_n"] == "3"  # 3 videos
        assert 0.0 <= float(r["auc_patch_mean"]) <= 1.0
        assert 0.0 <= float(r["deletion_acc_mean"]) <= 1.0
    with open(os.path.join(d, "interpretability_per_video.csv")) as f:
        per_video = list(csv.DictReader(f))
    assert len(per_video) == 3 * 8 and {r["views"] for r in per_video} == {"2"}  # 2 clips x 1 crop
    assert "| interpreter |" in text and "| rollout |" in text and "AUC (patch)" in text


def test_visualize_tool_writes_pictures(trained, capsys):
    opts, ckpt, out = trained
    tool = load_tool("visualize")
    rc = tool.main(["--cfg", str(ROOT / "configs" / "synthetic.yaml"), "--checkpoint", ckpt, "--videos", "2",
                    "--out", os.path.join(out, "vis")] + opts)
    paths = capsys.readouterr().out.split()
    assert rc == 0
    pngs = [p for p in paths if p.endswith("_grid.png")]
    gifs = [p for p in paths if p.endswith("_kept.gif")]
    assert len(pngs) == 2 and len(gifs) == 2
    labels = {os.path.basename(p).split("_0")[0] for p in pngs}
    assert len(labels) == 2, "the videos drawn should come from different classes"
    for p in pngs + gifs:
        assert os.path.getsize(p) > 5_000
        img = np.asarray(Image.open(p).convert("RGB"))
        assert img.reshape(-1, 3).std(0).max() > 20


def test_tools_report_a_missing_checkpoint(trained, capsys):
    opts, _, _ = trained
    tool = load_tool("eval_interpretability")
    rc = tool.main(["--cfg", str(ROOT / "configs" / "synthetic.yaml"), "--checkpoint", "/nonexistent.pyth"] + opts)
    assert rc == 1 and "/nonexistent.pyth" in capsys.readouterr().err


def test_eval_tool_on_a_dense_model_skips_interpreter_maps(trained, tmp_path, capsys):
    """IARED.ENABLE False: the baselines are still compared; interpreter maps and curves are left out."""
    from video_iared.checkpoint.io import save_checkpoint
    from video_iared.config import load_config
    from video_iared.build import build_model

    opts, _, out = trained
    cfg = load_config(str(ROOT / "configs" / "synthetic_dense.yaml"), opts)
    ckpt = save_checkpoint(str(tmp_path / "dense.pyth"), build_model(cfg), epoch=0)
    tool = load_tool("eval_interpretability")
    rc = tool.main(["--cfg", str(ROOT / "configs" / "synthetic_dense.yaml"), "--checkpoint", ckpt, "--out",
                    str(tmp_path / "ev")] + opts + ["INTERP.MAX_VIDEOS", "2"])
    text = capsys.readouterr().out
    assert rc == 0
    assert "| rollout |" in text and "| interpreter |" not in text and "deletion" not in text
