"""Drawing one synthetic video: a drifting textured background, 1-3 grey distractors, one target object.

Only the target object's motion depends on the class. Its shape, colours, size, orientation and start
position, the background and the distractors are drawn from one random stream (``appearance``) whose
distribution is the same for every class; the motion is drawn from a second stream; the harder-scene
options (options.py) draw from a third, one sub-stream each. Everything is rendered in float with 2x2
supersampling (sub-pixel motion, anti-aliased edges, render.py); the mask is the set of pixels whose
final colour is at least half the target's.

Screen coordinates: x to the right, y *down*, pixel (row i, col j) has its centre at (j + 0.5, i + 0.5).
With y down, an increasing angle turns clockwise on screen.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .backgrounds import smooth_background, textured_background
from .motions import draw_motion
from .options import DARK_TONE, Camera, Occluder, SceneOptions, draw_camera, draw_occluders, still_camera
from .render import render_scene
from .shapes import SHAPES, hsv, hue_name, unit_shape

AREA_RANGE = (0.08, 0.14)  # object area at mid-video, fraction of the frame (log-uniform)
MAX_RADIUS = 0.27  # object bounding radius cap, fraction of min(H, W), for every class alike


@dataclass
class Appearance:
    """Everything about a video that is *not* its class (same distribution for every class)."""

    shape: str
    unit: np.ndarray  # (n, 2) unit-area polygon
    color: np.ndarray  # (3,) main colour, RGB in [0, 1]
    color2: np.ndarray  # (3,) second tone, painted on one side of a line through the centre
    tone_dir: float  # direction (object frame) of the two-tone split line's normal
    name: str  # e.g. "red arrow", the SSv2 placeholder
    area_frac: float  # area at mid-video, fraction of the frame
    angle0: float  # initial orientation (radians)
    start_u: np.ndarray  # (2,) uniform numbers picking the start position inside the feasible box
    background: np.ndarray  # (Hp, Wp, 3) padded texture
    bg_pad: int
    bg_velocity: np.ndarray  # (2,) pixels per frame (x, y)
    distractors: List[Tuple[str, float, np.ndarray, np.ndarray, np.ndarray]]  # kind, radius, colour, p0, v


def _draw_appearance(rng: np.random.Generator, t: int, h: int, w: int, extra_pad: int = 0) -> Appearance:
    scale = min(h, w) / 64.0
    shape = str(rng.choice(sorted(SHAPES)))
    unit = unit_shape(shape, rng, mirror=bool(rng.integers(2)))
    hue = rng.uniform()
    color = hsv(hue, rng.uniform(0.75, 1.0), rng.uniform(0.85, 1.0))
    color2 = 0.6 * color + 0.4  # a pastel of the same hue: both tones stay bright and coloured against the background
    area_frac = math.exp(rng.uniform(math.log(AREA_RANGE[0]), math.log(AREA_RANGE[1])))
    angle0 = rng.uniform(0, 2 * np.pi)
    tone_dir = rng.uniform(0, 2 * np.pi)
    start_u = rng.uniform(0, 1, 2)
    background, pad, velocity = smooth_background(rng, t, h, w, extra_pad)

    # Distractors: small, unsaturated (dark or light grey-ish) discs / squares bouncing in random directions.
    distractors = []
    for _ in range(int(rng.integers(1, 4))):
        kind = "disc" if rng.integers(2) else "square"
        radius = rng.uniform(0.04, 0.07) * min(h, w)
        value = rng.uniform(0.08, 0.22) if rng.integers(2) else rng.uniform(0.75, 0.92)
        dcolor = hsv(rng.uniform(), rng.uniform(0.0, 0.15), value)
        p0 = np.array([rng.uniform(radius, w - radius), rng.uniform(radius, h - radius)])
        dspeed = rng.uniform(0.2, 0.6) * scale  # slower than the foreground: motion is the class signal
        dhead = rng.uniform(0, 2 * np.pi)
        distractors.append((kind, radius, dcolor, p0, dspeed * np.array([math.cos(dhead), math.sin(dhead)])))
    return Appearance(shape, unit, color, color2.astype(np.float32), tone_dir, f"{hue_name(hue)} {shape}",
                      area_frac, angle0, start_u, background, pad, velocity, distractors)


@dataclass
class Body:
    """A polygon object over a video, in world coordinates (the target or a class-like distractor)."""

    unit: np.ndarray  # (n, 2) unit-area polygon
    ks: np.ndarray  # (T,) linear scale per frame (area ks^2)
    r_unit: float  # bounding radius of ``unit``
    centres: np.ndarray  # (T, 2) x, y
    angles: np.ndarray  # (T,) orientation
    color: np.ndarray  # (3,) main tone
    color2: np.ndarray  # (3,) second tone (= color for a single-tone object)
    tone_dir: float  # normal of the two-tone split line, object frame


def _start(radii: np.ndarray, offset: np.ndarray, u: np.ndarray, h: int, w: int, cam: Camera) -> np.ndarray:
    """Start position, uniform (``u``) in the box that keeps the whole on-screen trajectory inside the frame
    (1 px margin); the middle of the box when there is none."""
    if cam.identity:
        lo = np.max(radii[:, None] + 1.0 - offset, axis=0)
        hi = np.min(np.array([w, h])[None] - radii[:, None] - 1.0 - offset, axis=0)
    else:  # screen = zoom * (start + offset - centre) + half must stay within [m, size - m]
        z = cam.zoom[:, None]
        m = radii[:, None] * z + 1.0
        lo = np.max((m - cam.half) / z + cam.centre - offset, axis=0)
        hi = np.min((np.array([w, h])[None] - m - cam.half) / z + cam.centre - offset, axis=0)
    return np.where(hi >= lo, lo + u * (hi - lo), (lo + hi) / 2)


def _make_body(unit: np.ndarray, area_frac: float, angle0: float, start_u: np.ndarray, motion: Tuple,
               colors: Tuple[np.ndarray, np.ndarray, float], h: int, w: int, cam: Camera,
               size_factor: float = 1.0) -> Body:
    """Size, place and move an object: ``motion`` is draw_motion's (offset, turn, scale); ``size_factor``
    scales its linear size after the cap (class-like distractors: SceneOptions.distractor_scale)."""
    offset, turn, scale = motion
    # Size: the unit polygon has area 1, so a factor k gives area k^2; the bounding radius is capped
    # the same way for every class, so that size says nothing about the class.
    r_unit = float(np.linalg.norm(unit, axis=1).max())
    k = min(math.sqrt(area_frac * h * w), MAX_RADIUS * float(min(h, w)) / r_unit) * size_factor
    ks = k * scale
    start = _start(ks * r_unit, offset, start_u, h, w, cam)
    return Body(unit, ks, r_unit, start[None] + offset, angle0 + turn, *colors)


def _draw_bodies(rng: np.random.Generator, options: SceneOptions, t: int, h: int, w: int) -> List[Body]:
    """The class-like distractors: drawn as the target is, single-tone, moving with one of ``options.motions``."""
    lo, hi = options.distractors
    bodies = []
    for _ in range(int(rng.integers(lo, hi + 1))):
        shape = str(rng.choice(sorted(SHAPES)))
        unit = unit_shape(shape, rng, mirror=bool(rng.integers(2)))
        color = hsv(rng.uniform(), rng.uniform(0.75, 1.0), rng.uniform(0.85, 1.0))
        area_frac = math.exp(rng.uniform(math.log(AREA_RANGE[0]), math.log(AREA_RANGE[1])))
        angle0, start_u = rng.uniform(0, 2 * np.pi), rng.uniform(0, 1, 2)
        motion = draw_motion(options.motions[int(rng.integers(len(options.motions)))], rng, t, float(min(h, w)))
        bodies.append(_make_body(unit, area_frac, angle0, start_u, motion, (color, color, 0.0), h, w,
                                 still_camera(t, h, w), options.distractor_scale))  # world frame, seen by the camera
    return bodies


@dataclass
class Scene:
    """Everything drawn for one video, ready for render.render_scene."""

    app: Appearance
    camera: Camera
    target: Body
    bodies: List[Body]  # class-like distractors, below the target
    occluders: List[Occluder]  # in front of everything


def build_scene(entropy: Sequence[int], motion: str, t: int, h: int, w: int,
                options: Optional[SceneOptions] = None) -> Scene:
    """Draw (not render) the video of ``entropy`` whose target moves with ``motion``."""
    options = options or SceneOptions()
    options.check()
    app_seq, motion_seq, scene_seq = np.random.SeedSequence(list(entropy)).spawn(3)  # first two as before
    cam_seq, body_seq, occ_seq, bg_seq = scene_seq.spawn(4)
    length = float(min(h, w))
    cam = still_camera(t, h, w)
    if options.camera_pan or options.camera_zoom:
        cam = draw_camera(np.random.default_rng(cam_seq), t, h, w, options.camera_pan, options.camera_zoom)
    app = _draw_appearance(np.random.default_rng(app_seq), t, h, w, cam.extent())
    if options.target_tone == "dark":  # no draw: every stream is the same as with the pastel tone
        app.color2 = (DARK_TONE * app.color).astype(np.float32)
    if options.background == "textured":
        hp, wp = app.background.shape[:2]
        app.background = textured_background(np.random.default_rng(bg_seq), hp, wp, length)
    moves = draw_motion(motion, np.random.default_rng(motion_seq), t, length)
    target = _make_body(app.unit, app.area_frac, app.angle0, app.start_u, moves,
                        (app.color, app.color2, app.tone_dir), h, w, cam)
    bodies = _draw_bodies(np.random.default_rng(body_seq), options, t, h, w) if options.distractors[1] else []
    occluders = []
    if options.occluders:
        on_screen = np.stack([cam.point(target.centres[i], i) for i in range(t)])
        occluders = draw_occluders(np.random.default_rng(occ_seq), options.occluders, on_screen, length)
    return Scene(app, cam, target, bodies, occluders)


def render_video(entropy: Sequence[int], motion: str, num_frames: int, height: int, width: int,
                 options: Optional[SceneOptions] = None) -> Tuple[np.ndarray, np.ndarray, Dict]:
    """Render one video of the class whose motion kind is ``motion``.

    ``entropy`` (e.g. (seed, split, label, index)) seeds everything, so a video depends on nothing else
    (and on ``options``, the harder-scene options; None = the default scene).
    Returns frames uint8 (T, H, W, 3) RGB, the target's mask bool (T, H, W) and an info dict
    (``object`` name for SSv2 placeholders, ``shape``, per-frame ``coverage`` (T,) and ``centroid`` (T, 2) x, y).
    """
    t, h, w = num_frames, height, width
    scene = build_scene(entropy, motion, t, h, w, options)
    frames, mask = render_scene(scene, t, h, w)
    coverage = mask.reshape(t, -1).mean(1)
    yy, xx = np.mgrid[0:h, 0:w]
    counts = np.maximum(mask.reshape(t, -1).sum(1), 1)
    centroid = np.stack([(mask * (xx + 0.5)).reshape(t, -1).sum(1) / counts,
                         (mask * (yy + 0.5)).reshape(t, -1).sum(1) / counts], 1)
    out = np.clip(np.rint(frames * 255.0), 0, 255).astype(np.uint8)
    info = {"object": scene.app.name, "shape": scene.app.shape, "coverage": coverage, "centroid": centroid,
            "color": (scene.app.color * 255).round().astype(int).tolist()}
    return out, mask, info
