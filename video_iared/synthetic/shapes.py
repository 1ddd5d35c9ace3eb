"""The polygons and colours of the synthetic benchmark's objects (the target and the class-like distractors).

Unit shapes have area 1 and are centred on their centroid; ``inside_polygon`` rasterises them. Screen
coordinates as in scenes.py: x to the right, y down.
"""
from __future__ import annotations

import colorsys
import math
from typing import Callable, Dict, Sequence, Tuple

import numpy as np


def hsv(h: float, s: float, v: float) -> np.ndarray:
    """An RGB colour (3,) float32 in [0, 1] from hue (wrapped), saturation and value."""
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), dtype=np.float32)


_HUE_NAMES = [(15, "red"), (45, "orange"), (70, "yellow"), (160, "green"), (200, "cyan"), (255, "blue"),
              (290, "purple"), (345, "pink"), (361, "red")]


def hue_name(hue: float) -> str:
    """The colour word of a hue in [0, 1) ("red", "green", ...), used in SSv2 placeholders."""
    deg = (hue % 1.0) * 360.0
    return next(name for limit, name in _HUE_NAMES if deg < limit)


def _polygon_area_centroid(v: np.ndarray) -> Tuple[float, np.ndarray]:
    x, y = v[:, 0], v[:, 1]
    xn, yn = np.roll(x, -1), np.roll(y, -1)
    cross = x * yn - xn * y
    area = cross.sum() / 2.0
    cx = ((x + xn) * cross).sum() / (6.0 * area)
    cy = ((y + yn) * cross).sum() / (6.0 * area)
    return float(area), np.array([cx, cy])


def _blob(rng: np.random.Generator) -> np.ndarray:
    n = int(rng.integers(5, 9))
    ang = (np.arange(n) + rng.uniform(-0.3, 0.3, n)) * 2 * np.pi / n
    rad = rng.uniform(0.55, 1.0, n)
    return np.stack([rad * np.cos(ang), rad * np.sin(ang)], 1)


def _pacman(rng: np.random.Generator) -> np.ndarray:
    half = math.radians(rng.uniform(35, 50))
    ang = np.linspace(half, 2 * np.pi - half, 20)
    return np.concatenate([[[0.0, 0.0]], np.stack([np.cos(ang), np.sin(ang)], 1)])


def _fixed(points: Sequence[Tuple[float, float]]) -> Callable[[np.random.Generator], np.ndarray]:
    return lambda rng: np.array(points, dtype=np.float64)


# Unit polygons; none has a rotational symmetry of less than 120 degrees, so a turn is visible.
SHAPES: Dict[str, Callable[[np.random.Generator], np.ndarray]] = {
    "blob": _blob,
    "pacman": _pacman,
    "arrow": _fixed([(-0.8, -0.35), (0.2, -0.35), (0.2, -0.75), (1.0, 0.0), (0.2, 0.75), (0.2, 0.35), (-0.8, 0.35)]),
    "ell": _fixed([(-0.7, -0.8), (-0.1, -0.8), (-0.1, 0.2), (0.7, 0.2), (0.7, 0.8), (-0.7, 0.8)]),
    "tee": _fixed([(-0.8, -0.8), (0.8, -0.8), (0.8, -0.2), (0.3, -0.2), (0.3, 0.8), (-0.3, 0.8), (-0.3, -0.2),
                   (-0.8, -0.2)]),
    "wedge": _fixed([(0.0, -1.0), (0.9, 0.7), (-0.7, 0.8)]),
}


def unit_shape(name: str, rng: np.random.Generator, mirror: bool) -> np.ndarray:
    """Vertices (n, 2) of shape ``name``, centred on its centroid, counter-clockwise, area 1."""
    v = SHAPES[name](rng)
    if mirror:
        v = v * np.array([-1.0, 1.0])
    area, centroid = _polygon_area_centroid(v)
    if area < 0:  # keep one winding order
        v, area = v[::-1], -area
    return (v - centroid) / math.sqrt(area)


def inside_polygon(v: np.ndarray, px: np.ndarray, py: np.ndarray) -> np.ndarray:
    """Even-odd point-in-polygon test of the points (px, py) against the polygon ``v`` (n, 2)."""
    inside = np.zeros(px.shape, dtype=bool)
    n = len(v)
    for i in range(n):
        (x1, y1), (x2, y2) = v[i], v[(i + 1) % n]
        crosses = (y1 > py) != (y2 > py)
        if y1 == y2:
            continue
        x_at = x1 + (py - y1) * (x2 - x1) / (y2 - y1)
        inside ^= crosses & (px < x_at)
    return inside


def rotation(angle: float) -> np.ndarray:
    """The (2, 2) matrix turning by ``angle`` radians (clockwise on screen, y being down)."""
    c, sn = math.cos(angle), math.sin(angle)
    return np.array([[c, -sn], [sn, c]])
