"""Head tracking from dense landmarks: a bundle adjustment over all frames at once.

Model (reference camera and units, see ``pose_math``): one shared 3D face ``S`` [P, 3] in
decimetres, K expression blendshapes ``B`` [K, P, 3] with per-frame weights ``e`` [N, K],
per-frame rotation ``R_i`` and translation ``t_i``, one focal ``f``:

    uv_ip = project(R_i (S_p + sum_k e_ik B_kp) + t_i, f, (w/2, h/2))

Fitted to the 468 mesh landmarks (the 10 iris points move with gaze, not with the head)
by minimising a Huber reprojection error plus: a weak term on MediaPipe's relative depth
(it pins the face's depth, which 2D views of a barely turning head leave ambiguous), a
robust temporal acceleration prior on the rigid face in 3D (in pixels at the head's depth),
and small L2 priors on the expressions. Blendshapes are zero on the rigid upper face
(``expression_mask``) so they cannot absorb head pose.

Steps: (1) a similarity Procrustes of MediaPipe's 3D points gives the initial shape,
per-frame rotations and scales, and a PCA of the aligned residuals the initial
blendshapes; (2) the focal is searched over a range (the reference's 600..1400 px at 512,
scaled to the resolution) on a subset of frames, every candidate started from one converged
fit; (3) all frames: batched per-frame Levenberg-Marquardt of pose and expression (shape
held), then full-batch L-BFGS of everything with the focal free; (4) the gauge is fixed
(``canonical_gauge``): the face's centroid at the origin, eyes along +x, the face plane's
normal along +z, and the outer eye corners EYE_SPAN_DM apart.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np
import torch

from ..progress import progress
from .pose_math import axis_angle_to_matrix, geodesic_deg, matrix_to_euler, umeyama

log = logging.getLogger(__name__)

N_MESH = 468
# MediaPipe mesh indices (subject's right eye is the image's left).
RIGHT_EYE_OUTER, RIGHT_EYE_INNER, LEFT_EYE_INNER, LEFT_EYE_OUTER = 33, 133, 362, 263
NOSE_TIP = 4
# Mean adult outer-canthal (ex-ex) breadth, ~9 cm: fixes the unobservable absolute scale so
# the head lands where the reference's BFM head lands (BFM is metric).
EYE_SPAN_DM = 0.9


@dataclass
class TrackerSettings:
    n_expressions: int = 8
    focal_range_512: tuple[float, float] = (600.0, 3000.0)   # px at 512x512
    focal_steps: int = 5               # geometric grid over focal_range_512, then a parabola
    search_frames: int = 40
    frame_iters: int = 5               # per-frame Levenberg-Marquardt steps before each L-BFGS
    search_iters: int = 100            # L-BFGS iterations of the subset fit at the middle focal
    refine_iters: int = 40             # ... and of each focal candidate started from it
    full_iters: int = 100
    huber_px_512: float = 1.0          # Huber knee (px at 512)
    depth_weight: float = 0.02         # MediaPipe z residual, relative to the 2D residual
    smooth_weight: float = 1.0         # 3D acceleration of the rigid face (px^2 at its depth)
    smooth_scale_px_512: float = 2.0   # Cauchy scale of that acceleration (px at 512)
    expression_weight: float = 1e-3    # L2 on blendshape weights (PCA-initialised, ~unit variance)
    seed: int = 0


@dataclass
class LandmarkTrack:
    rotation: np.ndarray     # [N, 3, 3] head -> camera
    euler: np.ndarray        # [N, 3] reference euler (radians)
    trans: np.ndarray        # [N, 3] dm, camera space
    focal: float             # px
    shape: np.ndarray        # [P, 3] dm, canonical gauge
    basis: np.ndarray        # [K, P, 3] dm
    expression: np.ndarray   # [N, K]
    reprojection: np.ndarray  # [N] mean pixel error per frame over the P points
    projected: np.ndarray    # [N, P, 2] model landmarks in pixels
    focal_search: dict[float, float] = field(default_factory=dict)  # focal -> data loss


def canonical_gauge(shape: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(Q [3, 3], centre [3], scale) that put a MediaPipe-topology face in the canonical frame:
    ``canonical = scale * (shape - centre) @ Q.T``: centroid of the 468 mesh points at the
    origin, x along the eyes (to the subject's left), z along the normal of the face's best
    plane (out of the face), outer eye corners EYE_SPAN_DM apart. (The whole face's plane is
    the stablest choice measured; planes of parts of it tilt with depth errors.)"""
    mesh = shape[:N_MESH]
    centre = mesh.mean(0)
    x = (mesh[LEFT_EYE_OUTER] + mesh[LEFT_EYE_INNER]) - (mesh[RIGHT_EYE_OUTER] + mesh[RIGHT_EYE_INNER])
    x /= np.linalg.norm(x)
    _, _, vt = np.linalg.svd(mesh - centre, full_matrices=False)
    n = vt[2]
    if np.dot(mesh[NOSE_TIP] - centre, n) < 0:
        n = -n
    n = n - np.dot(n, x) * x
    n /= np.linalg.norm(n)
    q = np.stack([x, np.cross(n, x), n])
    scale = EYE_SPAN_DM / np.linalg.norm(mesh[LEFT_EYE_OUTER] - mesh[RIGHT_EYE_OUTER])
    return q, centre, float(scale)


def _to_up_frame(lms: np.ndarray) -> np.ndarray:
    """Pixel landmarks (x right, y down, z nearer-smaller) -> right-handed y-up, z-towards-camera."""
    return lms * np.array([1.0, -1.0, -1.0])


@dataclass
class _Init:
    shape: np.ndarray        # [P, 3] dm canonical
    basis: np.ndarray        # [K, P, 3]
    expression: np.ndarray   # [N, K]
    rotation: np.ndarray     # [N, 3, 3]
    px_per_dm: np.ndarray    # [N]
    centre_px: np.ndarray    # [N, 2] image position of the face centroid


def initialise(lms3d: np.ndarray, n_expr: int) -> _Init:
    """Generalised Procrustes of MediaPipe's 3D points, then PCA of what is left."""
    pts = _to_up_frame(lms3d.astype(np.float64))                        # [N, P, 3]
    n = len(pts)
    ref = pts[n // 2] - pts[n // 2].mean(0)
    for _ in range(3):
        s, r, t = umeyama(np.broadcast_to(ref, pts.shape), pts)
        aligned = np.einsum("nji,npj->npi", r, pts - t[:, None]) / s[:, None, None]
        ref = np.median(aligned, 0)
        ref = ref - ref.mean(0)
    q, c, k = canonical_gauge(ref)
    shape = k * (ref - c) @ q.T
    s, r, t = umeyama(np.broadcast_to(shape, pts.shape), pts)
    aligned = np.einsum("nji,npj->npi", r, pts - t[:, None]) / s[:, None, None]
    resid = (aligned - shape).reshape(n, -1)
    shape = shape + resid.mean(0).reshape(-1, 3)
    centred = resid - resid.mean(0)
    k_eff = min(n_expr, max(n - 1, 0))
    if k_eff > 0:
        u, sig, vt = np.linalg.svd(centred, full_matrices=False)
        norm = sig[:k_eff] / math.sqrt(n)
        basis = (vt[:k_eff] * norm[:, None]).reshape(k_eff, -1, 3)
        expr = u[:, :k_eff] * math.sqrt(n)
    else:
        basis, expr = np.zeros((0, shape.shape[0], 3)), np.zeros((n, 0))
    if k_eff < n_expr:   # keep K fixed; extra blendshapes start silent
        basis = np.concatenate([basis, np.zeros((n_expr - k_eff, shape.shape[0], 3))])
        expr = np.concatenate([expr, np.zeros((n, n_expr - k_eff))], 1)
    centre_px = t[:, :2] * np.array([1.0, -1.0])
    return _Init(shape=shape, basis=basis, expression=expr, rotation=r, px_per_dm=s, centre_px=centre_px)


def expression_mask(shape: np.ndarray) -> np.ndarray:
    """[P] 1 where expressions may move a point, 0 on the rigid upper face.

    Rigid: the band from the nose tip up to just above the eyes (nose, eye corners,
    cheekbones, temples), minus the eyelids and brows. Expressions cannot move these
    points, so the head pose is what explains them: a mouth or brow motion can never be
    mistaken for a head turn.
    """
    from mediapipe.python.solutions import face_mesh_connections as fmc

    mesh = shape[:N_MESH]
    eye_y = mesh[[RIGHT_EYE_OUTER, RIGHT_EYE_INNER, LEFT_EYE_INNER, LEFT_EYE_OUTER], 1].mean()
    band = (mesh[:, 1] >= mesh[NOSE_TIP, 1]) & (mesh[:, 1] <= eye_y + 0.05)
    mobile = set()
    for name in ("FACEMESH_LEFT_EYE", "FACEMESH_RIGHT_EYE", "FACEMESH_LEFT_EYEBROW",
                 "FACEMESH_RIGHT_EYEBROW"):
        mobile |= {i for e in getattr(fmc, name) for i in e}
    mobile -= {RIGHT_EYE_OUTER, RIGHT_EYE_INNER, LEFT_EYE_INNER, LEFT_EYE_OUTER}
    mask = np.ones(len(shape))
    mask[:N_MESH][band] = 0.0
    mask[sorted(mobile)] = 1.0
    return mask


class _Problem(torch.nn.Module):
    """Parameters and loss of one bundle adjustment (a set of frames, one focal).

    Float32, coordinate-major tensors ([M, 3, P]): the hot path is one GEMM for the
    expressions, one batched 3x3 matmul for the rotations and a few elementwise ops.
    """

    def __init__(self, init: _Init, frames: np.ndarray, focal: float, cxy: tuple[float, float],
                 obs: np.ndarray, settings: TrackerSettings, resolution: int, temporal: bool,
                 shape: np.ndarray | None = None, basis: np.ndarray | None = None):
        super().__init__()
        f32 = torch.float32

        def tensor(a):
            return torch.as_tensor(np.ascontiguousarray(a), dtype=f32)

        self.cx, self.cy = float(cxy[0]), float(cxy[1])
        self.obs_u = tensor(obs[frames, :N_MESH, 0])                                  # [M, P]
        self.obs_v = tensor(obs[frames, :N_MESH, 1])
        self.obs_z = tensor(obs[frames, :N_MESH, 2])
        self.r0 = tensor(init.rotation[frames])                                        # [M, 3, 3]
        self.log_f = torch.nn.Parameter(torch.tensor(math.log(focal), dtype=f32))
        tz = -focal / init.px_per_dm[frames]
        cpx = init.centre_px[frames]
        t0 = np.stack([(cpx[:, 0] - cxy[0]) * -tz / focal, -(cpx[:, 1] - cxy[1]) * -tz / focal, tz], 1)
        self.omega = torch.nn.Parameter(torch.zeros(len(frames), 3, dtype=f32))
        self.trans = torch.nn.Parameter(tensor(t0))                                    # [M, 3]
        self.shape = torch.nn.Parameter(tensor(init.shape if shape is None else shape))   # [P, 3]
        self.basis = torch.nn.Parameter(tensor(init.basis if basis is None else basis))   # [K, P, 3]
        self.expr = torch.nn.Parameter(tensor(init.expression[frames]))                  # [M, K]
        self.s = resolution / 512.0
        self.settings = settings
        self.temporal = temporal and len(frames) >= 3
        self.anchor_idx = _spread_points(init.shape, 16)
        self.mask = tensor(expression_mask(init.shape))                                  # [P]

    def rotations(self) -> torch.Tensor:
        return axis_angle_to_matrix(self.omega) @ self.r0

    def effective_basis(self) -> torch.Tensor:
        """Blendshapes, zero on the rigid points: [K, P, 3]."""
        return self.basis * self.mask[:, None]

    def camera_points(self, rot: torch.Tensor) -> torch.Tensor:
        """[M, 3, P] points in camera space."""
        k, p = self.basis.shape[:2]
        basis = self.effective_basis().permute(0, 2, 1).reshape(k, 3 * p)
        pts = (self.shape.T.reshape(1, 3 * p) + self.expr @ basis).view(-1, 3, p)
        return torch.baddbmm(self.trans[:, :, None], rot, pts)

    def forward(self) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        st = self.settings
        f = self.log_f.exp()
        rot = self.rotations()                                            # [M, 3, 3]
        cam = self.camera_points(rot)
        x, y, z = cam.unbind(1)                                           # [M, P] each
        fz = f / z
        u = self.cx - x * fz
        v = self.cy + y * fz
        err = ((u - self.obs_u).square() + (v - self.obs_v).square()).clamp_min(1e-12).sqrt()
        delta = st.huber_px_512 * self.s
        data = torch.where(err < delta, 0.5 * err.square(), delta * (err - 0.5 * delta)).mean()
        zmean = z.mean(1, keepdim=True)
        zrel = (z - zmean) * (f / zmean)          # = -(z - mean) * f / |mean|: nearer is smaller
        depth = 0.5 * (zrel - self.obs_z).square().mean()
        expr = 0.5 * self.expr.square().sum() / max(self.expr.numel(), 1)   # K may be 0
        loss = data + st.depth_weight * depth + st.expression_weight * expr
        terms = {"data": data, "depth": depth, "expr": expr}
        if self.temporal:
            # Acceleration of the rigid face in 3D camera space, in pixels at the head's depth:
            # an out-of-plane turn barely moves the image but does move the face in depth,
            # and that is what the NeRF cameras must not jitter by.
            rigid = torch.baddbmm(self.trans[:, :, None], rot, self.shape[self.anchor_idx].T.expand(len(rot), 3, -1))
            px_per_dm = (f / -self.trans[:, 2].mean()).detach()
            acc2 = (rigid[2:] - 2 * rigid[1:-1] + rigid[:-2]).square().sum(1) * px_per_dm ** 2
            # Cauchy (redescending): quadratic for jitter, but a real jolt or a few bad frames
            # stop pulling on their neighbours instead of dragging them along
            c2 = (st.smooth_scale_px_512 * self.s) ** 2
            smooth = (0.5 * c2 * torch.log1p(acc2 / c2)).mean()
            loss = loss + st.smooth_weight * smooth
            terms["smooth"] = smooth
        return loss, {**terms, "err": err.detach(), "uv": torch.stack([u, v], -1).detach()}


def _spread_points(shape: np.ndarray, k: int) -> torch.Tensor:
    """k well spread mesh points (farthest point sampling from the centroid)."""
    mesh = shape[:N_MESH]
    chosen = [int(np.argmin(((mesh - mesh.mean(0)) ** 2).sum(1)))]
    d = ((mesh - mesh[chosen[0]]) ** 2).sum(1)
    for _ in range(k - 1):
        chosen.append(int(np.argmax(d)))
        d = np.minimum(d, ((mesh - mesh[chosen[-1]]) ** 2).sum(1))
    return torch.tensor(chosen, dtype=torch.long)


def _frame_system(problem: _Problem) -> tuple[torch.Tensor, torch.Tensor]:
    """Residuals r [M, 3P+K] and their Jacobian [M, 3P+K, 6+K] in each frame's rotation
    increment (at omega = 0), translation and expression weights; shape, blendshapes and focal
    held. Rows: u, v (pixels), sqrt(depth_weight) * MediaPipe z, sqrt(w) * expression, so
    0.5 |r|^2 / P is the frame's share of the loss (before Huber reweighting)."""
    st = problem.settings
    k, p = problem.basis.shape[:2]
    f = problem.log_f.detach().exp()
    wd = math.sqrt(st.depth_weight)
    we = math.sqrt(st.expression_weight * p / max(k, 1))
    basis = problem.effective_basis().detach().permute(0, 2, 1)                # [K, 3, P]
    pts = problem.shape.detach().T + torch.einsum("mk,kdp->mdp", problem.expr, basis)   # [M, 3, P]
    rot = problem.rotations().detach()
    q = rot @ pts                                                               # [M, 3, P]
    cam = q + problem.trans[:, :, None]
    x, y, z = cam.unbind(1)
    u = problem.cx - f * x / z
    v = problem.cy + f * y / z
    zm = z.mean(1, keepdim=True)
    zrel = (z - zm) * (f / zm)
    m = len(rot)
    # d cam / d params: [M, 3, P, 6+K]
    zero = torch.zeros_like(q[:, 0])
    qx, qy, qz = q.unbind(1)
    d_rot = torch.stack([torch.stack([zero, -qz, qy], 1),        # d/d omega_x: e_x x q
                         torch.stack([qz, zero, -qx], 1),        # d/d omega_y: e_y x q
                         torch.stack([-qy, qx, zero], 1)], -1)   # d/d omega_z: e_z x q
    d_trans = torch.eye(3, dtype=q.dtype)[None, :, None, :].expand(m, 3, p, 3)
    d_expr = torch.einsum("mij,kjp->mipk", rot, basis)
    dc = torch.cat([d_rot, d_trans, d_expr], -1)
    dx, dy, dz = dc.unbind(1)                                                  # [M, P, D]
    fz, fz2 = (f / z)[..., None], (f / z.square())[..., None]
    du = -fz * dx + (x[..., None] * fz2) * dz
    dv = fz * dy - (y[..., None] * fz2) * dz
    gbar = dz.mean(1, keepdim=True)
    dzrel = (f / zm)[..., None] * (dz - gbar) - ((z - zm) * f / zm.square())[..., None] * gbar
    d_prior = torch.zeros(m, k, dc.shape[-1], dtype=q.dtype)
    d_prior[:, :, 6:] = we * torch.eye(k, dtype=q.dtype)
    jac = torch.cat([du, dv, wd * dzrel, d_prior], 1)
    res = torch.cat([u - problem.obs_u, v - problem.obs_v, wd * (zrel - problem.obs_z), we * problem.expr], 1)
    return res, jac


@torch.no_grad()
def _refine_frames(problem: _Problem, iters: int) -> None:
    """Levenberg-Marquardt on each frame's pose and expression with the shape, blendshapes and
    focal held: every frame is an independent 6+K parameter problem, solved for all frames at
    once (analytic Jacobians, batched normal equations, Huber as reweighting)."""
    p = problem.shape.shape[0]
    delta = problem.settings.huber_px_512 * problem.s

    def robust(r):
        err = (r[:, :p].square() + r[:, p:2 * p].square()).sqrt()
        w = torch.where(err < delta, torch.ones_like(err), delta / err.clamp_min(1e-12))
        hub = torch.where(err < delta, 0.5 * err.square(), delta * (err - 0.5 * delta)).sum(1)
        return torch.cat([w, w, torch.ones_like(r[:, 2 * p:])], 1), hub + 0.5 * r[:, 2 * p:].square().sum(1)

    problem.r0.copy_(problem.rotations())      # the Jacobian is taken at omega = 0
    problem.omega.zero_()
    lam = torch.full((len(problem.r0), 1), 1e-3)
    for _ in range(iters):
        r, jac = _frame_system(problem)
        w, current = robust(r)
        jtw = jac.transpose(1, 2) * w[:, None, :]
        jtj = jtw @ jac
        g = (jtw @ r[:, :, None])[:, :, 0]
        diag = torch.diag_embed(jtj.diagonal(dim1=1, dim2=2).clamp_min(1e-9))
        step = -torch.linalg.solve(jtj + lam[:, :, None] * diag, g[:, :, None])[:, :, 0]
        old = (problem.r0.clone(), problem.trans.clone(), problem.expr.clone())
        problem.r0.copy_(axis_angle_to_matrix(step[:, :3]) @ problem.r0)
        problem.trans += step[:, 3:6]
        problem.expr += step[:, 6:]
        r_new, _ = _frame_system(problem)
        _, new = robust(r_new)
        keep = (new < current)[:, None]
        problem.r0.copy_(torch.where(keep[:, :, None], problem.r0, old[0]))
        problem.trans.copy_(torch.where(keep, problem.trans, old[1]))
        problem.expr.copy_(torch.where(keep, problem.expr, old[2]))
        lam = torch.where(keep, lam * 0.3, lam * 10.0).clamp(1e-7, 1e7)


def _solve(problem: _Problem, iters: int, free_focal: bool, desc: str | None = None) -> float:
    params = [problem.omega, problem.trans, problem.shape, problem.basis, problem.expr]
    if free_focal:
        params.append(problem.log_f)
    opt = torch.optim.LBFGS(params, lr=1.0, max_iter=10, history_size=20,
                            line_search_fn="strong_wolfe", tolerance_grad=1e-10, tolerance_change=1e-14)

    def closure():
        opt.zero_grad()
        loss, _ = problem()
        loss.backward()
        return loss

    chunks = max(1, iters // 10)
    bar = progress(range(chunks), desc=desc, unit="x10 it") if desc else range(chunks)
    for _ in bar:
        loss = opt.step(closure)
        log.debug("%s: loss %.6f", desc or "subset", float(loss.detach()))
    with torch.no_grad():
        return float(problem()[1]["data"])


def track_landmarks(landmarks: np.ndarray, resolution: int,
                    settings: TrackerSettings | None = None) -> LandmarkTrack:
    """Fit the model to ``landmarks`` [N, >=468, 3] (pixels; z MediaPipe relative depth)."""
    st = settings or TrackerSettings()
    torch.manual_seed(st.seed)
    n = len(landmarks)
    cxy = (resolution / 2.0, resolution / 2.0)
    init = initialise(landmarks[:, :N_MESH, :3], st.n_expressions)

    # Focal search on a subset of frames (the reference uses every 40th frame).
    sub = np.unique(np.linspace(0, n - 1, min(n, st.search_frames)).round().astype(int))
    s512 = resolution / 512.0
    candidates = np.geomspace(*st.focal_range_512, st.focal_steps) * s512
    losses: dict[float, float] = {}
    fits: dict[float, _Problem] = {}

    # Every candidate starts from one converged fit at the middle of the range (the camera
    # moved along its axis to keep the face's size) and gets the same number of iterations,
    # so their losses compare fits of equal effort.
    base = _Problem(init, sub, float(np.sqrt(candidates[0] * candidates[-1])), cxy, landmarks, st,
                    resolution, temporal=False)
    _refine_frames(base, st.frame_iters)
    _solve(base, st.search_iters, free_focal=False)

    def fit_subset(f: float) -> None:
        prob = _Problem(init, sub, f, cxy, landmarks, st, resolution, temporal=False)
        ratio = f / float(base.log_f.detach().exp())
        with torch.no_grad():
            for name in ("shape", "basis", "expr", "r0", "omega"):
                getattr(prob, name).copy_(getattr(base, name))
            prob.trans.copy_(base.trans * ratio)
        _refine_frames(prob, st.frame_iters)
        losses[f] = _solve(prob, st.refine_iters, free_focal=False)
        fits[f] = prob

    for f in progress(candidates, desc="tracking: focal search", unit="focal"):
        fit_subset(float(f))
    # The loss is flat in the focal: a parabola in log f through the best grid point and its
    # neighbours places the minimum between grid points.
    i = int(np.argmin([losses[float(f)] for f in candidates]))
    if 0 < i < len(candidates) - 1:
        x = np.log(candidates[i - 1:i + 2])
        y = np.array([losses[float(f)] for f in candidates[i - 1:i + 2]])
        a, b, _ = np.polyfit(x, y, 2)
        if a > 0:
            fit_subset(float(np.exp(np.clip(-b / (2 * a), x[0], x[2]))))
    f0 = min(losses, key=losses.get)
    sub_prob = fits[f0]
    log.info("focal search: %s -> %.1f px", {round(k): round(v, 5) for k, v in sorted(losses.items())}, f0)

    # Full bundle adjustment, starting from the subset's shape and blendshapes.
    frames = np.arange(n)
    prob = _Problem(init, frames, f0, cxy, landmarks, st, resolution, temporal=True,
                    shape=sub_prob.shape.detach().numpy(), basis=sub_prob.basis.detach().numpy())
    _refine_frames(prob, st.frame_iters)
    _solve(prob, st.full_iters, free_focal=True, desc="tracking: bundle adjustment")

    with torch.no_grad():
        _, out = prob()
        rot = prob.rotations().double().numpy()
        shape = prob.shape.double().numpy()
        basis = prob.effective_basis().double().numpy()
        trans = prob.trans.double().numpy()
        q, c, k = canonical_gauge(shape)
        shape_c = k * (shape - c) @ q.T
        basis_c = k * basis @ q.T
        rot_c = rot @ q.T
        trans_c = k * (trans + np.einsum("nij,j->ni", rot, c))
        euler = matrix_to_euler(torch.from_numpy(rot_c)).numpy()
        return LandmarkTrack(rotation=rot_c, euler=euler, trans=trans_c, focal=float(prob.log_f.exp()),
                             shape=shape_c, basis=basis_c, expression=prob.expr.double().numpy(),
                             reprojection=out["err"].mean(1).double().numpy(),
                             projected=out["uv"].double().numpy(),
                             focal_search=losses)


def rotation_jitter_deg(rotation: np.ndarray) -> float:
    """Mean angle between consecutive frames' rotations, degrees per frame."""
    if len(rotation) < 2:
        return 0.0
    r = torch.from_numpy(np.asarray(rotation, dtype=np.float64))
    return float(geodesic_deg(r[:-1], r[1:]).mean())


def translation_jitter(trans: np.ndarray) -> float:
    """Mean distance between consecutive frames' translations (same unit as ``trans``)."""
    if len(trans) < 2:
        return 0.0
    return float(np.linalg.norm(np.diff(trans, axis=0), axis=1).mean())
