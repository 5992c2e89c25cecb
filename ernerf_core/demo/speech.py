"""The committed demo speech clips, their phone timeline and per-frame loudness."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile as sf

ASSETS = Path(__file__).parent / "assets"
DEMO_SPEECH = ASSETS / "demo_speech.ogg"  # the subject's own voice (video audio track)
DEMO_PHONES = ASSETS / "demo_speech_phones.tsv"  # eSpeak NG's phonemes of DEMO_SPEECH (espeak_timeline)
DRIVE_SPEECH = ASSETS / "drive_speech.ogg"  # a different voice and text, to drive rendering
SAMPLE_RATE = 16000


def load_clip(path: str | os.PathLike) -> np.ndarray:
    """[T] float32 mono samples at 16 kHz of a committed clip."""
    samples, rate = sf.read(str(path), dtype="float32", always_2d=True)
    if rate != SAMPLE_RATE:
        raise ValueError(f"{path}: expected {SAMPLE_RATE} Hz, found {rate} Hz")
    return samples.mean(axis=1)


def fit_length(samples: np.ndarray, seconds: float) -> np.ndarray:
    """Loop (longer) or trim (shorter) ``samples`` to exactly ``seconds`` at 16 kHz."""
    n = int(round(seconds * SAMPLE_RATE))
    reps = -(-n // len(samples))
    return np.tile(samples, reps)[:n]


def frame_rms(samples: np.ndarray, n_frames: int, fps: float) -> np.ndarray:
    """[n_frames] float32 RMS of each video frame's 1/fps audio window (40 ms at 25 fps)."""
    edges = np.round(np.arange(n_frames + 1) * SAMPLE_RATE / fps).astype(int)
    padded = np.pad(samples, (0, max(0, edges[-1] - len(samples))))
    return np.array([np.sqrt(np.mean(padded[a:b] ** 2)) for a, b in zip(edges[:-1], edges[1:], strict=True)],
                    dtype=np.float32)
