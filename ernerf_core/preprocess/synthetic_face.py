"""A procedural 3D face in MediaPipe's 478-point topology, and landmark sequences made from it.

The tracker is measured against known poses, focal and expressions: this module builds
them. MediaPipe's canonical mesh is not shipped in its wheel, so the face is constructed
from the topology the wheel does ship (``face_mesh_connections``): the named contours
(face oval, eyes, brows, lips, nose) are placed where a face has them, every other vertex
is the harmonic (graph Laplacian) interpolation of its mesh neighbours, and depth is an
ellipsoidal head with a nose, eye sockets and lips. Units are decimetres (the reference's
BFM units, ERNERF_FACTS.md section 1); the frame is x to the subject's left, y up, z out
of the face, origin at the centroid of the 468 mesh points.

Sequences add smooth head motion, four blendshapes (jaw, smile, brows, blink), pixel noise
on x/y, and MediaPipe-style relative depth (z in pixels, smaller = nearer) with its own
noise and bias.
"""

from __future__ import annotations

import collections
import functools
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

from .landmark_ba import canonical_gauge
from .pose_math import euler_to_matrix, project

N_MESH = 468
N_POINTS = 478
RIGHT_IRIS = (468, 469, 470, 471, 472)   # centre first
LEFT_IRIS = (473, 474, 475, 476, 477)
EXPRESSIONS = ("jaw_open", "smile", "brow_raise", "blink")


def _edges(name: str) -> list[tuple[int, int]]:
    from mediapipe.python.solutions import face_mesh_connections as fmc

    return sorted(getattr(fmc, name))


def _adjacency(edges) -> dict[int, list[int]]:
    adj = collections.defaultdict(list)
    for a, b in edges:
        adj[a].append(b)
        adj[b].append(a)
    return adj


def _component(adj, member: int) -> set[int]:
    seen, stack = {member}, [member]
    while stack:
        for n in adj[stack.pop()]:
            if n not in seen:
                seen.add(n)
                stack.append(n)
    return seen


def _walk_loop(adj, start: int, towards: int) -> list[int]:
    """The closed contour through ``start`` in the direction that meets ``towards`` first."""
    for first in adj[start]:
        order, prev, cur = [start], start, first
        while cur != start:
            order.append(cur)
            prev, cur = cur, next(n for n in adj[cur] if n != prev)
        if towards in order[: len(order) // 2 + 1]:
            return order
    raise ValueError(f"no contour through {start} meets {towards}")


def _walk_chain(adj, start: int) -> list[int]:
    chain, prev, cur = [start], None, start
    while True:
        nxt = [n for n in adj[cur] if n != prev]
        if not nxt:
            return chain
        prev, cur = cur, nxt[0]
        chain.append(cur)


def _ellipse_loop(order: list[int], far_corner: int, centre, half_w: float, half_h: float,
                  start_angle: float, upper_first: bool) -> dict[int, np.ndarray]:
    """Place a closed contour on an ellipse: start vertex at ``start_angle``, the run up to
    ``far_corner`` over the upper side when ``upper_first``, the rest back underneath."""
    k = order.index(far_corner)
    sweep = np.pi if upper_first == (start_angle == 0.0) else -np.pi
    out = {}
    for j, idx in enumerate(order[: k + 1]):
        a = start_angle + sweep * j / k
        out[idx] = np.array([centre[0] + half_w * np.cos(a), centre[1] + half_h * np.sin(a)])
    rest = order[k:] + [order[0]]
    for j, idx in enumerate(rest[1:-1], start=1):
        a = start_angle + sweep + sweep * j / (len(rest) - 1)
        out[idx] = np.array([centre[0] + half_w * np.cos(a), centre[1] + half_h * np.sin(a)])
    return out


@functools.cache
def face_layout() -> tuple[np.ndarray, dict[str, tuple[int, ...]]]:
    """2D positions [468, 2] in dm (x subject's left, y up) and named vertex groups."""
    from .mesh_indices import FACE_OVAL

    anchors: dict[int, np.ndarray] = {}
    groups: dict[str, tuple[int, ...]] = {}
    # Face oval, from the forehead top towards the subject's left (+x), clockwise.
    ang = np.pi / 2 - np.arange(len(FACE_OVAL)) * 2 * np.pi / len(FACE_OVAL)
    for i, a in zip(FACE_OVAL, ang, strict=True):
        anchors[int(i)] = np.array([0.72 * np.cos(a), 0.98 * np.sin(a) - 0.05])

    # Eyes: outer corner -> upper lid -> inner corner -> lower lid.
    for name, outer, upper, inner, cx in (("LEFT_EYE", 263, 387, 362, 0.31),
                                          ("RIGHT_EYE", 33, 160, 133, -0.31)):
        adj = _adjacency(_edges("FACEMESH_" + name))
        order = _walk_loop(adj, outer, upper)
        start = 0.0 if cx > 0 else np.pi
        anchors.update(_ellipse_loop(order, inner, (cx, 0.17), 0.14, 0.05, start, True))
        groups[name] = tuple(order)
        groups[name + "_UPPER"] = tuple(order[1: order.index(inner)])

    # Lips: outer and inner contours from the subject's left corner over the upper lip.
    adj = _adjacency(_edges("FACEMESH_LIPS"))
    for left, upper_mid, right, half_w, half_h, tag in ((291, 0, 61, 0.25, 0.10, "OUTER"),
                                                         (308, 13, 78, 0.19, 0.015, "INNER")):
        sub = _component(adj, left)
        order = _walk_loop({k: v for k, v in adj.items() if k in sub}, left, upper_mid)
        anchors.update(_ellipse_loop(order, right, (0.0, -0.47), half_w, half_h, 0.0, True))
        groups["LIPS_" + tag] = tuple(order)
        groups["LIPS_" + tag + "_LOWER"] = tuple(order[order.index(right) + 1:])

    # Brows: a lower and an upper edge each, walked from the outer end.
    for name, outers, sign in (("LEFT_EYEBROW", (276, 300), 1.0), ("RIGHT_EYEBROW", (46, 70), -1.0)):
        adj = _adjacency(_edges("FACEMESH_" + name))
        members = []
        for c_i, outer in enumerate(outers):
            chain = _walk_chain(adj, outer)
            members += chain
            for j, idx in enumerate(chain):
                t = j / (len(chain) - 1)
                anchors[idx] = np.array([sign * (0.50 - 0.38 * t),
                                         0.33 + 0.04 * c_i + 0.05 * np.sin(np.pi * (0.2 + 0.8 * t))])
        groups[name] = tuple(members)

    # Nose bridge (top -> tip) and the column below the tip.
    for idx, y in zip((168, 6, 197, 195, 5, 4, 1, 19, 94, 2),
                      (0.18, 0.10, 0.02, -0.06, -0.13, -0.19, -0.21, -0.25, -0.28, -0.30), strict=True):
        anchors[idx] = np.array([0.0, y])

    return _harmonic_fill(anchors), groups


def _harmonic_fill(anchors: dict[int, np.ndarray]) -> np.ndarray:
    """Every free vertex at the mean of its mesh neighbours (uniform-weight Laplace)."""
    edges = np.array(_edges("FACEMESH_TESSELATION"))
    n = N_MESH
    w = sp.coo_matrix((np.ones(2 * len(edges)), (np.r_[edges[:, 0], edges[:, 1]],
                                                 np.r_[edges[:, 1], edges[:, 0]])), shape=(n, n)).tocsr()
    w.data[:] = 1.0
    lap = sp.diags(np.asarray(w.sum(1)).ravel()) - w
    fixed = np.array(sorted(anchors))
    free = np.setdiff1d(np.arange(n), fixed)
    pos = np.zeros((n, 2))
    pos[fixed] = np.stack([anchors[i] for i in fixed])
    lff = lap[free][:, free].tocsc()
    rhs = -lap[free][:, fixed] @ pos[fixed]
    pos[free] = np.stack([spla.spsolve(lff, rhs[:, k]) for k in range(2)], 1)
    return pos


def _bump(xy: np.ndarray, cx: float, cy: float, sx: float, sy: float) -> np.ndarray:
    return np.exp(-((xy[:, 0] - cx) / sx) ** 2 - ((xy[:, 1] - cy) / sy) ** 2)


@functools.cache
def neutral_face() -> np.ndarray:
    """[478, 3] neutral face in dm, centred on the 468 mesh points' centroid."""
    xy, groups = face_layout()
    r2 = (xy[:, 0] / 0.80) ** 2 + ((xy[:, 1] + 0.05) / 1.08) ** 2
    z = 0.75 * np.sqrt(np.clip(1.0 - r2, 0.0, None))
    z += 0.26 * _bump(xy, 0.0, -0.12, 0.07, 0.16)          # nose
    z += 0.08 * _bump(xy, 0.0, -0.22, 0.12, 0.06)          # nose tip and wings
    z -= 0.07 * (_bump(xy, 0.31, 0.17, 0.13, 0.08) + _bump(xy, -0.31, 0.17, 0.13, 0.08))
    z += 0.05 * _bump(xy, 0.0, -0.47, 0.22, 0.10)          # lips
    z += 0.04 * _bump(xy, 0.0, -0.80, 0.15, 0.10)          # chin
    mesh = np.concatenate([xy, z[:, None]], 1)
    iris = []
    for eye in ("RIGHT_EYE", "LEFT_EYE"):     # appended as RIGHT_IRIS (468..472), then LEFT_IRIS
        centre = mesh[list(groups[eye])].mean(0) + np.array([0.0, 0.0, 0.02])
        iris.append(centre)
        for a in (0.0, np.pi / 2, np.pi, 1.5 * np.pi):   # ring order: right, top, left, bottom
            iris.append(centre + 0.055 * np.array([np.cos(a), np.sin(a), 0.0]))
    pts = np.concatenate([mesh, np.stack(iris)], 0)
    # Put the face in the tracker's canonical gauge, so true and tracked poses share a frame.
    q, centre, _ = canonical_gauge(pts)
    return (pts - centre) @ q.T


@functools.cache
def blendshapes() -> np.ndarray:
    """[4, 478, 3] displacements in dm for EXPRESSIONS at coefficient 1."""
    face = neutral_face()
    _, groups = face_layout()
    xy = face[:, :2]
    out = np.zeros((len(EXPRESSIONS), N_POINTS, 3))
    lower_lip = set(groups["LIPS_OUTER_LOWER"]) | set(groups["LIPS_INNER_LOWER"])
    mouth_y = face[[13, 14]].mean(0)[1]          # between the closed lips
    # jaw: everything below the lips follows the chin, fading towards the ears
    below = np.clip((mouth_y - xy[:, 1]) / 0.12, 0.0, 1.0)
    w = np.where(np.isin(np.arange(N_POINTS), list(lower_lip)), 1.0, below)
    w *= np.exp(-(xy[:, 0] / 0.45) ** 4)
    out[0, :, 1] = -0.22 * w
    out[0, :, 2] = -0.05 * w
    # smile: mouth corners out and up
    for corner, sign in ((291, 1.0), (61, -1.0)):
        g = np.exp(-((xy - face[corner, :2]) ** 2).sum(1) / 0.09 ** 2)
        out[1, :, 0] += sign * 0.06 * g
        out[1, :, 1] += 0.04 * g
    # brow raise: the brows and the skin just above them
    for eye_x in (0.31, -0.31):
        g = np.exp(-((xy[:, 0] - eye_x) / 0.2) ** 2 - ((xy[:, 1] - (face[10, 1] - 0.55)) / 0.18) ** 2)
        out[2, :, 1] += 0.07 * g * (xy[:, 1] > face[[159, 386], 1].mean() + 0.03)
    # blink: upper lids close onto the lower ones
    for name in ("RIGHT_EYE_UPPER", "LEFT_EYE_UPPER"):
        out[3, list(groups[name]), 1] = -0.08
    return out


@dataclass
class SyntheticSequence:
    landmarks: np.ndarray   # [N, 478, 3] float32: x, y pixels, z MediaPipe-style pixels
    clean_2d: np.ndarray    # [N, 478, 2] noise-free projections
    euler: np.ndarray       # [N, 3] reference euler (radians)
    rotation: np.ndarray    # [N, 3, 3]
    trans: np.ndarray       # [N, 3] dm
    focal: float
    resolution: int
    expression: np.ndarray  # [N, 4] coefficients of EXPRESSIONS
    shape: np.ndarray       # [478, 3] neutral face (dm)


def _smooth_signal(rng: np.random.Generator, n: int, amplitude: float, freqs, fps: float = 25.0):
    t = np.arange(n) / fps
    out = np.zeros(n)
    for f in freqs:
        out += np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi)) * rng.uniform(0.5, 1.0)
    return amplitude * out / len(freqs) ** 0.5


def make_sequence(n_frames: int, *, resolution: int = 512, focal: float | None = None, seed: int = 0,
                  noise_px: float = 0.5, depth_noise_px: float = 2.0, depth_scale: float = 0.9,
                  yaw_deg: float = 15.0, pitch_deg: float = 8.0, roll_deg: float = 4.0,
                  expression_scale: float = 1.0) -> SyntheticSequence:
    """Landmarks of the procedural face under smooth random head motion and expressions.

    ``focal`` defaults to the reference's typical 1100 px at 512 (scaled to resolution);
    the head sits ~7 dm from the camera, as in the reference's tracks. ``depth_scale``
    compresses the MediaPipe-style z like a detector that underestimates depth.
    """
    rng = np.random.default_rng(seed)
    s = resolution / 512.0
    focal = 1100.0 * s if focal is None else float(focal)
    n = n_frames
    euler = np.stack([
        np.deg2rad(_smooth_signal(rng, n, pitch_deg, (0.11, 0.23, 0.37))),
        np.deg2rad(_smooth_signal(rng, n, yaw_deg, (0.07, 0.19, 0.31))),
        np.deg2rad(_smooth_signal(rng, n, roll_deg, (0.13, 0.29))),
    ], 1)
    trans = np.stack([
        _smooth_signal(rng, n, 0.15, (0.05, 0.17)),
        _smooth_signal(rng, n, 0.10, (0.09, 0.21)),
        -7.0 + _smooth_signal(rng, n, 0.3, (0.04, 0.15)),
    ], 1)
    jaw = np.clip(_smooth_signal(rng, n, 0.9, (1.7, 2.9, 4.3)), 0.0, 1.0)
    smile = np.clip(0.3 + _smooth_signal(rng, n, 0.5, (0.2, 0.5)), 0.0, 1.0)
    brow = np.clip(_smooth_signal(rng, n, 0.8, (0.3, 0.7)), 0.0, 1.0)
    blink = np.zeros(n)
    for start in rng.choice(max(n - 4, 1), size=max(n // 100, 1), replace=False):
        blink[start:start + 4] = (0.5, 1.0, 1.0, 0.5)[: len(blink[start:start + 4])]
    expr = expression_scale * np.stack([jaw, smile, brow, blink], 1)

    shape = neutral_face()
    pts = shape[None] + np.einsum("nk,kpd->npd", expr, blendshapes())        # [N, 478, 3]
    rot = euler_to_matrix(torch.from_numpy(euler)).numpy()
    cam = np.einsum("nij,npj->npi", rot, pts) + trans[:, None]
    cxy = torch.tensor([resolution / 2.0, resolution / 2.0], dtype=torch.float64)
    uv = project(torch.from_numpy(cam), torch.tensor(focal, dtype=torch.float64), cxy).numpy()
    # MediaPipe z: relative to the head centre, scaled like x at the head's depth, nearer = smaller
    zc = cam[..., 2]
    depth = -(zc - zc[:, :N_MESH].mean(1, keepdims=True)) * focal / -zc[:, :N_MESH].mean(1, keepdims=True)
    lms = np.concatenate([uv + rng.normal(0.0, noise_px, uv.shape),
                          (depth_scale * depth + rng.normal(0.0, depth_noise_px, depth.shape))[..., None]], -1)
    return SyntheticSequence(landmarks=lms.astype(np.float32), clean_2d=uv, euler=euler, rotation=rot,
                             trans=trans, focal=focal, resolution=resolution, expression=expr, shape=shape)


def write_subject(seq: SyntheticSequence, data_dir, *, draw: bool = True) -> None:
    """A subject folder for the tracking stage: ``ori_imgs/<i>.jpg`` (the face's wireframe on
    grey), ``landmarks.npy`` and ``../manifests/normalize.json`` with the resolution."""
    import json
    from pathlib import Path

    import cv2

    data_dir = Path(data_dir)
    (data_dir / "ori_imgs").mkdir(parents=True, exist_ok=True)
    (data_dir.parent / "manifests").mkdir(parents=True, exist_ok=True)
    edges = np.array(_edges("FACEMESH_TESSELATION"))
    res = seq.resolution
    for i, uv in enumerate(seq.clean_2d):
        img = np.full((res, res, 3), 90, np.uint8)
        if draw:
            pts = np.round(uv * 4).astype(np.int32)   # 2 fractional bits: sub-pixel lines
            lines = [np.stack([pts[a], pts[b]]) for a, b in edges]
            cv2.polylines(img, lines, False, (200, 190, 170), 1, cv2.LINE_AA, shift=2)
        cv2.imwrite(str(data_dir / "ori_imgs" / f"{i}.jpg"), img)
    np.save(data_dir / "landmarks.npy", seq.landmarks.astype(np.float32))
    (data_dir.parent / "manifests" / "normalize.json").write_text(json.dumps({"resolution": res}))
