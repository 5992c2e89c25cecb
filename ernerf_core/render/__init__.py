"""Rendering of the validation split and of driving audio, and video writing."""

from ..errors import StageError


def check_downscale(subject: str, stage: str, downscale: float | None) -> None:
    """Stop on a render size factor below 1 (None: the training size, always fine)."""
    if downscale is not None and float(downscale) < 1:
        raise StageError(subject, stage, f"render.downscale {downscale} is below 1",
                         "use 1 (full size), more (smaller, faster frames) or null (the training size)")
