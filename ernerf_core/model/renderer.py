"""Volume rendering of the head: ray marching through the occupancy grid and compositing.

Hot functions (pure PyTorch references; ``cuda_ext/raymarching`` replaces each with a native
kernel of the same semantics when it is built, see :mod:`~ernerf_core.model.native_raymarch`):

- :func:`march_rays` ``(rays_o, rays_d, nears, fars, occupied_fn, max_samples, dt, jitter)
  -> (t [R, K], valid [R, K])``: fixed step ``dt`` (reference: 2*sqrt(3)/128 ~ 0.027), at most
  ``K = max_samples`` samples per ray, only in occupied cells.
- :func:`composite_weights` ``(tau [R, G], log_T0 [R], T_thresh) -> (weights [R, G], lit)``:
  ``alpha = 1 - exp(-sigma * delta)``, weight = alpha * transmittance, zero once the
  transmittance before a sample is below ``T_thresh`` (the reference's early stop); the
  renderer calls it on groups of samples front to back, so opaque rays stop early.

Public API (stable, used by the torso and render stages):

- :func:`render_rays` ``(model, rays_o, rays_d, enc_a, ind_code, eye, bg_color, ...)``
  -> dict ``image`` [R,3], ``weights_sum`` [R], ``depth`` [R], ``ambient_aud`` [R],
  ``ambient_eye`` [R], ``uncertainty`` [R], ``points``/``dirs`` [P, 3] (the evaluated samples;
  empty without grad, where nothing reads them).
  The head is composited over the background exactly as the reference:
  ``image = head + (1 - weights_sum) * bg``.
- :func:`render_image` ``(model, pose [4,4], intrinsics, H, W, audio_window [8,C,W],
  eye, bg_image [H,W,3], ...)`` -> dict ``image`` [H,W,3] (clamped to [0,1]),
  ``weights_sum`` [H,W], ``depth`` [H,W]; rays in chunks so memory stays flat.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from .native_raymarch import try_composite, try_march
from .rays import near_far_from_aabb, pixel_rays

T_THRESH = 1e-4


def default_step(bound: float = 1.0, grid_resolution: int = 128) -> float:
    """The reference's fixed step: 2*sqrt(3)*bound / grid resolution (0.027 for bound 1)."""
    return 2 * math.sqrt(3) * bound / grid_resolution


@torch.no_grad()
def march_rays(rays_o: torch.Tensor, rays_d: torch.Tensor, nears: torch.Tensor, fars: torch.Tensor,
               occupied_fn: Callable[[torch.Tensor], torch.Tensor], max_samples: int, dt: float,
               jitter: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample positions along rays, keeping the first ``max_samples`` in occupied cells.

    Candidates are ``t_k = near + (k + jitter) * dt`` inside [near, far). rays_o, rays_d [R, 3];
    nears, fars [R] (inf = miss); jitter [R] in [0, 1) or None (0, inference).
    Returns (t [R, K] float, valid [R, K] bool); valid samples are packed to the front.
    """
    R = rays_o.shape[0]
    K = max_samples
    t_out = torch.zeros(R, K, device=rays_o.device)
    valid = torch.zeros(R, K, dtype=torch.bool, device=rays_o.device)
    hit = torch.isfinite(nears).nonzero().squeeze(1)
    if hit.numel() == 0:
        return t_out, valid
    o, d, n, f = rays_o[hit], rays_d[hit], nears[hit], fars[hit]
    n_cand = int(math.ceil(float((f - n).max()) / dt)) + 1
    k = torch.arange(n_cand, device=o.device, dtype=torch.float32)
    j = jitter[hit].unsqueeze(1) if jitter is not None else 0.0
    t = n.unsqueeze(1) + (k.unsqueeze(0) + j) * dt  # [H, n_cand]
    xyz = o.unsqueeze(1) + t.unsqueeze(-1) * d.unsqueeze(1)
    ok = (t < f.unsqueeze(1)) & occupied_fn(xyz)
    slot = ok.cumsum(dim=1) - 1
    keep = ok & (slot < K)
    r_idx, c_idx = keep.nonzero(as_tuple=True)
    rows = hit[r_idx]
    cols = slot[r_idx, c_idx]
    t_out[rows, cols] = t[r_idx, c_idx]
    valid[rows, cols] = True
    return t_out, valid


def composite_weights(tau: torch.Tensor, log_T0: torch.Tensor | None = None,
                      T_thresh: float = T_THRESH) -> tuple[torch.Tensor, torch.Tensor]:
    """Volume-rendering weights of consecutive samples.

    tau [R, G]: optical depth sigma * delta of each sample (front to back); log_T0 [R]: log
    transmittance in front of the first one (0 = nothing in front). Returns (weights [R, G]
    = alpha * T, zero once the transmittance in front of a sample is below ``T_thresh``, the
    reference's early stop; lit [R, G] bool: the samples that still count).
    The native kernel, when built, is used instead (same values, exp's last bit aside).
    """
    native = try_composite(tau, log_T0, T_thresh)
    if native is not None:
        return native
    front = torch.cumsum(tau, dim=1) - tau
    if log_T0 is not None:
        front = front - log_T0.unsqueeze(1)
    T = torch.exp(-front)
    lit = T.detach() >= T_thresh
    return (1.0 - torch.exp(-tau)) * T * lit, lit


def render_rays(model, rays_o: torch.Tensor, rays_d: torch.Tensor, enc_a: torch.Tensor,
                ind_code: torch.Tensor | None, eye: torch.Tensor | None, bg_color: torch.Tensor,
                *, perturb: bool = False, generator: torch.Generator | None = None,
                max_samples: int | None = None, dt: float | None = None,
                T_thresh: float = T_THRESH) -> dict[str, torch.Tensor]:
    """Render rays of the head field and composite over ``bg_color`` ([R, 3] or [3], in [0, 1]).

    ``model`` is a :class:`~ernerf_core.model.head.HeadNetwork`; enc_a [1, 32] from
    ``model.encode_audio``; ind_code [4] or None (code 0); eye [1, 1] in [0, 1] or None.
    ``perturb`` jitters the first sample (training). Samples are evaluated a few at a time
    and rays stop once opaque (see :func:`_render_groups`). Without grad (inference) the
    uncertainty, a training-only signal, is not computed (zeros).
    """
    cfg = model.config
    K = max_samples or cfg.max_samples
    dt = dt or default_step(cfg.bound, cfg.occupancy_resolution)
    R = rays_o.shape[0]
    box = model.occupancy.occupied_box
    # march only through the part of the AABB that holds occupied cells; start the samples at the AABB
    # entry so their positions do not depend on the occupancy state
    nears, fars = near_far_from_aabb(rays_o, rays_d, model.aabb, cfg.min_near)
    box_near, box_far = near_far_from_aabb(rays_o, rays_d, box, cfg.min_near)
    miss = ~torch.isfinite(box_near)
    skip = torch.where(miss, torch.zeros_like(nears), ((box_near - nears) / dt).floor().clamp(min=0) * dt)
    nears = torch.where(miss, box_near, nears + torch.nan_to_num(skip))
    fars = torch.where(miss, box_far, torch.minimum(fars, box_far))
    jitter = None
    if perturb:
        jitter = torch.rand(R, generator=generator, device="cpu").to(rays_o.device)
    marched = try_march(rays_o, rays_d, nears, fars, model.occupancy, K, dt, jitter)
    if marched is None:
        marched = march_rays(rays_o, rays_d, nears, fars, model.occupancy.lookup, K, dt, jitter)
    t, valid = marched
    out = _render_groups(model, rays_o, rays_d, t, valid, dt, enc_a, ind_code, eye, T_thresh,
                         with_uncertainty=torch.is_grad_enabled())
    bg = bg_color.to(out["image"].dtype)
    out["image"] = out["image"] + (1.0 - out["weights_sum"]).unsqueeze(-1) * bg
    return out


def _render_groups(model, rays_o, rays_d, t, valid, dt, enc_a, ind_code, eye, T_thresh,
                   with_uncertainty: bool, group: int = 4) -> dict[str, torch.Tensor]:
    """Evaluate ``group`` samples per ray at a time, front to back; a ray stops once its
    transmittance is below ``T_thresh`` and only samples the light still reaches get a
    colour. This is the reference's compositing exactly (it stops at the same sample), minus
    the work it spends on samples that cannot contribute. Differentiable (training) or not."""
    R, K = t.shape
    dev = t.device
    zeros = torch.zeros(R, device=dev)
    image = torch.zeros(R, 3, device=dev)
    ws, depth, amb_aud, amb_eye, unc = zeros, zeros, zeros, zeros, zeros
    log_T = zeros  # minus the optical depth in front of the next sample
    points, dirs = [], []
    for k0 in range(0, K, group):
        alive = (log_T.detach() > math.log(T_thresh)) & valid[:, k0]
        idx = alive.nonzero().squeeze(1)
        if idx.numel() == 0:
            break
        tv, vv = t[idx, k0:k0 + group], valid[idx, k0:k0 + group]
        r_loc, c_loc = vv.nonzero(as_tuple=True)
        ray = idx[r_loc]
        xyz = rays_o[ray] + tv[r_loc, c_loc].unsqueeze(-1) * rays_d[ray]
        g = model.geometry(xyz, enc_a, eye)
        # float32 whatever the network's precision (autocast): transmittance is a long product
        tau = torch.zeros(tv.shape, device=dev).index_put((r_loc, c_loc), g["sigma"].float() * dt)  # [A, G]
        w, lit = composite_weights(tau, log_T[idx], T_thresh)
        wv = w[r_loc, c_loc]
        s = lit[r_loc, c_loc].nonzero().squeeze(1)  # samples the reference still composites
        color = model.appearance(g["geo"][s], rays_d[ray[s]], ind_code)
        image = image.index_add(0, ray[s], wv[s].unsqueeze(-1) * color)
        ws = ws.index_add(0, ray, wv)
        depth = depth.index_add(0, ray, wv * tv[r_loc, c_loc])
        amb_aud = amb_aud.index_add(0, ray, wv * g["ambient_aud"])
        amb_eye = amb_eye.index_add(0, ray, wv * g["ambient_eye"])
        if with_uncertainty:
            unc = unc.index_add(0, ray[s], wv[s] * model.uncertainty(g["enc_x"][s]))
        log_T = log_T.index_add(0, idx, -tau.sum(1))
        if with_uncertainty:  # training: the smoothness term re-evaluates these samples
            points.append(xyz)
            dirs.append(rays_d[ray])
    empty = rays_o.new_zeros(0, 3)
    return {"image": image, "weights_sum": ws, "depth": depth, "ambient_aud": amb_aud, "ambient_eye": amb_eye,
            "uncertainty": unc, "points": torch.cat(points) if points else empty,
            "dirs": torch.cat(dirs) if dirs else empty}


def _as_float_image(img, H: int, W: int, device) -> torch.Tensor:
    if img is None:
        return torch.zeros(H, W, 3, device=device)
    if isinstance(img, np.ndarray):
        img = torch.from_numpy(img)
    if img.dtype == torch.uint8:
        img = img.float() / 255.0
    return img.to(device=device, dtype=torch.float32).reshape(H, W, 3)


@torch.no_grad()
def render_image(model, pose: torch.Tensor, intrinsics, H: int, W: int,
                 audio_window: torch.Tensor | None = None, eye: float | torch.Tensor | None = None,
                 bg_image=None, *, enc_a: torch.Tensor | None = None, ind_index: int | None = None,
                 chunk: int = 1 << 15, T_thresh: float = T_THRESH) -> dict[str, torch.Tensor]:
    """Render a whole image of the head over ``bg_image``.

    pose [4, 4] renderer-convention camera-to-world; intrinsics (fx, fy, cx, cy) at H x W;
    audio_window [8, C, W] (or a precomputed ``enc_a`` [1, 32]); eye: the blink value in
    [0, 1] (None = 0); bg_image [H, W, 3] float in [0, 1] or uint8 (None = black);
    ind_index: individual code (None = code 0, the reference's test-time choice); T_thresh:
    transmittance at which a ray stops (reference 1e-4; 1e-2 renders a semi-transparent early
    model faster for previews).
    Returns ``image`` [H, W, 3] clamped to [0, 1], ``weights_sum`` [H, W], ``depth`` [H, W].
    """
    device = model.aabb.device
    pose = torch.as_tensor(pose, dtype=torch.float32, device=device)
    if enc_a is None:
        enc_a = model.encode_audio(audio_window.to(device))
    eye_t = None if eye is None else torch.as_tensor(eye, dtype=torch.float32, device=device).reshape(1, 1)
    code = model.individual_code(ind_index)
    bg = _as_float_image(bg_image, H, W, device).view(-1, 3)
    image = torch.empty(H * W, 3, device=device)
    ws, depth = torch.empty(H * W, device=device), torch.empty(H * W, device=device)
    for start in range(0, H * W, chunk):
        pix = torch.arange(start, min(start + chunk, H * W), device=device)
        rays_o, rays_d = pixel_rays(pose, intrinsics, pix, W)
        out = render_rays(model, rays_o, rays_d, enc_a, code, eye_t, bg[pix], T_thresh=T_thresh)
        image[pix], ws[pix], depth[pix] = out["image"], out["weights_sum"], out["depth"]
    return {"image": image.clamp(0, 1).view(H, W, 3), "weights_sum": ws.view(H, W), "depth": depth.view(H, W)}
