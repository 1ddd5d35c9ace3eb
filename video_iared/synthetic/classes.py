"""The motion classes of the synthetic benchmark: names, SSv2-style templates and horizontal-flip partners.

The class of a video is decided only by what its foreground object does over time. Several classes are
each other's mirror in time (left/right, up/down, cw/ccw, grow/shrink) so frame order matters, and a
horizontal flip maps left <-> right and clockwise <-> counter-clockwise (``hflip_partner``).
``NUM_CLASSES`` picks the first N of the table, so the first 8 are the ones the issue asks for.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional


@dataclass(frozen=True)
class MotionClass:
    """One class: its Kinetics-style name, its SSv2-style template and what the renderer does."""

    name: str  # Kinetics-style class name, e.g. "moving left"
    template: str  # SSv2-style template with the placeholder, e.g. "Moving [something] from right to left"
    motion: str  # renderer's motion kind (see scenes.py)
    hflip_partner: int  # label of this class's horizontal mirror image (itself when symmetric)


# name | SSv2-style template | renderer motion | label of the horizontal mirror (itself when symmetric)
_TABLE = """
moving left                | Moving [something] from right to left            | move_left  | 1
moving right               | Moving [something] from left to right            | move_right | 0
moving up                  | Moving [something] up                            | move_up    | 2
moving down                | Moving [something] down                          | move_down  | 3
rotating clockwise         | Rotating [something] clockwise                   | rotate_cw  | 5
rotating counter-clockwise | Rotating [something] counter-clockwise           | rotate_ccw | 4
growing                    | Moving [something] towards the camera            | grow       | 6
shrinking                  | Moving [something] away from the camera          | shrink     | 7
circling clockwise         | Moving [something] in a circle clockwise         | orbit_cw   | 9
circling counter-clockwise | Moving [something] in a circle counter-clockwise | orbit_ccw  | 8
staying still              | Holding [something]                              | still      | 10
shaking                    | Shaking [something]                              | shake      | 11
"""

MOTION_CLASSES: List[MotionClass] = [
    MotionClass(name, template, motion, int(partner))
    for name, template, motion, partner in (map(str.strip, row.split("|")) for row in _TABLE.strip().splitlines())
]

MAX_CLASSES = len(MOTION_CLASSES)


def get_classes(num_classes: int) -> List[MotionClass]:
    """The first ``num_classes`` classes; raises ValueError outside 2..MAX_CLASSES."""
    if not 2 <= num_classes <= MAX_CLASSES:
        raise ValueError(f"synthetic benchmark: num_classes must be in [2, {MAX_CLASSES}], got {num_classes}")
    return MOTION_CLASSES[:num_classes]


def hflip_label(label: int, num_classes: int) -> Optional[int]:
    """The label of a horizontally flipped video of class ``label``; None when that mirror class is not
    among the first ``num_classes`` (then a flip makes a video of no class and must not be used)."""
    partner = MOTION_CLASSES[label].hflip_partner
    return partner if partner < num_classes else None


def slug(name: str) -> str:
    """A file-name-safe form of a class name: "moving left" -> "moving_left"."""
    return "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_")
