"""Backend ``bfm``: the reference's Basel Face Model fit, seeded by the landmark tracker.

1. The landmark bundle adjustment gives poses, focal and the subject's 3D landmark face.
2. The BFM mean is aligned to that face (similarity ICP); each of the 468 mesh landmarks
   takes its nearest BFM vertex as its correspondence (the reference ships a hand-made
   68-point list instead, which needs its topology files).
3. Landmark fit: BFM identity (and expression, when a basis was converted in) and per-frame
   pose refinements, robust reprojection of the corresponding vertices plus L2 priors.
4. Photometric fit on a few frames, as the reference's "fitting light" step: texture
   coefficients, 9-band spherical-harmonics light per channel, identity and those frames'
   poses, through a differentiable rasterizer (``rasterizer``, pure PyTorch; pytorch3d has
   no build for this Python and is not used). Then the landmark fit is redone for all frames
   with the refined identity.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from scipy.spatial import cKDTree

from ..media.frames import read_rgb
from .bfm import MorphableModel, load_bfm
from .landmark_ba import N_MESH, LandmarkTrack, TrackerSettings, canonical_gauge, track_landmarks
from .pose_math import axis_angle_to_matrix, matrix_to_euler, project, umeyama
from .rasterizer import interpolate, rasterize

log = logging.getLogger(__name__)
PHOTO_FRAMES = 4
PHOTO_STEPS = 30


def align_to_landmarks(model: MorphableModel, face: np.ndarray, iters: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """Similarity ICP of the BFM mean onto ``face`` [468, 3]: returns the 4x4-like pair
    (scale * R [3, 3], t [3]) mapping BFM coordinates into the tracker's head frame, and the
    nearest BFM vertex of every landmark [468]."""
    mean = model.mean
    s = np.sqrt((face ** 2).sum(1).mean() / (mean ** 2).sum(1).mean())
    sr, t = s * np.eye(3), face.mean(0) - s * mean.mean(0)
    tree = cKDTree(mean)
    for _ in range(iters):
        moved_face = (face - t) @ np.linalg.inv(sr).T          # landmarks in BFM coordinates
        _, idx = tree.query(moved_face)
        scale, rot, trans = umeyama(mean[idx][None], face[None])
        sr, t = scale[0] * rot[0], trans[0]
    _, idx = tree.query((face - t) @ np.linalg.inv(sr).T)
    return np.concatenate([sr, t[:, None]], 1), idx


def _sh_basis(n: torch.Tensor) -> torch.Tensor:
    """[..., 3] unit normals -> [..., 9] real spherical harmonics up to band 2 (constants folded)."""
    x, y, z = n.unbind(-1)
    return torch.stack([torch.ones_like(x), y, z, x, x * y, y * z, 3 * z * z - 1, x * z, x * x - y * y], -1)


def _vertex_normals(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    tri = verts[faces]
    fn = torch.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=-1)
    vn = torch.zeros_like(verts).index_add(0, faces.reshape(-1), fn.repeat_interleave(3, 0))
    return torch.nn.functional.normalize(vn, dim=-1)


class _BFMFit(torch.nn.Module):
    def __init__(self, model: MorphableModel, align: np.ndarray, corr: np.ndarray, track: LandmarkTrack,
                 landmarks: np.ndarray, resolution: int):
        super().__init__()
        d = torch.float64
        self.mean = torch.tensor(model.mean, dtype=d)
        self.id_basis = torch.tensor(model.id_basis, dtype=d)
        self.exp_basis = torch.tensor(model.exp_basis, dtype=d)
        self.tex_mean = torch.tensor(model.tex_mean, dtype=d)
        self.tex_basis = torch.tensor(model.tex_basis, dtype=d)
        self.faces = torch.tensor(model.triangles, dtype=torch.long)
        self.sr = torch.tensor(align[:, :3], dtype=d)
        self.st = torch.tensor(align[:, 3], dtype=d)
        self.corr = torch.tensor(corr, dtype=torch.long)
        n = len(track.rotation)
        self.r0 = torch.tensor(track.rotation, dtype=d)
        self.omega = torch.nn.Parameter(torch.zeros(n, 3, dtype=d))
        self.trans = torch.nn.Parameter(torch.tensor(track.trans, dtype=d))
        self.c_id = torch.nn.Parameter(torch.zeros(len(model.id_basis), dtype=d))
        self.c_exp = torch.nn.Parameter(torch.zeros(n, len(model.exp_basis), dtype=d))
        self.c_tex = torch.nn.Parameter(torch.zeros(len(model.tex_basis), dtype=d))
        self.light = torch.nn.Parameter(torch.tensor([[1.0] + [0.0] * 8] * 3, dtype=d))   # [3, 9]
        self.focal = torch.tensor(track.focal, dtype=d)
        self.cxy = torch.tensor([resolution / 2.0, resolution / 2.0], dtype=d)
        self.obs = torch.tensor(landmarks[:, :N_MESH, :2], dtype=d)
        self.delta = resolution / 512.0

    def head_points(self, frames: torch.Tensor, idx: torch.Tensor | None = None) -> torch.Tensor:
        """[B, V', 3] model vertices (all, or ``idx``) in the tracker's head frame."""
        sel = slice(None) if idx is None else idx
        geo = self.mean[sel] + torch.einsum("k,kvd->vd", self.c_id, self.id_basis[:, sel])
        geo = geo[None] + torch.einsum("bk,kvd->bvd", self.c_exp[frames], self.exp_basis[:, sel])
        return geo @ self.sr.T + self.st

    def camera(self, frames: torch.Tensor, pts: torch.Tensor) -> torch.Tensor:
        rot = axis_angle_to_matrix(self.omega[frames]) @ self.r0[frames]
        return pts @ rot.transpose(1, 2) + self.trans[frames][:, None]

    def landmark_loss(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        uv = project(self.camera(frames, self.head_points(frames, self.corr)), self.focal, self.cxy)
        err = (uv - self.obs[frames]).norm(dim=-1)
        hub = torch.where(err < self.delta, 0.5 * err ** 2, self.delta * (err - 0.5 * self.delta)).mean()
        prior = 1e-3 * (self.c_id.square().mean() + (self.c_exp[frames].square().mean() if self.c_exp.numel() else 0))
        return hub + prior, err.detach()

    def render(self, frame: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """[H, W, 3] colour (0..255) and [H, W] coverage of one frame."""
        f = torch.tensor([frame])
        head = self.head_points(f)[0]
        cam = self.camera(f, head[None])[0]
        uv = project(cam, self.focal, self.cxy)
        scale = size / (2 * float(self.cxy[0]))
        verts = torch.cat([uv * scale, -cam[:, 2:3]], 1)
        normals = _vertex_normals(cam, self.faces)                                  # camera-space light
        albedo = self.tex_mean + torch.einsum("k,kvd->vd", self.c_tex, self.tex_basis)
        shade = _sh_basis(normals) @ self.light.T                                  # [V, 3]
        colour = (albedo * shade).clamp(0, 255)
        face_idx, bary = rasterize(verts, self.faces, size, size)
        return interpolate(colour, self.faces, face_idx, bary), face_idx >= 0


def _lbfgs(params, loss_fn, iters: int) -> None:
    opt = torch.optim.LBFGS(params, max_iter=iters, history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        return loss

    opt.step(closure)


def track_bfm(subject: str, stage: str, landmarks: np.ndarray, frame_paths: list[Path], resolution: int,
              bfm_model, settings: TrackerSettings) -> tuple[LandmarkTrack, np.ndarray, dict]:
    model = load_bfm(subject, stage, bfm_model)
    track = track_landmarks(landmarks, resolution, settings)
    align, corr = align_to_landmarks(model, track.shape[:N_MESH])
    fit = _BFMFit(model, align, corr, track, landmarks, resolution)
    n = len(landmarks)
    everyone = torch.arange(n)
    pose_id = [fit.omega, fit.trans, fit.c_id] + ([fit.c_exp] if fit.c_exp.numel() else [])
    _lbfgs(pose_id, lambda: fit.landmark_loss(everyone)[0], 60)

    # photometric fit on a few frames (the reference's "fitting light" batch)
    picks = np.unique(np.linspace(0, n - 1, min(PHOTO_FRAMES, n)).round().astype(int))
    size = min(resolution, 256)
    images = [torch.tensor(np.asarray(_resize(read_rgb(frame_paths[i]), size)), dtype=torch.float64) for i in picks]
    sel = torch.tensor(picks)

    def photo_loss():
        total = 0.0
        for img, i in zip(images, picks, strict=True):
            render, mask = fit.render(int(i), size)
            total = total + ((render - img).abs().sum(-1) * mask).sum() / mask.sum().clamp_min(1) / 255.0
        return total / len(images)

    with torch.no_grad():
        before = float(photo_loss())
    opt = torch.optim.Adam([fit.c_tex, fit.light], lr=0.05)
    opt_geo = torch.optim.Adam([fit.c_id, fit.omega, fit.trans], lr=5e-4)
    for _ in range(PHOTO_STEPS):
        opt.zero_grad()
        opt_geo.zero_grad()
        loss = photo_loss() + 3.0 * fit.landmark_loss(sel)[0]
        loss.backward()
        opt.step()
        opt_geo.step()
    with torch.no_grad():
        after = float(photo_loss())
    log.info("bfm photometric fit on frames %s: colour error %.4f -> %.4f", picks.tolist(), before, after)
    _lbfgs([fit.omega, fit.trans] + ([fit.c_exp] if fit.c_exp.numel() else []),
           lambda: fit.landmark_loss(everyone)[0], 40)

    with torch.no_grad():
        _, err = fit.landmark_loss(everyone)
        rot = (axis_angle_to_matrix(fit.omega) @ fit.r0).numpy()
        trans = fit.trans.numpy().copy()
        pts = fit.head_points(everyone[:1], fit.corr)[0].numpy()
        uv = project(fit.camera(everyone, fit.head_points(everyone, fit.corr)), fit.focal, fit.cxy)
    # the same head frame as the landmarks backend (centroid, eye line, face normal) on the
    # fitted BFM's landmark vertices; BFM is metric, so its scale stays
    q, c, _ = canonical_gauge(pts)
    trans = trans + np.einsum("nij,j->ni", rot, c)
    rot = rot @ q.T
    out = LandmarkTrack(rotation=rot, euler=matrix_to_euler(torch.from_numpy(rot)).numpy(), trans=trans,
                        focal=float(fit.focal), shape=(pts - c) @ q.T,
                        basis=np.zeros((fit.c_exp.shape[1], N_MESH, 3)), expression=fit.c_exp.detach().numpy().copy(),
                        reprojection=err.mean(1).numpy(), projected=uv.numpy(), focal_search=track.focal_search)
    extras = dict(photometric_error=dict(before=round(before, 5), after=round(after, 5), frames=picks.tolist()),
                  bfm_vertices=int(len(model.mean)))
    return out, fit.c_id.detach().numpy()[None], extras


def _resize(img: np.ndarray, size: int) -> np.ndarray:
    import cv2

    return img if img.shape[0] == size else cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
