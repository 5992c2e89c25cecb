"""LMD: landmark distance of the mouth between rendered and real frames.

Mouth landmarks (iBUG 48-67) are found with MediaPipe Face Mesh (its model ships in the
wheel) in both images; each set is mean-centred (so head placement does not count), and
LMD is the mean L2 distance per landmark, in pixels, averaged over the frames where both
images have a face (ERNERF_FACTS.md section 6).
"""

from __future__ import annotations

import numpy as np

# MediaPipe Face Mesh indices of iBUG points 48-59 (outer lips) and 60-67 (inner lips).
MEDIAPIPE_MOUTH_68 = [61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181,
                      78, 82, 13, 312, 308, 317, 14, 87]


class MouthLandmarker:
    """``detector(image uint8 [H, W, 3] RGB) -> [20, 2] pixels (x, y) or None``."""

    def __init__(self, min_confidence: float = 0.5):
        import mediapipe as mp

        self._mesh = mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1,
                                                     refine_landmarks=False,
                                                     min_detection_confidence=min_confidence)

    def __call__(self, image: np.ndarray) -> np.ndarray | None:
        H, W = image.shape[:2]
        res = self._mesh.process(np.ascontiguousarray(image))
        if not res.multi_face_landmarks:
            return None
        lm = res.multi_face_landmarks[0].landmark
        return np.array([[lm[i].x * W, lm[i].y * H] for i in MEDIAPIPE_MOUTH_68], dtype=np.float64)

    def close(self) -> None:
        self._mesh.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def mouth_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean L2 distance of two [K, 2] landmark sets after removing each one's mean."""
    a = a - a.mean(axis=0, keepdims=True)
    b = b - b.mean(axis=0, keepdims=True)
    return float(np.linalg.norm(a - b, axis=1).mean())


def lmd(rendered: list[np.ndarray], real: list[np.ndarray],
        detector: MouthLandmarker | None = None) -> tuple[float | None, int]:
    """(LMD in pixels or None when no pair had faces in both, number of pairs used)."""
    own = detector is None
    detector = detector or MouthLandmarker()
    try:
        dists = []
        for r, g in zip(rendered, real, strict=True):
            lr, lg = detector(r), detector(g)
            if lr is not None and lg is not None:
                dists.append(mouth_distance(lr, lg))
    finally:
        if own:
            detector.close()
    return (float(np.mean(dists)) if dists else None), len(dists)
