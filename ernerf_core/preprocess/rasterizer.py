"""A pure-PyTorch triangle rasterizer with differentiable barycentric interpolation.

Visibility (which triangle covers a pixel) is decided without gradients by a z-buffer built
from every triangle's bounding-box pixels (vectorised, ``scatter_reduce`` min); barycentrics
of the winning triangles are then recomputed with autograd, so colours and vertex positions
get gradients inside triangles (as with nvdiffrast without antialiasing). Pixel centres are
at ``i + 0.5`` (the tracker's pixel-edge convention).
"""

from __future__ import annotations

import torch


def _edge_bary(v: torch.Tensor, px: torch.Tensor) -> torch.Tensor:
    """v [T, 3, 2] triangle corners, px [T, 2] points -> [T, 3] barycentric weights."""
    a, b, c = v[:, 0], v[:, 1], v[:, 2]
    area = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    area = torch.where(area.abs() < 1e-12, torch.full_like(area, 1e-12), area)
    w0 = (b[:, 0] - px[:, 0]) * (c[:, 1] - px[:, 1]) - (b[:, 1] - px[:, 1]) * (c[:, 0] - px[:, 0])
    w1 = (c[:, 0] - px[:, 0]) * (a[:, 1] - px[:, 1]) - (c[:, 1] - px[:, 1]) * (a[:, 0] - px[:, 0])
    w0, w1 = w0 / area, w1 / area
    return torch.stack([w0, w1, 1.0 - w0 - w1], -1)


def rasterize(verts: torch.Tensor, faces: torch.Tensor, height: int, width: int,
              max_box: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """verts [V, 3] (u, v pixels, depth > 0 = distance), faces [F, 3] ->
    face index [H, W] (-1 = empty) and barycentrics [H, W, 3] (differentiable in verts).

    Triangles whose bounding box exceeds ``max_box`` pixels on a side are skipped (at the
    face scales this is used for they do not occur; it bounds memory)."""
    with torch.no_grad():
        tri = verts.detach()[faces]                                   # [F, 3, 3]
        lo = torch.floor(tri[:, :, :2].amin(1) - 0.5).clamp_min(0).long()
        hi = torch.ceil(tri[:, :, :2].amax(1) - 0.5).long()
        hi[:, 0].clamp_(max=width - 1)
        hi[:, 1].clamp_(max=height - 1)
        size = (hi - lo + 1).clamp_min(0)
        ok = (size[:, 0] > 0) & (size[:, 1] > 0) & (size.amax(1) <= max_box) & (tri[:, :, 2] > 0).all(1)
        fid = torch.nonzero(ok)[:, 0]
        counts = size[fid, 0] * size[fid, 1]
        owner = torch.repeat_interleave(fid, counts)                  # triangle of each candidate pixel
        start = torch.cumsum(counts, 0) - counts
        local = torch.arange(int(counts.sum())) - torch.repeat_interleave(start, counts)
        w = size[owner, 0]
        px = torch.stack([lo[owner, 0] + local % w, lo[owner, 1] + local // w], -1)
        bary = _edge_bary(tri[owner, :, :2], px.to(tri.dtype) + 0.5)
        inside = (bary >= -1e-7).all(1)
        owner, px, bary = owner[inside], px[inside], bary[inside]
        depth = (bary * tri[owner, :, 2]).sum(1)
        flat = px[:, 1] * width + px[:, 0]
        zbuf = torch.full((height * width,), float("inf"), dtype=tri.dtype)
        zbuf.scatter_reduce_(0, flat, depth, reduce="amin")
        win = depth <= zbuf[flat]
        face_idx = torch.full((height * width,), -1, dtype=torch.long)
        face_idx[flat[win]] = owner[win]
    covered = torch.nonzero(face_idx >= 0)[:, 0]
    pix = torch.stack([covered % width, covered // width], -1).to(verts.dtype) + 0.5
    bary_out = torch.zeros(height * width, 3, dtype=verts.dtype)
    bary_out = bary_out.index_put((covered,), _edge_bary(verts[faces[face_idx[covered]]][:, :, :2], pix))
    return face_idx.view(height, width), bary_out.view(height, width, 3)


def interpolate(attr: torch.Tensor, faces: torch.Tensor, face_idx: torch.Tensor, bary: torch.Tensor) -> torch.Tensor:
    """attr [V, C] -> [H, W, C] (zeros where no triangle)."""
    safe = face_idx.clamp_min(0)
    out = (attr[faces[safe]] * bary[..., None]).sum(-2)
    return out * (face_idx >= 0)[..., None]
