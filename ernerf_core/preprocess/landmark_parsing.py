"""Face parsing from the face mesh and a person mask (no parsing network).

Per frame: the person mask (MediaPipe selfie segmentation) splits person from background;
the jaw line of the mesh, continued sideways from the jaw angles, splits the person into
head (face, hair, ears: above the line) and body; on the body, skin-coloured pixels under
the chin form the neck (colour model from the frame's own cheeks and forehead), the rest is
torso/clothes. The face outline is always head, even where the person mask misses it.
"""

from __future__ import annotations

import cv2
import numpy as np

from .mesh_indices import CHIN, FACE_OVAL, FOREHEAD_TOP, IBUG68_FROM_MESH, JAW_LINE
from .parsing_codes import BACKGROUND, HEAD, NECK, TORSO

# The jaw part of JAW_LINE used as the head/neck border: jaw angle (58) -> chin -> (288).
_JAW_START = int(np.flatnonzero(JAW_LINE == 58)[0])
_JAW_END = int(np.flatnonzero(JAW_LINE == 288)[0])
NECK_JAW = JAW_LINE[_JAW_START : _JAW_END + 1]
# Facial features excluded from the skin colour sample: eyes+brows and lips (iBUG-68 groups).
_RIGHT_EYE_BROW = IBUG68_FROM_MESH[list(range(17, 22)) + list(range(36, 42))]
_LEFT_EYE_BROW = IBUG68_FROM_MESH[list(range(22, 27)) + list(range(42, 48))]
_LIPS = IBUG68_FROM_MESH[48:60]
_NOSTRILS = IBUG68_FROM_MESH[31:36]


class SelfieSegmenter:
    """MediaPipe selfie segmentation (general model, shipped in the wheel)."""

    def __init__(self) -> None:
        import mediapipe as mp

        self._seg = mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=0)

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        """uint8 RGB [H, W, 3] -> float32 [H, W] person probability."""
        return self._seg.process(rgb).segmentation_mask

    def close(self) -> None:
        self._seg.close()

    def __enter__(self) -> SelfieSegmenter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _poly_mask(shape: tuple[int, int], points: np.ndarray) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    cv2.fillPoly(mask, [np.round(points).astype(np.int32)], 1)
    return mask.astype(bool)


def _face_frame(xy: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Unit "down" (forehead -> chin) and "right" (image left -> right) vectors of the face,
    and the face height in pixels. xy [478, 2]."""
    down = xy[CHIN] - xy[FOREHEAD_TOP]
    height = float(np.linalg.norm(down)) + 1e-6
    down = down / height
    right = np.array([down[1], -down[0]])  # (0, 1) down -> (1, 0) right
    return down, right, height


def _below_jaw(shape: tuple[int, int], xy: np.ndarray, right: np.ndarray, down: np.ndarray) -> np.ndarray:
    """Pixels under the jaw line, the line continued sideways (across the face's "right"
    axis) from both jaw angles to beyond the image."""
    far = 4.0 * max(shape)
    jaw = xy[NECK_JAW]
    left_end, right_end = jaw[0] - right * far, jaw[-1] + right * far
    polygon = np.concatenate(
        [[left_end], jaw, [right_end], [right_end + down * far], [left_end + down * far]]
    )
    return _poly_mask(shape, polygon)


def _box(points: np.ndarray, shape: tuple[int, int]) -> tuple[slice, slice]:
    """The (rows, cols) slices of the points' bounding box, clipped to the image."""
    x0, y0 = np.floor(points.min(0)).astype(int)
    x1, y1 = np.ceil(points.max(0)).astype(int) + 1
    return slice(max(y0, 0), min(max(y1, 0), shape[0])), slice(max(x0, 0), min(max(x1, 0), shape[1]))


def _skin_sample(xy: np.ndarray, face: np.ndarray, grow: int) -> tuple[np.ndarray, np.ndarray]:
    """Face pixels that are skin in almost every face: inside the outline, away from its
    border (hair fringe, beard line), eyes, brows, lips and nostrils. -> (rows, cols)."""
    rows, cols = _box(xy[FACE_OVAL], face.shape)
    if rows.start >= rows.stop or cols.start >= cols.stop:
        return np.zeros(0, np.intp), np.zeros(0, np.intp)  # face outside the frame
    offset = np.array([cols.start, rows.start])
    kernel = np.ones((2 * grow + 1, 2 * grow + 1), np.uint8)
    inner = cv2.erode(face[rows, cols].astype(np.uint8), kernel)
    features = np.zeros_like(inner)
    for part in (_RIGHT_EYE_BROW, _LEFT_EYE_BROW, _LIPS, _NOSTRILS):
        cv2.fillConvexPoly(features, cv2.convexHull(np.round(xy[part] - offset).astype(np.int32)), 1)
    sample = inner.astype(bool) & ~cv2.dilate(features, kernel).astype(bool)
    ys, xs = np.nonzero(sample)
    return ys + rows.start, xs + cols.start


def _skin_distance(
    rgb: np.ndarray, sample: tuple[np.ndarray, np.ndarray], box: tuple[slice, slice]
) -> np.ndarray | None:
    """Squared Mahalanobis distance of each pixel's Lab chroma (a, b) in ``box`` to the
    sampled skin pixels, [h, w]; lightness is left out because the neck is usually in shadow."""
    ys, xs = sample
    if len(ys) < 20:
        return None
    pix = cv2.cvtColor(rgb[ys, xs][None], cv2.COLOR_RGB2LAB)[0, :, 1:].astype(np.float32)
    mean = pix.mean(0)
    cov = np.cov(pix.T) + np.eye(2) * 4.0  # floor: JPEG and lighting noise of a few units
    inv = np.linalg.inv(cov).astype(np.float32)
    d = cv2.cvtColor(np.ascontiguousarray(rgb[box]), cv2.COLOR_RGB2LAB)[..., 1:].astype(np.float32) - mean
    return inv[0, 0] * d[..., 0] ** 2 + 2 * inv[0, 1] * d[..., 0] * d[..., 1] + inv[1, 1] * d[..., 1] ** 2


def _component_touching(mask: np.ndarray, seed: np.ndarray) -> np.ndarray:
    """The connected components of ``mask`` that overlap ``seed``."""
    count, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    if count <= 1:
        return np.zeros_like(mask)
    keep = np.unique(labels[seed & mask])
    keep = keep[keep > 0]
    return np.isin(labels, keep)


def _band(
    center: np.ndarray, right: np.ndarray, down: np.ndarray, half_width: float, up_len: float, down_len: float
) -> np.ndarray:
    """Corners [4, 2] of a rectangle aligned with the face axes."""
    top, bottom = center - down * up_len, center + down * down_len
    return np.array(
        [
            top - right * half_width,
            top + right * half_width,
            bottom + right * half_width,
            bottom - right * half_width,
        ]
    )


def parse_frame(rgb: np.ndarray, mesh: np.ndarray, person_prob: np.ndarray) -> np.ndarray:
    """Region labels uint8 [H, W] (parsing_codes) of one frame.

    rgb uint8 [H, W, 3]; mesh [478, >=2] pixels; person_prob float [H, W] in 0..1.
    """
    shape = rgb.shape[:2]
    xy = mesh[:, :2].astype(np.float64)
    down, right, face_h = _face_frame(xy)
    face_w = float(np.ptp(xy[FACE_OVAL] @ right))
    grow = max(1, int(round(0.04 * face_h)))
    far = 4.0 * max(shape)

    face = _poly_mask(shape, xy[FACE_OVAL])
    person = person_prob > 0.5
    below = _below_jaw(shape, xy, right, down)

    # Head: the person above the jaw line and near the face (hair, ears), plus the face.
    near_face = _poly_mask(shape, _band(xy[FACE_OVAL].mean(0), right, down, 1.25 * face_w, far, far))
    head = (person & ~below & near_face) | face
    head = _component_touching(head, face)
    head = cv2.morphologyEx(head.astype(np.uint8), cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8)).astype(bool)

    # Neck: skin-coloured body under the chin, connected to the jaw, at most 0.7 face
    # heights down and about as wide as the jaw.
    body = person & ~head
    labels = np.full(shape, BACKGROUND, np.uint8)
    labels[body] = TORSO
    labels[head] = HEAD
    corners = _band(xy[CHIN], right, down, 0.5 * face_w, 0.5 * face_h, 0.7 * face_h)
    box = _box(corners, shape)
    if box[0].start >= box[0].stop or box[1].start >= box[1].stop:
        return labels  # chin at or beyond the image border: no neck in view
    distance = _skin_distance(rgb, _skin_sample(xy, face, grow), box)
    if distance is None:
        return labels
    band = _poly_mask(shape, corners)[box]
    skin = body[box] & band & (distance < 9.0)  # chi-square(2) 99%
    skin = cv2.morphologyEx(skin.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    kernel = np.ones((2 * grow + 1, 2 * grow + 1), np.uint8)
    jaw_border = cv2.dilate(head[box].astype(np.uint8), kernel).astype(bool)
    neck = _component_touching(skin.astype(bool), jaw_border)
    neck = cv2.morphologyEx(neck.astype(np.uint8), cv2.MORPH_CLOSE, kernel).astype(bool)
    # What lies between the jaw and the neck skin in a column is neck too (the shadow under
    # the chin fails the colour test).
    head_above = np.maximum.accumulate(head[box], axis=0)
    neck_below = np.maximum.accumulate(neck[::-1], axis=0)[::-1]
    neck = (neck | (band & head_above & neck_below)) & body[box]
    labels[box][neck] = NECK
    return labels
