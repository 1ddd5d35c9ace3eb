"""The harder-scene options of the synthetic benchmark: class-like distractors, camera, occluders, backgrounds.

``SceneOptions()`` (every option off) is the default scene, rendered bit for bit as before the options
existed. Each option draws from its own random stream (scenes.py), so turning one on changes nothing that
the others draw, and the target object and its motion are the same video for video whatever is on.

- ``distractors`` (lo, hi): lo..hi extra objects per video drawn like the target (same shapes, sizes and
  colours) that move with a motion drawn from ``motions`` (the classes in use). They are single-tone; the
  target is the only two-tone object, so which object matters is the cue, not that something moves.
  They are drawn below the target.
- ``camera_pan``: the camera travels up to this fraction of min(H, W) over the video (at least a quarter of
  it), in a random direction. ``camera_zoom``: the zoom changes by a factor of up to ``1 + camera_zoom``
  over the video, in or out, about the frame centre. Everything but the occluders is seen through it.
- ``occluders``: bars in front of everything, crossing the target's position between 30 % and 70 % of the
  video; the mask leaves out what they cover.
- ``background``: "smooth" (the default muted texture) or "textured" (backgrounds.py).
- ``distractor_scale``: the class-like distractors' linear size as a fraction of the target's (their area range
  is the target's times its square), so that the target is the largest moving object; 1 = the same sizes.
- ``target_tone``: the target's second tone, painted on one side of a line through its centre: "pastel" (the
  default: a light tint of its colour) or "dark" (DARK_TONE x its colour: a high-contrast two-tone object
  among the single-tone distractors).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Tuple

import numpy as np

from .shapes import hsv

BACKGROUNDS = ("smooth", "textured")
TARGET_TONES = ("pastel", "dark")
DARK_TONE = 0.25  # "dark" second tone: this fraction of the target's colour
MAX_DISTRACTORS = 6  # class-like distractors per video at most
MAX_OCCLUDERS = 3  # occluders per video at most
OCCLUDER_HALF_WIDTH = (0.05, 0.09)  # bar half-width, fraction of min(H, W): narrower than the target
OCCLUDER_HALF_LENGTH = (0.5, 0.8)  # bar half-length, fraction of min(H, W)
OCCLUDER_TRAVEL = (0.8, 1.2)  # distance a bar travels over the video, fraction of min(H, W)


@dataclass(frozen=True)
class SceneOptions:
    """What the harder scenes add; the defaults add nothing."""

    distractors: Tuple[int, int] = (0, 0)  # count range of class-like distractor objects per video
    motions: Tuple[str, ...] = ()  # motion kinds the distractors draw from (classes.py ``motion``)
    camera_pan: float = 0.0  # camera travel over the video, fraction of min(H, W)
    camera_zoom: float = 0.0  # zoom factor change over the video at most 1 + this
    occluders: int = 0  # bars passing in front of the target
    background: str = "smooth"  # "smooth" | "textured"
    distractor_scale: float = 1.0  # distractors' linear size relative to the target's, (0, 1]
    target_tone: str = "pastel"  # the target's second tone: "pastel" | "dark"

    def check(self) -> None:
        """Raise ValueError naming the option that is out of range."""
        lo, hi = self.distractors
        if not 0 <= lo <= hi <= MAX_DISTRACTORS:
            raise ValueError(f"synthetic benchmark: distractors must be [lo, hi] with 0 <= lo <= hi <= "
                             f"{MAX_DISTRACTORS}, got {list(self.distractors)}")
        if hi > 0 and not self.motions:
            raise ValueError("synthetic benchmark: distractors need a set of motions to draw from")
        if not (0.0 <= self.camera_pan <= 1.0 and 0.0 <= self.camera_zoom <= 1.0):
            raise ValueError(f"synthetic benchmark: camera_pan and camera_zoom must be in [0, 1], got "
                             f"{self.camera_pan}, {self.camera_zoom}")
        if not 0 <= self.occluders <= MAX_OCCLUDERS:
            raise ValueError(f"synthetic benchmark: occluders must be in [0, {MAX_OCCLUDERS}], got {self.occluders}")
        if self.background not in BACKGROUNDS:
            raise ValueError(f"synthetic benchmark: background must be one of {list(BACKGROUNDS)}, "
                             f"got {self.background!r}")
        if not 0.0 < self.distractor_scale <= 1.0:
            raise ValueError(f"synthetic benchmark: distractor_scale must be in (0, 1], got {self.distractor_scale}")
        if self.target_tone not in TARGET_TONES:
            raise ValueError(f"synthetic benchmark: target_tone must be one of {list(TARGET_TONES)}, "
                             f"got {self.target_tone!r}")


@dataclass
class Camera:
    """Where the camera looks in each frame: screen = zoom * (world - centre) + half (x, y pixels)."""

    centre: np.ndarray  # (T, 2) world point shown at the frame centre
    zoom: np.ndarray  # (T,) screen pixels per world pixel
    half: np.ndarray  # (2,) the frame centre (W / 2, H / 2)
    identity: bool  # a still camera: points are passed through untouched (bit-identical default scene)

    def point(self, p: np.ndarray, i: int) -> np.ndarray:
        """World point(s) (..., 2) -> screen point(s) in frame ``i``."""
        return p if self.identity else self.zoom[i] * (p - self.centre[i]) + self.half

    def scale(self, i: int) -> float:
        """Screen length of one world pixel in frame ``i``."""
        return 1.0 if self.identity else float(self.zoom[i])

    def extent(self) -> int:
        """How many world pixels beyond the frame the camera ever shows (0 for a still camera)."""
        if self.identity:
            return 0
        reach = np.abs(self.centre - self.half[None]) + self.half[None] / self.zoom[:, None] - self.half[None]
        return max(int(math.ceil(float(reach.max()))), 0)


def still_camera(t: int, h: int, w: int) -> Camera:
    half = np.array([w / 2.0, h / 2.0])
    return Camera(np.repeat(half[None], t, 0), np.ones(t), half, identity=True)


def draw_camera(rng: np.random.Generator, t: int, h: int, w: int, pan: float, zoom: float) -> Camera:
    """A camera panning linearly by up to ``pan`` x min(H, W) and zooming by up to ``1 + zoom`` (log-linear)."""
    half = np.array([w / 2.0, h / 2.0])
    tau = np.linspace(-0.5, 0.5, t)
    heading = rng.uniform(0, 2 * np.pi)
    travel = rng.uniform(0.25, 1.0) * pan * min(h, w)
    centre = half[None] + tau[:, None] * travel * np.array([math.cos(heading), math.sin(heading)])[None]
    log_ratio = rng.uniform(-1.0, 1.0) * math.log1p(zoom)
    return Camera(centre, np.exp(log_ratio * tau), half, identity=False)


@dataclass
class Occluder:
    """An opaque bar in front of everything (screen coordinates)."""

    verts: np.ndarray  # (T, 4, 2) corners in each frame
    radius: float  # bounding radius around the bar's centre
    color: np.ndarray  # (3,) RGB in [0, 1]


def draw_occluders(rng: np.random.Generator, n: int, target_centres: np.ndarray, length: float) -> List[Occluder]:
    """``n`` bars, each crossing the target's screen position ``target_centres`` (T, 2) once mid-video."""
    t = len(target_centres)
    out = []
    for _ in range(n):
        crossing = rng.uniform(0.3, 0.7) * (t - 1)
        heading = rng.uniform(0, 2 * np.pi)
        travel = rng.uniform(*OCCLUDER_TRAVEL) * length
        half_w = rng.uniform(*OCCLUDER_HALF_WIDTH) * length
        half_l = rng.uniform(*OCCLUDER_HALF_LENGTH) * length
        along = rng.uniform(-0.3, 0.3) * half_l  # where along the bar the target is met
        color = hsv(rng.uniform(), rng.uniform(0.0, 0.3), rng.uniform(0.15, 0.9))
        d = np.array([math.cos(heading), math.sin(heading)])  # direction of travel, across the bar
        e = np.array([-d[1], d[0]])  # along the bar
        meet = target_centres[int(round(crossing))] - along * e
        centres = meet[None] + d[None] * travel * ((np.arange(t) - crossing) / max(t - 1, 1))[:, None]
        corners = np.array([-half_w * d - half_l * e, half_w * d - half_l * e, half_w * d + half_l * e,
                            -half_w * d + half_l * e])
        out.append(Occluder(centres[:, None] + corners[None], math.hypot(half_w, half_l), color))
    return out
