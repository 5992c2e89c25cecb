"""Structural similarity (scikit-image's implementation, Gaussian window as in Wang et al.)."""

from __future__ import annotations

import numpy as np
from skimage.metrics import structural_similarity


def ssim(pred: np.ndarray, gt: np.ndarray) -> float:
    """SSIM of two [H, W, 3] (or [H, W]) images, uint8 or float in [0, 1]; 1 = identical."""
    pred, gt = np.asarray(pred), np.asarray(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"shape mismatch: prediction {pred.shape} vs ground truth {gt.shape}")
    if pred.dtype == np.uint8:
        pred, gt, data_range = pred.astype(np.float64) / 255.0, gt.astype(np.float64) / 255.0, 1.0
    else:
        pred, gt, data_range = pred.astype(np.float64), gt.astype(np.float64), 1.0
    channel_axis = -1 if pred.ndim == 3 else None
    # gaussian_weights + sigma 1.5 + no sample covariance = the published SSIM definition.
    return float(structural_similarity(pred, gt, data_range=data_range, channel_axis=channel_axis,
                                       gaussian_weights=True, sigma=1.5, use_sample_covariance=False))
