"""Rasterising a drawn scene (scenes.py) into float frames and the target's mask.

Every object is rasterised on a SUPERSAMPLE x SUPERSAMPLE sub-pixel grid and composited with its pooled
coverage as alpha, back to front: background, grey distractors, class-like distractors, the target,
occluders. The target's *weight* in a pixel (its pooled coverage times (1 - alpha) of everything composited
over it) is exactly the share of that pixel's final colour that comes from the target; the mask is
``weight >= 0.5``. With nothing over the target, that is the pixels it covers at least half of.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import numpy as np

from .backgrounds import bilinear_grid
from .options import Camera, Occluder
from .shapes import inside_polygon, rotation

SUPERSAMPLE = 2  # sub-samples per pixel and axis
Box = Tuple[int, int, int, int]


def subsample_coords(n: int) -> np.ndarray:
    return (np.arange(n * SUPERSAMPLE) + 0.5) / SUPERSAMPLE


def pool(x: np.ndarray) -> np.ndarray:
    """Average SUPERSAMPLE x SUPERSAMPLE blocks: (h*S, w*S, ...) -> (h, w, ...)."""
    s = SUPERSAMPLE
    h, w = x.shape[0] // s, x.shape[1] // s
    return x.reshape(h, s, w, s, *x.shape[2:]).mean(axis=(1, 3))


def composite(frame: np.ndarray, cover: np.ndarray, paint: np.ndarray, y0: int, x0: int) -> np.ndarray:
    """Blend a supersampled patch (coverage (h*S, w*S), premultiplied colour (h*S, w*S, 3)) at pixel (y0, x0);
    returns the patch's alpha (h, w)."""
    alpha = pool(cover.astype(np.float32))
    color = pool(paint)
    h, w = alpha.shape
    region = frame[y0:y0 + h, x0:x0 + w]
    region *= 1.0 - alpha[..., None]
    region += color
    return alpha


def patch_box(cx: float, cy: float, r: float, h: int, w: int) -> Box:
    """Pixel box [y0, y1) x [x0, x1) covering a circle of radius r, clipped to the frame."""
    return (max(int(math.floor(cy - r)) - 1, 0), min(int(math.ceil(cy + r)) + 1, h),
            max(int(math.floor(cx - r)) - 1, 0), min(int(math.ceil(cx + r)) + 1, w))


def _subgrid(box: Box, sub_x: np.ndarray, sub_y: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    y0, y1, x0, x1 = box
    s = SUPERSAMPLE
    return np.meshgrid(sub_x[x0 * s:x1 * s], sub_y[y0 * s:y1 * s])


def _background(scene, i: int, h: int, w: int) -> np.ndarray:
    """Frame ``i``'s background (H, W, 3): the drifting texture seen through the camera."""
    app, cam = scene.app, scene.camera
    if cam.identity:
        ys = app.bg_pad + np.arange(h) + app.bg_velocity[1] * i
        xs = app.bg_pad + np.arange(w) + app.bg_velocity[0] * i
    else:  # texture index of the world point under each pixel centre
        ys = app.bg_pad + cam.centre[i, 1] + (np.arange(h) + 0.5 - cam.half[1]) / cam.zoom[i] - 0.5
        xs = app.bg_pad + cam.centre[i, 0] + (np.arange(w) + 0.5 - cam.half[0]) / cam.zoom[i] - 0.5
        ys, xs = ys + app.bg_velocity[1] * i, xs + app.bg_velocity[0] * i
    return bilinear_grid(app.background, ys, xs)


def _reflect(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Fold positions into [lo, hi] as a ball bouncing between two walls would."""
    span = max(hi - lo, 1e-6)
    y = np.mod(x - lo, 2 * span)
    return lo + np.where(y > span, 2 * span - y, y)


def _draw_grey(frame: np.ndarray, distractor: Tuple, cam: Camera, i: int, sub: Tuple) -> None:
    """One of the default scene's small grey discs / squares, bouncing inside the world frame."""
    h, w = frame.shape[:2]
    kind, rad, dcolor, p0, vel = distractor
    cx = float(_reflect(np.array(p0[0] + vel[0] * i), rad, w - rad))
    cy = float(_reflect(np.array(p0[1] + vel[1] * i), rad, h - rad))
    if not cam.identity:
        (cx, cy), rad = cam.point(np.array([cx, cy]), i), rad * cam.scale(i)
    box = patch_box(cx, cy, rad, h, w)
    if box[0] >= box[1] or box[2] >= box[3]:
        return
    px, py = _subgrid(box, *sub)
    px, py = px - cx, py - cy
    if kind == "disc":
        cover = px ** 2 + py ** 2 <= rad ** 2
    else:  # a square of the same area as the disc
        half = rad * math.sqrt(math.pi) / 2
        cover = (np.abs(px) <= half) & (np.abs(py) <= half)
    composite(frame, cover, cover[..., None] * dcolor, box[0], box[2])


def _draw_body(frame: np.ndarray, body, cam: Camera, i: int, sub: Tuple) -> Optional[Tuple[np.ndarray, Box]]:
    """Composite a polygon object (scenes.Body) in frame ``i``; returns (alpha, box), None when off-screen."""
    h, w = frame.shape[:2]
    cx, cy = centre = cam.point(body.centres[i], i)
    k = body.ks[i] * cam.scale(i)
    rot = rotation(body.angles[i])
    verts = (body.unit * k) @ rot.T + centre
    box = patch_box(cx, cy, k * body.r_unit, h, w)
    if box[0] >= box[1] or box[2] >= box[3]:
        return None
    px, py = _subgrid(box, *sub)
    cover = inside_polygon(verts, px, py)
    normal = rot @ np.array([math.cos(body.tone_dir), math.sin(body.tone_dir)])
    second = ((px - cx) * normal[0] + (py - cy) * normal[1]) > 0
    paint = cover[..., None] * np.where(second[..., None], body.color2, body.color)
    return composite(frame, cover, paint.astype(np.float32), box[0], box[2]), box


def _draw_occluder(frame: np.ndarray, occ: Occluder, i: int, sub: Tuple) -> Optional[Tuple[np.ndarray, Box]]:
    h, w = frame.shape[:2]
    cx, cy = occ.verts[i].mean(0)
    box = patch_box(cx, cy, occ.radius, h, w)
    if box[0] >= box[1] or box[2] >= box[3]:
        return None
    px, py = _subgrid(box, *sub)
    cover = inside_polygon(occ.verts[i], px, py)
    return composite(frame, cover, (cover[..., None] * occ.color).astype(np.float32), box[0], box[2]), box


def render_scene(scene, t: int, h: int, w: int) -> Tuple[np.ndarray, np.ndarray]:
    """Frames float32 (T, H, W, 3) in [0, 1] and the target's mask bool (T, H, W) of a scenes.Scene."""
    frames = np.empty((t, h, w, 3), np.float32)
    mask = np.zeros((t, h, w), bool)
    sub = (subsample_coords(w), subsample_coords(h))
    for i in range(t):
        frame = _background(scene, i, h, w)
        for distractor in scene.app.distractors:
            _draw_grey(frame, distractor, scene.camera, i, sub)
        for body in scene.bodies:
            _draw_body(frame, body, scene.camera, i, sub)
        weight = np.zeros((h, w), np.float32)  # the target's share of each pixel's final colour
        drawn = _draw_body(frame, scene.target, scene.camera, i, sub)
        if drawn is not None:
            alpha, (y0, y1, x0, x1) = drawn
            weight[y0:y1, x0:x1] = alpha
        for occ in scene.occluders:
            drawn = _draw_occluder(frame, occ, i, sub)
            if drawn is not None:
                alpha, (y0, y1, x0, x1) = drawn
                weight[y0:y1, x0:x1] *= 1.0 - alpha
        mask[i] = weight >= 0.5
        frames[i] = frame
    return frames, mask
