"""The reference's parsing map: four regions, their colour codes, reading and writing.

The reference writes ``parsing/<i>.png`` with ``cv2.imwrite`` from arrays coloured head
[255, 0, 0], neck [0, 255, 0], torso [0, 0, 255], background [255, 255, 255], and reads them
back with ``cv2.imread``: the codes are in OpenCV's BGR order (an RGB viewer shows the head
blue and the torso red). The files written here read back the same way, so the reference
and this project can use each other's parsing.
"""

from __future__ import annotations

import os

import cv2
import numpy as np

from ..media.frames import write_png

BACKGROUND, HEAD, NECK, TORSO = 0, 1, 2, 3
REGION_NAMES = {BACKGROUND: "background", HEAD: "head", NECK: "neck", TORSO: "torso"}
# label -> colour as cv2.imread returns it (BGR). [4, 3]
CODES_BGR = np.array([[255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255]], dtype=np.uint8)


def write_parsing(path: str | os.PathLike, labels: np.ndarray) -> None:
    """labels uint8 [H, W] in {0..3} -> reference parsing PNG, atomically."""
    bgr = CODES_BGR[labels]
    write_png(path, bgr[..., ::-1])  # write_png takes RGB


def read_parsing(path: str | os.PathLike) -> np.ndarray:
    """Reference parsing PNG -> uint8 labels [H, W]; colours that are no code count as background."""
    bgr = cv2.imread(os.fspath(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise FileNotFoundError(f"{path}: missing or not a readable image")
    labels = np.zeros(bgr.shape[:2], np.uint8)
    for label in (HEAD, NECK, TORSO):
        labels[np.all(bgr == CODES_BGR[label], axis=-1)] = label
    return labels
