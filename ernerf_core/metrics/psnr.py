"""Peak signal-to-noise ratio of rendered frames against ground truth."""

from __future__ import annotations

import numpy as np


def _as_float(img: np.ndarray) -> np.ndarray:
    """uint8 [0, 255] -> float64 [0, 1]; float input is taken as already in [0, 1]."""
    img = np.asarray(img)
    if img.dtype == np.uint8:
        return img.astype(np.float64) / 255.0
    return img.astype(np.float64)


def mse(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean squared error over all pixels and channels ([H, W, C] or any equal shapes).

    ``mask`` ([H, W] bool) restricts the mean to a region, e.g. the head box.
    """
    pred, gt = _as_float(pred), _as_float(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"shape mismatch: prediction {pred.shape} vs ground truth {gt.shape}")
    err = (pred - gt) ** 2
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if not mask.any():
            raise ValueError("empty mask")
        err = err[mask]
    return float(err.mean())


def psnr_from_mse(value: float, max_val: float = 1.0) -> float:
    """PSNR in dB; identical images give +inf."""
    if value <= 0:
        return float("inf")
    return float(10.0 * np.log10(max_val**2 / value))


def psnr(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None) -> float:
    """PSNR in dB of one image (uint8 or float in [0, 1]) against its ground truth."""
    return psnr_from_mse(mse(pred, gt, mask))
