"""Render one frame of the rig: pose the mesh, rasterise it, warp the photo through it.

Rasterisation draws triangle ids into an int32 buffer far to near (painter's order, cv2),
then every covered pixel gets barycentric coordinates in its triangle and, through them,
the photo position it shows; ``cv2.remap`` samples the photo there. The warped layer
(the person) is composited over the clean plate, so background the head uncovers is the
inpainted one. Mouth-opening pixels show the upper teeth (carried by the upper lip, not
stretched) and a dark mouth interior below them.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from . import face_mesh as fm
from .rig import FOCAL_PHOTO, JAW_MAX_DEG, PHOTO_SIZE, HeadRig, smoothstep

MOUTH_DARK = np.array([46.0, 16.0, 20.0], np.float32)  # RGB of the mouth interior
TEETH_FADE = 0.3  # the teeth fade into the dark over this share of their height
LIP_EDGE_PX = 1.5  # width of the soft edge between mouth interior and lower lip
SUBPIXEL_BITS = 4  # fixed-point precision of the rasteriser
MIN_RENDER_SIZE = 384  # smaller videos are rendered at a multiple of their size, then reduced
# lip width: mouth_width 1 (spread) moves the lip corners out by this share of the mouth's
# half width, -1 (rounded) in by as much; the pull fades with distance from the mouth centre
WIDTH_GAIN = 0.3
WIDTH_FALLOFF = 1.0  # Gaussian sigma of the pull, in mouth half widths


@dataclass(frozen=True)
class Frame:
    rgb: np.ndarray  # [S, S, 3] uint8
    head_mask: np.ndarray  # [S, S] bool, face + hair + ears
    landmarks: np.ndarray  # [478, 2] float32, pixel-edge convention at the video size


def rotation_x(angle_rad: float) -> np.ndarray:
    c, s = np.cos(angle_rad), np.sin(angle_rad)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]], np.float64)


class HeadRenderer:
    """Renders ``rig`` at ``size`` x ``size`` with a camera of focal ``focal`` (pixels).

    Small sizes are rendered at an integer multiple of at least ``MIN_RENDER_SIZE`` and
    box-filtered down, so lips, teeth and eyelids stay anti-aliased when they span a few
    pixels. (``self.size`` is that render size; ``out_size`` the video's.)
    """

    def __init__(self, rig: HeadRig, size: int):
        self.out_size = int(size)
        self.supersample = max(1, -(-MIN_RENDER_SIZE // self.out_size))
        self.rig, self.size = rig, self.out_size * self.supersample
        scale = self.size / PHOTO_SIZE
        self.focal = FOCAL_PHOTO * self.out_size / PHOTO_SIZE  # at the video size
        self.render_focal = FOCAL_PHOTO * scale
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR

        def resize(img: np.ndarray) -> np.ndarray:
            return img if scale == 1 else cv2.resize(img, (self.size, self.size), interpolation=interp)

        alpha = np.round(rig.layer_alpha * 255).astype(np.uint8)
        self.layer = resize(np.dstack([rig.photo, alpha]))  # [S, S, 4] uint8 RGBA
        self.plate = resize(rig.plate).astype(np.float32)
        self.photo = resize(rig.photo)
        self.head_src = resize(rig.head_mask.astype(np.uint8) * 255)
        # OpenCV samples at pixel centres on integer coordinates: shift by half a pixel.
        self.source_cv = rig.source_px.astype(np.float64) * scale - 0.5
        self.rest_px = rig.source_px.astype(np.float64) * scale
        self.triangles = rig.triangles
        self.mouth_ids = np.flatnonzero(rig.mouth_triangles)
        up, lo = np.array(fm.INNER_LIP_UPPER), np.array(fm.INNER_LIP_LOWER)
        self.lip_up, self.lip_lo = up, lo
        rest_gap = np.linalg.norm(self.source_cv[lo] - self.source_cv[up], axis=1)
        self.rest_gap = np.maximum(rest_gap, 0.5 * scale)
        # per-vertex mouth attributes: the photo positions of the lip column a vertex is on
        n = len(rig.vertices)
        self.col_up = np.zeros((n, 2))
        self.col_lo = np.zeros((n, 2))
        self.lip_t = np.zeros(n)
        for chain, t in ((up, 0.0), (lo, 1.0)):
            self.col_up[chain] = self.source_cv[up]
            self.col_lo[chain] = self.source_cv[lo]
            self.lip_t[chain] = t
        self.lip_t[[up[0], up[-1]]] = 0.5
        lips = rig.vertices[np.r_[up, lo]].astype(np.float64)
        self.mouth_centre = lips.mean(axis=0)
        half_width = (lips[:, 0].max() - lips[:, 0].min()) / 2
        sigma = WIDTH_FALLOFF * half_width
        d = np.linalg.norm(rig.vertices[:, :2] - self.mouth_centre[:2], axis=1)
        # Gaussian, tapered to exactly 0 between 2 and 3 sigma; nothing above the nose tip
        # moves (y points down), so eyes, brows, nose and ears stay where the pose puts them
        nose_y = float(rig.vertices[1, 1])
        below_nose = smoothstep(nose_y, nose_y + 0.6 * (self.mouth_centre[1] - nose_y), rig.vertices[:, 1])
        self.width_pull = WIDTH_GAIN * np.exp(-(d / sigma) ** 2 / 2) * smoothstep(3 * sigma, 2 * sigma, d) * below_nose
        self.width_pull[fm.N_MESH:] = 0.0  # iris points and the outer rings stay
        self.grid_x, self.grid_y = np.meshgrid(np.arange(self.size, dtype=np.float32),
                                               np.arange(self.size, dtype=np.float32))

    def deform(self, mouth_open: float, blink: float, mouth_width: float = 0.0) -> np.ndarray:
        """[V, 3] head-coordinate vertices with the lips spread (``mouth_width`` > 0) or
        rounded (< 0), the jaw opened and the eyelids closed."""
        rig = self.rig
        verts = rig.vertices.astype(np.float64) + blink * rig.blink_offset
        verts[:, 0] += mouth_width * self.width_pull * (verts[:, 0] - self.mouth_centre[0])
        rot = rotation_x(np.deg2rad(JAW_MAX_DEG * mouth_open))
        rel = verts - rig.jaw_pivot
        jawed = rel @ rot.T + rig.jaw_pivot
        return verts + rig.jaw_weight[:, None] * (jawed - verts)

    def project(self, cam: np.ndarray) -> np.ndarray:
        """[K, 3] camera coords -> [K, 2] pixels at the render size (pixel-edge convention)."""
        return self.render_focal * cam[:, :2] / cam[:, 2:3] + self.size / 2

    def render(self, rotation: np.ndarray, trans: np.ndarray, mouth_open: float,
               blink: float, mouth_width: float = 0.0) -> Frame:
        """rotation [3, 3], trans [3] (cm): x_cam = rotation @ x_head + trans; mouth_open 0..1,
        blink 0..1, mouth_width -1 (rounded) .. 1 (spread)."""
        rig = self.rig
        cam = self.deform(mouth_open, blink, mouth_width) @ rotation.T + trans
        posed = self.project(cam)
        dst = self.rest_px + rig.rigid_weight[:, None] * (posed - self.rest_px)
        dst_cv = dst - 0.5

        # crop to the mesh's bounding box: outside it the frame is the photo
        x0, y0 = np.maximum(np.floor(dst_cv.min(axis=0)).astype(int), 0)
        x1, y1 = np.minimum(np.ceil(dst_cv.max(axis=0)).astype(int) + 1, self.size)
        ids = np.full((y1 - y0, x1 - x0), -1, np.int32)
        pts = np.round((dst_cv - [x0, y0]) * (1 << SUBPIXEL_BITS)).astype(np.int32)
        depth = cam[self.triangles, 2].mean(axis=1)
        for t in np.argsort(-depth, kind="stable"):  # far to near
            cv2.fillConvexPoly(ids, pts[self.triangles[t]], int(t), cv2.LINE_8, SUBPIXEL_BITS)

        ys, xs = np.nonzero(ids >= 0)
        tri = ids[ys, xs]
        corners = self.triangles[tri]  # [P, 3]
        bary = _barycentric(dst_cv[corners], np.stack([xs + x0, ys + y0], axis=1).astype(np.float64))
        src = np.einsum("pk,pkd->pd", bary, self.source_cv[corners])

        dark = np.zeros(len(tri))
        in_mouth = np.isin(tri, self.mouth_ids)
        if in_mouth.any():
            src[in_mouth], dark[in_mouth] = self._mouth(dst_cv, corners[in_mouth], bary[in_mouth])

        map_x = self.grid_x[y0:y1, x0:x1].copy()
        map_y = self.grid_y[y0:y1, x0:x1].copy()
        map_x[ys, xs] = src[:, 0]
        map_y[ys, xs] = src[:, 1]
        layer = cv2.remap(self.layer, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
        head = cv2.remap(self.head_src, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)

        alpha = layer[..., 3:4].astype(np.float32) / 255.0
        crop = alpha * layer[..., :3] + (1.0 - alpha) * self.plate[y0:y1, x0:x1]
        if in_mouth.any():
            d = dark[in_mouth, None].astype(np.float32)
            yy, xx = ys[in_mouth], xs[in_mouth]
            crop[yy, xx] = (1.0 - d) * crop[yy, xx] + d * MOUTH_DARK
        rgb = self.photo.copy()
        rgb[y0:y1, x0:x1] = np.clip(crop + 0.5, 0, 255).astype(np.uint8)
        mask = np.zeros((self.size, self.size), np.uint8)
        mask[y0:y1, x0:x1] = head
        landmarks = dst[: fm.N_LANDMARKS] / self.supersample  # pixel-edge: exact under box filter
        if self.supersample > 1:
            out = (self.out_size, self.out_size)
            rgb = cv2.resize(rgb, out, interpolation=cv2.INTER_AREA)
            mask = cv2.resize(mask, out, interpolation=cv2.INTER_AREA)
        return Frame(rgb=rgb, head_mask=mask > 127, landmarks=landmarks.astype(np.float32))

    def _mouth(self, dst_cv: np.ndarray, corners: np.ndarray, bary: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
        """Photo positions and darkness of mouth-opening pixels.

        A pixel a share t of the way from the upper to the lower lip lies t * gap_now below the
        upper lip; the teeth hang from the upper lip unstretched, so it shows the photo a
        share t * gap_now / gap_rest of the way down the lip column, and the dark interior
        once that share passes 1 (below the teeth).
        """
        gap_now = np.linalg.norm(dst_cv[self.lip_lo] - dst_cv[self.lip_up], axis=1)
        gap = np.zeros(len(dst_cv))
        ratio = np.ones(len(dst_cv))
        gap[self.lip_up] = gap[self.lip_lo] = gap_now
        ratio[self.lip_up] = ratio[self.lip_lo] = gap_now / self.rest_gap
        ratio[[self.lip_up[0], self.lip_up[-1]]] = 1.0  # the corners do not open
        col_up = np.einsum("pk,pkd->pd", bary, self.col_up[corners])
        col_lo = np.einsum("pk,pkd->pd", bary, self.col_lo[corners])
        t = np.einsum("pk,pk->p", bary, self.lip_t[corners])
        share = np.einsum("pk,pk->p", bary, self.lip_t[corners] * ratio[corners])
        src = col_up + np.clip(share, 0.0, 1.0)[:, None] * (col_lo - col_up)
        dark = np.clip((share - 1.0) / TEETH_FADE, 0.0, 1.0)
        # fade out over the last pixel before the lower lip: an anti-aliased lip edge
        to_lip_px = (1.0 - t) * np.einsum("pk,pk->p", bary, gap[corners])
        dark *= np.clip(to_lip_px / LIP_EDGE_PX, 0.0, 1.0)
        return src, dark * dark * (3 - 2 * dark)


def _barycentric(tri: np.ndarray, p: np.ndarray) -> np.ndarray:
    """tri [P, 3, 2], p [P, 2] -> [P, 3] barycentric coordinates, clamped into the triangle
    (degenerate triangle -> its vertex 0)."""
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    v0, v1, v2 = b - a, c - a, p - a
    den = v0[:, 0] * v1[:, 1] - v1[:, 0] * v0[:, 1]
    ok = np.abs(den) > 1e-9
    den = np.where(ok, den, 1.0)
    w1 = np.where(ok, (v2[:, 0] * v1[:, 1] - v1[:, 0] * v2[:, 1]) / den, 0.0)
    w2 = np.where(ok, (v0[:, 0] * v2[:, 1] - v2[:, 0] * v0[:, 1]) / den, 0.0)
    bary = np.stack([1.0 - w1 - w2, w1, w2], axis=1)
    # The rasteriser also claims pixels whose centre lies just outside a triangle; in a
    # sliver triangle extrapolating to them would sample far away, so clamp to its edge.
    bary = np.clip(bary, 0.0, None)
    return bary / bary.sum(axis=1, keepdims=True)
