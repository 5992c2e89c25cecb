"""Rotations and projections in the reference tracker's conventions (torch, batched).

Camera (OpenGL style): the camera sits at the origin looking down -z, x right, y up; a
head point X in the head frame lands in the camera at ``R @ X + t`` and in the image at

    u = cx - f * Xc / Zc,   v = cy + f * Yc / Zc        (Zc < 0 in front of the camera)

Euler angles follow the reference's ``euler2rot``: ``R = Rx(a) @ Ry(b) @ Rz(-c)`` for
``euler = (a, b, c)`` in radians, with right-handed elementary rotations.
"""

from __future__ import annotations

import numpy as np
import torch


def _rx(a: torch.Tensor) -> torch.Tensor:
    c, s, o, z = a.cos(), a.sin(), torch.ones_like(a), torch.zeros_like(a)
    return torch.stack([o, z, z, z, c, -s, z, s, c], -1).reshape(*a.shape, 3, 3)


def _ry(a: torch.Tensor) -> torch.Tensor:
    c, s, o, z = a.cos(), a.sin(), torch.ones_like(a), torch.zeros_like(a)
    return torch.stack([c, z, s, z, o, z, -s, z, c], -1).reshape(*a.shape, 3, 3)


def _rz(a: torch.Tensor) -> torch.Tensor:
    c, s, o, z = a.cos(), a.sin(), torch.ones_like(a), torch.zeros_like(a)
    return torch.stack([c, -s, z, s, c, z, z, z, o], -1).reshape(*a.shape, 3, 3)


def euler_to_matrix(euler: torch.Tensor) -> torch.Tensor:
    """[..., 3] reference euler (radians) -> [..., 3, 3] rotation."""
    return _rx(euler[..., 0]) @ _ry(euler[..., 1]) @ _rz(-euler[..., 2])


def matrix_to_euler(rot: torch.Tensor) -> torch.Tensor:
    """[..., 3, 3] rotation -> [..., 3] reference euler (inverse of ``euler_to_matrix``).

    From ``Rx(a) Ry(b) Rz(g)``: R02 = sin b, R12 = -sin a cos b, R22 = cos a cos b,
    R01 = -cos b sin g, R00 = cos b cos g; the reference's third angle is -g.
    """
    b = torch.asin(rot[..., 0, 2].clamp(-1.0, 1.0))
    a = torch.atan2(-rot[..., 1, 2], rot[..., 2, 2])
    g = torch.atan2(-rot[..., 0, 1], rot[..., 0, 0])
    return torch.stack([a, b, -g], -1)


def axis_angle_to_matrix(w: torch.Tensor) -> torch.Tensor:
    """[..., 3] axis-angle -> [..., 3, 3] (Rodrigues; smooth at zero through a Taylor tail)."""
    theta2 = (w * w).sum(-1, keepdim=True)[..., None]          # [..., 1, 1]
    small = theta2 < 1e-8
    theta = theta2.clamp_min(1e-16).sqrt()
    a = torch.where(small, 1.0 - theta2 / 6.0, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta2 / 24.0, (1.0 - torch.cos(theta)) / theta2.clamp_min(1e-16))
    x, y, z = w[..., 0], w[..., 1], w[..., 2]
    zero = torch.zeros_like(x)
    k = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).reshape(*w.shape[:-1], 3, 3)
    eye = torch.eye(3, dtype=w.dtype, device=w.device).expand_as(k)
    return eye + a * k + b * (k @ k)


def geodesic_deg(r1: torch.Tensor, r2: torch.Tensor) -> torch.Tensor:
    """[..., 3, 3] x2 -> [...] angle of r1^T r2 in degrees."""
    tr = (r1.transpose(-1, -2) @ r2).diagonal(dim1=-2, dim2=-1).sum(-1)
    return torch.rad2deg(torch.acos(((tr - 1.0) / 2.0).clamp(-1.0, 1.0)))


def project(points_cam: torch.Tensor, focal: torch.Tensor, cxy: torch.Tensor) -> torch.Tensor:
    """[..., P, 3] camera-space points -> [..., P, 2] pixels (reference projection)."""
    z = points_cam[..., 2]
    u = cxy[0] - focal * points_cam[..., 0] / z
    v = cxy[1] + focal * points_cam[..., 1] / z
    return torch.stack([u, v], -1)


def umeyama(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Similarity ``dst ~ s * R @ src + t`` per batch item (least squares, proper rotations).

    src, dst: [B, P, 3] -> s [B], R [B, 3, 3], t [B, 3].
    """
    mu_s, mu_d = src.mean(1, keepdims=True), dst.mean(1, keepdims=True)
    xs, xd = src - mu_s, dst - mu_d
    cov = np.einsum("bpi,bpj->bij", xd, xs) / src.shape[1]
    u, sig, vt = np.linalg.svd(cov)
    d = np.sign(np.linalg.det(u @ vt))
    fix = np.ones_like(sig)
    fix[:, 2] = d
    rot = (u * fix[:, None, :]) @ vt
    var_s = (xs ** 2).sum((1, 2)) / src.shape[1]
    scale = (sig * fix).sum(1) / var_s
    t = mu_d[:, 0] - scale[:, None] * np.einsum("bij,bj->bi", rot, mu_s[:, 0])
    return scale, rot, t
