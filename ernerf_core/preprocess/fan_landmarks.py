"""The reference's 68-point landmarks: face-alignment's FAN (2D) with its S3FD detector.

Weights come only from the user's torch hub cache (``$TORCH_HOME/hub/checkpoints``, where
face-alignment itself looks): when a file is missing this fails with its name and where to
get it, and never downloads.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import torch

from ..errors import StageError


def fan_weight_files() -> dict[str, tuple[Path, str]]:
    """name -> (path face-alignment loads it from, URL it would download it from)."""
    from face_alignment.api import models_urls
    from face_alignment.detection.sfd.sfd_detector import models_urls as detector_urls

    cache = Path(torch.hub.get_dir()) / "checkpoints"
    urls = {"2DFAN-4": models_urls["2DFAN-4"], "s3fd": detector_urls["s3fd"]}
    return {name: (cache / os.path.basename(urlparse(url).path), url) for name, url in urls.items()}


class FanLandmarks:
    """FAN 68-point landmarks per frame, for the face nearest a given centre."""

    def __init__(self, subject: str, stage: str, device: str = "cpu"):
        files = fan_weight_files()
        for name, (path, url) in files.items():
            if not path.is_file():
                raise StageError(
                    subject,
                    stage,
                    f"face_alignment weights {path.name} ({name}) not found at "
                    f"{path} (the torch hub cache, set by TORCH_HOME)",
                    f"download {url} to that path yourself, or use landmarks.backend: mediapipe",
                )
        import face_alignment

        # Both files exist, so face-alignment's loader finds them and does not download.
        self.fa = face_alignment.FaceAlignment(
            face_alignment.LandmarksType.TWO_D,
            device=device,
            flip_input=False,
            face_detector="sfd",
            face_detector_kwargs={"path_to_detector": str(files["s3fd"][0])},
            compile=False,
        )

    def __call__(self, rgb: np.ndarray, near: np.ndarray | None = None) -> np.ndarray | None:
        """uint8 RGB [H, W, 3] -> [68, 2] pixels of the face whose centre is nearest ``near``
        (the largest face when ``near`` is None), or None when no face is found."""
        faces = self.fa.get_landmarks_from_image(rgb)
        return pick_face(faces, near)


def pick_face(faces: list[np.ndarray] | None, near: np.ndarray | None) -> np.ndarray | None:
    """Among [68, >=2] point sets: the one centred nearest ``near``, else the largest. -> [68, 2]"""
    if not faces:
        return None
    faces = [np.asarray(f, np.float32)[:, :2] for f in faces]
    if near is None:
        best = int(np.argmax([np.ptp(f[:, 0]) + np.ptp(f[:, 1]) for f in faces]))
    else:
        best = int(np.argmin([np.linalg.norm(f.mean(0) - near) for f in faces]))
    return faces[best]
