"""Loss terms of ER-NeRF training (ERNERF_FACTS.md section 5) and the refined fork's options.

Photometric loss ``train.loss``: ``l2`` (reference), ``l1``, ``smooth_l1``, ``huber``; the
last two take ``train.huber_delta`` (Huber's delta, SmoothL1's beta; SmoothL1 = Huber /
delta). The same criterion serves the photometric, validation and smoothness terms.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

LOSSES = ("l2", "l1", "smooth_l1", "huber")


def photometric(pred: torch.Tensor, target: torch.Tensor, kind: str = "l2", delta: float = 0.1) -> torch.Tensor:
    """Elementwise loss (same shape as the inputs)."""
    if kind == "l2":
        return (pred - target) ** 2
    if kind == "l1":
        return (pred - target).abs()
    if kind == "smooth_l1":
        return F.smooth_l1_loss(pred, target, reduction="none", beta=delta)
    if kind == "huber":
        return F.huber_loss(pred, target, reduction="none", delta=delta)
    raise ValueError(f"unknown loss {kind!r}; choose one of {LOSSES}")


def uncertainty_weighted(loss: torch.Tensor, uncertainty: torch.Tensor, pred: torch.Tensor,
                         target: torch.Tensor, face_mask: torch.Tensor, progress: float) -> torch.Tensor:
    """The reference's uncertainty terms on the per-ray loss [R] (ER-NeRF ``train_step``, ``unc_loss``).

    loss [R]: per-ray photometric loss; uncertainty [R] (composited, >= 0); pred, target
    [R, 3]; face_mask [R] bool; progress s = step / iters in [0, 1] (the reference's
    ``step_factor``). Returns [R]::

        w    = softmax(uncertainty) * R                        (detached)
        out  = loss * (0.2 + 0.8 * clamp((1 - s) + s * w, 0, 10))
        beta = uncertainty + 1
        out += s * (|pred - target| / (2 beta^2) + log(beta)^2 / 2) * face
        out += 1e-3 * s * uncertainty * (1 - face)

    Rays are re-weighted by their uncertainty more as training progresses; on the face the
    uncertainty learns the residual (its minimum is at log(beta) beta^2 = |pred - target|);
    off the face it is pulled to 0. All three terms are the reference's, with its weights.
    """
    R = loss.shape[0]
    alpha = 0.2
    unc_weight = F.softmax(uncertainty, dim=-1) * R
    out = loss * (alpha + (1 - alpha) * ((1 - progress) + progress * unc_weight.detach()).clamp(0, 10))
    beta = uncertainty + 1
    norm_rgb = torch.norm(pred - target, dim=-1).detach()
    face = face_mask.to(loss.dtype)
    loss_u = (norm_rgb / (2 * beta ** 2) + torch.log(beta) ** 2 / 2) * face
    return out + progress * loss_u + 1e-3 * progress * uncertainty * (1 - face)


def weights_entropy(weights_sum: torch.Tensor) -> torch.Tensor:
    """Mean binary entropy (bits) of the accumulated weight: pushes it to 0 or 1."""
    a = weights_sum.clamp(1e-5, 1 - 1e-5)
    return (-a * torch.log2(a) - (1 - a) * torch.log2(1 - a)).mean()


def psnr(mse: float) -> float:
    return float("inf") if mse <= 0 else -10.0 * math.log10(mse)
