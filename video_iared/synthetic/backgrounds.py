"""The backgrounds of the synthetic benchmark, generated procedurally (no image files, so no licence issue).

``smooth_background`` is the default scene's muted two-colour texture (three octaves of smooth noise plus
grain, drifting slowly). ``textured_background`` (scene option ``background="textured"``) is busier: two
procedural patterns — value noise, oriented stripes, a rotated checkerboard or Voronoi cells — one coarse
(1.5-4 features per frame) and one fine (6-20 per frame), mapped through a three-colour palette.
Both are (Hp, Wp, 3) float32 RGB in [0, 1], padded by ``pad`` pixels on every side for drift and camera.
"""
from __future__ import annotations

import math
from typing import Callable, Dict, Tuple

import numpy as np

from .shapes import hsv

BG_DRIFT = 0.25  # background drift speed limit in pixels per frame (at 64 px; scales with the frame)


def bilinear_grid(img: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Sample ``img`` (h, w, ...) at the grid ``ys`` x ``xs`` (pixel-index coordinates) -> (len(ys), len(xs), ...)."""
    h, w = img.shape[:2]
    y0 = np.clip(np.floor(ys).astype(np.int64), 0, h - 2)
    x0 = np.clip(np.floor(xs).astype(np.int64), 0, w - 2)
    fy = np.clip(ys - y0, 0.0, 1.0).astype(np.float32)
    fx = np.clip(xs - x0, 0.0, 1.0).astype(np.float32)
    extra = (1,) * (img.ndim - 2)
    rows = img[y0] * (1 - fy).reshape(-1, 1, *extra) + img[y0 + 1] * fy.reshape(-1, 1, *extra)
    return rows[:, x0] * (1 - fx).reshape(1, -1, *extra) + rows[:, x0 + 1] * fx.reshape(1, -1, *extra)


def smooth_background(rng: np.random.Generator, t: int, h: int, w: int, extra_pad: int = 0
                      ) -> Tuple[np.ndarray, int, np.ndarray]:
    """The default background: (texture (Hp, Wp, 3), pad, drift velocity (2,) x, y in pixels per frame).

    ``extra_pad`` widens the texture for a moving camera (it then differs from the ``extra_pad=0`` one).
    """
    scale = min(h, w) / 64.0
    speed = rng.uniform(0, BG_DRIFT) * scale
    heading = rng.uniform(0, 2 * np.pi)
    velocity = speed * np.array([math.cos(heading), math.sin(heading)])
    pad = int(math.ceil(BG_DRIFT * scale * t)) + 2 + extra_pad
    hp, wp = h + 2 * pad, w + 2 * pad
    field = np.zeros((hp, wp), np.float32)
    for cells, weight in ((4, 1.0), (8, 0.5), (16, 0.25)):
        grid = rng.uniform(0, 1, (cells + 1, cells + 1)).astype(np.float32)
        field += weight * bilinear_grid(grid, np.linspace(0, cells, hp), np.linspace(0, cells, wp))
    field = (field - field.min()) / max(float(field.max() - field.min()), 1e-6)
    bg_hue = rng.uniform()
    c1 = hsv(bg_hue, rng.uniform(0.1, 0.25), rng.uniform(0.3, 0.45))
    c2 = hsv(bg_hue + rng.uniform(-0.1, 0.1), rng.uniform(0.1, 0.25), rng.uniform(0.5, 0.65))
    grain = rng.normal(0, 0.025, (hp, wp, 1)).astype(np.float32)
    background = np.clip(c1 + (c2 - c1) * field[..., None] + grain, 0, 1).astype(np.float32)
    return background, pad, velocity


# ----------------------------------------------------------------------------- procedural patterns
# Each maps (rng, X, Y, features) -> a field in [0, 1] of X's shape; X, Y are pixel coordinates divided by
# the frame's shorter side, so ``features`` is the number of pattern periods (or cells) per frame.
def _noise(rng: np.random.Generator, x: np.ndarray, y: np.ndarray, features: float) -> np.ndarray:
    out = np.zeros(x.shape, np.float32)
    for octave in range(3):  # value noise: this scale and two finer octaves at half the weight each
        f = features * 2 ** octave
        ny, nx = int(math.ceil(f * y.max())) + 2, int(math.ceil(f * x.max())) + 2
        grid = rng.uniform(0, 1, (ny, nx)).astype(np.float32)
        out += 0.5 ** octave * bilinear_grid(grid, f * y[:, 0], f * x[0])
    return out / 1.75


def _stripes(rng: np.random.Generator, x: np.ndarray, y: np.ndarray, features: float) -> np.ndarray:
    theta = rng.uniform(0, np.pi)
    warp = rng.uniform(0.0, 1.5) * _noise(rng, x, y, features / 3)
    return 0.5 + 0.5 * np.sin(2 * np.pi * features * (x * math.cos(theta) + y * math.sin(theta)) + 2 * np.pi * warp)


def _checker(rng: np.random.Generator, x: np.ndarray, y: np.ndarray, features: float) -> np.ndarray:
    theta = rng.uniform(0, np.pi / 2)
    u = x * math.cos(theta) + y * math.sin(theta)
    v = -x * math.sin(theta) + y * math.cos(theta)
    return 0.5 + 0.5 * np.tanh(4.0 * np.sin(np.pi * features * u) * np.sin(np.pi * features * v))


def _cells(rng: np.random.Generator, x: np.ndarray, y: np.ndarray, features: float) -> np.ndarray:
    gx, gy = x * features, y * features  # Worley noise: one jittered seed per unit cell, nearest of the 3x3
    ix, iy = np.floor(gx).astype(np.int64), np.floor(gy).astype(np.int64)
    jitter = rng.uniform(0, 1, (int(iy.max()) + 3, int(ix.max()) + 3, 2))
    dist = np.full(x.shape, np.inf)
    for di in (-1, 0, 1):
        for dj in (-1, 0, 1):
            cy, cx = iy + di, ix + dj
            seed = jitter[cy + 1, cx + 1]
            dist = np.minimum(dist, np.hypot(gx - cx - seed[..., 0], gy - cy - seed[..., 1]))
    return np.clip(dist, 0.0, 1.0).astype(np.float32)


PATTERNS: Dict[str, Callable[..., np.ndarray]] = {"noise": _noise, "stripes": _stripes, "checker": _checker,
                                                  "cells": _cells}
COARSE_FEATURES = (1.5, 4.0)  # pattern periods per frame of the coarse layer (log-uniform)
FINE_FEATURES = (6.0, 20.0)  # ... and of the fine layer


def textured_background(rng: np.random.Generator, hp: int, wp: int, length: float) -> np.ndarray:
    """A busy procedural background (Hp, Wp, 3) float32: a coarse and a fine pattern, a three-colour palette."""
    x, y = np.meshgrid(np.arange(wp, dtype=np.float32) / length, np.arange(hp, dtype=np.float32) / length)
    names = sorted(PATTERNS)
    layers = []
    for lo, hi in (COARSE_FEATURES, FINE_FEATURES):
        features = math.exp(rng.uniform(math.log(lo), math.log(hi)))
        layers.append(PATTERNS[str(rng.choice(names))](rng, x, y, features))
    mix = rng.uniform(0.25, 0.5)  # weight of the fine layer
    field = (1 - mix) * layers[0] + mix * layers[1]
    field = (field - field.min()) / max(float(field.max() - field.min()), 1e-6)
    hue = rng.uniform()
    palette = [hsv(hue + rng.uniform(-0.25, 0.25), rng.uniform(0.15, 0.55), rng.uniform(lo, hi))
               for lo, hi in ((0.2, 0.4), (0.4, 0.6), (0.6, 0.8))]
    f = field[..., None]
    low = palette[0] + (palette[1] - palette[0]) * np.clip(2 * f, 0, 1)
    rgb = low + (palette[2] - palette[1]) * np.clip(2 * f - 1, 0, 1)
    grain = rng.normal(0, 0.02, (hp, wp, 1)).astype(np.float32)
    return np.clip(rgb + grain, 0, 1).astype(np.float32)
