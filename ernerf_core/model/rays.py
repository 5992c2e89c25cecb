"""Cameras and rays, in the reference's conventions.

- ``transforms_*.json`` hold OpenGL camera-to-world matrices in tracker units;
  :func:`nerf_matrix_to_ngp` turns one into the renderer's convention (axes permuted
  y,z,x -> x,y,z, camera y and z flipped to OpenCV: x right, y down, z forward) and scales
  the translation (``scale`` 4, ``offset`` 0 for the head), exactly as ER-NeRF's loader.
- Pixel (row r, column c) is sampled at its centre (c + 0.5, r + 0.5).
- Intrinsics are ``(fx, fy, cx, cy)``.
"""

from __future__ import annotations

import numpy as np
import torch

from .native_raymarch import try_near_far


def nerf_matrix_to_ngp(pose: np.ndarray, scale: float = 4.0, offset=(0.0, 0.0, 0.0)) -> np.ndarray:
    """[4, 4] OpenGL camera-to-world (file) -> [4, 4] renderer camera-to-world (float32)."""
    p = np.asarray(pose, dtype=np.float64)
    return np.array([
        [p[1, 0], -p[1, 1], -p[1, 2], p[1, 3] * scale + offset[0]],
        [p[2, 0], -p[2, 1], -p[2, 2], p[2, 3] * scale + offset[1]],
        [p[0, 0], -p[0, 1], -p[0, 2], p[0, 3] * scale + offset[2]],
        [0, 0, 0, 1],
    ], dtype=np.float32)


def ngp_matrix_to_nerf(pose: np.ndarray, scale: float = 4.0, offset=(0.0, 0.0, 0.0)) -> np.ndarray:
    """Inverse of :func:`nerf_matrix_to_ngp` (used to write synthetic subjects)."""
    q = np.asarray(pose, dtype=np.float64)
    out = np.eye(4)
    # row 0 of the file matrix came from ngp row 2, row 1 from row 0, row 2 from row 1
    for file_row, ngp_row in ((0, 2), (1, 0), (2, 1)):
        out[file_row, 0] = q[ngp_row, 0]
        out[file_row, 1] = -q[ngp_row, 1]
        out[file_row, 2] = -q[ngp_row, 2]
        out[file_row, 3] = (q[ngp_row, 3] - offset[ngp_row]) / scale
    return out


def pixel_rays(pose: torch.Tensor, intrinsics, pixels: torch.Tensor, W: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rays through flat pixel indices ``pixels`` [N] (row * W + col) of one camera.

    pose [4, 4] camera-to-world (renderer convention). Returns (rays_o [N, 3], rays_d [N, 3]
    unit length).
    """
    fx, fy, cx, cy = (float(v) for v in intrinsics)
    pixels = pixels.to(pose.device)
    i = (pixels % W).float() + 0.5
    j = torch.div(pixels, W, rounding_mode="floor").float() + 0.5
    dirs = torch.stack([(i - cx) / fx, (j - cy) / fy, torch.ones_like(i)], dim=-1)
    dirs = dirs / dirs.norm(dim=-1, keepdim=True)
    with torch.autocast(pose.device.type, enabled=False):  # rays stay float32 under mixed precision
        rays_d = dirs @ pose[:3, :3].float().t()
    rays_o = pose[:3, 3].float().expand_as(rays_d)
    return rays_o, rays_d


def near_far_from_aabb(rays_o: torch.Tensor, rays_d: torch.Tensor, aabb: torch.Tensor,
                       min_near: float = 0.05) -> tuple[torch.Tensor, torch.Tensor]:
    """Slab test. Returns (near [N], far [N]); rays that miss get near = far = +inf.
    (The native kernel, when built, computes the same values.)"""
    native = try_near_far(rays_o, rays_d, aabb, min_near)
    if native is not None:
        return native
    inv = 1.0 / torch.where(rays_d.abs() < 1e-15, torch.full_like(rays_d, 1e-15), rays_d)
    t0 = (aabb[:3] - rays_o) * inv
    t1 = (aabb[3:] - rays_o) * inv
    near = torch.minimum(t0, t1).amax(dim=-1).clamp(min=min_near)
    far = torch.maximum(t0, t1).amin(dim=-1)
    miss = far <= near
    inf = torch.full_like(near, float("inf"))
    return torch.where(miss, inf, near), torch.where(miss, inf, far)
