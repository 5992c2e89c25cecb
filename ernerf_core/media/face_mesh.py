"""The MediaPipe face mesh (478 points) on images, following one face through a clip.

Used by the landmarks stage, by the metrics (LMD, mouth opening of rendered frames) and by
the renderers, with the same settings everywhere; MediaPipe ships the model in its wheel.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class MeshTracker:
    """MediaPipe face mesh in video mode, following one face through the clip.

    With several faces in view it keeps the one nearest to where the followed face was;
    on the first frame (or after the face was lost) it takes the largest, most central one.
    """

    def __init__(self, max_faces: int = 2):
        import mediapipe as mp

        self._mesh = mp.solutions.face_mesh.FaceMesh(
            static_image_mode=False,
            max_num_faces=max_faces,
            refine_landmarks=True,
            min_detection_confidence=0.5,
            min_tracking_confidence=0.5,
        )
        self._last_center: np.ndarray | None = None

    def close(self) -> None:
        self._mesh.close()

    def __enter__(self) -> MeshTracker:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __call__(self, rgb: np.ndarray) -> tuple[np.ndarray | None, int]:
        """uint8 RGB [H, W, 3] -> (mesh [478, 3] in pixels or None, number of faces seen)."""
        h, w = rgb.shape[:2]
        result = self._mesh.process(rgb)
        if not result.multi_face_landmarks:
            self._last_center = None
            return None, 0
        scale = np.array([w, h, w], dtype=np.float32)  # MediaPipe z is normalised by width
        faces = [
            np.array([(p.x, p.y, p.z) for p in f.landmark], dtype=np.float32) * scale
            for f in result.multi_face_landmarks
        ]
        face = faces[choose_face(faces, (h, w), self._last_center)]
        self._last_center = face[:, :2].mean(0)
        return face, len(faces)


def choose_face(
    faces: list[np.ndarray], image_hw: tuple[int, int], last_center: np.ndarray | None = None
) -> int:
    """Index of the face to follow among [478, >=2] point sets.

    Continuity first: the face whose centre is within half a face size of the last followed
    centre. Otherwise the largest and most central: size x (1 - 0.5 x distance from the image
    centre / half the image diagonal).
    """
    h, w = image_hw
    centers = np.array([f[:, :2].mean(0) for f in faces])
    sizes = np.array([np.ptp(f[:, 0]) + np.ptp(f[:, 1]) for f in faces])
    if last_center is not None:
        dist = np.linalg.norm(centers - last_center, axis=1)
        best = int(np.argmin(dist))
        if dist[best] < 0.5 * sizes[best]:
            return best
    off_center = np.linalg.norm(centers - np.array([w / 2, h / 2]), axis=1) / (0.5 * np.hypot(w, h))
    return int(np.argmax(sizes * (1.0 - 0.5 * off_center)))
