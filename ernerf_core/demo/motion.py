"""Seeded head motion and blink schedule of the demo subject.

Each pose channel is a sum of three sinusoids with random frequencies and phases whose
amplitudes add up to the channel's limit, so the motion is smooth and never exceeds the
limit, whatever the clip length.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

# Largest |angle| in degrees per channel (pitch, yaw, roll) and |offset| in cm (x, y, z).
ANGLE_LIMIT_DEG = (8.0, 11.0, 6.0)
OFFSET_LIMIT_CM = (0.6, 0.4, 2.0)
MOTION_HZ = (0.08, 0.45)  # frequency range of the sinusoids
BLINK_PROFILE = {  # closure per frame of one blink (fast close, slower open), by length
    5: (0.35, 0.85, 1.0, 0.55, 0.15),
    6: (0.3, 0.8, 1.0, 0.65, 0.3, 0.1),
    7: (0.25, 0.7, 1.0, 0.8, 0.5, 0.25, 0.08),
}
BLINK_EVERY_S = 3.5  # mean blink interval; a clip always gets at least 2
BLINK_MARGIN = 2  # frames kept free of blinks at each clip end


@dataclass(frozen=True)
class Motion:
    euler_deg: np.ndarray  # [N, 3] float32 (pitch, yaw, roll)
    rotation: np.ndarray  # [N, 3, 3] float32 = Rz(roll) @ Ry(yaw) @ Rx(pitch)
    offset: np.ndarray  # [N, 3] float32 cm, added to the head's rest translation
    blink: np.ndarray  # [N] float32 0..1, 1 = closed
    blink_frames: np.ndarray  # [B] int64, the frames where a blink peaks


def _smooth_channels(rng: np.random.Generator, t: np.ndarray, limits: tuple[float, ...]) -> np.ndarray:
    """[N, len(limits)]: per channel a sum of 3 sinusoids with amplitudes summing to the limit."""
    out = np.zeros((len(t), len(limits)))
    for c, limit in enumerate(limits):
        weights = rng.dirichlet(np.ones(3))
        freqs = rng.uniform(*MOTION_HZ, size=3)
        phases = rng.uniform(0, 2 * np.pi, size=3)
        out[:, c] = (limit * weights[None] * np.sin(2 * np.pi * freqs[None] * t[:, None] + phases)).sum(1)
    return out


def blink_schedule(rng: np.random.Generator, n_frames: int, fps: float) -> tuple[np.ndarray, np.ndarray]:
    """([N] closure 0..1, [B] peak frames): blinks evenly spread, randomly placed in their slot."""
    count = max(2, int(round(n_frames / fps / BLINK_EVERY_S)))
    slots = np.linspace(BLINK_MARGIN, n_frames - BLINK_MARGIN, count + 1)
    closure = np.zeros(n_frames)
    peaks = []
    for k in range(count):
        length = int(rng.integers(5, 8))
        lo, hi = int(np.ceil(slots[k])), int(np.floor(slots[k + 1])) - length
        if hi < lo:
            raise ValueError(f"{n_frames} frames are too few for {count} blinks")
        start = int(rng.integers(lo, hi + 1))
        profile = np.array(BLINK_PROFILE[length])
        closure[start:start + length] = profile
        peaks.append(start + int(np.argmax(profile)))
    return closure.astype(np.float32), np.array(peaks, dtype=np.int64)


def make_motion(n_frames: int, fps: float, seed: int) -> Motion:
    rng = np.random.default_rng(seed)
    t = np.arange(n_frames) / fps
    euler = _smooth_channels(rng, t, ANGLE_LIMIT_DEG)
    offset = _smooth_channels(rng, t, OFFSET_LIMIT_CM)
    blink, peaks = blink_schedule(rng, n_frames, fps)
    rotation = Rotation.from_euler("xyz", euler, degrees=True).as_matrix()
    return Motion(euler_deg=euler.astype(np.float32), rotation=rotation.astype(np.float32),
                  offset=offset.astype(np.float32), blink=blink, blink_frames=peaks)
