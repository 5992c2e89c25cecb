"""Which pixels of a training frame to render this step: uniform, patches, lips rectangle.

All return flat pixel indices (row * W + col) as int64 on the CPU. With an
:class:`~ernerf_core.train.error_map.ErrorMap`, rays and patch centres are drawn from the
frame's map instead of uniformly.
"""

from __future__ import annotations

import torch

from .error_map import ErrorMap


def uniform_pixels(n: int, H: int, W: int, generator: torch.Generator | None = None) -> torch.Tensor:
    return torch.randint(0, H * W, (n,), generator=generator)


def uniform_patch_origins(n: int, size: int, H: int, W: int,
                          generator: torch.Generator | None = None) -> torch.Tensor:
    r = torch.randint(0, H - size + 1, (n,), generator=generator)
    c = torch.randint(0, W - size + 1, (n,), generator=generator)
    return r * W + c


def patch_pixels(origins: torch.Tensor, size: int, W: int) -> torch.Tensor:
    """[n * size * size] pixels of size x size patches at flat top-left ``origins`` [n] (row-major)."""
    offs = (torch.arange(size).view(-1, 1) * W + torch.arange(size).view(1, -1)).view(-1)
    return (origins.view(-1, 1) + offs.view(1, -1)).view(-1)


def rect_pixels(rect: tuple[int, int, int, int], W: int) -> torch.Tensor:
    """All pixels of rect (row0, row1, col0, col1), half-open, row-major."""
    r0, r1, c0, c1 = rect
    rows = torch.arange(r0, r1).view(-1, 1)
    cols = torch.arange(c0, c1).view(1, -1)
    return (rows * W + cols).view(-1)


class PixelSampler:
    """``num_rays`` pixels per step, as single rays or ``patch_size``^2 patches."""

    def __init__(self, H: int, W: int, num_rays: int, patch_size: int = 1, error_map: ErrorMap | None = None):
        self.H, self.W = H, W
        self.patch_size = int(patch_size)
        if self.patch_size > min(H, W):
            raise ValueError(f"patch_size {patch_size} exceeds the image ({H}x{W})")
        self.num_rays = min(int(num_rays), H * W)
        self.error_map = error_map

    @property
    def n_patches(self) -> int:
        return max(1, self.num_rays // self.patch_size ** 2)

    def sample(self, frame: int, generator: torch.Generator | None = None) -> torch.Tensor:
        P = self.patch_size
        if P <= 1:
            if self.error_map is not None:
                return self.error_map.sample_pixels(frame, self.num_rays, generator)
            return uniform_pixels(self.num_rays, self.H, self.W, generator)
        if self.error_map is not None:
            origins = self.error_map.sample_patch_origins(frame, self.n_patches, P, generator)
        else:
            origins = uniform_patch_origins(self.n_patches, P, self.H, self.W, generator)
        return patch_pixels(origins, P, self.W)
