"""The read-out proxy's targets (benchmarks/readout_proxy.py; the runs themselves are by hand)."""

from __future__ import annotations

import numpy as np

from benchmarks.readout_proxy import VARIANT, lip_coords, readout_targets, smooth_in_time
from ernerf_core.train.mouth_probe import mouth_shape, mouth_targets


def _faces(n: int = 6, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 68, 2)) * 5 + 100


def test_lip_coords_ignore_the_head_position_roll_and_scale():
    lm = _faces()
    angle = 0.4
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved = (lm - 100) @ rot.T * 2.5 + np.array([30.0, -12.0])
    assert np.allclose(lip_coords(moved), lip_coords(lm), atol=1e-9)
    # a lip landmark that moves changes them
    opened = lm.copy()
    opened[:, 66, 1] += 3.0
    assert not np.allclose(lip_coords(opened), lip_coords(lm))


def test_smoothing_averages_neighbours_and_keeps_the_length():
    v = np.array([[0.0], [3.0], [0.0], [3.0]])
    assert np.allclose(smooth_in_time(v, 3), [[1.0], [1.0], [2.0], [2.0]])
    assert smooth_in_time(v, 1) is v


def test_targets_start_with_the_heads_readout_and_are_standardised():
    lm = _faces(40)
    base = readout_targets("base", lm)
    assert np.allclose(base, mouth_targets(lm).numpy(), atol=1e-6)
    pca = readout_targets("pca4", lm)
    assert pca.shape == (40, 6) and np.allclose(pca[:, :2], base, atol=1e-6)
    assert np.allclose(pca.mean(0), 0, atol=1e-5) and np.allclose(pca.std(0), 1, atol=1e-4)
    assert readout_targets("lips40", lm).shape == (40, 42)
    smooth = smooth_in_time(mouth_shape(lm), 3)
    assert np.allclose(readout_targets("smooth3", lm), (smooth - smooth.mean(0)) / smooth.std(0), atol=1e-5)
    assert all(VARIANT.match(v) for v in ("base", "pca8", "lips40", "smooth3", "lr0.3", "lr3"))
    assert not VARIANT.match("pca") and not VARIANT.match("loud")
