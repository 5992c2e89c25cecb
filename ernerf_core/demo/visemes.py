"""Mouth shapes of the demo subject from what is said: eSpeak NG phonemes -> jaw and lip width.

Every phoneme of the committed timeline (``assets/demo_speech_phones.tsv``) gets a target
mouth: ``open`` (jaw, 0 closed .. 1 wide) and ``width`` (lip corners, -1 rounded .. 0 rest ..
1 spread), held from its start to the next phoneme's. The frame's mouth is the targets
averaged over its 40 ms, then smoothed over time (the jaw and lips cannot jump between
frames, and neighbouring sounds blend). So "oo" rounds the lips with the jaw nearly shut,
"ee" spreads them, "aa" drops the jaw, "m", "b", "p" close the lips, a pause rests the mouth:
the demo's truth follows the phones of its speech, not its loudness.
"""

from __future__ import annotations

import os

import numpy as np
from scipy.ndimage import gaussian_filter1d

SMOOTH_FRAMES = 0.9  # Gaussian sigma in video frames (coarticulation)
REST = (0.0, 0.0)
# eSpeak NG's English phoneme names (stress and variant marks stripped: "@2" -> "@", "O@" kept)
TARGETS = {
    # open vowels: the jaw drops
    "a": (1.0, 0.2), "aI": (0.95, 0.3), "aU": (0.95, -0.2), "A:": (1.0, 0.1), "A@": (0.9, 0.1), "V": (0.75, 0.1),
    "0": (0.8, -0.3),
    # mid vowels
    "E": (0.65, 0.5), "e@": (0.6, 0.4), "eI": (0.55, 0.6), "3": (0.45, 0.0), "3:": (0.45, 0.0), "@": (0.4, 0.0),
    "@L": (0.35, 0.0),
    # rounded vowels: lips forward and narrow
    "O:": (0.65, -0.6), "O@": (0.6, -0.5), "O": (0.6, -0.5), "oU": (0.5, -0.8), "OI": (0.6, -0.4),
    "u:": (0.3, -1.0), "U": (0.35, -0.7), "U@": (0.4, -0.6),
    # spread vowels: lips wide, jaw nearly closed
    "i:": (0.25, 1.0), "i": (0.3, 0.8), "I": (0.35, 0.7), "i@": (0.35, 0.6),
    # lips shut
    "p": (0.0, 0.0), "b": (0.0, 0.0), "m": (0.0, 0.0),
    # lower lip to the teeth
    "f": (0.08, 0.1), "v": (0.08, 0.1),
    # rounded consonants
    "w": (0.15, -0.9), "S": (0.2, -0.5), "Z": (0.2, -0.5), "tS": (0.2, -0.5), "dZ": (0.2, -0.5), "r": (0.25, -0.4),
    # the rest: a little open, lips at rest
    "t": (0.2, 0.1), "d": (0.2, 0.1), "n": (0.2, 0.1), "l": (0.3, 0.1), "s": (0.15, 0.4), "z": (0.15, 0.4),
    "T": (0.2, 0.2), "D": (0.2, 0.2), "k": (0.3, 0.1), "g": (0.3, 0.1), "N": (0.3, 0.1), "h": (0.4, 0.0),
    "j": (0.25, 0.6),
}


def phone_target(phone: str) -> tuple[float, float]:
    """(open, width) of an eSpeak phoneme name; pauses (``_``) and unknown names rest."""
    if phone.startswith("_"):
        return REST
    for name in (phone, phone.rstrip("0123456789#-"), phone.rstrip("0123456789#-:")):
        if name in TARGETS:
            return TARGETS[name]
    return REST


def read_timeline(path: str | os.PathLike) -> tuple[np.ndarray, list[str]]:
    """(``[P]`` start seconds, ``[P]`` phoneme names) of a ``start_s<TAB>phone`` file."""
    lines = [ln.split("\t") for ln in open(path, encoding="utf-8").read().splitlines()[1:] if ln.strip()]
    return np.array([float(s) for s, _ in lines]), [p for _, p in lines]


def mouth_track(starts: np.ndarray, phones: list[str], period_s: float, n_frames: int,
                fps: float) -> tuple[np.ndarray, np.ndarray]:
    """(``[N]`` open 0..1, ``[N]`` width -1..1) of ``n_frames`` frames of speech that repeats
    every ``period_s`` seconds (the clip is looped to the video's length, see ``fit_length``)."""
    targets = np.array([phone_target(p) for p in phones] + [REST], np.float32)  # after the last: rest
    sub = 8  # samples per frame, averaged
    t = (np.arange(n_frames * sub) + 0.5) / (fps * sub)
    idx = np.searchsorted(starts, np.mod(t, period_s), side="right") - 1  # -1 before the first: rest
    values = targets[np.where(idx < 0, len(phones), idx)].reshape(n_frames, sub, 2).mean(1)
    smooth = gaussian_filter1d(values, SMOOTH_FRAMES, axis=0, mode="nearest")
    return np.clip(smooth[:, 0], 0.0, 1.0).astype(np.float32), np.clip(smooth[:, 1], -1.0, 1.0).astype(np.float32)
