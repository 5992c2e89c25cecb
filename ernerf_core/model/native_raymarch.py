"""The ray marcher's native kernels (``cuda_ext/raymarching``) behind the references' signatures.

Each ``try_*`` returns the kernel's result, or None when the kernel is not enabled or built for
these tensors (the caller then runs its pure-PyTorch reference, which stays the oracle of the
tests):

- :func:`try_near_far` for :func:`~ernerf_core.model.rays.near_far_from_aabb`;
- :func:`try_march` for :func:`~ernerf_core.model.renderer.march_rays` through an
  :class:`~ernerf_core.model.occupancy.OccupancyGrid` (its ``padded`` lookup copy);
- :func:`try_composite` for :func:`~ernerf_core.model.renderer.composite_weights`, with its
  backward pass (:class:`CompositeFunction`);
- :func:`try_refresh` for the threshold-and-dilate step of ``OccupancyGrid.refresh``.

Positions, cells and the kept samples are the references' to the last bit (same float32
operations in the same order, ``raymarch_common.h``); the compositing weights differ from the
reference only by ``exp``'s last-bit rounding.
"""

from __future__ import annotations

import torch

from . import native

_EMPTY = torch.empty(0)


def _module(t: torch.Tensor):
    if t.dtype != torch.float32:
        return None
    variant = native.variant_for(t.device)
    return None if variant is None else native.load("raymarching", variant)


def try_near_far(rays_o: torch.Tensor, rays_d: torch.Tensor, aabb: torch.Tensor, min_near: float):
    """(near [R], far [R]) of the slab test, inf for misses; None when no kernel applies."""
    module = _module(rays_o)
    if module is None or rays_d.dtype != torch.float32:
        return None
    return module.near_far(rays_o.contiguous(), rays_d.contiguous(), aabb.to(rays_o.device).float().contiguous(),
                           float(min_near))


def try_march(rays_o: torch.Tensor, rays_d: torch.Tensor, nears: torch.Tensor, fars: torch.Tensor, grid,
              max_samples: int, dt: float, jitter: torch.Tensor | None = None):
    """(t [R, K], valid [R, K]) of ``march_rays`` with ``grid.lookup`` as the occupancy test;
    None when no kernel applies."""
    module = _module(rays_o)
    if module is None:
        return None
    j = _EMPTY if jitter is None else jitter.to(rays_o.device).float().contiguous()
    return module.march(rays_o.contiguous(), rays_d.contiguous(), nears.float().contiguous(),
                        fars.float().contiguous(), grid.padded, grid.resolution, grid.bound,
                        1.0 / grid.cell_size, int(max_samples), float(dt), j)


class CompositeFunction(torch.autograd.Function):
    """weights [R, G] of ``composite_weights`` from tau [R, G] and log_T0 [R] (or None), with
    gradients to both; ``lit`` is returned without gradient."""

    @staticmethod
    def forward(ctx, tau, log_T0, T_thresh: float, module):
        log = _EMPTY if log_T0 is None else log_T0
        w, lit = module.composite_forward(tau, log, float(T_thresh))
        ctx.save_for_backward(tau, log, w)
        ctx.T_thresh, ctx.module, ctx.has_log = float(T_thresh), module, log_T0 is not None
        ctx.mark_non_differentiable(lit)
        return w, lit

    @staticmethod
    def backward(ctx, grad_w, _grad_lit):
        tau, log, w = ctx.saved_tensors
        need_log = ctx.has_log and ctx.needs_input_grad[1]
        grad_tau, grad_log = ctx.module.composite_backward(grad_w.contiguous(), tau, w, log, ctx.T_thresh, need_log)
        return grad_tau, (grad_log if need_log else None), None, None


def try_composite(tau: torch.Tensor, log_T0: torch.Tensor | None, T_thresh: float):
    """(weights, lit) of ``composite_weights``; None when no kernel applies."""
    module = _module(tau)
    if module is None or (log_T0 is not None and log_T0.dtype != torch.float32):
        return None
    log = None if log_T0 is None else log_T0.contiguous()
    return CompositeFunction.apply(tau.contiguous(), log, float(T_thresh), module)


def try_refresh(density: torch.Tensor, resolution: int, thresh: float) -> torch.Tensor | None:
    """occupied [R^3] bool: usable cells (density >= 0) with a 3^3 neighbour above ``thresh``;
    None when no kernel applies."""
    module = _module(density)
    if module is None:
        return None
    return module.refresh(density.contiguous(), int(resolution), float(thresh))
