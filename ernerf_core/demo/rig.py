"""The head rig of the bundled photo: a 3D face mesh lifted from MediaPipe, extended outward
to carry hair and ears, with a jaw hinge, eyelids and the images it warps.

Units: head coordinates are centimetres (the photo's inter-pupil distance is taken to be
6.3 cm); camera coordinates follow OpenCV (x right, y down, z forward). The rig is built for
the photo's own camera (512 x 512, focal ``FOCAL_PHOTO``, principal point at the image
centre), in which the photo's head has rotation identity and translation ``origin_cam``:
rendering the rig with that pose, mouth_open 0 and open eyes reproduces the photo.

2D positions use the pixel-edge convention of MediaPipe's normalised coordinates times the
image size: the image spans [0, size], pixel i covers [i, i+1].
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

from . import face_mesh as fm

PHOTO_SIZE = 512
FOCAL_PHOTO = 1200.0  # px at 512: a ~24 degree field of view, a portrait lens
INTER_PUPIL_CM = 6.3
JAW_MAX_DEG = 16.0  # jaw rotation at mouth_open = 1
LID_LINE = 0.2  # a closed eye's lid line, as a fraction of the way from lower to upper lid
# Outward rings around the face oval, as (distance beyond the head silhouette, in face
# heights; share of the silhouette distance). The last ring is static: it joins the moving
# head to the still picture.
RINGS = ((0.04, 0.5), (0.12, 1.0), (0.45, 1.0))
RING_DEPTH_PER_CM = 0.6  # rings curve back around the skull: cm of depth per cm outward
NECK_RIGID = (0.55, 0.2)  # rigid weight of rings 1, 2 below the jaw (1 above the ears)


@dataclass(frozen=True)
class HeadRig:
    photo: np.ndarray  # [512, 512, 3] uint8 RGB
    plate: np.ndarray  # [512, 512, 3] uint8 RGB, the photo with the head inpainted
    layer_alpha: np.ndarray  # [512, 512] float32, person mask: what the warp carries
    head_mask: np.ndarray  # [512, 512] bool, face + hair + ears
    vertices: np.ndarray  # [V, 3] float32 head coords (cm); rows 0..477 = MediaPipe landmarks
    source_px: np.ndarray  # [V, 2] float32 rest projection in the photo (pixel-edge convention)
    rigid_weight: np.ndarray  # [V] float32, 1 = moves with the head, 0 = static picture
    jaw_weight: np.ndarray  # [V] float32, share of the jaw rotation a vertex follows
    jaw_pivot: np.ndarray  # [3] head coords of the jaw hinge (rotation about the head x axis)
    blink_offset: np.ndarray  # [V, 3] displacement at a fully closed blink (head coords)
    triangles: np.ndarray  # [T, 3] int32, face mesh + eye openings + mouth opening + rings
    mouth_triangles: np.ndarray  # [T] bool, triangles of the mouth opening
    origin_cam: np.ndarray  # [3] head origin in the photo's camera (cm)


def _lift(px: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """[K, 2] pixels (pixel-edge convention, photo) at [K] depths -> [K, 3] camera coords."""
    xy = (px - PHOTO_SIZE / 2) * depth[:, None] / FOCAL_PHOTO
    return np.concatenate([xy, depth[:, None]], axis=1)


def _strip_triangles(upper: list[int], lower: list[int]) -> list[tuple[int, int, int]]:
    """Triangles filling the opening between two chains that share their end points."""
    tris = []
    for j in range(len(upper) - 1):
        for tri in ((upper[j], upper[j + 1], lower[j + 1]), (upper[j], lower[j + 1], lower[j])):
            if len(set(tri)) == 3:
                tris.append(tri)
    return tris


def _head_silhouette(person: np.ndarray, lm_px: np.ndarray) -> np.ndarray:
    """[H, W] bool: face + hair + ears = person pixels above the jaw line, plus the face.

    The jaw line is the lower face oval between the jaw corners (58, 288), continued
    horizontally outward; below it is neck and body.
    """
    h, w = person.shape
    oval = lm_px[fm.FACE_OVAL]
    start, end = fm.FACE_OVAL.index(288), fm.FACE_OVAL.index(58)
    jaw = oval[start:end + 1]  # 288 -> chin -> 58, right to left in the image
    jaw = jaw[np.argsort(jaw[:, 0])]
    xs = np.arange(w) + 0.5
    cut_y = np.interp(xs, jaw[:, 0], jaw[:, 1])  # constant beyond the ends
    above = (np.arange(h)[:, None] + 0.5) < cut_y[None, :]
    face = np.zeros((h, w), np.uint8)
    cv2.fillPoly(face, [np.round((oval - 0.5) * 16).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=4)
    head = ((person > 0.5) & above) | face.astype(bool)
    # keep the component holding the face: stray person pixels elsewhere are not head
    n, labels = cv2.connectedComponents(head.astype(np.uint8))
    cx, cy = np.round(lm_px[1]).astype(int)  # nose tip
    return labels == labels[min(cy, h - 1), min(cx, w - 1)]


def _ray_extent(mask: np.ndarray, start: np.ndarray, direction: np.ndarray, limit: float) -> float:
    """Distance from ``start`` along unit ``direction`` to the last True pixel of ``mask``."""
    steps = np.arange(0.0, limit, 0.5)
    pts = start[None] + steps[:, None] * direction[None]
    ij = np.floor(pts).astype(int)
    inside = (ij[:, 0] >= 0) & (ij[:, 0] < mask.shape[1]) & (ij[:, 1] >= 0) & (ij[:, 1] < mask.shape[0])
    hit = np.zeros(len(steps), bool)
    hit[inside] = mask[ij[inside, 1], ij[inside, 0]]
    return float(steps[hit].max()) if hit.any() else 0.0


def smoothstep(e0: float | np.ndarray, e1: float | np.ndarray, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def _jaw_weights(src: np.ndarray) -> np.ndarray:
    """[V] share of the jaw rotation: 1 below the lips' parting line, 0 above it.

    Beyond the mouth corners the transition widens with distance, so the cheeks stretch
    smoothly instead of tearing along a line.
    """
    up, lo = src[fm.INNER_LIP_UPPER], src[fm.INNER_LIP_LOWER]
    mid = (up + lo) / 2
    order = np.argsort(mid[:, 0])
    x, y = src[:, 0], src[:, 1]
    cut = np.interp(x, mid[order, 0], mid[order, 1])
    half_width = (mid[:, 0].max() - mid[:, 0].min()) / 2
    lateral = np.maximum(np.abs(x - mid[:, 0].mean()) - half_width, 0.0)
    eps = 1.5 + 0.8 * lateral
    weight = smoothstep(-eps, eps, y - cut)
    weight[fm.INNER_LIP_UPPER] = 0.0
    weight[fm.INNER_LIP_LOWER] = 1.0
    weight[[fm.INNER_LIP_UPPER[0], fm.INNER_LIP_UPPER[-1]]] = 0.5  # the corners
    return weight.astype(np.float32)


def _blink_offsets(vertices: np.ndarray, src: np.ndarray) -> np.ndarray:
    """[V, 3] displacement that closes both eyes: the upper lid comes down to a lid line just
    above the lower lid (which rises a little); the lid skin above follows, fading out
    before the brow."""
    offset = np.zeros_like(vertices)
    fixed = {i for upper, lower in fm.EYES for i in upper + lower} | set(range(fm.N_MESH, fm.N_LANDMARKS))
    movable = np.array([i for i in range(len(vertices)) if i not in fixed])
    for upper, lower in fm.EYES:
        up, lo = np.array(upper), np.array(lower)
        line = vertices[lo] + LID_LINE * (vertices[up] - vertices[lo])
        d_up, d_lo = line - vertices[up], line - vertices[lo]  # corners: zero
        offset[up[1:-1]] = d_up[1:-1]
        offset[lo[1:-1]] = d_lo[1:-1]
        eye_height = float(np.max(src[lo, 1] - src[up, 1]))
        x, y = src[movable, 0], src[movable, 1]
        for lid, disp, reach, sign in ((up, d_up, 1.6, 1.0), (lo, d_lo, 0.8, -1.0)):
            order = np.argsort(src[lid, 0])
            lid_x, lid_y = src[lid[order], 0], src[lid[order], 1]
            within = (x > lid_x[0]) & (x < lid_x[-1])
            dist = sign * (np.interp(x, lid_x, lid_y) - y)  # > 0 on the skin side of this lid
            fade = np.clip(1.0 - dist / (reach * eye_height), 0.0, 1.0) * (dist > 0) * within
            shift = np.stack([np.interp(x, lid_x, disp[order, k]) for k in range(3)], axis=1)
            offset[movable] += fade[:, None] * shift
    return offset.astype(np.float32)


@functools.cache
def build_rig() -> HeadRig:
    """Detect, lift and extend the face of ``skimage.data.astronaut()`` (deterministic)."""
    from skimage import data

    photo = np.ascontiguousarray(data.astronaut()[..., :3])
    landmarks = fm.detect_landmarks([photo])[0]
    if landmarks is None:
        raise RuntimeError("MediaPipe found no face in the bundled photo")
    lm_px = landmarks[:, :2] * PHOTO_SIZE  # pixel-edge convention
    person = fm.person_mask(photo)
    head = _head_silhouette(person, lm_px)

    # Depth: MediaPipe's z is in image-width units relative to the head; put the face at the
    # distance where the measured inter-pupil distance is 6.3 cm.
    ipd_px = float(np.linalg.norm(lm_px[fm.IRIS_CENTERS[0]] - lm_px[fm.IRIS_CENTERS[1]]))
    face_depth = FOCAL_PHOTO * INTER_PUPIL_CM / ipd_px
    cm_per_px = face_depth / FOCAL_PHOTO
    depth = face_depth + landmarks[:, 2] * PHOTO_SIZE * cm_per_px
    face_cam = _lift(lm_px, depth)

    # Rings: rays from the face centre through each oval vertex, out past hair and ears.
    oval_px, oval_cam = lm_px[fm.FACE_OVAL], face_cam[fm.FACE_OVAL]
    centre = oval_px.mean(axis=0)
    directions = (oval_px - centre) / np.linalg.norm(oval_px - centre, axis=1, keepdims=True)
    face_height = float(oval_px[:, 1].max() - oval_px[:, 1].min())
    extent = np.array([_ray_extent(head, p, d, 2.0 * face_height)
                       for p, d in zip(oval_px, directions, strict=True)])
    # a circular 5-tap mean keeps the rings from zig-zagging along ragged hair
    extent = np.mean([np.roll(extent, k) for k in range(-2, 3)], axis=0)
    ear_y = lm_px[[234, 454], 1].mean()
    jaw_corner_y = lm_px[[58, 288], 1].mean()
    below = smoothstep(ear_y, jaw_corner_y, oval_px[:, 1])  # 0 above the ears, 1 at the jaw

    ring_px, ring_cam, ring_rigid = [], [], []
    for k, (margin, share) in enumerate(RINGS):
        dist = share * extent + margin * face_height
        px = oval_px + directions * dist[:, None]
        z = oval_cam[:, 2] + RING_DEPTH_PER_CM * dist * cm_per_px
        ring_px.append(px)
        ring_cam.append(_lift(px, z))
        rigid = 1.0 - (1.0 - NECK_RIGID[k]) * below if k < len(NECK_RIGID) else np.zeros(len(px))
        ring_rigid.append(rigid)

    source_px = np.concatenate([lm_px, *ring_px]).astype(np.float32)
    cam = np.concatenate([face_cam, *ring_cam])
    rigid = np.concatenate([np.ones(fm.N_LANDMARKS), *ring_rigid]).astype(np.float32)

    # Head origin: the skull centre, behind the face oval at mid height.
    face_width = float(np.linalg.norm(face_cam[234] - face_cam[454]))
    origin = np.array([oval_cam[:, 0].mean(), oval_cam[:, 1].mean(),
                       np.median(oval_cam[:, 2]) + 0.3 * face_width])
    vertices = (cam - origin).astype(np.float32)

    n_ring = len(fm.FACE_OVAL)
    tris = [tuple(t) for t in fm.tesselation_triangles()]
    for upper, lower in fm.EYES:
        tris += _strip_triangles(upper, lower)
    mouth = _strip_triangles(fm.INNER_LIP_UPPER, fm.INNER_LIP_LOWER)
    chains = [np.array(fm.FACE_OVAL)] + [fm.N_LANDMARKS + k * n_ring + np.arange(n_ring)
                                         for k in range(len(RINGS))]
    for inner, outer in zip(chains[:-1], chains[1:], strict=True):
        for i in range(n_ring):
            j = (i + 1) % n_ring
            tris += [(inner[i], inner[j], outer[j]), (inner[i], outer[j], outer[i])]
    triangles = np.array(tris + mouth, dtype=np.int32)
    is_mouth = np.zeros(len(triangles), bool)
    is_mouth[len(tris):] = True

    hinge = vertices[[234, 454]].mean(axis=0)
    # The plate lacks whatever the warp can move away from: the head, and the neck up to
    # the second ring (whose motion is large enough to leave a visible double edge).
    neck = np.zeros_like(head, np.uint8)
    cv2.fillPoly(neck, [np.round((ring_px[1] - 0.5) * 16).astype(np.int32)], 1, cv2.LINE_8, shift=4)
    moving = head | (neck.astype(bool) & (person > 0.5))
    plate = cv2.inpaint(photo, cv2.dilate(moving.astype(np.uint8), np.ones((17, 17), np.uint8)),
                        5, cv2.INPAINT_TELEA)
    return HeadRig(photo=photo, plate=plate, layer_alpha=person, head_mask=head,
                   vertices=vertices, source_px=source_px, rigid_weight=rigid,
                   jaw_weight=_jaw_weights(source_px), jaw_pivot=hinge.astype(np.float32),
                   blink_offset=_blink_offsets(vertices, source_px), triangles=triangles,
                   mouth_triangles=is_mouth, origin_cam=origin.astype(np.float32))
