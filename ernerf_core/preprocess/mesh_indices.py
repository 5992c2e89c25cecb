"""Named index sets of the MediaPipe 478-point face mesh, and its map to iBUG-68.

MediaPipe numbers points on its canonical mesh; "right" means the subject's right, which is
the image's left in an unmirrored frame. The iBUG-68 subset is the reference's ``.lms``
format (face-alignment order): jaw 0-16 from the subject's right ear to the left ear through
the chin (8), brows 17-26, nose bridge 27-30, nostrils 31-35, right eye 36-41, left eye
42-47, outer lips 48-59, inner lips 60-67; eyes and lips run clockwise in the image.

The jaw points were chosen at equal arc length along the mesh's face oval, from the point
at eye height to the chin, because that is how iBUG-68 spaces them; the eye lid points sit
at thirds of the eye width; every left/right pair is the mirror image of the other (the
tests check both properties on real detections, including a flipped frame).
"""

from __future__ import annotations

import numpy as np

# iBUG-68 -> MediaPipe index. [68]
IBUG68_FROM_MESH = np.array(
    [
        # jaw 0-16: right ear -> chin (8) -> left ear
        127,
        234,
        132,
        58,
        172,
        150,
        149,
        148,
        152,
        377,
        378,
        379,
        397,
        288,
        361,
        454,
        356,
        # right brow 17-21 (outer -> inner), left brow 22-26 (inner -> outer)
        70,
        63,
        105,
        66,
        107,
        336,
        296,
        334,
        293,
        300,
        # nose bridge 27-30 (top -> tip), nostrils 31-35 (right -> left)
        168,
        197,
        5,
        4,
        98,
        97,
        2,
        326,
        327,
        # right eye 36-41: outer corner, upper lid x2, inner corner, lower lid x2
        33,
        160,
        158,
        133,
        153,
        144,
        # left eye 42-47: inner corner, upper lid x2, outer corner, lower lid x2
        362,
        385,
        387,
        263,
        373,
        380,
        # outer lips 48-59: right corner, upper lip to left corner (54), lower lip back
        61,
        40,
        37,
        0,
        267,
        270,
        291,
        321,
        314,
        17,
        84,
        91,
        # inner lips 60-67: right corner, upper, left corner (64), lower
        78,
        81,
        13,
        311,
        308,
        402,
        14,
        178,
    ],
    dtype=np.int64,
)

# iBUG-68 index of each point's mirror image (left <-> right). [68]
IBUG68_MIRROR = np.array(
    list(range(16, -1, -1))  # jaw
    + list(range(26, 16, -1))  # brows
    + [27, 28, 29, 30]
    + [35, 34, 33, 32, 31]  # nose
    + [45, 44, 43, 42, 47, 46]  # right eye <- left eye
    + [39, 38, 37, 36, 41, 40]  # left eye <- right eye
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55]
    + [64, 63, 62, 61, 60, 67, 66, 65],
    dtype=np.int64,
)

# Eye aspect ratio points: corners (outer, inner) and three upper/lower lid pairs, the
# middle pair at the pupil. Three pairs (not iBUG's two) average out mesh jitter.
RIGHT_EYE_CORNERS = (33, 133)
RIGHT_EYE_LID_PAIRS = ((160, 144), (159, 145), (158, 153))
LEFT_EYE_CORNERS = (263, 362)
LEFT_EYE_LID_PAIRS = ((387, 373), (386, 374), (385, 380))

# Closed outline of the face (forehead top -> subject's left -> chin -> right), clockwise
# in the image.
FACE_OVAL = np.array(
    [
        10,
        338,
        297,
        332,
        284,
        251,
        389,
        356,
        454,
        323,
        361,
        288,
        397,
        365,
        379,
        378,
        400,
        377,
        152,
        148,
        176,
        149,
        150,
        136,
        172,
        58,
        132,
        93,
        234,
        127,
        162,
        21,
        54,
        103,
        67,
        109,
    ],
    dtype=np.int64,
)

# The lower part of FACE_OVAL from the right ear (127) over the chin to the left ear
# (356), in image left-to-right order: the jaw line that separates head from neck.
JAW_LINE = np.array(
    [
        127,
        234,
        93,
        132,
        58,
        172,
        136,
        150,
        149,
        176,
        148,
        152,
        377,
        400,
        378,
        379,
        365,
        397,
        288,
        361,
        323,
        454,
        356,
    ],
    dtype=np.int64,
)

CHIN = 152
FOREHEAD_TOP = 10
NOSE_TIP = 4


def ibug68_from_mesh(mesh: np.ndarray) -> np.ndarray:
    """The iBUG-68 subset of mesh points: [..., 478, D] -> [..., 68, D]."""
    return mesh[..., IBUG68_FROM_MESH, :]
