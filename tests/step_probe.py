"""Drive one head training step (:class:`ernerf_core.train.head.HeadStep`) with known renders.

``probe_step(monkeypatch, step, residual, uncertainty)`` makes the step render frame
``FRAME`` and, in place of the renderer, return ``pred = gt + residual(R)`` at the pixels
the step drew (``uncertainty(R)`` as the composited uncertainty). Everything else in the
step runs as in training: the sampler (with its error map), the loss choice, the
uncertainty terms, the error-map update. The returned dict fills in as the step runs:
``pixels`` [R] (what the sampler drew), ``gt`` [R, 3], ``pred`` and ``unc`` (leaf tensors,
so a test reads the gradient the step's loss sends to them).
"""

from __future__ import annotations

import torch

import ernerf_core.train.head as head_module

FRAME = 3


def probe_step(monkeypatch, step, residual, uncertainty=None) -> dict:
    seen: dict = {}
    data = step.data
    real_pixel_rays = head_module.pixel_rays

    def pixel_rays(pose, intrinsics, pixels, W):  # noqa: N803
        seen["pixels"] = pixels.clone()
        return real_pixel_rays(pose, intrinsics, pixels, W)

    def render_rays(model, rays_o, rays_d, enc_a, code, eye, bg, **kw):
        pixels = seen["pixels"]
        R = pixels.numel()  # noqa: N806
        gt = torch.from_numpy(data.image(FRAME)).view(-1, 3)[pixels].float() / 255
        pred = (gt + residual(R)).requires_grad_()
        unc = (uncertainty(R) if uncertainty is not None else torch.zeros(R)).clone().requires_grad_()
        seen.update(gt=gt, pred=pred, unc=unc)
        zeros = torch.zeros(R)
        return {"image": pred, "uncertainty": unc, "weights_sum": torch.full((R,), 0.5), "depth": zeros,
                "ambient_aud": zeros, "ambient_eye": zeros, "points": torch.zeros(0, 3), "dirs": torch.zeros(0, 3)}

    monkeypatch.setattr(head_module, "pixel_rays", pixel_rays)
    monkeypatch.setattr(head_module, "render_rays", render_rays)
    monkeypatch.setattr(step, "_randint", lambda n: FRAME)
    return seen


def face_of(data, pixels: torch.Tensor) -> torch.Tensor:
    """bool [R]: which pixels of frame FRAME lie in its face rectangle."""
    r0, r1, c0, c1 = data.face_rect(FRAME)
    rows, cols = pixels // data.W, pixels % data.W
    return (rows >= r0) & (rows < r1) & (cols >= c0) & (cols < c1)
