"""Head poses for audio-driven rendering: the training track, looped and smoothed.

Audio longer than the training track plays the track forwards, then backwards, then
forwards again (a ping-pong loop has no jump at the seam, a plain wrap-around does).
Optional smoothing averages each pose with its neighbours in a centred window (7 frames in
the reference's ``--smooth_path``): translations by their mean, rotations by their
chordal L2 mean (scipy's ``Rotation.mean``), so results stay proper rotations.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation


def pingpong_indices(n_track: int, n_out: int) -> np.ndarray:
    """[n_out] frame indices into a track of n_track frames: 0..n-1, n-2..0, 1..n-1, ...

    Consecutive indices differ by exactly 1 (or 0 when the track has one frame).
    """
    if n_track < 1:
        raise ValueError("the pose track is empty")
    if n_track == 1:
        return np.zeros(n_out, dtype=np.int64)
    period = 2 * (n_track - 1)
    phase = np.arange(n_out, dtype=np.int64) % period
    return np.where(phase < n_track, phase, period - phase)


def smooth_poses(poses: np.ndarray, window: int = 7) -> np.ndarray:
    """[N, 4, 4] camera-to-world poses -> [N, 4, 4] averaged over a centred window.

    The window shrinks at the ends (only real neighbours are averaged). window <= 1 copies.
    """
    poses = np.asarray(poses, dtype=np.float64)
    out = poses.copy()
    half = window // 2
    if half < 1 or len(poses) < 2:
        return out
    rots = Rotation.from_matrix(poses[:, :3, :3])
    for i in range(len(poses)):
        lo, hi = max(0, i - half), min(len(poses), i + half + 1)
        out[i, :3, 3] = poses[lo:hi, :3, 3].mean(axis=0)
        out[i, :3, :3] = rots[lo:hi].mean().as_matrix()
    return out


def driving_track(poses: np.ndarray, eyes: np.ndarray, n_out: int, *, smooth_window: int = 0,
                  fixed_eye: float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Poses [n_out, 4, 4], eye values [n_out] and source frame indices [n_out] for n_out frames.

    poses [N, 4, 4] and eyes [N] are the training track. Smoothing is applied to the looped
    path (so the turn-around points are smoothed too). fixed_eye replaces every eye value.
    """
    idx = pingpong_indices(len(poses), n_out)
    path = np.asarray(poses, dtype=np.float64)[idx]
    if smooth_window and smooth_window > 1:
        path = smooth_poses(path, smooth_window)
    eye = np.full(n_out, float(fixed_eye)) if fixed_eye is not None else np.asarray(eyes, np.float64)[idx]
    return path.astype(np.float32), eye.astype(np.float32), idx
