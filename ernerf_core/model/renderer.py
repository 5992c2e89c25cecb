"""Volume rendering of the head: ray marching through the occupancy grid and compositing.

Hot functions (pure PyTorch; a native kernel with the same signature can replace each):

- :func:`march_rays` ``(rays_o, rays_d, nears, fars, occupied_fn, max_samples, dt, jitter)
  -> (t [R, K], valid [R, K])``: fixed step ``dt`` (reference: 2*sqrt(3)/128 ~ 0.027), at most
  ``K = max_samples`` samples per ray, only in occupied cells.
- :func:`composite_weights` ``(sigmas [R, K], deltas [R, K], T_thresh) -> weights [R, K]``:
  ``alpha = 1 - exp(-sigma * delta)``, weight = alpha * transmittance, zero once the
  transmittance before a sample is below ``T_thresh`` (the reference's early stop).

Public API (stable, used by the torso and render stages):

- :func:`render_rays` ``(model, rays_o, rays_d, enc_a, ind_code, eye, bg_color, ...)``
  -> dict ``image`` [R,3], ``weights_sum`` [R], ``depth`` [R], ``ambient_aud`` [R],
  ``ambient_eye`` [R], ``uncertainty`` [R] (+ ``points``/``dirs`` of the samples in training).
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


def composite_weights(sigmas: torch.Tensor, deltas: torch.Tensor, T_thresh: float = T_THRESH) -> torch.Tensor:
    """Volume-rendering weights [R, K] from densities and step lengths [R, K]."""
    tau = sigmas * deltas
    alpha = 1.0 - torch.exp(-tau)
    T = torch.exp(-(torch.cumsum(tau, dim=1) - tau))  # transmittance before each sample
    return alpha * T * (T.detach() >= T_thresh)


def _scatter(values: torch.Tensor, flat: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Dense [R*K, ...] tensor with ``values`` at rows ``flat`` and zeros elsewhere (differentiable)."""
    out = values.new_zeros((math.prod(shape),) + tuple(values.shape[1:]))
    return out.index_put((flat,), values).view(*shape, *values.shape[1:])


def render_rays(model, rays_o: torch.Tensor, rays_d: torch.Tensor, enc_a: torch.Tensor,
                ind_code: torch.Tensor | None, eye: torch.Tensor | None, bg_color: torch.Tensor,
                *, perturb: bool = False, generator: torch.Generator | None = None,
                max_samples: int | None = None, dt: float | None = None,
                T_thresh: float = T_THRESH) -> dict[str, torch.Tensor]:
    """Render rays of the head field and composite over ``bg_color`` ([R, 3] or [3], in [0, 1]).

    ``model`` is a :class:`~ernerf_core.model.head.HeadNetwork`; enc_a [1, 32] from
    ``model.encode_audio``; ind_code [4] or None (code 0); eye [1, 1] in [0, 1] or None.
    ``perturb`` jitters the first sample (training). Without grad (inference) samples are
    evaluated a few at a time and rays stop once opaque, as the reference does.
    """
    cfg = model.config
    K = max_samples or cfg.max_samples
    dt = dt or default_step(cfg.bound, cfg.occupancy_resolution)
    R = rays_o.shape[0]
    nears, fars = near_far_from_aabb(rays_o, rays_d, model.aabb, cfg.min_near)
    jitter = None
    if perturb:
        jitter = torch.rand(R, generator=generator, device="cpu").to(rays_o.device)
    t, valid = march_rays(rays_o, rays_d, nears, fars, model.occupancy.lookup, K, dt, jitter)
    if torch.is_grad_enabled():
        out = _render_dense(model, rays_o, rays_d, t, valid, dt, enc_a, ind_code, eye, T_thresh)
    else:
        out = _render_staged(model, rays_o, rays_d, t, valid, dt, enc_a, ind_code, eye, T_thresh)
    bg = bg_color.to(out["image"].dtype)
    out["image"] = out["image"] + (1.0 - out["weights_sum"]).unsqueeze(-1) * bg
    return out


def _render_dense(model, rays_o, rays_d, t, valid, dt, enc_a, ind_code, eye, T_thresh):
    """All samples at once (training: one graph for backward)."""
    R, K = t.shape
    flat = valid.view(-1).nonzero().squeeze(1)
    ray = flat // K
    xyz = rays_o[ray] + t.view(-1)[flat].unsqueeze(-1) * rays_d[ray]
    dirs = rays_d[ray]
    f = model(xyz, dirs, enc_a, ind_code, eye)
    sigma = _scatter(f["sigma"], flat, (R, K))
    w = composite_weights(sigma, torch.full_like(sigma, dt), T_thresh)  # [R, K]
    w_flat = w.view(-1)[flat]
    out = {
        "weights_sum": w.sum(dim=1),
        "image": torch.zeros(R, 3, device=t.device).index_add(0, ray, w_flat.unsqueeze(-1) * f["color"]),
        "depth": (w * t).sum(dim=1),
    }
    for key in ("ambient_aud", "ambient_eye", "uncertainty"):
        out[key] = torch.zeros(R, device=t.device).index_add(0, ray, w_flat * f[key])
    out["points"], out["dirs"] = xyz, dirs
    return out


@torch.no_grad()
def _render_staged(model, rays_o, rays_d, t, valid, dt, enc_a, ind_code, eye, T_thresh, group: int = 4):
    """Inference: ``group`` samples per ray at a time; opaque rays stop early."""
    R, K = t.shape
    dev = t.device
    image = torch.zeros(R, 3, device=dev)
    ws, depth = torch.zeros(R, device=dev), torch.zeros(R, device=dev)
    extra = {k: torch.zeros(R, device=dev) for k in ("ambient_aud", "ambient_eye", "uncertainty")}
    log_T = torch.zeros(R, device=dev)  # -optical depth so far
    for k0 in range(0, K, group):
        alive = (log_T > math.log(T_thresh)) & valid[:, k0]
        idx = alive.nonzero().squeeze(1)
        if idx.numel() == 0:
            break
        tv, vv = t[idx, k0:k0 + group], valid[idx, k0:k0 + group]
        r_loc, c_loc = vv.nonzero(as_tuple=True)
        xyz = rays_o[idx[r_loc]] + tv[r_loc, c_loc].unsqueeze(-1) * rays_d[idx[r_loc]]
        f = model(xyz, rays_d[idx[r_loc]], enc_a, ind_code, eye)
        sigma = torch.zeros_like(tv)
        sigma[r_loc, c_loc] = f["sigma"]
        tau = sigma * dt
        T = torch.exp(log_T[idx].unsqueeze(1) - (torch.cumsum(tau, 1) - tau))
        w = (1 - torch.exp(-tau)) * T * (T >= T_thresh)
        wv = w[r_loc, c_loc]
        rays = idx[r_loc]
        image.index_add_(0, rays, wv.unsqueeze(-1) * f["color"])
        for key in extra:
            extra[key].index_add_(0, rays, wv * f[key])
        ws.index_add_(0, idx, w.sum(1))
        depth.index_add_(0, idx, (w * tv).sum(1))
        log_T[idx] -= tau.sum(1)
    return {"image": image, "weights_sum": ws, "depth": depth, **extra}


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
                 chunk: int = 1 << 15) -> dict[str, torch.Tensor]:
    """Render a whole image of the head over ``bg_image``.

    pose [4, 4] renderer-convention camera-to-world; intrinsics (fx, fy, cx, cy) at H x W;
    audio_window [8, C, W] (or a precomputed ``enc_a`` [1, 32]); eye: the blink value in
    [0, 1] (None = 0); bg_image [H, W, 3] float in [0, 1] or uint8 (None = black);
    ind_index: individual code (None = code 0, the reference's test-time choice).
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
        out = render_rays(model, rays_o, rays_d, enc_a, code, eye_t, bg[pix])
        image[pix], ws[pix], depth[pix] = out["image"], out["weights_sum"], out["depth"]
    return {"image": image.clamp(0, 1).view(H, W, 3), "weights_sum": ws.view(H, W), "depth": depth.view(H, W)}
