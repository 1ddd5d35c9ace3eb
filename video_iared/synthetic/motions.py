"""The per-frame trajectories of the motion kinds (classes.py's ``motion`` field).

``draw_motion`` gives offsets, turns and scales relative to the first frame, in pixels of a frame whose
shorter side is ``length``. The target draws its class's motion; class-like distractors (scene options)
draw theirs from the same set.
"""
from __future__ import annotations

import math
from typing import Tuple

import numpy as np

SIZE_CHANGE = (1.7, 2.0)  # grow/shrink: area ratio between the last and the first frame
MOVE_DISTANCE = (0.38, 0.48)  # move classes: displacement over the video, fraction of min(H, W)
ROTATION_DEG = (200.0, 300.0)  # rotate classes: total turn over the video
ORBIT_RADIUS = (0.14, 0.20)  # orbit classes: circle radius, fraction of min(H, W)
ORBIT_DEG = (240.0, 320.0)  # orbit classes: total angle travelled
SHAKE_AMPLITUDE = (0.05, 0.08)  # shake: horizontal amplitude, fraction of min(H, W)
SHAKE_CYCLES = (3.5, 5.5)  # shake: oscillations over the video


def draw_motion(
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
