"""The MediaPipe face mesh of the bundled photo: detection, topology and named contours.

The legacy ``mediapipe.solutions.face_mesh`` graph is used because its model ships in the
0.10.21 wheel (the Tasks FaceLandmarker needs a separately downloaded ``.task`` file).
With ``refine_landmarks=True`` it returns 478 points: 468 mesh vertices + 10 iris points.
"""

from __future__ import annotations

import functools

import numpy as np

N_LANDMARKS = 478
N_MESH = 468  # the last 10 landmarks are iris points, outside the triangulated mesh

# Ordered closed contours (MediaPipe topology), clockwise in the image from the forehead top.
FACE_OVAL = [10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400,
             377, 152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109]
# Inner lip contour as two chains from the right mouth corner (78) to the left one (308).
INNER_LIP_UPPER = [78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308]
INNER_LIP_LOWER = [78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308]
# Eye openings as upper / lower lid chains sharing their corner points (image left eye first).
EYES = (
    ([33, 246, 161, 160, 159, 158, 157, 173, 133], [33, 7, 163, 144, 145, 153, 154, 155, 133]),
    ([263, 466, 388, 387, 386, 385, 384, 398, 362], [263, 249, 390, 373, 374, 380, 381, 382, 362]),
)
IRIS_CENTERS = (468, 473)
MOUTH_CORNERS = (61, 291)


@functools.cache
def tesselation_triangles() -> np.ndarray:
    """[T, 3] int32 triangles of the 468-vertex mesh (eyes and mouth are holes in it).

    MediaPipe publishes the tesselation as an edge set; its faces are the 3-cliques of that
    graph. The mesh is a planar triangulation, so a 3-clique that is not a face would enclose
    other vertices; such a clique has every edge shared by 3 cliques, and is dropped.
    """
    from mediapipe.python.solutions.face_mesh_connections import FACEMESH_TESSELATION

    neighbours: dict[int, set[int]] = {}
    for a, b in FACEMESH_TESSELATION:
        neighbours.setdefault(a, set()).add(b)
        neighbours.setdefault(b, set()).add(a)
    cliques = set()
    for a, b in FACEMESH_TESSELATION:
        for c in neighbours[a] & neighbours[b]:
            cliques.add(tuple(sorted((a, b, c))))
    faces_per_edge: dict[tuple[int, int], int] = {}
    for a, b, c in cliques:
        for edge in ((a, b), (a, c), (b, c)):
            faces_per_edge[edge] = faces_per_edge.get(edge, 0) + 1
    faces = [t for t in sorted(cliques)
             if min(faces_per_edge[e] for e in ((t[0], t[1]), (t[0], t[2]), (t[1], t[2]))) <= 2]
    return np.array(faces, dtype=np.int32)


def detect_landmarks(images_rgb: list[np.ndarray]) -> list[np.ndarray | None]:
    """Per image [478, 3] float32 MediaPipe landmarks (x, y normalised to the image, z
    relative), or None where no face is found.

    images_rgb: [H, W, 3] uint8 each. Static-image mode: every image is detected on its own,
    never tracked from the previous one.
    """
    import mediapipe as mp

    found: list[np.ndarray | None] = []
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1,
                                         refine_landmarks=True,
                                         min_detection_confidence=0.5) as mesh:
        for image in images_rgb:
            result = mesh.process(np.ascontiguousarray(image))
            if not result.multi_face_landmarks:
                found.append(None)
                continue
            points = result.multi_face_landmarks[0].landmark
            found.append(np.array([[p.x, p.y, p.z] for p in points], dtype=np.float32))
    return found


def person_mask(image_rgb: np.ndarray) -> np.ndarray:
    """[H, W] float32 0..1 soft person mask (MediaPipe selfie segmentation, general model)."""
    import mediapipe as mp

    with mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=0) as seg:
        mask = seg.process(np.ascontiguousarray(image_rgb)).segmentation_mask
    return np.clip(mask, 0.0, 1.0).astype(np.float32)
