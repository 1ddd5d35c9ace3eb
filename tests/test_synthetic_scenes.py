"""The harder-scene options of the synthetic generator: defaults unchanged bit for bit, exact target masks."""
import dataclasses
import hashlib
import io
import json
import os

import numpy as np
import pytest

from video_iared.config import ConfigError, get_cfg, validate_config
from video_iared.synthetic import (
    MOTION_CLASSES,
    SceneOptions,
    build_scene,
    ensure_synthetic_dataset,
    generate_synthetic,
    load_mask,
    read_meta,
    render_video,
)
from video_iared.synthetic.render import render_scene

MOTIONS = tuple(c.motion for c in MOTION_CLASSES[:8])
T, H, W = 8, 32, 32
ENTROPY = (0, 2, 0, 3)
ALL = SceneOptions(distractors=(2, 4), motions=MOTIONS, camera_pan=0.3, camera_zoom=0.3, occluders=1,
                   background="textured")

# Computed once by running main's generator (commit 315da5b, before the scene options existed) on the same
# calls; the new code must reproduce them bit for bit (the demo's figures depend on it).
RENDER_SHA = "2312c3c1d117b77de823361a9d0636e3302c892d2b7668a4ae9bd31d6dd12597"
FILES_SHA = {"kinetics": "5673d79c53fe5c097ba82acb15dd9c4a81d8a335439b6421ca14ce37dcd78be7",
             "ssv2": "d210188cdf1c8f754e8f9fa0f8f9e9c87d175f51579b55d8eaccf51bb21ad209"}


def test_default_scene_renders_as_before_the_options_existed():
    h = hashlib.sha256()
    for label, (t, hh, ww) in enumerate([(6, 32, 32), (5, 40, 56), (4, 64, 64)] * 4):
        f, m, info = render_video((7, label % 3, label, 1), MOTION_CLASSES[label].motion, t, hh, ww)
        h.update(f.tobytes())
        h.update(m.tobytes())
        h.update(repr(np.round(info["centroid"], 9).tolist()).encode())
    assert h.hexdigest() == RENDER_SHA


@pytest.mark.parametrize("fmt", ["kinetics", "ssv2"])
def test_default_dataset_masks_lists_and_meta_are_as_before(tmp_path, fmt):
    d = str(tmp_path / fmt)
    generate_synthetic(d, num_classes=3, videos_per_class=(2, 1, 1), num_frames=6, size=(32, 48), fps=8, seed=4,
                       fmt=fmt)
    g = hashlib.sha256()  # every file but the encoded videos (their bytes depend on the encoder's version)
    for dp, _, fs in sorted(os.walk(d)):
        for fn in sorted(fs):
            p = os.path.join(dp, fn)
            rel = os.path.relpath(p, d)
            data = open(p, "rb").read()
            if fn == "meta.json":
                meta = json.loads(data)
                meta["summary"].pop("video_bytes")
                data = json.dumps(meta, sort_keys=True).encode()
            if rel.startswith("masks"):  # packed .npz now: hashed as the bool .npy it was, so the content is checked
                buf = io.BytesIO()
                np.save(buf, load_mask(d, fn))
                rel, data = rel[:-len(".npz")] + ".npy", buf.getvalue()
            if not rel.startswith("videos"):
                g.update(rel.encode() + data)
    assert g.hexdigest() == FILES_SHA[fmt]


def _recolour(scene, value: float):
    target = dataclasses.replace(scene.target, color=np.full(3, value, np.float32),
                                 color2=np.full(3, value, np.float32))
    return dataclasses.replace(scene, target=target)


def _target_share(scene) -> np.ndarray:
    """(T, H, W) share of each rendered pixel's colour that the target contributes: the frames with the target
    painted 1 minus those with it painted 0 (compositing is linear in the target's colour)."""
    ones, _ = render_scene(_recolour(scene, 1.0), T, H, W)
    zeros, _ = render_scene(_recolour(scene, 0.0), T, H, W)
    share = ones - zeros
    assert np.allclose(share, share[..., :1], atol=1e-5)  # the same in every channel
    return share[..., 0]


def _assert_mask_is_the_visible_target(scene) -> np.ndarray:
    _, mask = render_scene(scene, T, H, W)
    share = _target_share(scene)
    # shares are multiples of 1/16 (2x2 supersampling, products of quarter alphas): 1e-3 only absorbs rounding
    assert np.array_equal(mask, share > 0.5 - 1e-3)
    assert mask.any(axis=(1, 2)).all()  # the target is visible in every frame
    return mask


def _mask(options, entropy=ENTROPY, motion="move_left"):
    return render_video(entropy, motion, T, H, W, options)[1]


def test_distractors_move_like_classes_and_leave_the_target_mask_exact():
    scene = build_scene(ENTROPY, "move_left", T, H, W, SceneOptions(distractors=(2, 4), motions=MOTIONS))
    assert 2 <= len(scene.bodies) <= 4
    moved = [np.abs(np.diff(b.centres, axis=0)).sum() + np.abs(np.diff(b.angles)).sum() + np.ptp(b.ks)
             for b in scene.bodies]
    assert max(moved) > 1.0  # at least one distractor moves
    assert all((b.color == b.color2).all() for b in scene.bodies) and not (scene.target.color == scene.target.color2).all()
    mask = _assert_mask_is_the_visible_target(scene)
    assert np.array_equal(mask, _mask(None))  # drawn below the target: its mask is that of the target alone
    frames = render_scene(scene, T, H, W)[0]
    assert not np.array_equal(frames, render_scene(build_scene(ENTROPY, "move_left", T, H, W), T, H, W)[0])


def test_camera_pan_and_zoom_move_the_view_and_the_mask_stays_exact():
    for opts in (SceneOptions(camera_pan=0.4), SceneOptions(camera_zoom=0.5), SceneOptions(camera_pan=0.3,
                                                                                           camera_zoom=0.3)):
        scene = build_scene(ENTROPY, "still", T, H, W, opts)
        assert not scene.camera.identity
        mask = _assert_mask_is_the_visible_target(scene)
        still = _mask(None, motion="still")
        assert (still == still[:1]).all() and not (mask == mask[:1]).all()  # a still object moves on screen
        # and it moves as the camera says: area by zoom^2, centroid against the pan (the world stays put)
        cam, area = scene.camera, mask.sum((1, 2))
        assert area[-1] / area[0] == pytest.approx((cam.zoom[-1] / cam.zoom[0]) ** 2, rel=0.15)
        ys, xs = np.mgrid[0:H, 0:W] + 0.5
        centroid = np.stack([(mask * xs).sum((1, 2)), (mask * ys).sum((1, 2))], 1) / area[:, None]
        expected = cam.zoom[:, None] * (scene.target.centres - cam.centre) + cam.half
        assert np.abs(centroid - expected).max() < 1.0


def test_occluders_hide_part_of_the_target_and_the_mask_excludes_it():
    hidden = 0
    for k in range(4):
        entropy = (0, 2, 0, k)
        scene = build_scene(entropy, "move_left", T, H, W, SceneOptions(occluders=1))
        assert len(scene.occluders) == 1
        mask = _assert_mask_is_the_visible_target(scene)
        alone = _mask(None, entropy)
        assert not (mask & ~alone).any()  # occlusion only removes target pixels
        hidden += int((alone & ~mask).sum())
    assert hidden > 0


def test_textured_backgrounds_have_more_contrast_and_leave_the_target_mask_exact():
    def contrast(scene):  # spread of 4x4-block means (grain averaged out) of the whole padded texture
        bg = scene.app.background
        hh, ww = bg.shape[0] // 4 * 4, bg.shape[1] // 4 * 4
        return float(bg[:hh, :ww].reshape(hh // 4, 4, ww // 4, 4, 3).mean((1, 3)).std())

    ratios = []
    for k in range(6):
        entropy = (0, 2, 0, k)
        scene = build_scene(entropy, "grow", T, H, W, SceneOptions(background="textured"))
        assert np.array_equal(_assert_mask_is_the_visible_target(scene), _mask(None, entropy, "grow"))
        ratios.append(contrast(scene) / contrast(build_scene(entropy, "grow", T, H, W)))
    assert np.median(ratios) > 1.5


def test_smaller_distractors_and_a_dark_tone_change_only_what_they_say_and_the_mask_stays_exact():
    base = SceneOptions(distractors=(3, 3), motions=MOTIONS)
    small = dataclasses.replace(base, distractor_scale=0.6)
    dark = dataclasses.replace(base, target_tone="dark")
    s0, s1, s2 = (build_scene(ENTROPY, "move_up", T, H, W, o) for o in (base, small, dark))
    for b0, b1 in zip(s0.bodies, s1.bodies):  # same draws, sizes scaled: area by 0.36
        assert np.allclose(b1.ks, 0.6 * b0.ks) and np.array_equal(b1.centres - b1.centres[:1], b0.centres - b0.centres[:1])
        assert (b1.color == b0.color).all() and b1.angles[0] == b0.angles[0]
    assert np.array_equal(s1.target.centres, s0.target.centres)
    assert np.allclose(s2.target.color2, 0.25 * s0.target.color) and (s2.target.color == s0.target.color).all()
    assert np.array_equal(s2.target.centres, s0.target.centres) and len(s2.bodies) == len(s0.bodies)
    for scene in (s1, s2):
        assert np.array_equal(_assert_mask_is_the_visible_target(scene), _mask(None, motion="move_up"))
    # both tones show in the rendered frames: some target pixels near its colour, some near the dark tone
    frames, mask = render_scene(s2, T, H, W)
    lum, main = frames.mean(-1)[mask], float(s2.target.color.mean())
    assert lum.min() < 0.35 * main and lum.max() > 0.7 * main


def test_everything_together_keeps_the_mask_exact():
    for k, motion in enumerate(MOTIONS[:4]):
        _assert_mask_is_the_visible_target(build_scene((1, 0, k, k), motion, T, H, W, ALL))


def test_scene_options_reach_meta_and_ensure_regenerates_on_change(tmp_path):
    d = str(tmp_path / "bench")
    generate_synthetic(d, num_classes=2, videos_per_class=(1, 0, 1), num_frames=4, size=(32, 32),
                       distractors=(2, 2), occluders=1, background="textured")
    assert read_meta(d)["scene"] == {"distractors": [2, 2], "camera_pan": 0.0, "camera_zoom": 0.0, "occluders": 1,
                                     "background": "textured", "distractor_scale": 1.0, "target_tone": "pastel"}
    cfg = get_cfg()
    cfg.SYNTHETIC.ENABLE = True
    cfg.SYNTHETIC.NUM_CLASSES = cfg.MODEL.NUM_CLASSES = 2
    cfg.SYNTHETIC.VIDEOS_PER_CLASS, cfg.SYNTHETIC.NUM_FRAMES, cfg.SYNTHETIC.SIZE = [1, 0, 1], 4, [32, 32]
    cfg.DATA.PATH_TO_DATA_DIR = cfg.DATA.PATH_PREFIX = d
    ensure_synthetic_dataset(cfg, workers=1)  # default scene asked for: the dataset is regenerated
    assert "scene" not in read_meta(d)
    cfg.SYNTHETIC.CAMERA_PAN = 0.2
    ensure_synthetic_dataset(cfg, workers=1)
    assert read_meta(d)["scene"]["camera_pan"] == 0.2
    stamp = os.path.getmtime(os.path.join(d, "meta.json"))
    ensure_synthetic_dataset(cfg, workers=1)  # up to date: left alone
    assert os.path.getmtime(os.path.join(d, "meta.json")) == stamp


@pytest.mark.parametrize("key,value", [("DISTRACTORS", [3, 2]), ("DISTRACTORS", [0, 7]), ("CAMERA_PAN", -0.1),
                                       ("CAMERA_ZOOM", 1.5), ("OCCLUDERS", 4), ("BACKGROUND", "photo"),
                                       ("DISTRACTOR_SCALE", 0.0), ("DISTRACTOR_SCALE", 1.5), ("TARGET_TONE", "neon")])
def test_bad_scene_keys_are_named(key, value):
    cfg = get_cfg()
    cfg.SYNTHETIC.ENABLE = True
    cfg.DATA.PATH_TO_DATA_DIR = "data/x"
    cfg.SYNTHETIC.NUM_CLASSES = cfg.MODEL.NUM_CLASSES
    cfg.SYNTHETIC[key] = value
    with pytest.raises(ConfigError, match=f"SYNTHETIC.{key}"):
        validate_config(cfg)
    with pytest.raises(ValueError, match="synthetic benchmark"):
        generate_synthetic("/nonexistent/x", **{key.lower(): value})


def test_bench_config_asks_for_the_harder_scenes():
    from video_iared.config import load_config

    cfg = load_config("configs/synthetic_bench.yaml")
    s = cfg.SYNTHETIC
    assert min(s.SIZE) >= 112 and s.NUM_CLASSES * s.VIDEOS_PER_CLASS[2] >= 2000
    assert list(s.DISTRACTORS) == [2, 4] and s.CAMERA_PAN > 0 and s.CAMERA_ZOOM > 0 and s.OCCLUDERS >= 1
    assert s.BACKGROUND == "textured" and cfg.DATA.PATH_TO_DATA_DIR == "data/synthetic_bench"
    assert cfg.OUTPUT_DIR == "output/synthetic_bench"
