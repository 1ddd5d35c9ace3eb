"""The explicit space-time grid carried through the TimeSformer blocks."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TokenGrid:
    """The patch-token grid of one clip: ``T`` frames of ``H`` x ``W`` patches.

    Blocks take the grid as an argument instead of re-deriving H from the token count (as the reference
    does), so a caller that changes the token set (pruning) cannot silently break the rearranges.
    Patch tokens are laid out ``(h w t)`` after one CLS token, as in the reference.
    """

    T: int
    H: int
    W: int

    def __post_init__(self) -> None:
        for name in ("T", "H", "W"):
            # int(): under jit tracing (fvcore) shapes arrive as 0-d tensors.
            value = int(getattr(self, name))
            if value <= 0:
                raise ValueError(f"TokenGrid.{name} must be a positive int, got {value!r}")
            object.__setattr__(self, name, value)

    @property
    def spatial(self) -> int:
        """Patches per frame, H * W."""
        return self.H * self.W

    @property
    def num_patches(self) -> int:
        """Patch tokens per clip, T * H * W (the CLS token not included)."""
        return self.T * self.H * self.W
