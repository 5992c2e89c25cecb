"""Head tracking: 1,000 synthetic frames at 512x512, bundle adjustment vs per-frame PnP.

Baseline (same process, same landmarks): OpenCV ``solvePnP`` on every frame independently,
with the 3D face from the tracker's own initialisation and the true focal (so the baseline
is handed what the bundle adjustment has to find). Rows report seconds, the time ratio, and
the accuracy both reach (median rotation error to the truth after removing one constant
head-frame rotation, jitter relative to the truth's own frame-to-frame motion).
"""

from __future__ import annotations

import os
import time

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from ernerf_core.preprocess import landmark_ba as lb
from ernerf_core.preprocess.pose_math import geodesic_deg
from ernerf_core.preprocess.synthetic_face import make_sequence

FRAMES = int(os.environ.get("ERNERF_BENCH_TRACKING_FRAMES", "1000"))
RESOLUTION = 512


def _aligned_error(est: np.ndarray, truth: np.ndarray) -> float:
    offset = Rotation.from_matrix(np.einsum("nji,njk->nik", truth, est)).mean().as_matrix()
    return float(np.median(geodesic_deg(torch.from_numpy(est), torch.from_numpy(truth @ offset)).numpy()))


def _pnp(landmarks: np.ndarray, shape_dm: np.ndarray, focal: float) -> np.ndarray:
    """[N, 3, 3] head rotations in the tracker's convention from per-frame solvePnP."""
    import cv2

    k = np.array([[focal, 0, RESOLUTION / 2], [0, focal, RESOLUTION / 2], [0, 0, 1]])
    flip = np.diag([1.0, -1.0, -1.0])        # OpenCV camera -> the tracker's OpenGL camera
    rots = []
    for pts in landmarks[:, :lb.N_MESH, :2].astype(np.float64):
        ok, rvec, tvec = cv2.solvePnP(shape_dm, pts, k, None, flags=cv2.SOLVEPNP_SQPNP)
        rots.append(flip @ cv2.Rodrigues(rvec)[0])
    return np.stack(rots)


def run() -> list[dict]:
    seq = make_sequence(FRAMES, resolution=RESOLUTION, seed=11)
    truth_jitter = lb.rotation_jitter_deg(seq.rotation)

    t0 = time.perf_counter()
    track = lb.track_landmarks(seq.landmarks, RESOLUTION)
    t_ba = time.perf_counter() - t0

    t0 = time.perf_counter()
    init = lb.initialise(seq.landmarks[:, :lb.N_MESH], 0)
    rot_pnp = _pnp(seq.landmarks, init.shape, seq.focal)
    t_pnp = time.perf_counter() - t0

    return [
        {"measure": f"tracking {FRAMES} frames {RESOLUTION}px: bundle adjustment vs per-frame solvePnP",
         "seconds": round(t_ba, 2), "baseline_seconds": round(t_pnp, 2), "ratio": round(t_ba / t_pnp, 2)},
        {"measure": "median rotation error (deg, gauge aligned)", "value": round(_aligned_error(track.rotation,
                                                                                                 seq.rotation), 3),
         "baseline": round(_aligned_error(rot_pnp, seq.rotation), 3)},
        {"measure": "rotation jitter / truth's own motion", "value": round(lb.rotation_jitter_deg(track.rotation)
                                                                           / truth_jitter, 3),
         "baseline": round(lb.rotation_jitter_deg(rot_pnp) / truth_jitter, 3)},
        {"measure": "median reprojection (px)", "value": round(float(np.median(track.reprojection)), 3),
         "focal": round(track.focal, 1), "true_focal": seq.focal},
    ]
