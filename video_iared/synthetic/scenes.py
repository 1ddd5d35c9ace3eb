"""Drawing one synthetic video: a drifting textured background, 1-3 distractors, one foreground object.

Only the foreground object's motion depends on the class. Its shape, colours, size, orientation and start
position, the background and the distractors are drawn from one random stream (``appearance``) whose
distribution is the same for every class; the motion is drawn from a second stream. Everything is rendered
in float with 2x2 supersampling (sub-pixel motion, anti-aliased edges), and the foreground mask is the set
of pixels the object covers at least half of.

Screen coordinates: x to the right, y *down*, pixel (row i, col j) has its centre at (j + 0.5, i + 0.5).
With y down, an increasing angle turns clockwise on screen.
"""
from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np

SUPERSAMPLE = 2  # sub-samples per pixel and axis
AREA_RANGE = (0.08, 0.14)  # foreground area at mid-video, fraction of the frame (log-uniform)
SIZE_CHANGE = (1.7, 2.0)  # grow/shrink: area ratio between the last and the first frame
MAX_RADIUS = 0.27  # foreground bounding radius cap, fraction of min(H, W), for every class alike
MOVE_DISTANCE = (0.38, 0.48)  # move classes: displacement over the video, fraction of min(H, W)
ROTATION_DEG = (200.0, 300.0)  # rotate classes: total turn over the video
ORBIT_RADIUS = (0.14, 0.20)  # orbit classes: circle radius, fraction of min(H, W)
ORBIT_DEG = (240.0, 320.0)  # orbit classes: total angle travelled
SHAKE_AMPLITUDE = (0.05, 0.08)  # shake: horizontal amplitude, fraction of min(H, W)
SHAKE_CYCLES = (3.5, 5.5)  # shake: oscillations over the video
BG_DRIFT = 0.25  # background drift speed limit in pixels per frame (at 64 px; scales with the frame)


# ----------------------------------------------------------------------------- small numeric helpers
def _bilinear_grid(img: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Sample ``img`` (h, w, ...) at the grid ``ys`` x ``xs`` (pixel-index coordinates) -> (len(ys), len(xs), ...)."""
    h, w = img.shape[:2]
    y0 = np.clip(np.floor(ys).astype(np.int64), 0, h - 2)
    x0 = np.clip(np.floor(xs).astype(np.int64), 0, w - 2)
    fy = np.clip(ys - y0, 0.0, 1.0).astype(np.float32)
    fx = np.clip(xs - x0, 0.0, 1.0).astype(np.float32)
    extra = (1,) * (img.ndim - 2)
    rows = img[y0] * (1 - fy).reshape(-1, 1, *extra) + img[y0 + 1] * fy.reshape(-1, 1, *extra)
    return rows[:, x0] * (1 - fx).reshape(1, -1, *extra) + rows[:, x0 + 1] * fx.reshape(1, -1, *extra)


def _reflect(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Fold positions into [lo, hi] as a ball bouncing between two walls would."""
    span = max(hi - lo, 1e-6)
    y = np.mod(x - lo, 2 * span)
    return lo + np.where(y > span, 2 * span - y, y)


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), dtype=np.float32)


_HUE_NAMES = [(15, "red"), (45, "orange"), (70, "yellow"), (160, "green"), (200, "cyan"), (255, "blue"),
              (290, "purple"), (345, "pink"), (361, "red")]


def _hue_name(hue: float) -> str:
    deg = (hue % 1.0) * 360.0
    return next(name for limit, name in _HUE_NAMES if deg < limit)


# ----------------------------------------------------------------------------- foreground shapes
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


def _unit_shape(name: str, rng: np.random.Generator, mirror: bool) -> np.ndarray:
    """Vertices (n, 2) of shape ``name``, centred on its centroid, counter-clockwise, area 1."""
    v = SHAPES[name](rng)
    if mirror:
        v = v * np.array([-1.0, 1.0])
    area, centroid = _polygon_area_centroid(v)
    if area < 0:  # keep one winding order
        v, area = v[::-1], -area
    return (v - centroid) / math.sqrt(area)


def _inside_polygon(v: np.ndarray, px: np.ndarray, py: np.ndarray) -> np.ndarray:
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


# ----------------------------------------------------------------------------- the scene's random draw
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


def _draw_appearance(rng: np.random.Generator, t: int, h: int, w: int) -> Appearance:
    scale = min(h, w) / 64.0
    shape = str(rng.choice(sorted(SHAPES)))
    unit = _unit_shape(shape, rng, mirror=bool(rng.integers(2)))
    hue = rng.uniform()
    color = _hsv(hue, rng.uniform(0.75, 1.0), rng.uniform(0.85, 1.0))
    color2 = 0.6 * color + 0.4  # a pastel of the same hue: both tones stay bright and coloured against the background
    area_frac = math.exp(rng.uniform(math.log(AREA_RANGE[0]), math.log(AREA_RANGE[1])))
    angle0 = rng.uniform(0, 2 * np.pi)
    tone_dir = rng.uniform(0, 2 * np.pi)
    start_u = rng.uniform(0, 1, 2)

    # Background: muted two-colour texture from three octaves of smooth noise plus grain, drifting slowly.
    speed = rng.uniform(0, BG_DRIFT) * scale
    heading = rng.uniform(0, 2 * np.pi)
    velocity = speed * np.array([math.cos(heading), math.sin(heading)])
    pad = int(math.ceil(BG_DRIFT * scale * t)) + 2
    hp, wp = h + 2 * pad, w + 2 * pad
    field = np.zeros((hp, wp), np.float32)
    for cells, weight in ((4, 1.0), (8, 0.5), (16, 0.25)):
        grid = rng.uniform(0, 1, (cells + 1, cells + 1)).astype(np.float32)
        field += weight * _bilinear_grid(grid, np.linspace(0, cells, hp), np.linspace(0, cells, wp))
    field = (field - field.min()) / max(float(field.max() - field.min()), 1e-6)
    bg_hue = rng.uniform()
    c1 = _hsv(bg_hue, rng.uniform(0.1, 0.25), rng.uniform(0.3, 0.45))
    c2 = _hsv(bg_hue + rng.uniform(-0.1, 0.1), rng.uniform(0.1, 0.25), rng.uniform(0.5, 0.65))
    grain = rng.normal(0, 0.025, (hp, wp, 1)).astype(np.float32)
    background = np.clip(c1 + (c2 - c1) * field[..., None] + grain, 0, 1).astype(np.float32)

    # Distractors: small, unsaturated (dark or light grey-ish) discs / squares bouncing in random directions.
    distractors = []
    for _ in range(int(rng.integers(1, 4))):
        kind = "disc" if rng.integers(2) else "square"
        radius = rng.uniform(0.04, 0.07) * min(h, w)
        value = rng.uniform(0.08, 0.22) if rng.integers(2) else rng.uniform(0.75, 0.92)
        dcolor = _hsv(rng.uniform(), rng.uniform(0.0, 0.15), value)
        p0 = np.array([rng.uniform(radius, w - radius), rng.uniform(radius, h - radius)])
        dspeed = rng.uniform(0.2, 0.6) * scale  # slower than the foreground: motion is the class signal
        dhead = rng.uniform(0, 2 * np.pi)
        distractors.append((kind, radius, dcolor, p0, dspeed * np.array([math.cos(dhead), math.sin(dhead)])))
    return Appearance(shape, unit, color, color2.astype(np.float32), tone_dir, f"{_hue_name(hue)} {shape}",
                      area_frac, angle0, start_u, background, pad, velocity, distractors)


def _draw_motion(
    motion: str, rng: np.random.Generator, t: int, length: float
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-frame (offset from the start (T, 2), turn from the start (T,), linear scale (T,)) of a class."""
    tau = np.linspace(0.0, 1.0, t)
    offset = np.zeros((t, 2))
    turn = np.zeros(t)
    scale = np.ones(t)
    if motion.startswith("move_"):
        axis = {"move_left": (-1, 0), "move_right": (1, 0), "move_up": (0, -1), "move_down": (0, 1)}[motion]
        along = np.array(axis, dtype=np.float64) * rng.uniform(*MOVE_DISTANCE) * length
        across = np.array(axis[::-1], dtype=np.float64) * rng.uniform(-0.04, 0.04) * length
        offset = tau[:, None] * (along + across)[None]
    elif motion in ("rotate_cw", "rotate_ccw"):
        sign = 1.0 if motion == "rotate_cw" else -1.0
        turn = sign * math.radians(rng.uniform(*ROTATION_DEG)) * tau
    elif motion in ("grow", "shrink"):
        ratio = rng.uniform(*SIZE_CHANGE)
        expo = (tau - 0.5) if motion == "grow" else (0.5 - tau)
        scale = ratio ** (expo / 2.0)  # linear size; the area changes by ``ratio`` from first to last frame
    elif motion in ("orbit_cw", "orbit_ccw"):
        sign = 1.0 if motion == "orbit_cw" else -1.0
        radius = rng.uniform(*ORBIT_RADIUS) * length
        a0 = rng.uniform(0, 2 * np.pi)
        a = a0 + sign * math.radians(rng.uniform(*ORBIT_DEG)) * tau
        offset = radius * np.stack([np.cos(a) - math.cos(a0), np.sin(a) - math.sin(a0)], 1)
    elif motion == "shake":
        amp = rng.uniform(*SHAKE_AMPLITUDE) * length
        phase = rng.uniform(0, 2 * np.pi)
        x = amp * np.sin(2 * np.pi * rng.uniform(*SHAKE_CYCLES) * tau + phase)
        offset[:, 0] = x - x[0]
    elif motion != "still":
        raise ValueError(f"unknown synthetic motion {motion!r}")
    return offset, turn, scale


# ----------------------------------------------------------------------------- rendering
def _subsample_coords(n: int) -> np.ndarray:
    return (np.arange(n * SUPERSAMPLE) + 0.5) / SUPERSAMPLE


def _pool(x: np.ndarray) -> np.ndarray:
    """Average SUPERSAMPLE x SUPERSAMPLE blocks: (h*S, w*S, ...) -> (h, w, ...)."""
    s = SUPERSAMPLE
    h, w = x.shape[0] // s, x.shape[1] // s
    return x.reshape(h, s, w, s, *x.shape[2:]).mean(axis=(1, 3))


def _composite(frame: np.ndarray, cover: np.ndarray, paint: np.ndarray, y0: int, x0: int) -> None:
    """Blend a supersampled patch (coverage (h*S, w*S), premultiplied colour (h*S, w*S, 3)) at pixel (y0, x0)."""
    alpha = _pool(cover.astype(np.float32))
    color = _pool(paint)
    h, w = alpha.shape
    region = frame[y0:y0 + h, x0:x0 + w]
    region *= 1.0 - alpha[..., None]
    region += color


def _patch_box(cx: float, cy: float, r: float, h: int, w: int) -> Tuple[int, int, int, int]:
    """Pixel box [y0, y1) x [x0, x1) covering a circle of radius r, clipped to the frame."""
    return (max(int(math.floor(cy - r)) - 1, 0), min(int(math.ceil(cy + r)) + 1, h),
            max(int(math.floor(cx - r)) - 1, 0), min(int(math.ceil(cx + r)) + 1, w))


def render_video(entropy: Sequence[int], motion: str, num_frames: int, height: int, width: int
                 ) -> Tuple[np.ndarray, np.ndarray, Dict]:
    """Render one video of the class whose motion kind is ``motion``.

    ``entropy`` (e.g. (seed, split, label, index)) seeds everything, so a video depends on nothing else.
    Returns frames uint8 (T, H, W, 3) RGB, the foreground mask bool (T, H, W) and an info dict
    (``object`` name for SSv2 placeholders, ``shape``, per-frame ``coverage`` (T,) and ``centroid`` (T, 2) x, y).
    """
    t, h, w = num_frames, height, width
    app_seq, motion_seq = np.random.SeedSequence(list(entropy)).spawn(2)
    app = _draw_appearance(np.random.default_rng(app_seq), t, h, w)
    length = float(min(h, w))
    offset, turn, scale = _draw_motion(motion, np.random.default_rng(motion_seq), t, length)

    # Size: the unit polygon has area 1, so a factor k gives area k^2; the bounding radius is capped
    # the same way for every class, so that size says nothing about the class.
    r_unit = float(np.linalg.norm(app.unit, axis=1).max())
    k = min(math.sqrt(app.area_frac * h * w), MAX_RADIUS * length / r_unit)
    ks = k * scale
    radii = ks * r_unit
    # Start position: uniform in the box that keeps the whole trajectory inside the frame (1 px margin).
    lo = np.max(radii[:, None] + 1.0 - offset, axis=0)
    hi = np.min(np.array([w, h])[None] - radii[:, None] - 1.0 - offset, axis=0)
    start = np.where(hi >= lo, lo + app.start_u * (hi - lo), (lo + hi) / 2)
    centres = start[None] + offset
    angles = app.angle0 + turn

    frames = np.empty((t, h, w, 3), np.float32)
    mask = np.zeros((t, h, w), bool)
    sub_x, sub_y = _subsample_coords(w), _subsample_coords(h)
    s = SUPERSAMPLE
    for i in range(t):
        ys = app.bg_pad + np.arange(h) + app.bg_velocity[1] * i
        xs = app.bg_pad + np.arange(w) + app.bg_velocity[0] * i
        frame = _bilinear_grid(app.background, ys, xs)
        for kind, rad, dcolor, p0, vel in app.distractors:
            cx = float(_reflect(np.array(p0[0] + vel[0] * i), rad, w - rad))
            cy = float(_reflect(np.array(p0[1] + vel[1] * i), rad, h - rad))
            y0, y1, x0, x1 = _patch_box(cx, cy, rad, h, w)
            px, py = np.meshgrid(sub_x[x0 * s:x1 * s] - cx, sub_y[y0 * s:y1 * s] - cy)
            if kind == "disc":
                cover = px ** 2 + py ** 2 <= rad ** 2
            else:  # a square of the same area as the disc
                half = rad * math.sqrt(math.pi) / 2
                cover = (np.abs(px) <= half) & (np.abs(py) <= half)
            _composite(frame, cover, cover[..., None] * dcolor, y0, x0)

        cx, cy = centres[i]
        c, sn = math.cos(angles[i]), math.sin(angles[i])
        rot = np.array([[c, -sn], [sn, c]])
        verts = (app.unit * ks[i]) @ rot.T + centres[i]
        y0, y1, x0, x1 = _patch_box(cx, cy, radii[i], h, w)
        px, py = np.meshgrid(sub_x[x0 * s:x1 * s], sub_y[y0 * s:y1 * s])
        cover = _inside_polygon(verts, px, py)
        normal = rot @ np.array([math.cos(app.tone_dir), math.sin(app.tone_dir)])
        second = ((px - cx) * normal[0] + (py - cy) * normal[1]) > 0
        paint = cover[..., None] * np.where(second[..., None], app.color2, app.color)
        _composite(frame, cover, paint.astype(np.float32), y0, x0)
        mask[i, y0:y1, x0:x1] = _pool(cover.astype(np.float32)) >= 0.5
        frames[i] = frame

    coverage = mask.reshape(t, -1).mean(1)
    yy, xx = np.mgrid[0:h, 0:w]
    counts = np.maximum(mask.reshape(t, -1).sum(1), 1)
    centroid = np.stack([(mask * (xx + 0.5)).reshape(t, -1).sum(1) / counts,
                         (mask * (yy + 0.5)).reshape(t, -1).sum(1) / counts], 1)
    out = np.clip(np.rint(frames * 255.0), 0, 255).astype(np.uint8)
    info = {"object": app.name, "shape": app.shape, "coverage": coverage, "centroid": centroid,
            "color": (app.color * 255).round().astype(int).tolist()}
    return out, mask, info
