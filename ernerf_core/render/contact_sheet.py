"""A contact sheet: a few evenly spaced frames, ground truth above render, labelled."""

from __future__ import annotations

import cv2
import numpy as np


def pick_indices(n_frames: int, count: int) -> np.ndarray:
    """``count`` evenly spaced frame indices (all of them when there are fewer)."""
    if n_frames <= count:
        return np.arange(n_frames)
    return np.unique(np.linspace(0, n_frames - 1, count).round().astype(int))


def _label(img: np.ndarray, text: str) -> np.ndarray:
    img = img.copy()
    scale = min(0.8, max(0.22, img.shape[1] / 450))  # fits "render #1234" across the tile
    thick = max(1, int(round(scale * 2)))
    org = (3, int(22 * scale) + 2)
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick + 2, cv2.LINE_AA)
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick, cv2.LINE_AA)
    return img


def contact_sheet(pairs: list[tuple[np.ndarray, np.ndarray, str]], columns: int = 4,
                  tile: int = 256) -> np.ndarray:
    """[(truth [H,W,3], render [H,W,3], label)] -> one RGB image: per column truth over render."""
    if not pairs:
        raise ValueError("no frames for the contact sheet")
    cols = []
    for truth, render, label in pairs:
        size = (tile, int(round(tile * truth.shape[0] / truth.shape[1])))
        t = _label(cv2.resize(truth, size, interpolation=cv2.INTER_AREA), f"truth {label}")
        r = _label(cv2.resize(render, size, interpolation=cv2.INTER_AREA), f"render {label}")
        cols.append(np.concatenate([t, r], axis=0))
    rows = []
    for start in range(0, len(cols), columns):
        row = cols[start:start + columns]
        row += [np.zeros_like(cols[0])] * (columns - len(row)) if len(cols) > columns else []
        rows.append(np.concatenate(row, axis=1))
    return np.concatenate(rows, axis=0)
